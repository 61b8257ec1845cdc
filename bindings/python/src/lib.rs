//! `fal_realtime._native`: the Python extension module of fal-realtime.
//!
//! The public API lives in the pure-Python package `fal_realtime`, which
//! wraps these classes; see `python/fal_realtime/__init__.py`.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod aio;
mod callback;
mod client;
mod errors;
mod halves;
mod hooks;
mod msgpack;
mod stats;
mod sync;
mod util;

/// False once the interpreter began to exit (set from an `atexit` hook):
/// library threads then no longer call into Python, since a thread that
/// waits for the GIL during finalization is killed mid-Rust-frame.
static PY_ALIVE: AtomicBool = AtomicBool::new(true);

/// Library threads inside [`attach`] right now. With `PY_ALIVE`, a
/// store-then-load handshake between two threads (`_interpreter_exiting`
/// and `attach`): both sides use `SeqCst`, so at least one sees the other.
static IN_PYTHON: AtomicUsize = AtomicUsize::new(0);

/// Run `f` with the GIL from a library thread, unless the interpreter is exiting.
///
/// A library thread keeps the Python thread state made by its first call for
/// as long as it lives ([`keep_thread_state`]): without it, every GIL hold
/// of a thread that has none creates and destroys one (a few microseconds
/// per delivered batch), and `threading.local` values set in one callback
/// would be gone by the next.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    IN_PYTHON.fetch_add(1, Ordering::SeqCst);
    let out = if PY_ALIVE.load(Ordering::SeqCst) {
        keep_thread_state();
        Python::try_attach(f)
    } else {
        None
    };
    IN_PYTHON.fetch_sub(1, Ordering::SeqCst);
    out
}

/// A Python thread state this library thread made and keeps (the count of
/// one `PyGILState_Ensure` it has not released): later `PyGILState_Ensure`
/// calls of the thread find it and only take the GIL.
struct KeptThreadState {
    gstate: pyo3::ffi::PyGILState_STATE,
    tstate: *mut pyo3::ffi::PyThreadState,
}

