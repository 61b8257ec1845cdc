//! The shared tokio runtime for callers that are not async themselves (C,
//! Python, plain Rust threads).
//!
//! Created lazily on first use: a multi-threaded runtime with 2 worker threads
//! named `fal-realtime-worker` (override with `FAL_REALTIME_WORKER_THREADS`).
//! Connection tasks and all callbacks run on these threads. Async Rust callers
//! that already run inside a tokio runtime get their tasks spawned there instead.
//!
//! Lifetime: a runtime used from Rust or Python ([`shared`], [`handle`] /
//! [`block_on`] outside a C call, or [`handle`] from Rust code running on one
//! of its threads) lives as long as the process. A runtime used only by the
//! C door lives while a C object holds a `Lease` on it: when the last one
//! is dropped (the last client, realtime connection or socket is freed), it
//! is dropped on a helper thread, which waits for its threads to end; the
//! next C object starts a new one. The dropping thread waits for that (at
//! most `SHUTDOWN_WAIT`) unless it is a runtime thread, inside a C
//! callback, or in a free that must not wait (`without_waiting`). A close
//! sent in the background by such a free holds a lease of its own until
//! its frame went out, so the runtime stops after it.
//!
//! Every thread of every runtime this library builds (the shared one and the
//! C door's per-session ones, workers and blocking-pool threads) and every
//! other thread it spawns calls the process-wide thread hooks
//! (`set_thread_hooks`, `fal_rt_set_thread_hooks` in C) when it starts and
//! before it exits. Helper threads count as live ([`live_threads`]) until
//! they are joined, so that the count is 0 only once no code of the library
//! runs any more.

use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::future::Future;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// Default worker-thread count of the shared runtime.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// How long a blocking last free waits for the shared runtime's threads to
/// end (a blocked token provider may hold one); after that they end in the
/// background.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

struct Slot {
    rt: Option<Arc<Runtime>>,
    /// C objects that keep the runtime alive.
    leases: usize,
    /// Used from Rust or Python: never stopped.
    pinned: bool,
}

static SLOT: Mutex<Slot> = Mutex::new(Slot {
    rt: None,
    leases: 0,
    pinned: false,
});

/// The pinned runtime, for [`shared`]'s `&'static` result.
static PINNED: OnceCell<Arc<Runtime>> = OnceCell::new();

thread_local! {
    /// Set while this thread runs a C door call: its uses of the runtime are
    /// covered by leases and do not pin it.
    static IN_C_CALL: Cell<bool> = const { Cell::new(false) };
    /// Set on the shared runtime's threads.
    static ON_SHARED: Cell<bool> = const { Cell::new(false) };
    /// Set while a C door call must not wait for the runtime to stop
    /// (`*_free_nowait`, releases deferred to the end of a callback).
    static NO_WAIT: Cell<bool> = const { Cell::new(false) };
}

fn slot() -> MutexGuard<'static, Slot> {
    SLOT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A hook called on a library thread.
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;

struct Hooks {
    start: Option<Hook>,
    stop: Option<Hook>,
    /// Library threads that started and have not stopped yet, and worker
    /// threads of a runtime built that have not started yet (`unstarted`).
    live: usize,
    /// Worker threads counted in `live` when their runtime was built, whose
    /// start has not been seen yet (see [`build_counted`]).
    unstarted: usize,
}

static HOOKS: Mutex<Hooks> = Mutex::new(Hooks {
    start: None,
    stop: None,
    live: 0,
    unstarted: 0,
});

