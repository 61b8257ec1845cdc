//! The asyncio API: `realtime_async()` and `ws_connect_async()` connections.
//!
//! The connections of one event loop share a current-thread tokio runtime
//! (`LoopRt`) that only the loop's thread enters, in short non-blocking
//! "ticks" (GIL released), for the connections' timers. A connection opens
//! as a task on the library's one-worker runtime for opens
//! (`fal_realtime::runtime::opener`: token fetch and handshake, so the loop
//! never waits, and no idle worker of the shared runtime is woken for it).
//! Its timers then move to the loop's runtime, and its socket leaves every
//! tokio reactor (`Client::connect_host_polled`): the event loop itself
//! watches it (`loop.add_reader` / `add_writer` on its file descriptor), and
//! a tick tries the read or write directly. When a result arrives, the
//! kernel wakes the loop thread, whose selector reports the socket; the
//! loop reads, decodes and resolves the awaiting future: one thread wake and
//! one `epoll_wait` per message, as for a pure-asyncio client, and no worker
//! thread or second poller in between. The runtime's driver is turned only
//! by the keepalive heartbeat. An operation that completes at once (a send
//! to a writable socket, a recv with a message already buffered) creates no
//! future at all.
//!
//! Cancelling a task that awaits `recv` drops the pending read (cancel-safe);
//! a result that raced with the cancellation is kept for the next `recv`, so
//! nothing is lost or reordered.

use crate::errors;
use crate::halves::{Halves, Item};
use crate::hooks;
use crate::stats::PyStats;
use crate::util;
use fal_realtime::{ErrorKind, Frame, Result as CoreResult};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::PyTraverseError;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

/// The runtime that drives every connection of one event loop; shut down
/// (in the background: it may be dropped anywhere) with its last connection.
pub struct LoopRt(Option<Runtime>);

impl std::ops::Deref for LoopRt {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("runtime present until drop")
    }
}

impl Drop for LoopRt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What an open made on the runtime for opens leaves for the loop thread: build
/// the connection object (or the exception), with the GIL, on the loop.
type Opened = Box<dyn for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyAny>> + Send>;

/// Finished opens waiting for the loop thread. The runtime's worker never
/// takes the GIL for them (a worker waiting for the GIL stalls every open it
/// drives), and no thread is parked per open: the worker queues
/// the outcome and writes one byte to `wake`, whose other end the loop
/// watches (`LoopDriver::_drain`).
struct Inbox {
    jobs: Mutex<Vec<(Py<PyAny>, Opened)>>,
    wake: std::os::unix::net::UnixStream,
}

impl Inbox {
    fn push(&self, fut: Py<PyAny>, job: Opened) {
        let was_empty = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.push((fut, job));
            jobs.len() == 1
        };
        if was_empty {
            // Non-blocking; a full buffer already holds a wake-up.
            let _ = std::io::Write::write(&mut &self.wake, &[1]);
        }
    }
}

/// The value kept for an event loop in `LOOP_RUNTIMES`: its runtime, and the
/// inbox of opens finished for it.
#[pyclass(frozen, module = "fal_realtime._native")]
pub struct LoopDriver {
    rt: Arc<LoopRt>,
    inbox: Arc<Inbox>,
    wake_rx: std::os::unix::net::UnixStream,
}

