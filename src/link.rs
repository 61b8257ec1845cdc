//! The socket rules every connection style shares: mapping what the socket
//! reads, keepalive, and how a socket ends (the close handshake, the reason
//! later sends fail with). The callback task (`connection`), the pull
//! sessions (`session`) and raw sockets (`ws`) all read and close through here,
//! so every door gets the same behaviour.

use crate::codec::{self, Frame, Incoming};
use crate::config::Decoder;
use crate::error::{Error, ErrorKind, Result};
use crate::keepalive::{Action, KeepAlive, KeepAliveConfig};
use crate::stats::StatsCell;
use crate::transport::{ws_error, WsStream};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How long a close waits for the peer's close reply before the socket is dropped.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Convert an outgoing frame.
pub(crate) fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        Frame::Binary(b) => WsMessage::Binary(b),
        Frame::Text(t) => WsMessage::Text(t.into()),
    }
}

/// Which style a message speaks for: only the callback style reconnects by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// The callback style: the next send reconnects.
    Callback,
    /// Pull sessions and raw sockets: the caller opens a new one.
    Pull,
}

impl Style {
    /// What happens next, appended to messages about a lost connection.
    pub(crate) fn next_step(self) -> &'static str {
        match self {
            Style::Callback => "the next send reconnects",
            Style::Pull => "connect again to continue",
        }
    }
}

/// What a close frame means to the caller: `None` for a normal close (1000/1001).
pub(crate) fn close_error(frame: Option<&CloseFrame>) -> Option<Error> {
    let f = frame?;
    let code = u16::from(f.code);
    if code == 1000 || code == 1001 {
        return None;
    }
    let reason = f.reason.as_str();
    let msg = if reason.is_empty() {
        format!("the server closed the connection with code {code}")
    } else {
        format!("the server closed the connection with code {code}: {reason}")
    };
    Some(Error::new(ErrorKind::Closed, msg).with_close_code(code))
}

pub(crate) fn lost() -> Error {
    Error::new(
        ErrorKind::Closed,
        "the connection was lost (no close frame from the server)",
    )
    .with_close_code(1006)
}

/// The error of a peer that stopped answering keepalive pings.
pub(crate) fn keepalive_error(timeout: Option<Duration>, style: Style) -> Error {
    let secs = timeout.map_or(0.0, |d| d.as_secs_f64());
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the server did not answer a keepalive ping within {secs:.1} s; the connection was closed (code 1011), {}",
            style.next_step()
        ),
    )
    .with_close_code(1011)
}

/// An `Unauthorized` frame, phrased for `style`.
pub(crate) fn unauthorized(e: Error, style: Style) -> Error {
    let next = match style {
        Style::Callback => "the token was dropped and the next send fetches a new one",
        Style::Pull => "the session was closed; connect again for a new token",
    };
    e.map_message(|m| format!("{m}; {next}"))
}

/// How the socket must be closed once the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseAction {
    /// The peer sent a close frame: flush tungstenite's reply.
    Reply,
    /// We end it: send a close frame with this code and wait for the reply.
    Send(u16),
    /// The peer is dead: send a close frame with this code if the socket
    /// takes it at once, and do not wait for a reply that cannot come.
    Abort(u16),
    /// The socket is gone: nothing to send.
    Drop,
}

/// One item read from the socket, mapped.
pub(crate) enum Read {
    /// A data frame (already counted in `stats`).
    Frame(Frame),
    /// The stream ended: `error` is `None` for a normal close. `close` says
    /// how to finish the socket; `code` is the close code seen, if any;
    /// `peer` the server's close frame (code and reason), if one arrived.
    End {
        error: Option<Error>,
        close: CloseAction,
        code: Option<u16>,
        peer: Option<(u16, String)>,
    },
    /// A ping, pong or raw frame: nothing for the caller (pongs are counted).
    Skip,
}