#[cfg(test)]
thread_local! {
    /// Set on every library thread once its start hook ran (for the tests).
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

fn hooks() -> MutexGuard<'static, Hooks> {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run on every library thread first.
fn thread_started() {
    #[cfg(test)]
    STARTED.with(|c| c.set(true));
    {
        let mut h = hooks();
        // A worker counted when its runtime was built (any thread may take
        // the credit: the total is what counts), else a new thread.
        if h.unstarted > 0 {
            h.unstarted -= 1;
        } else {
            h.live += 1;
        }
    }
    run_start_hook();
}

/// Build a multi-thread runtime of `workers` worker threads, counted as live
/// from before the build: tokio starts them during the build, but a thread
/// runs its start hook only when it is first scheduled, and until then the
/// count could read 0 while the runtime exists (a host waiting for 0 before
/// unloading the library would unload it under them).
fn build_counted(b: &mut tokio::runtime::Builder, workers: usize) -> std::io::Result<Runtime> {
    {
        let mut h = hooks();
        h.live += workers;
        h.unstarted += workers;
    }
    let rt = b.worker_threads(workers).build();
    if rt.is_err() {
        let mut h = hooks();
        h.live = h.live.saturating_sub(workers);
        h.unstarted = h.unstarted.saturating_sub(workers);
    }
    rt
}

/// The start hook, run first on every library thread. The hooks cannot change
/// in between: `set_thread_hooks` refuses while `live > 0`, and the thread is
/// counted before this runs.
fn run_start_hook() {
    let start = hooks().start.clone();
    if let Some(f) = start {
        f();
    }
}

/// The stop hook, run last on every library thread.
fn run_stop_hook() {
    let stop = hooks().stop.clone();
    if let Some(f) = stop {
        f();
    }
}

/// Run on every runtime thread last.
fn thread_stopping() {
    run_stop_hook();
    let mut h = hooks();
    h.live = h.live.saturating_sub(1);
}

/// Helper threads ([`spawn_thread`]) not joined yet: each counts as live
/// until it is joined, so that [`live_threads`] is 0 only once no code of the
/// library runs on it any more (thread-local destructors included).
static HELPERS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

fn helpers() -> MutexGuard<'static, Vec<std::thread::JoinHandle<()>>> {
    HELPERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Join a helper thread that has ended (or is ending) and stop counting it.
fn join_helper(h: std::thread::JoinHandle<()>) {
    let _ = h.join();
    let mut hk = hooks();
    hk.live = hk.live.saturating_sub(1);
}

/// Join the helper threads whose closure returned.
fn reap_helpers() {
    let finished: Vec<_> = {
        let mut list = helpers();
        let (done, running) = std::mem::take(&mut *list)
            .into_iter()
            .partition::<Vec<_>, _>(|h| h.is_finished());
        *list = running;
        done
    };
    for h in finished {
        join_helper(h);
    }
}

/// Set the process-wide thread hooks (see the module docs). Refused (`false`,
/// nothing changes) while threads of the library run: they would stop with
/// hooks they did not start with.
pub(crate) fn set_thread_hooks(start: Option<Hook>, stop: Option<Hook>) -> bool {
    reap_helpers();
    let mut h = hooks();
    if h.live > 0 {
        return false;
    }
    h.start = start;
    h.stop = stop;
    true
}

/// Threads of the library that are running now: runtime threads that
/// started and did not stop, and helper threads not joined yet (those that
/// ended are joined here).
pub fn live_threads() -> usize {
    reap_helpers();
    hooks().live
}

/// A runtime builder whose threads call the thread hooks.
pub(crate) fn with_hooks(mut b: tokio::runtime::Builder) -> tokio::runtime::Builder {
    b.on_thread_start(thread_started).on_thread_stop(thread_stopping);
    b
}

/// A helper thread that calls the thread hooks; it counts as live until
/// joined. The receiver gets a message (or disconnects) once `f` returned
/// and the stop hook ran.
fn spawn_helper<F: FnOnce() + Send + 'static>(f: F) -> (std::thread::JoinHandle<()>, mpsc::Receiver<()>) {
    let (done_tx, done_rx) = mpsc::channel();
    // Counted by the spawning thread, before the helper exists: otherwise the
    // count could read 0 between this spawn and the helper's first line (while
    // the runtime it is about to stop has already lost its workers).
    hooks().live += 1;
    let h = std::thread::Builder::new()
        .name("fal-realtime-helper".into())
        .spawn(move || {
            run_start_hook();
            struct Stop(mpsc::Sender<()>);
            impl Drop for Stop {
                fn drop(&mut self) {
                    run_stop_hook();
                    let _ = self.0.send(());
                }
            }
            let _stop = Stop(done_tx);
            f();
        })
        .expect("fal-realtime: could not start a thread");
    (h, done_rx)
}

/// `std::thread::spawn` for a background thread that calls the thread hooks
/// (joined later, by [`live_threads`] or the next one).
pub(crate) fn spawn_thread<F: FnOnce() + Send + 'static>(f: F) {
    reap_helpers();
    let (h, _) = spawn_helper(f);
    helpers().push(h);
}

