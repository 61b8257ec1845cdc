//! A userspace TCP fault proxy, for networks faults without netem.
//!
//! [`FaultProxy`] listens on `127.0.0.1` and forwards every accepted connection to one
//! upstream address, in both directions. From any thread, through `&self`, it can add latency
//! (with jitter, never reordering bytes), limit the bandwidth, stall every connection (hold
//! all bytes back while keeping the TCP connections open) and cut connections after an exact
//! number of bytes from the server (to cut a WebSocket frame in the middle).
//!
//! ```no_run
//! # async fn demo(upstream: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use fal_realtime_emulator::proxy::FaultProxy;
//! let proxy = FaultProxy::start(upstream).await?;
//! proxy.set_latency(Duration::from_millis(40), Duration::from_millis(10));
//! // ... connect the client under test to proxy.addr() ...
//! proxy.set_stall(true);
//! proxy.cut_after(100);
//! # Ok(()) }
//! ```
//!
//! Every connection is forwarded by one task. Each direction reads chunks (at most
//! 16 KiB) into a bounded queue (64 chunks); a chunk read at `t` is due at
//! `max(due time of the previous chunk, t + delay)`, so latency never reorders bytes. A
//! writer forwards each chunk when it is due, unless the proxy is stalled, paced by the
//! bandwidth limit. Closing one side (FIN) is forwarded once the bytes before it are; an
//! error on either side aborts both (RST).

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks queued per direction (read, not yet forwarded).
const QUEUE_CHUNKS: usize = 64;
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of the base latency and of the jitter.
const MAX_LATENCY: Duration = Duration::from_secs(60);
/// A stall holding a connection longer than this aborts the connection.
const MAX_STALL: Duration = Duration::from_secs(600);
/// After a cut, how long the client may take to close its side before it gets an RST.
const CUT_GRACE: Duration = Duration::from_secs(2);
/// Pacing granularity of the bandwidth limit: pieces of `rate / PIECES_PER_SEC` bytes.
const PIECES_PER_SEC: u64 = 50;
/// No cut armed.
const NO_CUT: u64 = u64::MAX;