/// Map one item of the WebSocket stream and count data frames and pongs.
pub(crate) fn map_read(
    item: Option<std::result::Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    stats: &StatsCell,
) -> Read {
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    use tokio_tungstenite::tungstenite::Error as E;
    let end = |error, close, code| Read::End {
        error,
        close,
        code,
        peer: None,
    };
    let frame = match item {
        Some(Ok(WsMessage::Binary(b))) => Frame::Binary(b),
        Some(Ok(WsMessage::Text(t))) => Frame::Text(t.as_str().to_string()),
        Some(Ok(WsMessage::Pong(_))) => {
            StatsCell::inc(&stats.pongs_received);
            return Read::Skip;
        }
        Some(Ok(WsMessage::Close(cf))) => {
            let code = cf.as_ref().map(|f| u16::from(f.code));
            return Read::End {
                error: close_error(cf.as_ref()),
                close: CloseAction::Reply,
                code,
                peer: Some(peer_close(cf.as_ref())),
            };
        }
        Some(Ok(_)) => return Read::Skip,
        None
        | Some(Err(E::Io(_)))
        | Some(Err(E::Protocol(P::ResetWithoutClosingHandshake)))
        | Some(Err(E::Tls(_))) => return end(Some(lost()), CloseAction::Drop, Some(1006)),
        Some(Err(E::ConnectionClosed)) | Some(Err(E::AlreadyClosed)) => {
            return end(None, CloseAction::Drop, None)
        }
        Some(Err(E::Capacity(c))) => {
            let e = Error::new(
                ErrorKind::Closed,
                format!(
                    "a message from the server exceeded the size limit ({c}); the connection was closed (code 1009)"
                ),
            )
            .with_close_code(1009);
            return end(Some(e), CloseAction::Send(1009), Some(1009));
        }
        Some(Err(E::Protocol(p))) => {
            let e = Error::new(
                ErrorKind::Closed,
                format!(
                    "the server broke the WebSocket protocol ({p}); the connection was closed (code 1002)"
                ),
            )
            .with_close_code(1002);
            return end(Some(e), CloseAction::Send(1002), Some(1002));
        }
        Some(Err(e)) => {
            return end(
                Some(ws_error("the connection failed", e)),
                CloseAction::Drop,
                None,
            )
        }
    };
    stats.received(frame.len());
    Read::Frame(frame)
}

/// The code and reason of a close frame as the caller sees them: a close
/// frame without a code is 1005 (RFC 6455 §7.1.5).
fn peer_close(frame: Option<&CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_string()),
        None => (1005, String::new()),
    }
}

/// Check a close code and reason a caller wants to send: 1000–1003,
/// 1007–1014 or 3000–4999 (the others are reserved, RFC 6455 §7.4), and a
/// reason of at most 123 bytes (the control-frame limit).
pub(crate) fn check_close(code: u16, reason: &str) -> Result<()> {
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(Error::invalid(format!(
            "close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
        )));
    }
    if reason.len() > 123 {
        return Err(Error::invalid(format!(
            "the close reason is {} bytes long; at most 123 fit in a close frame",
            reason.len()
        )));
    }
    Ok(())
}

/// Send a close frame with `code` and `reason`; an already closed or closing socket is not an error.
pub(crate) async fn send_close<S>(sink: &mut S, code: u16, reason: &str) -> Result<()>
where
    S: futures_util::Sink<WsMessage, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    use tokio_tungstenite::tungstenite::Error as E;
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    match sink.send(WsMessage::Close(Some(frame))).await {
        Ok(()) | Err(E::ConnectionClosed) | Err(E::AlreadyClosed) | Err(E::Protocol(P::SendAfterClosing)) => {
            Ok(())
        }
        Err(e) => Err(ws_error("could not close", e)),
    }
}

/// Read until the peer's close reply (or the end of the stream); the reply's
/// code and reason, if one came.
async fn drain<S>(stream: &mut S) -> Option<(u16, String)>
where
    S: futures_util::Stream<Item = std::result::Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    while let Some(Ok(m)) = stream.next().await {
        if let WsMessage::Close(cf) = m {
            return Some(peer_close(cf.as_ref()));
        }
    }
    None
}

/// Finish an unsplit socket (the callback task's), bounded by [`CLOSE_WAIT`].
pub(crate) async fn close_ws(ws: &mut WsStream, close: CloseAction) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        match close {
            CloseAction::Send(code) => {
                if send_close(ws, code, "").await.is_ok() {
                    drain(ws).await;
                }
            }
            CloseAction::Reply => {
                let _ = ws.flush().await;
            }
            CloseAction::Abort(code) => abort(ws, code).await,
            CloseAction::Drop => {}
        }
    })
    .await;
}

/// How long an abort may spend writing its close frame.
const ABORT_WAIT: Duration = Duration::from_millis(100);

async fn abort<S>(sink: &mut S, code: u16)
where
    S: futures_util::Sink<WsMessage, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let _ = tokio::time::timeout(ABORT_WAIT, send_close(sink, code, "")).await;
}