#[pymethods]
impl LoopDriver {
    /// Settle the opens finished since the last call (the loop calls this
    /// when `wake_rx` is readable).
    fn _drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut buf = [0u8; 64];
        // Read the wake-ups before taking the jobs: a job queued after the
        // take writes a new one.
        while matches!(std::io::Read::read(&mut &self.wake_rx, &mut buf), Ok(n) if n > 0) {}
        let jobs = std::mem::take(&mut *self.inbox.jobs.lock().unwrap_or_else(|p| p.into_inner()));
        let mut first_err = None;
        for (fut, job) in jobs {
            let r = job(py);
            if let Err(e) = settle(fut.bind(py), r) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `weakref.WeakKeyDictionary`: event loop → its `LoopDriver`, gone with the loop.
static LOOP_RUNTIMES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The runtime and inbox of the event loop `lp`, made on first use and kept
/// until the loop is gone (two descriptors for the wake-up socket pair and
/// three for the runtime, per loop).
fn loop_driver(py: Python<'_>, lp: &Bound<'_, PyAny>) -> PyResult<(Arc<LoopRt>, Arc<Inbox>)> {
    let map = LOOP_RUNTIMES
        .get_or_try_init(py, || {
            py.import("weakref")?
                .call_method0("WeakKeyDictionary")
                .map(Bound::unbind)
        })?
        .bind(py);
    if let Ok(found) = map.call_method1(intern!(py, "get"), (lp,)) {
        if let Ok(d) = found.cast::<LoopDriver>() {
            return Ok((d.get().rt.clone(), d.get().inbox.clone()));
        }
    }
    let rt = Arc::new(LoopRt(Some(crate::sync::new_runtime()?)));
    let internal = |e: std::io::Error| {
        errors::of_kind(
            ErrorKind::Internal,
            format!("could not make the event loop's wake-up socket: {e}"),
        )
    };
    let (wake, wake_rx) = std::os::unix::net::UnixStream::pair().map_err(internal)?;
    wake.set_nonblocking(true).map_err(internal)?;
    wake_rx.set_nonblocking(true).map_err(internal)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&wake_rx);
    let inbox = Arc::new(Inbox {
        jobs: Mutex::new(Vec::new()),
        wake,
    });
    let driver = Bound::new(
        py,
        LoopDriver {
            rt: rt.clone(),
            inbox: inbox.clone(),
            wake_rx,
        },
    )?;
    map.set_item(lp, &driver).map_err(|e| {
        errors::of_kind(
            ErrorKind::InvalidArgument,
            format!("the asyncio API needs an event loop that takes weak references: {e}"),
        )
    })?;
    // The loop holds the driver through this reader for as long as it lives.
    if let Err(e) = lp.call_method1(
        intern!(py, "add_reader"),
        (fd, driver.getattr(intern!(py, "_drain"))?),
    ) {
        let _ = map.del_item(lp);
        return Err(e);
    }
    Ok((rt, inbox))
}

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How long `close()` waits for the server's close reply, from when its
/// close frame went out.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// How long `close()` waits for the next of the sends queued before it (and
/// then its own close frame) to go out: when none finishes for that long (the
/// server reads nothing, or too little), the close gives up, shuts the socket
/// down without a close frame, and the sends still queued fail. As
/// `websockets`' default `close_timeout`.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// Poll `fut` once inside the loop's runtime, GIL released. The socket is in
/// no reactor (`Client::connect_host_polled`): a poll tries the read or
/// write itself, and the event loop's reader and writer say when to poll
/// again, so no driver turn is needed to learn readiness.
fn tick<T: Send>(py: Python<'_>, rt: &Runtime, fut: &mut BoxFut<T>) -> Poll<T> {
    py.detach(|| fal_realtime::runtime::poll_now(rt.handle(), std::pin::Pin::new(fut)))
}

/// [`tick`]; with `timers`, when `fut` is pending, one zero-timeout turn of
/// the runtime's drivers (its timers fire: keepalive pings, the dead-peer
/// check) and a second poll. For the heartbeat.
fn tick_with<T: Send>(py: Python<'_>, rt: &Runtime, fut: &mut BoxFut<T>, timers: bool) -> Poll<T> {
    if !timers {
        return tick(py, rt, fut);
    }
    py.detach(|| {
        rt.block_on(async {
            let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
            if first.is_ready() {
                return first;
            }
            // One zero-timeout turn of the drivers.
            tokio::task::yield_now().await;
            std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        })
    })
}

/// Calls `notify` when the asyncio future it is attached to gets cancelled.
#[pyclass(frozen, module = "fal_realtime._native")]
pub struct CancelOnDone {
    notify: Arc<Notify>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0(intern!(fut.py(), "cancelled"))?.is_truthy()? {
            self.notify.notify_one();
        }
        Ok(())
    }
}

/// Drops a pending operation whose asyncio future was cancelled.
#[pyclass(frozen, module = "fal_realtime._native")]
pub struct OpDone {
    conn: Py<AsyncConnection>,
    id: u64,
}

