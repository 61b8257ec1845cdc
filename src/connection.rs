//! The callback-style realtime connection (what `fal.realtime.connect` does in
//! JS): lazy connect on the first send, latest-wins while connecting,
//! throttled sends, token refresh, reconnect on the next send after any close.
//!
//! One task per connection owns the socket and runs every callback, so a
//! result reaches the handler on the thread that read it (no thread hop), and
//! a `send` made from inside a callback is written as soon as the callback returns.

use crate::codec::{self, Frame, Incoming, Message};
use crate::config::{Decoder, Encoder, RealtimeOptions, MIN_TOKEN_EXPIRATION};
use crate::error::{Error, ErrorKind, Result};
use crate::keepalive::{Action, KeepAlive};
use crate::link::{self, close_ws, decode_frame, map_read, to_ws, CloseAction, Read, Style};
use crate::open::{fetch_token, open_target, with_timeout, Target, Token};
use crate::stats::{Stats, StatsCell};
use crate::throttle::Throttle;
use crate::transport::{ws_error, WsStream};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

/// Receives what a callback-style connection produces.
///
/// Every method runs on a runtime thread (the thread that read the frame),
/// never concurrently for one connection. Methods may call
/// [`RealtimeConnection::send`] and [`RealtimeConnection::close`] re-entrantly.
/// A panic inside a method is caught and logged; the connection keeps going.
pub trait RealtimeHandler: Send + Sync + 'static {
    /// A result from the app.
    fn on_result(&self, message: Message);
    /// An error: server errors, abnormal closes, undecodable frames, failed
    /// connects and token refreshes. The connection reconnects on the next send.
    fn on_error(&self, error: Error) {
        log::warn!("fal-realtime: {error}");
    }
    /// The connection state changed.
    fn on_state(&self, state: ConnectionState) {
        let _ = state;
    }
    /// Several results that were ready at once (every one readable when the
    /// connection woke, at most [`RESULT_BATCH`]), in order. The default
    /// calls [`on_result`](Self::on_result) for each. A host whose callbacks
    /// need a lock overrides it to take the lock once per batch (the Python
    /// door takes the GIL once). The iterator ends early when a callback of
    /// the batch closed or shut down its own connection: results after that
    /// are not delivered, as if they had arrived after the close.
    fn on_results(&self, messages: &mut dyn Iterator<Item = Message>) {
        for m in messages {
            self.on_result(m);
        }
    }
}

/// The most results one wake-up of a connection delivers in a batch
/// ([`RealtimeHandler::on_results`]) before it looks at its commands again.
pub const RESULT_BATCH: usize = 64;

type ResultFn = Box<dyn Fn(Message) + Send + Sync>;
type ErrorFn = Box<dyn Fn(Error) + Send + Sync>;
type StateFn = Box<dyn Fn(ConnectionState) + Send + Sync>;

/// A [`RealtimeHandler`] made of closures.
pub struct FnHandler {
    on_result: ResultFn,
    on_error: Option<ErrorFn>,
    on_state: Option<StateFn>,
}

impl FnHandler {
    /// A handler calling `f` for every result.
    pub fn new(f: impl Fn(Message) + Send + Sync + 'static) -> Self {
        FnHandler {
            on_result: Box::new(f),
            on_error: None,
            on_state: None,
        }
    }

    /// Also call `f` for every error.
    pub fn on_error(mut self, f: impl Fn(Error) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    /// Also call `f` on every state change.
    pub fn on_state(mut self, f: impl Fn(ConnectionState) + Send + Sync + 'static) -> Self {
        self.on_state = Some(Box::new(f));
        self
    }
}

impl RealtimeHandler for FnHandler {
    fn on_result(&self, message: Message) {
        (self.on_result)(message)
    }
    fn on_error(&self, error: Error) {
        match &self.on_error {
            Some(f) => f(error),
            None => log::warn!("fal-realtime: {error}"),
        }
    }
    fn on_state(&self, state: ConnectionState) {
        if let Some(f) = &self.on_state {
            f(state)
        }
    }
}

struct NoopHandler;
impl RealtimeHandler for NoopHandler {
    fn on_result(&self, _: Message) {}
    fn on_error(&self, _: Error) {}
}

/// The state of a callback-style connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectionState {
    /// Created, nothing sent yet.
    Idle = 0,
    /// Fetching a token.
    Authenticating = 1,
    /// Opening the WebSocket.
    Connecting = 2,
    /// Open: sends go out (throttled).
    Open = 3,
    /// Closed (by the caller, the server, or an error). The next send reconnects.
    Closed = 4,
}