/// Apply the custom decoder (if any) to a binary frame, then classify. Text
/// frames are JSON and never pass through the decoder: the rule of fal's JS
/// and Python clients, and of every door of this library.
pub(crate) fn decode_frame(decoder: &Option<Decoder>, frame: Frame) -> Incoming {
    match (decoder, frame) {
        (None, frame) | (Some(_), frame @ Frame::Text(_)) => codec::classify(frame),
        (Some(d), frame) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d(frame))) {
            Ok(Ok(bytes)) => codec::classify_binary(bytes),
            Ok(Err(e)) => Incoming::Undecodable(Error::new(
                ErrorKind::Decode,
                format!("the custom decoder failed: {}", e.message()),
            )),
            Err(_) => Incoming::Undecodable(Error::new(ErrorKind::Decode, "the custom decoder panicked")),
        },
    }
}

// ---------------------------------------------------------------------------
// Pull sockets (sessions and raw WebSockets): two halves over one socket.

/// Why a pull socket ended: what later sends are told.
#[derive(Debug, Clone)]
struct Ended {
    why: String,
    close_code: Option<u16>,
}

/// What the two halves of a pull socket share.
pub(crate) struct PullShared {
    sink: tokio::sync::Mutex<SplitSink<WsStream, WsMessage>>,
    ended_flag: AtomicBool,
    ended: std::sync::Mutex<Option<Ended>>,
    /// The server's close frame (code, reason), once one arrived.
    peer_close: std::sync::Mutex<Option<(u16, String)>>,
    /// The receiving half has finished the socket.
    finished: AtomicBool,
    pub(crate) stats: StatsCell,
    /// "session" or "WebSocket", for messages.
    noun: &'static str,
    #[cfg(unix)]
    fd: Option<std::os::fd::RawFd>,
}

impl PullShared {
    /// Record why the socket ended; the first reason stays.
    fn set_ended(&self, why: String, close_code: Option<u16>) {
        let mut e = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_none() {
            *e = Some(Ended { why, close_code });
        }
        self.ended_flag.store(true, Ordering::Release);
    }

    /// The error a send gets once the socket ended.
    fn ended_error(&self) -> Error {
        let e = self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Ended { why, close_code } = e.unwrap_or(Ended {
            why: "it was closed".into(),
            close_code: None,
        });
        let err = Error::new(
            ErrorKind::Closed,
            format!(
                "the {} has ended ({why}); nothing more can be sent, connect again",
                self.noun
            ),
        );
        match close_code {
            Some(c) => err.with_close_code(c),
            None => err,
        }
    }

    /// Record the server's close frame; the first one stays.
    fn set_peer_close(&self, peer: (u16, String)) {
        let mut p = self.peer_close.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(peer);
        }
    }

    /// How the socket ended, as RFC 6455 §7.1.5 (and Python's `websockets`)
    /// report it: the code and reason of the server's close frame, or
    /// `(1006, "")` when it ended without one (dropped, dead peer, no reply
    /// to our close in time). `None` while the socket has not ended.
    pub(crate) fn close_info(&self) -> Option<(u16, String)> {
        if let Some(p) = self.peer_close.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Some(p);
        }
        self.finished
            .load(Ordering::Acquire)
            .then(|| (1006, String::new()))
    }

    /// Make the TCP connection leave ESTABLISHED even if the peer never
    /// answers; the descriptor itself is released when both halves are dropped.
    fn shutdown_socket(&self) {
        #[cfg(unix)]
        if let Some(fd) = self.fd {
            // SAFETY: the receiving half owns a share of the socket, so `fd` is open.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    /// The OS socket, for host event loops.
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.fd
    }
}

/// The sending half of a pull socket.
pub(crate) struct PullTx {
    pub(crate) shared: Arc<PullShared>,
}

/// The receiving half of a pull socket: reads, keepalive and the end.
pub(crate) struct PullRx {
    stream: SplitStream<WsStream>,
    pub(crate) shared: Arc<PullShared>,
    ka: KeepAlive,
    timer: Pin<Box<Sleep>>,
    done: bool,
    /// The abnormal end not returned yet: kept here (not only in a local of
    /// `read`) so that a `read` cancelled while the close handshake runs
    /// does not lose it; the next `read` returns it.
    unreported: Option<Box<Error>>,
    /// What is left of an end's close handshake (a `read` dropped inside
    /// `end` leaves it for the next `read`, which finishes it by the same
    /// deadline).
    closing: Option<Closing>,
}

/// A close handshake in progress; see [`PullRx::finish_closing`].
#[derive(Clone, Copy)]
struct Closing {
    step: ClosingStep,
    deadline: Instant,
}

#[derive(Clone, Copy)]
enum ClosingStep {
    Start(CloseAction),
    /// Our close frame went out: wait for the server's reply.
    AwaitReply,
}