/// Settings shared by the handle and the tasks.
struct Control {
    upstream: SocketAddr,
    /// Base latency (high 32 bits) and jitter (low 32 bits), in microseconds.
    latency: AtomicU64,
    /// Bytes per second per direction; 0 is unlimited.
    bandwidth: AtomicU64,
    stall: watch::Sender<bool>,
    /// Bumped by every cut request: the number of bytes server→client before the cut.
    cut: watch::Sender<u64>,
    connections: AtomicU64,
    open: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Control {
    /// A delay drawn from the latency settings: base ± uniform jitter, at least zero.
    fn delay(&self) -> Duration {
        let packed = self.latency.load(Ordering::Relaxed);
        let (base, jitter) = ((packed >> 32) as i64, (packed & 0xffff_ffff) as i64);
        let us = if jitter == 0 {
            base
        } else {
            base + fastrand::i64(-jitter..=jitter)
        };
        Duration::from_micros(us.max(0) as u64)
    }
}

/// A running fault proxy. Dropping it (or calling [`FaultProxy::shutdown`]) stops it and
/// drops every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    ctl: Arc<Control>,
    /// The proxy's own runtime, when started with [`FaultProxy::start_detached`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` (a free port), spawns the proxy on the current tokio runtime
    /// and returns at once. Connections are forwarded to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        FaultProxy::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), upstream).await
    }

    /// Like [`FaultProxy::start`], listening on `listen`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let ctl = Arc::new(Control {
            upstream,
            latency: AtomicU64::new(0),
            bandwidth: AtomicU64::new(0),
            stall: watch::channel(false).0,
            cut: watch::channel(NO_CUT).0,
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            shutdown: watch::channel(false).0,
        });
        tokio::spawn(accept_loop(listener, ctl.clone()));
        Ok(FaultProxy {
            addr,
            ctl,
            runtime: None,
        })
    }

    /// Like [`FaultProxy::start`], but synchronous and on a runtime of its own (one worker
    /// thread); callable from any context, async or not. The runtime is shut down with the
    /// proxy.
    pub fn start_detached(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        FaultProxy::start_on_detached(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), upstream)
    }

    /// Like [`FaultProxy::start_detached`], listening on `listen`.
    pub fn start_on_detached(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fal-realtime-proxy")
                .enable_all()
                .build()?;
            let mut proxy = runtime.block_on(FaultProxy::start_on(listen, upstream))?;
            proxy.runtime = Some(runtime);
            Ok(proxy)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the proxy's start-up thread panicked")))
    }

    /// The listen address: connect the client under test here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The upstream address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.ctl.upstream
    }

    /// Delays every chunk forwarded, in either direction, by `base` ± a uniform `jitter`
    /// (at least zero; each is capped at 60 s), without reordering bytes. Applies to bytes
    /// read from now on; zero and zero (the default) forward at once.
    pub fn set_latency(&self, base: Duration, jitter: Duration) {
        let us = |d: Duration| d.min(MAX_LATENCY).as_micros() as u64;
        self.ctl
            .latency
            .store((us(base) << 32) | us(jitter), Ordering::Relaxed);
    }

    /// Limits each direction of each connection to `bytes_per_sec` (`None`, the default, is
    /// unlimited; `Some(0)` is taken as 1 byte per second).
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        let rate = bytes_per_sec.map_or(0, |r| r.max(1));
        self.ctl.bandwidth.store(rate, Ordering::Relaxed);
    }

    /// While `true`, nothing is forwarded in either direction, but every TCP connection stays
    /// open (new ones are accepted too): bytes are held back and forwarded once the stall
    /// ends, or dropped when the connection closes. A connection held for more than 10
    /// minutes is aborted.
    pub fn set_stall(&self, stall: bool) {
        self.ctl.stall.send_replace(stall);
    }

    /// For the connections open now: forwards exactly `n_bytes` more bytes server→client
    /// (bytes already read but not yet forwarded count), then cuts: the client gets a FIN
    /// right after those bytes (and an RST if it has not closed its side 2 s later), the
    /// upstream an RST. Nothing more is forwarded in either direction.
    pub fn cut_after(&self, n_bytes: u64) {
        self.ctl.cut.send_replace(n_bytes.min(NO_CUT - 1));
    }

    /// Cuts the connections open now, as [`FaultProxy::cut_after`] with zero bytes.
    pub fn cut_now(&self) {
        self.cut_after(0);
    }

    /// The number of connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.ctl.connections.load(Ordering::SeqCst)
    }

    /// The number of connections open now.
    pub fn open_connections(&self) -> u64 {
        self.ctl.open.load(Ordering::SeqCst)
    }

    /// Stops accepting connections and drops every open connection (also done on drop).
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.ctl.shutdown.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so dropping the proxy inside async code is fine.
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.ctl.upstream)
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, ctl: Arc<Control>) {
    let mut shutdown = ctl.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let client = match accepted {
            Ok((client, _peer)) => client,
            Err(e) => {
                // E.g. EMFILE: back off a little instead of spinning.
                log::warn!("proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        ctl.connections.fetch_add(1, Ordering::SeqCst);
        // Subscribed now, so that only cuts requested from now on apply.
        let cut = ctl.cut.subscribe();
        tokio::spawn(connection(client, ctl.clone(), cut));
    }
}

/// Counts an open connection while alive.
struct OpenGuard<'a>(&'a AtomicU64);

impl<'a> OpenGuard<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        OpenGuard(counter)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Both directions ended with a FIN, forwarded.
    Done,
    /// An error on one side: RST both.
    Abort,
    /// A requested cut.
    Cut,
    /// The proxy shuts down: drop both.
    Shutdown,
}

/// How one direction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PumpEnd {
    /// The source's FIN was forwarded.
    Eof,
    /// A read or write failed, or a stall lasted too long.
    Failed,
    /// The armed cut was reached.
    Cut,
}

/// Makes the next close of `tcp` send an RST.
fn abort_on_close(tcp: &TcpStream) {
    // Deprecated because a non-zero linger time blocks the thread on close; a zero one never
    // blocks.
    #[allow(deprecated)]
    let _ = tcp.set_linger(Some(Duration::ZERO));
}

async fn connection(mut client: TcpStream, ctl: Arc<Control>, mut cut: watch::Receiver<u64>) {
    let _open = OpenGuard::new(&ctl.open);
    let mut shutdown = ctl.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(ctl.upstream));
    let mut upstream = tokio::select! {
        r = connect => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                log::debug!("proxy: cannot connect to {}: {e}", ctl.upstream);
                abort_on_close(&client);
                return;
            }
            Err(_) => {
                log::debug!("proxy: connecting to {} timed out", ctl.upstream);
                abort_on_close(&client);
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    // Bytes server→client still to forward before the cut; `NO_CUT` when none is armed.
    let cut_left = AtomicU64::new(NO_CUT);
    let end = {
        let (client_rd, client_wr) = client.split();
        let (upstream_rd, upstream_wr) = upstream.split();
        let up = pump(client_rd, upstream_wr, &ctl, None);
        let down = pump(upstream_rd, client_wr, &ctl, Some(&cut_left));
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if up_done && down_done {
                break End::Done;
            }
            tokio::select! {
                e = &mut up, if !up_done => match e {
                    PumpEnd::Eof => up_done = true,
                    PumpEnd::Failed | PumpEnd::Cut => break End::Abort,
                },
                e = &mut down, if !down_done => match e {
                    PumpEnd::Eof => down_done = true,
                    PumpEnd::Failed => break End::Abort,
                    PumpEnd::Cut => break End::Cut,
                },
                r = cut.changed() => match r {
                    Ok(()) => {
                        let n = *cut.borrow_and_update();
                        if n == 0 {
                            break End::Cut;
                        }
                        cut_left.store(n, Ordering::SeqCst);
                    }
                    Err(_) => break End::Shutdown,
                },
                _ = shutdown.changed() => break End::Shutdown,
            }
        }
    };
    match end {
        End::Done | End::Shutdown => {}
        End::Abort => {
            abort_on_close(&client);
            abort_on_close(&upstream);
        }
        End::Cut => {
            abort_on_close(&upstream);
            drop(upstream);
            let closed = tokio::time::timeout(CUT_GRACE, async {
                client.shutdown().await?;
                let mut buf = vec![0u8; 4096];
                while client.read(&mut buf).await? > 0 {}
                Ok::<(), std::io::Error>(())
            });
            let closed = tokio::select! {
                r = closed => matches!(r, Ok(Ok(()))),
                _ = shutdown.changed() => true,
            };
            if !closed {
                abort_on_close(&client);
            }
        }
    }
}