#[pymethods]
impl OpDone {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = fut.py();
        if !fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            return Ok(());
        }
        let conn = self.conn.bind(py);
        let removed = {
            let mut st = conn.get().state.lock().unwrap_or_else(|p| p.into_inner());
            let before = st.ops.len();
            // A close goes on when its awaiter is cancelled (as `websockets`'
            // close): the sends queued before it keep their bound, its timer
            // ends, and a later `close()` waits for the same end (`close_waiters`).
            st.ops
                .retain(|op| op.id != self.id || matches!(op.kind, OpKind::Close(..)));
            st.ops.len() != before
        };
        if removed {
            // The dropped operation may have held a lock others wait for.
            AsyncConnection::pump(conn, false, false)?;
        }
        Ok(())
    }
}

/// Resolve `fut` with `value` (or raise it, if `is_err`) unless it is done already.
#[pyfunction]
pub fn _settle(fut: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, is_err: bool) -> PyResult<()> {
    let py = fut.py();
    if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    if is_err {
        fut.call_method1(intern!(py, "set_exception"), (value,))?;
    } else {
        fut.call_method1(intern!(py, "set_result"), (value,))?;
    }
    Ok(())
}

enum OpKind {
    Recv(BoxFut<Option<CoreResult<Item>>>),
    Send(BoxFut<CoreResult<()>>),
    Close(Box<Closing>),
}

/// A `close()` in progress. Its frame goes out after the sends queued before
/// it (the pump polls operations in order, and the sends' lock is fair), as
/// long as one of them finishes at least every [`CLOSE_FLUSH`]; then the
/// server's reply is awaited for at most [`CLOSE_DRAIN`] from when the frame
/// went out. Given up in the flush, the connection is shut down (no close
/// frame): the sends still queued fail, pending recvs end.
struct Closing {
    fut: BoxFut<()>,
    /// Pushed on by every queued send that finishes.
    flush_by: Instant,
    /// Set by `fut` once its close frame went out: the end of the reply's wait.
    drain_by: Arc<std::sync::OnceLock<Instant>>,
}

impl Closing {
    /// When this close gives up waiting: for the reply once the frame went
    /// out, else for the flush.
    fn deadline(&self) -> Instant {
        self.drain_by.get().copied().unwrap_or(self.flush_by)
    }
}

struct Op {
    id: u64,
    kind: OpKind,
    pyfut: Py<PyAny>,
}

#[derive(Default)]
struct LoopState {
    ops: VecDeque<Op>,
    /// Results that arrived for a `recv` that was cancelled meanwhile.
    stash: VecDeque<PyResult<Py<PyAny>>>,
    reader: bool,
    writer: bool,
    next_id: u64,
    /// The `call_later` that ends a close's wait (for its flush, then for the
    /// server's reply), with the deadline it is armed for: it holds a
    /// reference to the connection, so it is cancelled once the close finished
    /// (else the socket and runtime live on for that long).
    close_timer: Option<(Py<PyAny>, Instant)>,
    /// The periodic `call_later` that runs keepalive while a recv waits.
    heartbeat_timer: Option<Py<PyAny>>,
    /// While a close is in progress: the futures of the later `close()`
    /// calls, resolved with it. Outside `ops`, which a pump takes out.
    close_waiters: Option<Vec<Py<PyAny>>>,
}

impl LoopState {
    /// Whether a send waits: a new send or close goes behind it.
    fn sends_queued(&self) -> bool {
        self.ops.iter().any(|op| matches!(op.kind, OpKind::Send(_)))
    }
}

/// The native half of an asyncio connection; wrapped by
/// `fal_realtime.AsyncRealtimeConnection` / `AsyncWsConnection`.
#[pyclass(frozen, module = "fal_realtime._native")]
pub struct AsyncConnection {
    halves: Halves,
    fd: i32,
    event_loop: Py<PyAny>,
    closed: AtomicBool,
    encode: Option<Py<PyAny>>,
    ws: bool,
    /// See `Client::heartbeat`.
    heartbeat: Option<f64>,
    state: Mutex<LoopState>,
    /// Last: the connection's timers (in `halves`) are dropped before it.
    rt: Arc<LoopRt>,
}

