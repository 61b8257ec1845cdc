//! The shared tokio runtime for callers that are not async themselves (C,
//! Python, plain Rust threads).
//!
//! Created lazily on first use: a multi-threaded runtime with 2 worker threads
//! named `fal-realtime-worker` (override with `FAL_REALTIME_WORKER_THREADS`).
//! Connection tasks and all callbacks run on these threads. Async Rust callers
//! that already run inside a tokio runtime get their tasks spawned there instead.
//!
//! Lifetime: a runtime used from Rust or Python ([`shared`], or [`handle`] /
//! [`block_on`] outside a C call) lives as long as the process. A runtime
//! used only by the C door lives while a C object holds a `Lease` on it:
//! when the last one is dropped (the last client, realtime connection or
//! socket is freed), its threads are stopped, so that a host can exit or
//! unload the library; the next C object starts a new one.
//!
//! Every thread of every runtime this library builds (the shared one and the
//! C door's per-session ones, workers and blocking-pool threads) and every
//! other thread it spawns calls the process-wide thread hooks
//! (`set_thread_hooks`, `fal_rt_set_thread_hooks` in C) when it starts and before it exits.

use once_cell::sync::OnceCell;
use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// Default worker-thread count of the shared runtime.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// How long stopping the shared runtime waits for its threads (a blocked
/// token provider may hold one).
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
}

fn slot() -> MutexGuard<'static, Slot> {
    SLOT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A hook called on a library thread.
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;

struct Hooks {
    start: Option<Hook>,
    stop: Option<Hook>,
    /// Library threads that started and have not stopped yet.
    live: usize,
}

static HOOKS: Mutex<Hooks> = Mutex::new(Hooks {
    start: None,
    stop: None,
    live: 0,
});

fn hooks() -> MutexGuard<'static, Hooks> {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run on every library thread first.
fn thread_started() {
    let start = {
        let mut h = hooks();
        h.live += 1;
        h.start.clone()
    };
    if let Some(f) = start {
        f();
    }
}

/// Run on every library thread last.
fn thread_stopping() {
    let stop = hooks().stop.clone();
    if let Some(f) = stop {
        f();
    }
    let mut h = hooks();
    h.live = h.live.saturating_sub(1);
}

/// Set the process-wide thread hooks (see the module docs). Refused (`false`,
/// nothing changes) while threads of the library run: they would stop with
/// hooks they did not start with.
pub(crate) fn set_thread_hooks(start: Option<Hook>, stop: Option<Hook>) -> bool {
    let mut h = hooks();
    if h.live > 0 {
        return false;
    }
    h.start = start;
    h.stop = stop;
    true
}

/// Threads of the library that are running now (started and not stopped).
pub fn live_threads() -> usize {
    hooks().live
}

/// A runtime builder whose threads call the thread hooks.
pub(crate) fn with_hooks(mut b: tokio::runtime::Builder) -> tokio::runtime::Builder {
    b.on_thread_start(thread_started).on_thread_stop(thread_stopping);
    b
}

/// `std::thread::spawn` for a thread that calls the thread hooks.
pub(crate) fn spawn_thread<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        thread_started();
        struct Stop;
        impl Drop for Stop {
            fn drop(&mut self) {
                thread_stopping();
            }
        }
        let _stop = Stop;
        f();
    });
}

fn build() -> Runtime {
    let threads = std::env::var("FAL_REALTIME_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(DEFAULT_WORKER_THREADS);
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(threads)
        .thread_name("fal-realtime-worker")
        .enable_all();
    with_hooks(b)
        .build()
        .expect("fal-realtime: could not start the shared tokio runtime")
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

/// The runtime to spawn connection tasks on: the caller's, if it runs inside
/// one, else the shared runtime.
pub fn handle() -> Handle {
    Handle::try_current().unwrap_or_else(|_| current(!covered()).handle().clone())
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

/// Run `f` as a C door call: its uses of the shared runtime do not pin it.
pub(crate) fn in_c_call<T>(f: impl FnOnce() -> T) -> T {
    let prev = IN_C_CALL.with(|c| c.replace(true));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_C_CALL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(prev);
    f()
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
        match Arc::try_unwrap(rt) {
            // A runtime cannot be stopped from one of its own threads: do
            // it from a thread of its own.
            Ok(rt) if in_runtime() => spawn_thread(move || rt.shutdown_timeout(SHUTDOWN_WAIT)),
            // Returns when its threads have ended (or after SHUTDOWN_WAIT).
            Ok(rt) => rt.shutdown_timeout(SHUTDOWN_WAIT),
            // Still driven by a `block_on` that raced with the last free
            // (against the C rules): its caller drops it.
            Err(rt) => drop(rt),
        }
    }
}