impl ConnectionState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ConnectionState::Authenticating,
            2 => ConnectionState::Connecting,
            3 => ConnectionState::Open,
            4 => ConnectionState::Closed,
            _ => ConnectionState::Idle,
        }
    }

    /// A short stable name, e.g. `"open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Idle => "idle",
            ConnectionState::Authenticating => "authenticating",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Open => "open",
            ConnectionState::Closed => "closed",
        }
    }
}

/// Live keyed connections of one client (`connection_key` → connection).
pub(crate) type Registry = Mutex<std::collections::HashMap<String, Weak<Inner>>>;

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// While the connection task runs a result or error callback: the
    /// commands that callback gives its own connection. The task handles them
    /// as soon as the callback returns, so a send from inside a callback wakes
    /// no other thread (through the channel it would wake the task, which the
    /// scheduler may hand to the other worker).
    static OUTBOX: std::cell::RefCell<Option<Outbox>> = const { std::cell::RefCell::new(None) };
}

struct Outbox {
    owner: *const Shared,
    cmds: Vec<Cmd>,
}

/// The results of one wake-up, handed to `on_results`.
struct Batch<'a> {
    it: std::vec::IntoIter<Message>,
    owner: *const Shared,
    stats: &'a StatsCell,
}

impl Batch<'_> {
    /// Whether a callback of this batch closed or shut down its connection.
    fn closed(&self) -> bool {
        OUTBOX.with(|o| {
            o.borrow().as_ref().is_some_and(|out| {
                std::ptr::eq(out.owner, self.owner)
                    && out
                        .cmds
                        .iter()
                        .any(|c| matches!(c, Cmd::Close | Cmd::Shutdown(_)))
            })
        })
    }
}

impl Iterator for Batch<'_> {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if self.closed() {
            return None;
        }
        let m = self.it.next()?;
        StatsCell::inc(&self.stats.results);
        Some(m)
    }
}

/// Whether the calling thread is inside a handler callback of this library.
pub fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

enum Cmd {
    Send(Frame),
    Close,
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Shared {
    handler: Mutex<Arc<dyn RealtimeHandler>>,
    pub(crate) stats: StatsCell,
    state: AtomicU8,
    /// The generation of the current handler: bumped when a keyed connect
    /// replaces it, so handles of a replaced handler cannot close the connection.
    generation: AtomicU64,
}

impl Shared {
    fn handler(&self) -> Arc<dyn RealtimeHandler> {
        self.handler.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_handler(&self, h: Arc<dyn RealtimeHandler>) {
        let old = std::mem::replace(&mut *self.handler.lock().unwrap_or_else(|p| p.into_inner()), h);
        drop(old);
    }

    fn call(&self, f: impl FnOnce(&dyn RealtimeHandler)) {
        let h = self.handler();
        let prev = IN_CALLBACK.with(|c| c.replace(true));
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&*h))).is_err() {
            log::error!("fal-realtime: a connection callback panicked; the connection keeps going");
        }
        IN_CALLBACK.with(|c| c.set(prev));
    }

    /// Deliver a batch through `on_results`, each result counted when the
    /// handler takes it. A panic inside a callback loses only that result:
    /// the rest still reach the handler.
    fn emit_results(&self, batch: Vec<Message>) {
        let mut it = Batch {
            it: batch.into_iter(),
            owner: self as *const Shared,
            stats: &self.stats,
        };
        while it.it.len() > 0 && !it.closed() {
            let before = it.it.len();
            let mut took_none = false;
            self.call(|h| {
                h.on_results(&mut it);
                took_none = it.it.len() == before;
            });
            if took_none {
                // A handler that took nothing: one at a time, so none is lost.
                if let Some(m) = it.next() {
                    self.call(|h| h.on_result(m));
                }
            }
        }
    }

    fn emit_error(&self, e: Error) {
        StatsCell::inc(&self.stats.errors);
        self.call(|h| h.on_error(e));
    }

    fn set_state(&self, s: ConnectionState) {
        let old = self.state.swap(s as u8, Ordering::AcqRel);
        if old != s as u8 {
            self.call(|h| h.on_state(s));
        }
    }

    /// Final shutdown: no more callbacks; drop the handler (runs host finalizers).
    fn retire(&self) {
        self.set_state(ConnectionState::Closed);
        self.set_handler(Arc::new(NoopHandler));
    }
}