fn recv_result(py: Python<'_>, out: Option<CoreResult<Item>>) -> PyResult<Bound<'_, PyAny>> {
    match out {
        None => Ok(py.None().into_bound(py)),
        Some(Ok(item)) => item.into_py(py),
        Some(Err(e)) => Err(errors::to_py(py, &e)),
    }
}

fn settle(fut: &Bound<'_, PyAny>, r: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = fut.py();
    match r {
        Ok(v) => _settle(fut, &v, false),
        Err(e) => _settle(fut, e.value(py).as_any(), true),
    }
}

impl AsyncConnection {
    pub fn new(
        rt: Arc<LoopRt>,
        halves: Halves,
        fd: i32,
        event_loop: Py<PyAny>,
        encode: Option<Py<PyAny>>,
        ws: bool,
        heartbeat: Option<Duration>,
    ) -> Self {
        AsyncConnection {
            rt,
            halves,
            fd,
            event_loop,
            closed: AtomicBool::new(false),
            encode,
            ws,
            heartbeat: heartbeat.map(|d| d.as_secs_f64()),
            state: Mutex::new(LoopState::default()),
        }
    }

    fn rt(&self) -> &Runtime {
        &self.rt
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoopState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a pending operation and return its asyncio future.
    fn enqueue<'py>(slf: &Bound<'py, Self>, kind: OpKind) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let pyfut = this
            .event_loop
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        let id = {
            let mut st = this.lock();
            st.next_id += 1;
            let id = st.next_id;
            st.ops.push_back(Op {
                id,
                kind,
                pyfut: pyfut.clone().unbind(),
            });
            id
        };
        let done = Py::new(
            py,
            OpDone {
                conn: slf.clone().unbind(),
                id,
            },
        )?;
        pyfut.call_method1(intern!(py, "add_done_callback"), (done,))?;
        Self::watch(slf, false)?;
        Ok(pyfut)
    }

    /// Register the socket with the event loop as the pending operations
    /// need. The reader stays while nothing is pending (cheaper than re-adding
    /// it for every recv; a wake-up with nothing pending reads ahead and
    /// removes it); `readable` (the pump runs for the reader): it is removed
    /// when operations wait and none reads, else unread data would wake the
    /// pump on every loop iteration. Not removed eagerly: a recv loop beside a
    /// send waiting for the socket would remove and re-add it per message.
    fn watch(slf: &Bound<'_, Self>, readable: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (want_read, drop_reader, want_write, has_reader, has_writer, want_beat, has_beat) = {
            let st = this.lock();
            // A close reads once its frame went out (for the server's reply);
            // while it flushes, incoming data would wake the pump for nothing.
            let want_read = st.ops.iter().any(|op| match &op.kind {
                OpKind::Recv(_) => true,
                OpKind::Close(c) => c.drain_by.get().is_some(),
                OpKind::Send(_) => false,
            });
            let want_write = st.ops.iter().any(|op| match &op.kind {
                OpKind::Send(_) => true,
                // Its close frame may wait for the socket to take it.
                OpKind::Close(c) => c.drain_by.get().is_none(),
                OpKind::Recv(_) => false,
            });
            let want_beat = st.ops.iter().any(|op| matches!(op.kind, OpKind::Recv(_)));
            (
                want_read,
                readable && !want_read && !st.ops.is_empty(),
                want_write,
                st.reader,
                st.writer,
                want_beat,
                st.heartbeat_timer.is_some(),
            )
        };
        let lp = this.event_loop.bind(py);
        // Armed while a recv waits; not cancelled when it completes (one
        // timer per heartbeat period, not a `call_later` and a `cancel` per
        // message): when it fires with no recv waiting it is not re-armed.
        if let (Some(every), true, false) = (this.heartbeat, want_beat, has_beat) {
            let t = lp.call_method1(
                intern!(py, "call_later"),
                (every, slf.getattr(intern!(py, "_heartbeat"))?),
            )?;
            this.lock().heartbeat_timer = Some(t.unbind());
        }
        if want_read && !has_reader {
            lp.call_method1(
                intern!(py, "add_reader"),
                (this.fd, slf.getattr(intern!(py, "_readable"))?),
            )?;
            this.lock().reader = true;
        } else if drop_reader && has_reader {
            lp.call_method1(intern!(py, "remove_reader"), (this.fd,))?;
            this.lock().reader = false;
        }
        // Writable is nearly always true: never keep the writer without a pending send.
        if want_write && !has_writer {
            lp.call_method1(
                intern!(py, "add_writer"),
                (this.fd, slf.getattr(intern!(py, "_pump"))?),
            )?;
            this.lock().writer = true;
        } else if !want_write && has_writer {
            lp.call_method1(intern!(py, "remove_writer"), (this.fd,))?;
            this.lock().writer = false;
        }
        Ok(())
    }

    fn cancel_heartbeat(&self, py: Python<'_>) {
        let timer = self.lock().heartbeat_timer.take();
        if let Some(t) = timer {
            let _ = t.bind(py).call_method0(intern!(py, "cancel"));
        }
    }

    fn unwatch(&self, py: Python<'_>) {
        self.cancel_heartbeat(py);
        self.unwatch_socket(py);
    }

    /// Remove the loop's reader and writer (not the keepalive timer).
    fn unwatch_socket(&self, py: Python<'_>) {
        let (r, w) = {
            let mut st = self.lock();
            let rw = (st.reader, st.writer);
            st.reader = false;
            st.writer = false;
            rw
        };
        let lp = self.event_loop.bind(py);
        if r {
            let _ = lp.call_method1(intern!(py, "remove_reader"), (self.fd,));
        }
        if w {
            let _ = lp.call_method1(intern!(py, "remove_writer"), (self.fd,));
        }
    }

    /// Drive every pending operation once, in order; resolve the finished
    /// ones. `timers`: let the runtime's timers run too (the heartbeat);
    /// `readable`: the socket's reader called (see [`Self::watch`]).
    fn pump(slf: &Bound<'_, Self>, timers: bool, readable: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut ops = std::mem::take(&mut this.lock().ops);
        if ops.is_empty() {
            // Woken with nothing pending: data came before the next `recv`.
            // Read it ahead (that `recv` then takes it at once), then stop
            // watching the socket: the loop's reader holds the connection,
            // which must not outlive its last user. The keepalive timer
            // stays; it fires at most once more when nothing waits.
            if !this.closed.load(Ordering::Acquire) {
                let halves = this.halves.clone();
                let mut fut: BoxFut<()> = Box::pin(async move { halves.read_ahead().await });
                let _ = tick(py, this.rt(), &mut fut);
            }
            this.unwatch_socket(py);
            return Ok(());
        }
        let mut keep = VecDeque::with_capacity(ops.len());
        let mut delivered: Vec<(Py<PyAny>, PyResult<Bound<'_, PyAny>>)> = Vec::new();
        let now = Instant::now();
        let mut flush_failed = false;
        let mut close_wait = None;
        let mut sent_any = false;
        while let Some(mut op) = ops.pop_front() {
            let finished = match &mut op.kind {
                OpKind::Recv(f) => match tick_with(py, this.rt(), f, timers) {
                    Poll::Ready(out) => {
                        let r = recv_result(py, out);
                        // Cancelled (done) or not; an error says so at its settle.
                        let waiting = !op
                            .pyfut
                            .bind(py)
                            .call_method0(intern!(py, "done"))
                            .and_then(|d| d.is_truthy())
                            .unwrap_or(false);
                        // Arrival order: through the stash when a recv was cancelled.
                        let mut st = this.lock();
                        st.stash.push_back(r.map(Bound::unbind));
                        if waiting {
                            if let Some(next) = st.stash.pop_front() {
                                delivered.push((op.pyfut.clone_ref(py), next.map(|v| v.into_bound(py))));
                            }
                        }
                        true
                    }
                    Poll::Pending => false,
                },
                OpKind::Send(f) => match tick_with(py, this.rt(), f, timers) {
                    Poll::Ready(r) => {
                        sent_any = true;
                        let v = r
                            .map(|()| py.None().into_bound(py))
                            .map_err(|e| errors::to_py(py, &e));
                        delivered.push((op.pyfut.clone_ref(py), v));
                        true
                    }
                    Poll::Pending => false,
                },
                OpKind::Close(c) => {
                    if sent_any {
                        // The server reads: the flush goes on.
                        c.flush_by = now + CLOSE_FLUSH;
                    }
                    let done = tick_with(py, this.rt(), &mut c.fut, timers).is_ready();
                    if done || now >= c.deadline() {
                        // Given up before its frame went out: the sends
                        // queued before it never will either.
                        flush_failed = !done && c.drain_by.get().is_none();
                        delivered.push((op.pyfut.clone_ref(py), Ok(py.None().into_bound(py))));
                        let (timer, waiters) = {
                            let mut st = this.lock();
                            (st.close_timer.take(), st.close_waiters.take())
                        };
                        for w in waiters.into_iter().flatten() {
                            delivered.push((w, Ok(py.None().into_bound(py))));
                        }
                        if let Some((t, _)) = timer {
                            let _ = t.bind(py).call_method0(intern!(py, "cancel"));
                        }
                        true
                    } else {
                        close_wait = Some(c.deadline());
                        false
                    }
                }
            };
            if !finished {
                keep.push_back(op);
            }
        }
        if flush_failed {
            // End the connection: a send partly written must never finish
            // later, and pending recvs end now (the socket then reads EOF).
            // The descriptor stays open (the connection owns it) until dropped.
            // SAFETY: `fd` is this connection's socket, open while `halves` lives.
            unsafe {
                libc::shutdown(this.fd, libc::SHUT_RDWR);
            }
            // No silent loss: each send still queued fails, saying why.
            keep.retain(|op| {
                if matches!(op.kind, OpKind::Send(_)) {
                    delivered.push((op.pyfut.clone_ref(py), Err(errors::unsent_at_close(CLOSE_FLUSH))));
                    false
                } else {
                    true
                }
            });
            // The sends (and their hold on the sending half) are gone: the
            // receiving half reads the end now, so the socket is known to be
            // over (raw sockets: `close_code` 1006), unless a pending recv
            // holds it (that one reads the end at its next poll).
            let halves = this.halves.clone();
            let mut end: BoxFut<()> = Box::pin(async move {
                if let Ok(mut rx) = halves.rx.try_lock() {
                    rx.finish_close().await;
                }
            });
            let _ = tick(py, this.rt(), &mut end);
        }
        {
            let mut st = this.lock();
            // Operations queued meanwhile go after the ones kept.
            keep.append(&mut st.ops);
            st.ops = keep;
        }
        // The ops are back and every result is delivered before an error
        // from the event loop (a closed loop) is raised.
        let mut first_err = None;
        if this.closed.load(Ordering::Acquire) && this.lock().ops.is_empty() {
            this.unwatch(py);
        } else if let Err(e) = Self::watch(slf, readable) {
            first_err = Some(e);
        }
        if let Some(at) = close_wait {
            if let Err(e) = Self::arm_close_timer(slf, at) {
                first_err.get_or_insert(e);
            }
        }
        for (fut, r) in delivered {
            if let Err(e) = settle(fut.bind(py), r) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Pump at `at` (a pending close's deadline), unless armed for it already.
    fn arm_close_timer(slf: &Bound<'_, Self>, at: Instant) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let old = {
            let mut st = this.lock();
            if matches!(&st.close_timer, Some((_, armed)) if *armed == at) {
                return Ok(());
            }
            st.close_timer.take()
        };
        if let Some((t, _)) = old {
            let _ = t.bind(py).call_method0(intern!(py, "cancel"));
        }
        let delay = at.saturating_duration_since(Instant::now()).as_secs_f64() + 0.01;
        let timer = this.event_loop.bind(py).call_method1(
            intern!(py, "call_later"),
            (delay, slf.getattr(intern!(py, "_close_timer"))?),
        )?;
        this.lock().close_timer = Some((timer.unbind(), at));
        Ok(())
    }

    fn send_frame<'py>(slf: &Bound<'py, Self>, frame: Frame) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(Ordering::Acquire) {
            return Err(errors::closed_by_caller());
        }
        let halves = this.halves.clone();
        let mut fut: BoxFut<CoreResult<()>> = Box::pin(async move { halves.send(frame).await });
        if !this.lock().sends_queued() {
            if let Poll::Ready(r) = tick(py, this.rt(), &mut fut) {
                return r.map(|()| None).map_err(|e| errors::to_py(py, &e));
            }
        }
        Self::enqueue(slf, OpKind::Send(fut)).map(Some)
    }
}

