//! Small helpers: interruptible blocking waits, cached Python objects.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::future::Future;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::time::Instant;

/// How often a blocking wait wakes up to let Python run signal handlers (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// How [`block_on`] starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Poll once without blocking first: for a future often ready at once (a send).
    Poll,
    /// Block at once: for a future seldom ready at once (a recv whose
    /// read-ahead was empty, an open), where the extra poll costs more than
    /// it saves.
    Wait,
}

/// Run `fut` on `rt` from the calling thread with the GIL released, waking up
/// every [`SIGNAL_CHECK`] to run Python's signal handlers (so Ctrl-C raises
/// `KeyboardInterrupt`). Returns `Ok(None)` when `deadline` passes first.
///
/// The future is polled on the caller's thread: with a current-thread runtime
/// the caller drives the socket itself, with no thread hop. With
/// [`First::Poll`] it is polled once first without `block_on` and its
/// signal-check timer: a send to a writable socket completes there.
pub fn block_on<F>(
    py: Python<'_>,
    rt: &Runtime,
    fut: F,
    deadline: Option<Instant>,
    first: First,
) -> PyResult<Option<F::Output>>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut first = first == First::Poll;
    let mut fut = std::pin::pin!(fut);
    loop {
        let now = Instant::now();
        let tick = match deadline {
            Some(d) => d.min(now + SIGNAL_CHECK),
            None => now + SIGNAL_CHECK,
        };
        let mut fut_ref = fut.as_mut();
        let try_now = std::mem::take(&mut first);
        let out = py.detach(|| {
            if try_now {
                if let std::task::Poll::Ready(out) =
                    fal_realtime::runtime::poll_now(rt.handle(), fut_ref.as_mut())
                {
                    return Some(out);
                }
            }
            rt.block_on(async move {
                tokio::select! {
                    biased;
                    out = fut_ref => Some(out),
                    _ = tokio::time::sleep_until(tick) => None,
                }
            })
        });
        if let Some(out) = out {
            return Ok(Some(out));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Convert a Python timeout in seconds to a deadline.
pub fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(crate::errors::invalid(
            "timeout must be a non-negative number of seconds or None",
        )),
        Some(t) => Ok(Some(
            Instant::now() + Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(86400 * 365)),
        )),
    }
}

/// Convert seconds to a duration, rejecting negative and non-finite values.
pub fn seconds(name: &str, v: f64) -> PyResult<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(crate::errors::invalid(format!(
            "{name} must be a non-negative number of seconds, got {v}"
        )));
    }
    Duration::try_from_secs_f64(v).map_err(|_| crate::errors::invalid(format!("{name} is out of range: {v}")))
}

static SUPPORT: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The pure-Python support module `fal_realtime._support`.
pub fn support(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    SUPPORT
        .get_or_try_init(py, || py.import("fal_realtime._support").map(Bound::unbind))
        .map(|m| m.bind(py))
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `asyncio.get_running_loop()`.
pub fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            py.import("asyncio")?
                .getattr("get_running_loop")
                .map(Bound::unbind)
        })?
        .bind(py)
        .call0()
}

/// `asyncio.get_running_loop()`, or `None` outside a running loop. Never
/// imports asyncio itself (it and `ssl` add ~11 MiB to a process): a loop can
/// only be running where asyncio was imported already.
pub fn running_loop_opt(py: Python<'_>) -> Option<Py<PyAny>> {
    let loaded = py
        .import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|m| m.contains("asyncio"))
        .unwrap_or(true);
    if !loaded {
        return None;
    }
    running_loop(py).ok().map(Bound::unbind)
}