pub(crate) struct Inner {
    tx: mpsc::UnboundedSender<Cmd>,
    pub(crate) shared: Arc<Shared>,
    encoder: Option<Encoder>,
    /// A `client_only` connection on a server-side host: inputs are dropped.
    client_only_noop: bool,
}

/// A handle to a callback-style realtime connection.
///
/// Cheap to clone; all clones refer to one connection. Thread-safe: `send`
/// and `close` never block and may be called from any thread, including
/// from inside the connection's own callbacks. The connection shuts down
/// (closing the socket with 1000) when the last handle is dropped.
///
/// Keyed reuse: a later [`Client::realtime`](crate::Client::realtime) with
/// the same `connection_key` returns a new handle to the same connection and
/// replaces the handler. Handles made before that (and their clones) can
/// still send, but their `close` does nothing: it must not close the
/// connection the newer handle uses (as in fal-js after 1.10.1).
#[derive(Clone)]
pub struct RealtimeConnection {
    pub(crate) inner: Arc<Inner>,
    generation: u64,
}

impl std::fmt::Debug for RealtimeConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeConnection")
            .field("state", &self.state())
            .finish()
    }
}

impl RealtimeConnection {
    pub(crate) fn open(
        target: Target,
        registry: &Registry,
        options: RealtimeOptions,
        handler: Arc<dyn RealtimeHandler>,
    ) -> Result<Self> {
        let Some(key) = options.connection_key.clone() else {
            return Ok(Self::spawn(target, &options, handler));
        };
        let mut reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(inner) = reg.get(&key).and_then(Weak::upgrade) {
            let generation = inner.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
            inner.shared.set_handler(handler);
            return Ok(RealtimeConnection { inner, generation });
        }
        let conn = Self::spawn(target, &options, handler);
        reg.insert(key, Arc::downgrade(&conn.inner));
        Ok(conn)
    }

    fn spawn(target: Target, options: &RealtimeOptions, handler: Arc<dyn RealtimeHandler>) -> Self {
        let client_only_noop = options.client_only && target.client.config.server_side;
        if client_only_noop {
            log::debug!(
                "fal-realtime: {} is client_only and this host is server-side: the connection never opens and its inputs are dropped",
                target.id_and_path
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            handler: Mutex::new(handler),
            stats: StatsCell::new(),
            state: AtomicU8::new(ConnectionState::Idle as u8),
            generation: AtomicU64::new(0),
        });
        let actor = Actor {
            target,
            decoder: options.decoder.clone(),
            throttle: Throttle::new(options.throttle_interval),
            shared: shared.clone(),
            rx,
            pending: None,
            token: None,
            backlog: Default::default(),
        };
        if client_only_noop {
            crate::runtime::handle().spawn(actor.run_noop());
        } else {
            crate::runtime::handle().spawn(actor.run());
        }
        RealtimeConnection {
            inner: Arc::new(Inner {
                tx,
                shared,
                encoder: options.encoder.clone(),
                client_only_noop,
            }),
            generation: 0,
        }
    }

    /// Encode `input` as msgpack and queue it. Never blocks. Encoding errors
    /// are returned here; connection errors go to the handler.
    pub fn send<T: Serialize + ?Sized>(&self, input: &T) -> Result<()> {
        self.send_encoded(codec::encode(input)?)
    }

    /// Queue msgpack bytes (through the custom encoder, if any). They must be
    /// one well-formed msgpack value ([`ErrorKind::Encode`] otherwise).
    pub fn send_msgpack(&self, bytes: Bytes) -> Result<()> {
        codec::validate_input(&bytes)?;
        self.send_encoded(bytes)
    }

    fn send_encoded(&self, bytes: Bytes) -> Result<()> {
        let frame = match &self.inner.encoder {
            Some(enc) => enc(bytes)?,
            None => Frame::Binary(bytes),
        };
        self.send_frame(frame)
    }

    /// Convert JSON text to msgpack and queue it.
    pub fn send_json(&self, json: &str) -> Result<()> {
        self.send_encoded(codec::json_to_msgpack(json)?)
    }