/// The shared runtime's worker count (`FAL_REALTIME_WORKER_THREADS`, 1-64).
fn worker_threads() -> usize {
    std::env::var("FAL_REALTIME_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(DEFAULT_WORKER_THREADS)
}

fn build() -> Runtime {
    let threads = worker_threads();
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.thread_name("fal-realtime-worker").enable_all();
    b.on_thread_start(|| {
        ON_SHARED.with(|c| c.set(true));
        thread_started();
    })
    .on_thread_stop(thread_stopping);
    build_counted(&mut b, threads).expect("fal-realtime: could not start the shared tokio runtime")
}

/// The shared runtime (started if needed), pinned when `pin`.
fn current(pin: bool) -> Arc<Runtime> {
    let mut s = slot();
    if pin {
        s.pinned = true;
    }
    s.rt.get_or_insert_with(|| Arc::new(build())).clone()
}

/// Whether this use of the runtime is covered by a C door lease.
fn covered() -> bool {
    IN_C_CALL.with(Cell::get)
}

/// The shared runtime, created on first call. It lives as long as the process.
///
/// # Panics
/// Only if the operating system refuses to start threads.
pub fn shared() -> &'static Runtime {
    PINNED.get_or_init(|| current(true))
}

/// The runtime on which hosts that drive their connections on an event loop
/// of their own start opens (the Python asyncio door): one worker thread,
/// `fal-realtime-open`, made on first use and kept for the process, and
/// blocking threads of the same name when needed (host-name lookups, token
/// providers). Its threads call the thread hooks.
///
/// An open (token fetch, TCP, TLS and WebSocket handshakes) spawned on the
/// shared runtime from a thread outside it runs on one worker and wakes the
/// other each time it makes a task ready (tokio hands work to idle workers),
/// and that worker finds nothing to do: 11.4-14.5 thread switches per cold
/// open there against 8.1-8.3 here (bench/ANALYSIS.md, the seventh
/// session's section). With one worker, an open wakes one
/// thread when it starts and its host's thread when it ends. Opens share the
/// worker, as the connections of one event loop share that loop's thread;
/// a blocking token provider runs on the runtime's blocking pool.
///
/// # Panics
/// Only if the operating system refuses to start threads.
pub fn opener() -> &'static Runtime {
    static OPENER: OnceCell<Runtime> = OnceCell::new();
    OPENER.get_or_init(|| {
        let mut b = with_hooks(tokio::runtime::Builder::new_multi_thread());
        b.thread_name("fal-realtime-open").enable_all();
        build_counted(&mut b, 1).expect("fal-realtime: could not start the runtime for opens")
    })
}

/// The runtime to spawn connection tasks on: the caller's, if it runs inside
/// one, else the shared runtime.
///
/// Rust code running on a thread of the shared runtime (a handler callback)
/// pins it, as if it had called [`shared`].
pub fn handle() -> Handle {
    match Handle::try_current() {
        Ok(h) => {
            if ON_SHARED.with(Cell::get) && !covered() {
                let mut s = slot();
                if s.rt.is_some() {
                    s.pinned = true;
                }
            }
            h
        }
        Err(_) => current(!covered()).handle().clone(),
    }
}

/// Whether the calling thread is inside a tokio runtime (where blocking waits are not allowed).
pub fn in_runtime() -> bool {
    Handle::try_current().is_ok()
}

/// Run `fut` to completion from a thread that is not a runtime thread, on the
/// shared runtime. Returns `None` when called from inside a runtime (blocking
/// there would stall or deadlock it).
pub fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    if in_runtime() {
        return None;
    }
    let rt = current(!covered());
    Some(rt.block_on(fut))
}

/// `fut` polled once on this thread, inside `rt`, with a no-op waker: how a
/// blocking door finishes a call that can finish at once (a send into a
/// writable socket, a frame read already) without `block_on`'s park and
/// unpark. When it is pending, pass the same pinned future on to a
/// `block_on`: its first poll gives it a real waker (tokio's sockets, locks
/// and timers keep the latest one).
pub fn poll_now<F: Future>(rt: &Handle, fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let _in = rt.enter();
    fut.poll(&mut std::task::Context::from_waker(
        futures_util::task::noop_waker_ref(),
    ))
}

/// `fut`'s output, and whether it was ready at its first poll (it did not
/// wait). A reader that had to wait for an item has drained its socket: in a
/// request-reply loop, a read at once after it would find nothing. Takes the
/// future pinned where the caller made it: a connection's read futures are
/// large, and moving one into this future's state would copy it per call.
pub async fn first_poll<F: Future>(mut fut: std::pin::Pin<&mut F>) -> (F::Output, bool) {
    let mut polls = 0u32;
    let out = std::future::poll_fn(|cx| {
        polls += 1;
        fut.as_mut().poll(cx)
    })
    .await;
    (out, polls == 1)
}