/// `fut`, given up at `deadline`: by the timer, and at any poll made after
/// it. A host-polled socket (`Client::connect_host_polled`) is polled when
/// its host's loop sees data, and its runtime's timers run only when the
/// host turns them: a server that keeps sending during the close handshake
/// without replying still ends it on time.
async fn by_deadline(deadline: Instant, fut: impl std::future::Future<Output = ()>) {
    use std::future::Future;
    let mut fut = std::pin::pin!(fut);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if fut.as_mut().poll(cx).is_ready() || Instant::now() >= deadline {
            return std::task::Poll::Ready(());
        }
        timer.as_mut().poll(cx)
    })
    .await
}

/// Split `ws` into the two halves of a pull socket.
pub(crate) fn pull(ws: WsStream, keepalive: KeepAliveConfig, noun: &'static str) -> (PullTx, PullRx) {
    #[cfg(unix)]
    let fd = crate::transport::raw_fd(&ws);
    let (sink, stream) = ws.split();
    let shared = Arc::new(PullShared {
        sink: tokio::sync::Mutex::new(sink),
        ended_flag: AtomicBool::new(false),
        ended: std::sync::Mutex::new(None),
        peer_close: std::sync::Mutex::new(None),
        finished: AtomicBool::new(false),
        stats: StatsCell::new(),
        noun,
        #[cfg(unix)]
        fd,
    });
    StatsCell::inc(&shared.stats.connects);
    let now = Instant::now();
    let ka = KeepAlive::new(keepalive, now);
    let timer = Box::pin(tokio::time::sleep_until(ka.deadline().unwrap_or(now)));
    (
        PullTx {
            shared: shared.clone(),
        },
        PullRx {
            stream,
            shared,
            ka,
            timer,
            done: false,
            unreported: None,
            closing: None,
        },
    )
}

impl PullTx {
    /// Send a frame; fails at once with a `Closed` error once the socket ended.
    pub(crate) async fn send(&mut self, frame: Frame) -> Result<()> {
        let s = &self.shared;
        if s.ended_flag.load(Ordering::Acquire) {
            return Err(s.ended_error());
        }
        let n = frame.len();
        let res = s.sink.lock().await.send(to_ws(frame)).await;
        match res {
            Ok(()) => {
                s.stats.sent(n);
                Ok(())
            }
            Err(e) => {
                // A failed write leaves the socket unusable: later sends say why.
                let e = ws_error("could not send", e);
                s.set_ended(e.message().to_string(), e.close_code());
                Err(e)
            }
        }
    }

    /// Send a close frame with `code` and `reason` (checked with
    /// [`check_close`]). Later sends fail with a `Closed` error; results
    /// already on the way can still be received, until the server's reply
    /// ends the socket. Idempotent: only the first close frame goes out.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<()> {
        check_close(code, reason)?;
        self.shared.set_ended("you closed it".into(), None);
        send_close(&mut *self.shared.sink.lock().await, code, reason).await
    }
}