    /// Queue a frame as is (bypasses the encoder).
    pub fn send_frame(&self, frame: Frame) -> Result<()> {
        if self.inner.client_only_noop {
            if self.inner.tx.is_closed() {
                return Err(Error::new(
                    ErrorKind::NotConnected,
                    "the connection was shut down",
                ));
            }
            StatsCell::inc(&self.inner.shared.stats.inputs_dropped_client_only);
            log::debug!(
                "fal-realtime: input of {} bytes dropped: client_only connection on a server-side host",
                frame.len()
            );
            return Ok(());
        }
        self.command(Cmd::Send(frame))
            .map_err(|_| Error::new(ErrorKind::NotConnected, "the connection was shut down"))
    }

    /// Hand `cmd` to the connection task: through the outbox when called from
    /// inside this connection's own callback, else through the channel.
    fn command(&self, cmd: Cmd) -> std::result::Result<(), ()> {
        let me = Arc::as_ptr(&self.inner.shared);
        let cmd = OUTBOX.with(|o| match o.borrow_mut().as_mut() {
            Some(out) if std::ptr::eq(out.owner, me) => {
                out.cmds.push(cmd);
                None
            }
            _ => Some(cmd),
        });
        match cmd {
            None => Ok(()),
            Some(cmd) => self.inner.tx.send(cmd).map_err(|_| ()),
        }
    }

    /// Close the socket with code 1000 (from any state, also while
    /// connecting), waiting up to 1 s for the server's close reply on the
    /// connection's task, and drop any pending throttled input. The next
    /// send reconnects. Does nothing on a handle whose handler was replaced
    /// by a later keyed connect (see the type's docs).
    pub fn close(&self) {
        if self.is_stale() {
            log::debug!("fal-realtime: close() on a replaced keyed handle ignored");
            return;
        }
        let _ = self.command(Cmd::Close);
    }

    /// Whether a later keyed connect replaced this handle's handler.
    pub fn is_stale(&self) -> bool {
        self.inner.shared.generation.load(Ordering::Acquire) != self.generation
    }

    /// Close and stop the connection task for good; resolves once no callback
    /// can run any more and the handler was dropped. Later sends fail with
    /// [`ErrorKind::NotConnected`]. Do not await this from inside a callback.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Request a shutdown without waiting for it.
    pub fn shutdown_nowait(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.inner.tx.send(Cmd::Shutdown(tx));
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.inner.shared.state.load(Ordering::Acquire))
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats.snapshot()
    }

    /// Replace the handler.
    pub fn set_handler(&self, handler: Arc<dyn RealtimeHandler>) {
        self.inner.shared.set_handler(handler);
    }

    /// How many handles refer to this connection.
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }
}

type TokenFut = Pin<Box<dyn Future<Output = Result<Token>> + Send>>;
type WsRead =
    std::result::Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>;

/// How the open loop ended.
enum Next {
    /// Back to idle (closed); reconnect on the next send (or at once if an input is pending).
    Idle,
    /// Stop the task.
    Exit,
}

struct Actor {
    target: Target,
    decoder: Option<Decoder>,
    throttle: Throttle,
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    /// The latest input not yet sent.
    pending: Option<Frame>,
    token: Option<Token>,
    /// Commands from a callback's outbox not handled yet (after one that
    /// ended the open loop); handled before the channel's.
    backlog: std::collections::VecDeque<Cmd>,
}