/// Whether this thread is inside a C door call.
pub(crate) fn in_c_call_now() -> bool {
    covered()
}

/// Run `f` with the thread-local `flag` set, restoring it afterwards (also
/// when `f` panics).
fn with_flag<T>(flag: &'static std::thread::LocalKey<Cell<bool>>, f: impl FnOnce() -> T) -> T {
    struct Restore(&'static std::thread::LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|c| c.replace(true)));
    f()
}

/// Run `f` as a C door call: its uses of the shared runtime do not pin it.
pub(crate) fn in_c_call<T>(f: impl FnOnce() -> T) -> T {
    with_flag(&IN_C_CALL, f)
}

/// Run `f` so that a runtime stop it causes (the last lease dropped) happens
/// in the background instead of being waited for.
pub(crate) fn without_waiting<T>(f: impl FnOnce() -> T) -> T {
    with_flag(&NO_WAIT, f)
}

/// Keeps the shared runtime alive for a C object; see the module docs.
pub(crate) struct Lease(());

/// A new lease (the runtime itself starts on first use).
pub(crate) fn lease() -> Lease {
    slot().leases += 1;
    Lease(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        let taken = {
            let mut s = slot();
            s.leases = s.leases.saturating_sub(1);
            if s.leases == 0 && !s.pinned {
                s.rt.take()
            } else {
                None
            }
        };
        let Some(rt) = taken else { return };
        let rt = match Arc::try_unwrap(rt) {
            Ok(rt) => rt,
            // Still driven by a `block_on` that raced with the last free
            // (against the C rules): its caller drops it.
            Err(rt) => return drop(rt),
        };
        // The runtime is dropped on a helper thread (a runtime cannot be
        // stopped from one of its own threads); dropping it waits until its
        // threads have ended, so the helper counts as live until then.
        let background = in_runtime() || NO_WAIT.with(Cell::get) || crate::ffi::gate::in_ffi_callback();
        let (h, done) = spawn_helper(move || drop(rt));
        if background {
            helpers().push(h);
            return;
        }
        match done.recv_timeout(SHUTDOWN_WAIT) {
            Err(mpsc::RecvTimeoutError::Timeout) => helpers().push(h),
            // The runtime's threads and the helper's stop hook are done.
            _ => join_helper(h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn workers_count_from_the_build_before_they_start() {
        // However slowly the new workers get scheduled, the count never says
        // 0 while the runtime exists.
        for _ in 0..20 {
            let rt = build();
            assert!(hooks().live >= worker_threads(), "counted at the build");
            drop(rt);
        }
    }

    #[test]
    fn opens_run_on_one_thread_of_their_own_and_call_the_hooks() {
        let name = |rt: &Runtime| {
            let (tx, rx) = mpsc::channel();
            rt.spawn(async move {
                // A task spawned from an open stays on the open's thread.
                let inner = tokio::spawn(async { std::thread::current().id() });
                let me = std::thread::current();
                let hooked = STARTED.with(Cell::get);
                let _ = tx.send((me.name().map(str::to_owned), me.id(), inner.await.ok(), hooked));
            });
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the open runtime runs tasks")
        };
        let (n1, id1, inner1, hooked) = name(opener());
        let (n2, id2, _, _) = name(opener());
        assert_eq!(n1.as_deref(), Some("fal-realtime-open"));
        assert_eq!(n2, n1);
        assert_eq!(id1, id2, "one worker");
        assert_eq!(inner1, Some(id1));
        assert!(hooked, "its thread ran the start hook");
    }

    #[test]
    fn first_poll_tells_a_ready_future_from_one_that_waited() {
        let rt = rt();
        assert_eq!(
            rt.block_on(first_poll(std::pin::pin!(std::future::ready(7)))),
            (7, true)
        );
        let waited = rt.block_on(first_poll(std::pin::pin!(async {
            tokio::task::yield_now().await;
            8
        })));
        assert_eq!(waited, (8, false));
    }

    #[test]
    fn poll_now_finishes_what_can_finish_and_leaves_the_rest_to_block_on() {
        let rt = rt();
        let mut ready = std::pin::pin!(std::future::ready(1));
        assert_eq!(poll_now(rt.handle(), ready.as_mut()), std::task::Poll::Ready(1));
        // Pending at once (a timer inside the runtime's context), then done
        // by `block_on` with the same pinned future.
        let mut later = std::pin::pin!(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            2
        });
        assert!(poll_now(rt.handle(), later.as_mut()).is_pending());
        assert_eq!(rt.block_on(later), 2);
    }
}