/// One chunk read from a source: its bytes (`None` for the source's FIN) and when it is due.
struct Chunk {
    data: Option<Bytes>,
    due: Instant,
}

/// Forwards one direction until the source's FIN is forwarded, an error, or the cut.
async fn pump<R, W>(mut src: R, mut dst: W, ctl: &Control, cut_left: Option<&AtomicU64>) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
    let reader = async move {
        let mut buf = BytesMut::new();
        let mut last_due = Instant::now();
        loop {
            buf.reserve(CHUNK);
            let data = match src.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some(buf.split().freeze()),
                Err(_) => return Err(()),
            };
            let eof = data.is_none();
            let due = last_due.max(Instant::now() + ctl.delay());
            last_due = due;
            if tx.send(Chunk { data, due }).await.is_err() || eof {
                return Ok(());
            }
        }
    };
    let writer = async move {
        let mut stall = ctl.stall.subscribe();
        let mut next_free = Instant::now();
        while let Some(chunk) = rx.recv().await {
            if chunk.due > Instant::now() {
                tokio::time::sleep_until(chunk.due).await;
            }
            let Some(data) = chunk.data else {
                if !unstalled(&mut stall).await {
                    return PumpEnd::Failed;
                }
                return match dst.shutdown().await {
                    Ok(()) => PumpEnd::Eof,
                    Err(_) => PumpEnd::Failed,
                };
            };
            let mut off = 0;
            while off < data.len() {
                if !unstalled(&mut stall).await {
                    return PumpEnd::Failed;
                }
                let rate = ctl.bandwidth.load(Ordering::Relaxed);
                let mut piece = data.len() - off;
                if rate != 0 {
                    piece = piece.min((rate / PIECES_PER_SEC).clamp(1, CHUNK as u64) as usize);
                    if next_free > Instant::now() {
                        tokio::time::sleep_until(next_free).await;
                    }
                }
                // The cut limit is read at each poll, so a cut requested while this write
                // waits for the socket applies to it.
                let rest = &data[off..off + piece];
                let written = poll_fn(|cx| {
                    let len = match cut_left.map(|c| c.load(Ordering::SeqCst)) {
                        Some(NO_CUT) | None => rest.len(),
                        Some(left) => rest.len().min(left as usize),
                    };
                    if len == 0 {
                        return std::task::Poll::Ready(Ok(0));
                    }
                    Pin::new(&mut dst).poll_write(cx, &rest[..len])
                })
                .await;
                let written = match written {
                    Ok(0) if cut_left.is_some_and(|c| c.load(Ordering::SeqCst) == 0) => return PumpEnd::Cut,
                    Ok(0) | Err(_) => return PumpEnd::Failed,
                    Ok(n) => n,
                };
                off += written;
                if rate != 0 {
                    let start = next_free.max(Instant::now());
                    next_free = start + Duration::from_secs_f64(written as f64 / rate as f64);
                }
                if let Some(c) = cut_left {
                    let left = c.load(Ordering::SeqCst);
                    if left != NO_CUT {
                        let left = left.saturating_sub(written as u64);
                        c.store(left, Ordering::SeqCst);
                        if left == 0 {
                            return PumpEnd::Cut;
                        }
                    }
                }
            }
        }
        // The reader stopped without a FIN: it failed.
        PumpEnd::Failed
    };
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    loop {
        tokio::select! {
            r = &mut reader, if !reader_done => match r {
                Ok(()) => reader_done = true,
                Err(()) => return PumpEnd::Failed,
            },
            end = &mut writer => return end,
        }
    }
}

/// Waits until the proxy is not stalled; false when the stall lasts longer than
/// [`MAX_STALL`] (or the proxy is gone).
async fn unstalled(stall: &mut watch::Receiver<bool>) -> bool {
    if !*stall.borrow_and_update() {
        return true;
    }
    matches!(
        tokio::time::timeout(MAX_STALL, stall.wait_for(|s| !*s)).await,
        Ok(Ok(_))
    )
}