async fn opt_fut<T>(f: &mut Option<Pin<Box<dyn Future<Output = T> + Send>>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Close with 1000 and wait (bounded) for the server's close reply.
async fn graceful_close(ws: &mut WsStream) {
    close_ws(ws, CloseAction::Send(1000)).await;
}

impl Actor {
    /// The next command: the backlog first, then the channel. Cancel-safe.
    async fn next_cmd(&mut self) -> Option<Cmd> {
        match self.backlog.pop_front() {
            Some(c) => Some(c),
            None => self.rx.recv().await,
        }
    }

    fn queue(&mut self, f: Frame) {
        if self.pending.replace(f).is_some() {
            StatsCell::inc(&self.shared.stats.inputs_replaced);
        }
    }

    /// A `client_only` connection on a server-side host: never connects
    /// (sends are dropped in `send_frame`); only close and shutdown matter.
    async fn run_noop(mut self) {
        while let Some(cmd) = self.next_cmd().await {
            match cmd {
                Cmd::Send(_) | Cmd::Close => {}
                Cmd::Shutdown(done) => {
                    self.shared.retire();
                    self.rx.close();
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    async fn run(mut self) {
        loop {
            // Idle: wait for an input unless one is pending.
            while self.pending.is_none() {
                match self.next_cmd().await {
                    None => return,
                    Some(Cmd::Send(f)) => self.pending = Some(f),
                    Some(Cmd::Close) => {}
                    Some(Cmd::Shutdown(done)) => {
                        self.shared.retire();
                        self.rx.close();
                        let _ = done.send(());
                        return;
                    }
                }
            }
            let ws = match self.connect().await {
                Ok(ws) => ws,
                Err(Next::Idle) => continue,
                Err(Next::Exit) => return,
            };
            match self.open_loop(ws).await {
                Next::Idle => continue,
                Next::Exit => return,
            }
        }
    }

    /// Connecting: fetch a token if needed and open the socket, while
    /// accepting commands (latest input wins, close aborts).
    async fn connect(&mut self) -> std::result::Result<WsStream, Next> {
        let target = self.target.clone();
        let shared = self.shared.clone();
        let cached = self.token.take();
        let needs_token = target.use_jwt && !cached.as_ref().is_some_and(Token::is_fresh);
        shared.set_state(if needs_token {
            ConnectionState::Authenticating
        } else {
            ConnectionState::Connecting
        });
        let open_timeout = target.client.config.open_timeout;
        let fut = with_timeout(open_timeout, async move {
            let tok = match cached {
                Some(t) if t.is_fresh() || !target.use_jwt => Some(t),
                _ if target.use_jwt => {
                    let t = Box::pin(fetch_token(&target)).await?;
                    StatsCell::inc(&shared.stats.token_fetches);
                    Some(t)
                }
                _ => None,
            };
            shared.set_state(ConnectionState::Connecting);
            let (ws, tok, _) = open_target(&target, tok).await?;
            Ok((ws, tok))
        });
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                cmd = self.next_cmd() => match cmd {
                    None => return Err(Next::Exit),
                    Some(Cmd::Send(f)) => self.queue(f),
                    Some(Cmd::Close) => {
                        self.pending = None;
                        self.shared.set_state(ConnectionState::Closed);
                        return Err(Next::Idle);
                    }
                    Some(Cmd::Shutdown(done)) => {
                        self.shared.retire();
                        self.rx.close();
                        let _ = done.send(());
                        return Err(Next::Exit);
                    }
                },
                res = &mut fut => match res {
                    Ok((ws, tok)) => {
                        self.token = tok;
                        return Ok(ws);
                    }
                    Err(e) => {
                        self.pending = None;
                        self.shared.emit_error(e);
                        self.shared.set_state(ConnectionState::Closed);
                        return Err(Next::Idle);
                    }
                }
            }
        }
    }

    async fn write(&mut self, ws: &mut WsStream, f: Frame) -> Result<()> {
        let n = f.len();
        ws.send(to_ws(f))
            .await
            .map_err(|e| ws_error("could not send", e))?;
        self.shared.stats.sent(n);
        self.throttle.record_send(Instant::now());
        Ok(())
    }

    /// When to refresh the token: at 90 % of its life, or 5 % after a failed
    /// refresh; never sooner than 1 s after the last fetch or failure.
    fn refresh_deadline(&self, after_failure: bool) -> Option<Instant> {
        let t = self.token.as_ref()?;
        let life = t.life?;
        Some(if after_failure {
            Instant::now() + life.mul_f64(0.05).max(MIN_TOKEN_EXPIRATION)
        } else {
            t.fetched_at + life.mul_f64(0.9).max(MIN_TOKEN_EXPIRATION)
        })
    }

    /// Handle a command while open; `Some` when the open loop must end.
    async fn on_cmd(&mut self, ws: &mut WsStream, cmd: Cmd) -> Option<Next> {
        match cmd {
            Cmd::Shutdown(done) => {
                graceful_close(ws).await;
                self.shared.retire();
                self.rx.close();
                let _ = done.send(());
                Some(Next::Exit)
            }
            Cmd::Close => {
                self.pending = None;
                graceful_close(ws).await;
                self.shared.set_state(ConnectionState::Closed);
                Some(Next::Idle)
            }
            Cmd::Send(f) => {
                if self.throttle.ready_at(Instant::now()).is_none() {
                    if let Err(e) = self.write(ws, f).await {
                        return Some(self.lost(e));
                    }
                } else {
                    self.queue(f);
                }
                None
            }
        }
    }

    /// Run `f` (which calls into the handler) with this connection's outbox
    /// open; returns the commands the callback gave its own connection.
    fn with_outbox(&self, f: impl FnOnce(&Shared)) -> Vec<Cmd> {
        let prev = OUTBOX.with(|o| {
            o.borrow_mut().replace(Outbox {
                owner: Arc::as_ptr(&self.shared),
                cmds: Vec::new(),
            })
        });
        f(&self.shared);
        OUTBOX
            .with(|o| std::mem::replace(&mut *o.borrow_mut(), prev))
            .map(|out| out.cmds)
            .unwrap_or_default()
    }

    /// The socket is lost: report and go idle.
    fn lost(&mut self, e: Error) -> Next {
        self.shared.emit_error(e);
        self.shared.set_state(ConnectionState::Closed);
        Next::Idle
    }

    /// What the socket gave, then every further message already readable
    /// (at most [`RESULT_BATCH`] results): the results go to the handler as
    /// one batch, in order with everything else (a batch is delivered before
    /// any other incoming item is handled). `Some` when the open loop must end.
    async fn on_read(
        &mut self,
        ws: &mut WsStream,
        first: Option<WsRead>,
        ka: &mut KeepAlive,
    ) -> Option<Next> {
        let mut batch: Vec<Message> = Vec::new();
        let mut msg = first;
        loop {
            if matches!(msg, Some(Ok(_))) {
                ka.heard();
            }
            match map_read(msg, &self.shared.stats) {
                Read::Frame(frame) => match decode_frame(&self.decoder, frame) {
                    Incoming::Result(m) => batch.push(m),
                    other => {
                        if let Some(next) = self.deliver(ws, &mut batch).await {
                            return Some(next);
                        }
                        if let Some(next) = self.on_incoming(ws, other).await {
                            return Some(next);
                        }
                    }
                },
                Read::Skip => {}
                Read::End { error, close, .. } => {
                    if let Some(next) = self.deliver(ws, &mut batch).await {
                        return Some(next);
                    }
                    close_ws(ws, close).await;
                    if let Some(e) = error {
                        self.shared
                            .emit_error(e.map_message(|m| format!("{m}; {}", Style::Callback.next_step())));
                    }
                    self.shared.set_state(ConnectionState::Closed);
                    return Some(Next::Idle);
                }
            }
            if batch.len() >= RESULT_BATCH {
                break;
            }
            // Already readable? Polled with this task's waker, so a `Pending`
            // leaves the socket registered for the next wake-up. (The loop's
            // `select!` would make this same read next anyway.)
            match std::future::poll_fn(|cx| std::task::Poll::Ready(ws.poll_next_unpin(cx))).await {
                std::task::Poll::Ready(m) => msg = m,
                std::task::Poll::Pending => break,
            }
        }
        self.deliver(ws, &mut batch).await
    }

    /// Hand the batch to the handler with the outbox open, then run what
    /// its callbacks asked of this connection.
    async fn deliver(&mut self, ws: &mut WsStream, batch: &mut Vec<Message>) -> Option<Next> {
        if batch.is_empty() {
            return None;
        }
        let msgs = std::mem::take(batch);
        let mut cmds = self.with_outbox(|s| s.emit_results(msgs)).into_iter();
        while let Some(cmd) = cmds.next() {
            if let Some(next) = self.on_cmd(ws, cmd).await {
                // What the callback asked for after that runs next.
                self.backlog.extend(cmds);
                return Some(next);
            }
        }
        None
    }

    /// An incoming item that is not a result.
    async fn on_incoming(&mut self, ws: &mut WsStream, item: Incoming) -> Option<Next> {
        match item {
            Incoming::Result(m) => {
                let mut batch = vec![m];
                return self.deliver(ws, &mut batch).await;
            }
            Incoming::Control { timing } => {
                if let Some(t) = timing {
                    self.shared.stats.set_timing(t);
                }
            }
            Incoming::Timeout => {
                // Idle session closed by the server: not an error.
                graceful_close(ws).await;
                self.shared.set_state(ConnectionState::Closed);
                return Some(Next::Idle);
            }
            Incoming::Unauthorized(e) => {
                self.token = None;
                self.pending = None;
                graceful_close(ws).await;
                self.shared.emit_error(link::unauthorized(e, Style::Callback));
                self.shared.set_state(ConnectionState::Closed);
                return Some(Next::Idle);
            }
            Incoming::ServerError(e) | Incoming::Undecodable(e) => self.shared.emit_error(e),
        }
        None
    }

    async fn open_loop(&mut self, mut ws: WsStream) -> Next {
        StatsCell::inc(&self.shared.stats.connects);
        self.throttle.reset();
        self.shared.set_state(ConnectionState::Open);
        let mut refresh_at = self.refresh_deadline(false);
        let mut refresh: Option<TokenFut> = None;
        let mut ka = KeepAlive::new(self.target.client.keepalive(), Instant::now());
        let ka_timer = sleep_until(ka.deadline().unwrap_or_else(far_future));
        tokio::pin!(ka_timer);
        if let Some(f) = self.pending.take() {
            if let Err(e) = self.write(&mut ws, f).await {
                return self.lost(e);
            }
        }
        loop {
            let send_at = if self.pending.is_some() {
                self.throttle.ready_at(Instant::now())
            } else {
                None
            };
            if self.pending.is_some() && send_at.is_none() {
                let f = self.pending.take().unwrap_or_else(|| Frame::Binary(Bytes::new()));
                if let Err(e) = self.write(&mut ws, f).await {
                    return self.lost(e);
                }
                continue;
            }
            tokio::select! {
                biased;
                cmd = self.next_cmd() => match cmd {
                    None => {
                        graceful_close(&mut ws).await;
                        return Next::Exit;
                    }
                    Some(cmd) => {
                        if let Some(next) = self.on_cmd(&mut ws, cmd).await {
                            return next;
                        }
                    }
                },
                _ = sleep_until(send_at.unwrap_or_else(far_future)), if send_at.is_some() => {
                    if let Some(f) = self.pending.take() {
                        if let Err(e) = self.write(&mut ws, f).await {
                            return self.lost(e);
                        }
                    }
                }
                _ = &mut ka_timer, if ka.enabled() => {
                    match ka.on_deadline(Instant::now()) {
                        Action::Wait => {}
                        Action::Ping => {
                            let limit = ka.timeout().unwrap_or(Duration::from_secs(60));
                            match tokio::time::timeout(limit, ws.send(tokio_tungstenite::tungstenite::Message::Ping(Bytes::new()))).await {
                                Ok(Ok(())) => StatsCell::inc(&self.shared.stats.pings_sent),
                                Ok(Err(e)) => return self.lost(ws_error("could not send a keepalive ping", e)),
                                // A write that cannot finish: the timeout decides.
                                Err(_) => {}
                            }
                        }
                        Action::Dead => {
                            close_ws(&mut ws, CloseAction::Abort(1011)).await;
                            return self.lost(link::keepalive_error(ka.timeout(), Style::Callback));
                        }
                    }
                    if let Some(d) = ka.deadline() {
                        ka_timer.as_mut().reset(d);
                    }
                }
                msg = ws.next() => {
                    if let Some(next) = self.on_read(&mut ws, msg, &mut ka).await {
                        return next;
                    }
                }
                _ = sleep_until(refresh_at.unwrap_or_else(far_future)), if refresh_at.is_some() && refresh.is_none() => {
                    let target = self.target.clone();
                    refresh = Some(Box::pin(async move { fetch_token(&target).await }));
                    refresh_at = None;
                }
                res = opt_fut(&mut refresh), if refresh.is_some() => {
                    refresh = None;
                    match res {
                        Ok(t) => {
                            StatsCell::inc(&self.shared.stats.token_fetches);
                            self.token = Some(t);
                            refresh_at = self.refresh_deadline(false);
                        }
                        Err(e) => {
                            self.shared.emit_error(Error::new(e.kind(), format!("token refresh failed (will retry): {}", e.message())));
                            refresh_at = self.refresh_deadline(true);
                        }
                    }
                }
            }
        }
    }
}