#[pymethods]
impl AsyncConnection {
    /// Send one input (realtime: encoded as msgpack; ws: bytes or str).
    /// Returns `None` when sent already, else an awaitable.
    fn send<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        let frame = if this.ws {
            hooks::frame_from_py(data)?
        } else {
            hooks::encode_input(py, data, this.encode.as_ref())?
        };
        Self::send_frame(slf, frame)
    }

    /// Send pre-encoded msgpack (exactly one value) as is (realtime only).
    fn send_msgpack<'py>(
        slf: &Bound<'py, Self>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let frame = hooks::msgpack_frame(data)?;
        Self::send_frame(slf, frame)
    }

    /// `(True, value)` when a value is ready now, else `(False, future)`.
    fn recv<'py>(slf: &Bound<'py, Self>) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let py = slf.py();
        let this = slf.get();
        let (stashed, queued) = {
            let mut st = this.lock();
            let s = st.stash.pop_front();
            let q = st
                .ops
                .iter()
                .any(|op| matches!(op.kind, OpKind::Recv(_) | OpKind::Close(..)));
            (s, q)
        };
        if let Some(r) = stashed {
            return r.map(|v| (true, v.into_bound(py)));
        }
        if this.closed.load(Ordering::Acquire) && !queued {
            return Ok((true, py.None().into_bound(py)));
        }
        if !queued {
            // Read ahead by an earlier recv: no runtime entry, no future.
            if let Some(out) = this.halves.take_ready() {
                return recv_result(py, out).map(|v| (true, v));
            }
        }
        let halves = this.halves.clone();
        let mut fut: BoxFut<Option<CoreResult<Item>>> = Box::pin(async move { halves.recv().await });
        if !queued {
            if let Poll::Ready(out) = tick(py, this.rt(), &mut fut) {
                return recv_result(py, out).map(|v| (true, v));
            }
        }
        Self::enqueue(slf, OpKind::Recv(fut)).map(|f| (false, f))
    }

    /// Close (realtime: code 1000; raw sockets: `code` and `reason`) after
    /// the sends queued before it (see [`Closing`]), then wait briefly for the
    /// server's close reply. Returns `None` when done already, else an
    /// awaitable.
    #[pyo3(signature = (code = 1000, reason = String::new()))]
    fn close<'py>(slf: &Bound<'py, Self>, code: u16, reason: String) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let this = slf.get();
        if this.ws {
            fal_realtime::WsSender::check_close(code, &reason).map_err(|e| errors::to_py(py, &e))?;
        }
        if this.closed.swap(true, Ordering::AcqRel) {
            // A close in progress (its first awaiter may have been
            // cancelled): wait for its end too.
            if this.lock().close_waiters.is_none() {
                return Ok(None);
            }
            let fut = this
                .event_loop
                .bind(py)
                .call_method0(intern!(py, "create_future"))?;
            let waiting = match this.lock().close_waiters.as_mut() {
                Some(w) => {
                    w.push(fut.clone().unbind());
                    true
                }
                None => false, // finished meanwhile
            };
            return Ok(waiting.then_some(fut));
        }
        let halves = this.halves.clone();
        let drain_by = Arc::new(std::sync::OnceLock::new());
        let sent = drain_by.clone();
        let mut fut: BoxFut<()> = Box::pin(async move {
            let _ = halves.tx.lock().await.close(code, &reason).await;
            let _ = sent.set(Instant::now() + CLOSE_DRAIN);
            // Read until the server's close reply, unless someone else is reading.
            if let Ok(mut rx) = halves.rx.try_lock() {
                rx.finish_close().await;
            }
        });
        // Sends queued before the close go out first: polled now, the close
        // would take the sends' lock ahead of those not yet polled, which
        // would then fail as closed. The pump polls it after them.
        if !this.lock().sends_queued() && tick(py, this.rt(), &mut fut).is_ready() {
            // A recv may still be pending (it gets the server's close reply).
            if this.lock().ops.is_empty() {
                this.unwatch(py);
            }
            return Ok(None);
        }
        let closing = Closing {
            fut,
            flush_by: Instant::now() + CLOSE_FLUSH,
            drain_by,
        };
        let at = closing.deadline();
        this.lock().close_waiters = Some(Vec::new());
        let pyfut = Self::enqueue(slf, OpKind::Close(Box::new(closing)))?;
        // Give up at the deadline even when the socket stays silent.
        Self::arm_close_timer(slf, at)?;
        Ok(Some(pyfut))
    }

    /// Give back the outcome of a done `recv` future whose awaiting task was
    /// cancelled before it resumed: the next `recv` returns (or raises) it,
    /// ahead of everything later.
    fn _putback(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = fut.py();
        let exc = fut.call_method0(intern!(py, "exception"))?;
        let r = if exc.is_none() {
            Ok(fut.call_method0(intern!(py, "result"))?.unbind())
        } else {
            Err(PyErr::from_value(exc))
        };
        self.lock().stash.push_front(r);
        Ok(())
    }

    /// Drive pending operations (the event loop calls this when the socket
    /// is writable).
    fn _pump(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::pump(slf, false, false)
    }

    /// Drive pending operations (the event loop calls this when the socket
    /// is readable).
    fn _readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::pump(slf, false, true)
    }

    /// A close's deadline: drive pending operations (re-armed by the pump
    /// while the close goes on, also when this fired early).
    fn _close_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().lock().close_timer = None;
        Self::pump(slf, false, false)
    }

    /// The keepalive tick: drive pending operations so the runtime's timers
    /// (pings, the dead-peer check) run; re-armed while a recv waits.
    fn _heartbeat(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().lock().heartbeat_timer = None;
        Self::pump(slf, true, false)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The Python objects this connection holds, for the garbage collector:
    /// its timers, futures and loop refer back to it (a close whose awaiter
    /// was cancelled, then the loop closed before its deadline, is such a
    /// cycle).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.encode)?;
        if let Ok(st) = self.state.try_lock() {
            for op in &st.ops {
                visit.call(&op.pyfut)?;
            }
            for v in st.stash.iter().flatten() {
                visit.call(v)?;
            }
            if let Some((t, _)) = &st.close_timer {
                visit.call(t)?;
            }
            visit.call(&st.heartbeat_timer)?;
            for w in st.close_waiters.iter().flatten() {
                visit.call(w)?;
            }
        }
        Ok(())
    }

    /// Only reached when the connection is garbage: drop what it holds.
    fn __clear__(&self) {
        if let Ok(mut st) = self.state.try_lock() {
            st.ops.clear();
            st.stash.clear();
            st.close_timer = None;
            st.heartbeat_timer = None;
            st.close_waiters = None;
        }
    }

    /// Raw sockets: the close code of how the socket ended (`None` while open).
    #[getter]
    fn close_code(&self) -> Option<u16> {
        self.halves.try_close_info().map(|(c, _)| c)
    }

    /// Raw sockets: the reason of the server's close frame (`None` while open).
    #[getter]
    fn close_reason(&self) -> Option<String> {
        self.halves.try_close_info().map(|(_, r)| r)
    }

    /// Counters of this connection.
    #[getter]
    fn stats(&self) -> PyStats {
        self.halves.try_stats().into()
    }
}

