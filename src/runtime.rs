//! The shared tokio runtime for callers that are not async themselves (C,
//! Python, plain Rust threads).
//!
//! Created lazily on first use: a multi-threaded runtime with 2 worker threads
//! named `fal-realtime-worker` (override with `FAL_REALTIME_WORKER_THREADS`).
//! Connection tasks and all callbacks run on these threads. Async Rust callers
//! that already run inside a tokio runtime get their tasks spawned there instead.

use once_cell::sync::OnceCell;
use std::future::Future;
use tokio::runtime::{Handle, Runtime};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();

/// Default worker-thread count of the shared runtime.
pub const DEFAULT_WORKER_THREADS: usize = 2;

/// The shared runtime, created on first call.
///
/// # Panics
/// Only if the operating system refuses to start threads.
pub fn shared() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        let threads = std::env::var("FAL_REALTIME_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=64).contains(n))
            .unwrap_or(DEFAULT_WORKER_THREADS);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fal-realtime-worker")
            .enable_all()
            .build()
            .expect("fal-realtime: could not start the shared tokio runtime")
    })
}

/// The runtime to spawn connection tasks on: the caller's, if it runs inside
/// one, else the shared runtime.
pub fn handle() -> Handle {
    Handle::try_current().unwrap_or_else(|_| shared().handle().clone())
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
    Some(shared().block_on(fut))
}