impl Drop for KeptThreadState {
    /// The thread ends: give the state back, unless the interpreter is
    /// exiting (finalization frees every thread state itself, and a thread
    /// that takes the GIL then is killed).
    fn drop(&mut self) {
        IN_PYTHON.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `tstate` is this thread's state, saved by `keep_thread_state`
        // and not used since; the interpreter still runs (checked), and
        // `_interpreter_exiting` waits while `IN_PYTHON` counts this thread.
        if PY_ALIVE.load(Ordering::SeqCst) && unsafe { pyo3::ffi::Py_IsInitialized() } != 0 {
            unsafe {
                pyo3::ffi::PyEval_RestoreThread(self.tstate);
                pyo3::ffi::PyGILState_Release(self.gstate);
            }
        }
        IN_PYTHON.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    /// The thread state this library thread made and keeps, once it has one.
    static KEPT: std::cell::OnceCell<KeptThreadState> = const { std::cell::OnceCell::new() };
}

/// On a call from a thread without a Python thread state, make one and keep
/// it (see [`attach`]). A thread that has one already (a Python thread, or a
/// library thread inside a temporary `Python::attach`) is left alone, and
/// asked again next time. Call only while `PY_ALIVE` and counted in
/// `IN_PYTHON`.
fn keep_thread_state() {
    let _ = KEPT.try_with(|k| {
        if k.get().is_some() {
            return;
        }
        // SAFETY: the interpreter runs (checked, and `PY_ALIVE` holds it off
        // finalization); a thread without a thread state does not hold the
        // GIL, so the GIL taken by `PyGILState_Ensure` is the one
        // `PyEval_SaveThread` releases.
        unsafe {
            if pyo3::ffi::Py_IsInitialized() == 0 || !pyo3::ffi::PyGILState_GetThisThreadState().is_null() {
                return;
            }
            let gstate = pyo3::ffi::PyGILState_Ensure();
            let tstate = pyo3::ffi::PyEval_SaveThread();
            let _ = k.set(KeptThreadState { gstate, tstate });
        }
    });
}

/// Called by `atexit` (before finalization starts): stop library threads
/// from entering Python, and let those inside leave. A thread inside may
/// have released the GIL for a moment (e.g. `call_soon_threadsafe` writes to
/// a socket); if finalization began before it took the GIL back, CPython
/// would kill it in the middle of Rust frames.
#[pyfunction]
fn _interpreter_exiting(py: Python<'_>) {
    PY_ALIVE.store(false, Ordering::SeqCst);
    py.detach(|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while IN_PYTHON.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
}

/// The finest level of this library's records that reach Python: the
/// `fal_realtime` (core) and `fal_realtime_python` targets at debug, every
/// dependency at warning and above.
fn level_for(target: &str) -> log::LevelFilter {
    let ours = ["fal_realtime", "fal_realtime_python"].iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    if ours {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    }
}

/// Forwards records to Python's `logging` while the interpreter is alive.
/// The bridge (and `logging` itself, about 1.3 MiB) is made on the first
/// record that passes [`level_for`], not at import; until some code imported
/// `logging`, records below warning are dropped without importing it (no
/// configuration can exist then, and Python's default drops them).
struct GatedLogger(std::sync::OnceLock<pyo3_log::Logger>);

impl GatedLogger {
    fn passes(metadata: &log::Metadata<'_>) -> bool {
        PY_ALIVE.load(Ordering::SeqCst) && metadata.level() <= level_for(metadata.target())
    }

    /// The bridge, made now if needed. Never waits for another thread
    /// making it (that thread may be waiting for the GIL this one holds):
    /// both make one under the GIL and the first stored is kept.
    fn bridge(&self, level: log::Level) -> Option<&pyo3_log::Logger> {
        if let Some(l) = self.0.get() {
            return Some(l);
        }
        let made = attach(|py| {
            if level > log::Level::Warn && !logging_loaded(py) {
                return None;
            }
            // No filters of its own: `passes` applied `level_for` already.
            pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers).ok()
        })??;
        let _ = self.0.set(made);
        self.0.get()
    }
}

/// Whether some code imported Python's `logging` (without importing it).
fn logging_loaded(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|m| m.contains("logging"))
        .unwrap_or(false)
}

impl log::Log for GatedLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        Self::passes(metadata) && self.bridge(metadata.level()).is_some_and(|l| l.enabled(metadata))
    }
    fn log(&self, record: &log::Record<'_>) {
        if Self::passes(record.metadata()) {
            if let Some(l) = self.bridge(record.level()) {
                // Through `attach`: counted for the exit handshake, and on a
                // library thread with the state it keeps.
                attach(|_| l.log(record));
            }
        }
    }
    fn flush(&self) {}
}

fn init_logging() {
    // Records of this library go to Python's `logging` (logger `fal_realtime.*`);
    // dependencies only at warning level and above. Loggers are cached, levels
    // are not, so `logging` configuration changes apply at once.
    // Debug is the finest level this library logs at; keeping the global
    // maximum there lets `log` drop the per-frame trace records of
    // dependencies for free, on the hot path.
    if log::set_boxed_logger(Box::new(GatedLogger(std::sync::OnceLock::new()))).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CORE_VERSION", fal_realtime::VERSION)?;
    m.add_class::<client::Client>()?;
    m.add_class::<sync::RealtimeConnection>()?;
    m.add_class::<sync::WsConnection>()?;
    m.add_class::<aio::AsyncConnection>()?;
    m.add_class::<aio::CancelOnDone>()?;
    m.add_class::<aio::OpDone>()?;
    m.add_class::<callback::CallbackConnection>()?;
    m.add_class::<stats::PyStats>()?;
    m.add_function(wrap_pyfunction!(aio::_settle, m)?)?;
    m.add_function(wrap_pyfunction!(_interpreter_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(msgpack::packb, m)?)?;
    m.add_function(wrap_pyfunction!(msgpack::unpackb, m)?)?;
    Ok(())
}