/// Open a connection on the runtime for opens (token fetch and handshake;
/// `connect` gets the handle of the loop's runtime, where the socket must end
/// up), then resolve an asyncio future with `make(loop runtime, output)` on
/// the event loop's thread.
pub fn open<'py, T, F, M>(py: Python<'py>, connect: F, make: M) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: FnOnce(tokio::runtime::Handle) -> BoxFut<CoreResult<T>> + Send + 'static,
    M: for<'a> FnOnce(Python<'a>, Arc<LoopRt>, T, Py<PyAny>) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
{
    let lp = util::running_loop(py)?;
    let pyfut = lp.call_method0(intern!(py, "create_future"))?;
    let notify = Arc::new(Notify::new());
    let cb = Py::new(
        py,
        CancelOnDone {
            notify: notify.clone(),
        },
    )?;
    pyfut.call_method1(intern!(py, "add_done_callback"), (cb,))?;
    let (rt, inbox) = loop_driver(py, &lp)?;
    let driver = rt.handle().clone();
    let (lp_u, fut_u) = (lp.unbind(), pyfut.clone().unbind());
    fal_realtime::runtime::opener().spawn(async move {
        let out = tokio::select! {
            biased;
            _ = notify.notified() => None,
            r = connect(driver) => Some(r),
        };
        // None: cancelled; the connection (if any) was dropped with the future.
        if let Some(out) = out {
            let job: Opened = Box::new(move |py| {
                out.map_err(|e| errors::to_py(py, &e))
                    .and_then(|v| make(py, rt, v, lp_u))
            });
            inbox.push(fut_u, job);
        }
    });
    Ok(pyfut)
}

/// The socket of a new connection, or an error when it has none (non-unix).
pub fn require_fd(fd: Option<i32>) -> CoreResult<i32> {
    fd.ok_or_else(|| {
        fal_realtime::Error::new(
            ErrorKind::Internal,
            "the asyncio API needs the connection's socket (unix only)",
        )
    })
}