impl PullRx {
    /// The next data frame; `None` once the socket ended cleanly (and for
    /// ever after), `Some(Err)` once for an abnormal end. Runs keepalive while
    /// it waits. Cancel-safe.
    pub(crate) async fn read(&mut self) -> Option<Result<Frame>> {
        loop {
            if self.done {
                // An end cut short by a dropped read: finish its handshake.
                self.finish_closing().await;
                return self.unreported.take().map(|e| Err(*e));
            }
            let item = tokio::select! {
                biased;
                item = self.stream.next() => item,
                _ = self.timer.as_mut(), if self.ka.enabled() => {
                    if let Some(e) = self.on_keepalive().await {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            if matches!(item, Some(Ok(_))) {
                self.ka.heard();
            }
            match map_read(item, &self.shared.stats) {
                Read::Frame(f) => return Some(Ok(f)),
                Read::Skip => {}
                Read::End {
                    error,
                    close,
                    code,
                    peer,
                } => {
                    if let Some(p) = peer {
                        self.shared.set_peer_close(p);
                    }
                    let why = match (&error, code) {
                        (Some(e), _) => e.message().to_string(),
                        (None, Some(c)) => format!("the server closed it with code {c}"),
                        (None, None) => "the server closed it".to_string(),
                    };
                    return self.end_with(error, why, code, close).await.map(Err);
                }
            }
        }
    }

    async fn on_keepalive(&mut self) -> Option<Error> {
        match self.ka.on_deadline(Instant::now()) {
            Action::Wait => {}
            Action::Ping => {
                let limit = self.ka.timeout().unwrap_or(Duration::from_secs(60));
                let shared = &self.shared;
                let sent = tokio::time::timeout(limit, async {
                    shared.sink.lock().await.send(WsMessage::Ping(Bytes::new())).await
                })
                .await;
                if let Ok(Ok(())) = sent {
                    StatsCell::inc(&shared.stats.pings_sent);
                }
            }
            Action::Dead => {
                let e = keepalive_error(self.ka.timeout(), Style::Pull);
                let why = e.message().to_string();
                return self
                    .end_with(Some(e), why, Some(1011), CloseAction::Abort(1011))
                    .await;
            }
        }
        if let Some(d) = self.ka.deadline() {
            self.timer.as_mut().reset(d);
        }
        None
    }

    /// After a close frame was sent: read (and drop) what is still on the
    /// way until the server's close reply ends the socket, for at most
    /// [`CLOSE_WAIT`]; without a reply by then the socket is dropped (close
    /// code 1006). Either way [`PullShared::close_info`] is known afterwards.
    pub(crate) async fn finish_close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async { while self.read().await.is_some() {} }).await;
        if self.closing.is_some() {
            // The wait above ended inside an end's handshake: its time is up too.
            self.closed();
        }
        if !self.done {
            self.end(
                "the server did not answer the close frame".into(),
                None,
                CloseAction::Drop,
            )
            .await;
        }
    }

    /// [`end`](Self::end) because of `error` (`None`: a clean end), and give
    /// it back to report. Cancel-safe: if the caller's future is dropped
    /// while the close handshake runs, the next [`read`](Self::read) returns
    /// the error instead.
    pub(crate) async fn end_with(
        &mut self,
        error: Option<Error>,
        why: String,
        code: Option<u16>,
        close: CloseAction,
    ) -> Option<Error> {
        self.unreported = error.map(Box::new);
        self.end(why, code, close).await;
        self.unreported.take().map(|e| *e)
    }

    /// End the socket: record why, finish the close handshake (bounded) and
    /// shut the TCP connection down. Later reads return `None`, sends fail.
    pub(crate) async fn end(&mut self, why: String, code: Option<u16>, close: CloseAction) {
        self.done = true;
        self.shared.set_ended(why, code);
        self.closing = Some(Closing {
            step: ClosingStep::Start(close),
            deadline: Instant::now() + CLOSE_WAIT,
        });
        self.finish_closing().await;
    }

    /// Run what is left of the close handshake, bounded by its deadline,
    /// then shut the TCP connection down. Nothing to do once it finished.
    /// Cancel-safe: dropped inside, the next call goes on from the step
    /// reached (our close frame is sent once).
    async fn finish_closing(&mut self) {
        let Some(Closing { step, deadline }) = self.closing else {
            return;
        };
        let (stream, shared, closing) = (&mut self.stream, &self.shared, &mut self.closing);
        let sink = &shared.sink;
        let _ = by_deadline(deadline, async {
            let await_reply = match step {
                ClosingStep::Start(CloseAction::Send(code)) => {
                    let sent = send_close(&mut *sink.lock().await, code, "").await.is_ok();
                    if sent {
                        *closing = Some(Closing {
                            step: ClosingStep::AwaitReply,
                            deadline,
                        });
                    }
                    sent
                }
                ClosingStep::AwaitReply => true,
                ClosingStep::Start(CloseAction::Reply) => {
                    let _ = sink.lock().await.flush().await;
                    false
                }
                ClosingStep::Start(CloseAction::Abort(code)) => {
                    abort(&mut *sink.lock().await, code).await;
                    false
                }
                ClosingStep::Start(CloseAction::Drop) => false,
            };
            if await_reply {
                if let Some(p) = drain(stream).await {
                    shared.set_peer_close(p);
                }
            }
        })
        .await;
        self.closed();
    }

    /// The end is complete: no handshake left, the TCP connection shut down.
    fn closed(&mut self) {
        self.closing = None;
        self.shared.finished.store(true, Ordering::Release);
        self.shared.shutdown_socket();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host-polled socket's runtime may never run its timers between
    /// polls: a close handshake still ends at the first poll after its
    /// deadline.
    #[test]
    fn by_deadline_ends_at_a_poll_after_the_deadline_without_the_timer() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = {
            let _in = rt.enter();
            Instant::now() + Duration::from_millis(20)
        };
        let mut fut = std::pin::pin!(by_deadline(deadline, std::future::pending()));
        // The runtime is entered for each poll but never turned.
        for _ in 0..1000 {
            if crate::runtime::poll_now(rt.handle(), fut.as_mut()).is_ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("not ended within 5 s of polls");
    }
}
