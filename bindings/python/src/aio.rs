//! The asyncio API: `realtime_async()` and `ws_connect_async()` connections.
//!
//! Sockets live on the shared runtime. Each operation is first polled once on
//! the caller's thread (GIL released): a send to a writable socket or a recv
//! with a message already buffered completes right there, with no thread hop
//! and no asyncio future. Otherwise the operation moves to a runtime task that
//! resolves an asyncio future through `loop.call_soon_threadsafe`. Cancelling
//! the awaiting task cancels the operation; a result that raced with the
//! cancellation is kept for the next `recv`, so nothing is lost or reordered.

use crate::errors;
use crate::halves::{Halves, Item};
use crate::hooks;
use crate::stats::PyStats;
use crate::util;
use fal_realtime::{ErrorKind, Frame, Result as CoreResult};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Poll `fut` once on this thread, with the GIL released, in the shared runtime's context.
pub fn poll_now<T: Send>(py: Python<'_>, fut: &mut BoxFut<T>) -> Poll<T> {
    py.detach(|| {
        let _guard = fal_realtime::runtime::shared().enter();
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
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

/// Deliver a received value to `fut` in arrival order; if `fut` was cancelled
/// meanwhile, keep the value for the next `recv`.
#[pyfunction]
pub fn _deliver(
    conn: &Bound<'_, AsyncConnection>,
    fut: &Bound<'_, PyAny>,
    value: Bound<'_, PyAny>,
    is_err: bool,
) -> PyResult<()> {
    let py = fut.py();
    let c = conn.get();
    let next = {
        let mut stash = c.stash.lock().unwrap_or_else(|p| p.into_inner());
        stash.push_back(if is_err {
            Err(PyErr::from_value(value))
        } else {
            Ok(value.unbind())
        });
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        stash.pop_front()
    };
    match next {
        Some(Ok(v)) => fut.call_method1(intern!(py, "set_result"), (v,))?,
        Some(Err(e)) => fut.call_method1(intern!(py, "set_exception"), (e.value(py),))?,
        None => return Ok(()),
    };
    Ok(())
}

static SETTLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DELIVER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn native_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        py.import("fal_realtime._native")?
            .getattr(name)
            .map(Bound::unbind)
    })
    .map(|f| f.bind(py).clone())
}

/// A new asyncio future on the running loop, with a cancellation notifier.
fn new_future<'py>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Arc<Notify>)> {
    let lp = util::running_loop(py)?;
    let fut = lp.call_method0(intern!(py, "create_future"))?;
    let notify = Arc::new(Notify::new());
    let cb = Py::new(
        py,
        CancelOnDone {
            notify: notify.clone(),
        },
    )?;
    fut.call_method1(intern!(py, "add_done_callback"), (cb,))?;
    Ok((lp, fut, notify))
}

fn call_soon_threadsafe(lp: &Bound<'_, PyAny>, args: Bound<'_, PyTuple>) {
    // Fails only when the loop is closed: nobody is waiting any more.
    let _ = lp.call_method1(intern!(lp.py(), "call_soon_threadsafe"), args);
}

/// Run `fut` on the shared runtime and return an asyncio future of
/// `convert(output)`. Cancelling the asyncio future drops `fut`.
pub fn spawn_future<'py, T, C>(py: Python<'py>, fut: BoxFut<T>, convert: C) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
{
    let (lp, pyfut, notify) = new_future(py)?;
    let settle = native_fn(py, &SETTLE, "_settle")?.unbind();
    let (lp_u, fut_u) = (lp.unbind(), pyfut.clone().unbind());
    fal_realtime::runtime::shared().spawn(async move {
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            out = fut => {
                Python::try_attach(|py| {
                    let (value, is_err) = match convert(py, out) {
                        Ok(v) => (v, false),
                        Err(e) => (e.into_value(py).into_bound(py).into_any(), true),
                    };
                    if let Ok(args) = (settle.bind(py), fut_u.bind(py), value, is_err).into_pyobject(py) {
                        call_soon_threadsafe(lp_u.bind(py), args);
                    }
                });
            }
        }
    });
    Ok(pyfut)
}

fn none(py: Python<'_>) -> Bound<'_, PyAny> {
    py.None().into_bound(py)
}

fn unit_result(py: Python<'_>, r: CoreResult<()>) -> PyResult<Bound<'_, PyAny>> {
    match r {
        Ok(()) => Ok(none(py)),
        Err(e) => Err(errors::to_py(py, &e)),
    }
}

fn recv_result(py: Python<'_>, out: Option<CoreResult<Item>>) -> PyResult<Bound<'_, PyAny>> {
    match out {
        None => Ok(none(py)),
        Some(Ok(item)) => item.into_py(py),
        Some(Err(e)) => Err(errors::to_py(py, &e)),
    }
}

/// The native half of an asyncio connection; wrapped by
/// `fal_realtime.AsyncRealtimeConnection` / `AsyncWsConnection`.
#[pyclass(frozen, module = "fal_realtime._native")]
pub struct AsyncConnection {
    halves: Halves,
    closed: AtomicBool,
    encode: Option<Py<PyAny>>,
    /// Results that arrived for a `recv` that was cancelled meanwhile.
    stash: Mutex<VecDeque<PyResult<Py<PyAny>>>>,
    ws: bool,
}

impl AsyncConnection {
    pub fn new(halves: Halves, encode: Option<Py<PyAny>>, ws: bool) -> Self {
        AsyncConnection {
            halves,
            closed: AtomicBool::new(false),
            encode,
            stash: Mutex::new(VecDeque::new()),
            ws,
        }
    }

    fn send_frame<'py>(&self, py: Python<'py>, frame: Frame) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(errors::closed_by_caller());
        }
        let halves = self.halves.clone();
        let mut fut: BoxFut<CoreResult<()>> = Box::pin(async move { halves.send(frame).await });
        match poll_now(py, &mut fut) {
            Poll::Ready(r) => unit_result(py, r).map(|_| None),
            Poll::Pending => spawn_future(py, fut, unit_result).map(Some),
        }
    }
}

#[pymethods]
impl AsyncConnection {
    /// Send one input (realtime: encoded as msgpack; ws: bytes or str).
    /// Returns `None` when sent already, else an awaitable.
    fn send<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let frame = if self.ws {
            hooks::frame_from_py(data)?
        } else {
            hooks::encode_input(py, data, self.encode.as_ref())?
        };
        self.send_frame(py, frame)
    }

    /// `(True, value)` when a value is ready now, else `(False, future)`.
    fn recv<'py>(slf: &Bound<'py, Self>) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let py = slf.py();
        let this = slf.get();
        let stashed = this.stash.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(r) = stashed {
            return r.map(|v| (true, v.into_bound(py)));
        }
        if this.closed.load(Ordering::Acquire) {
            return Ok((true, none(py)));
        }
        let halves = this.halves.clone();
        let mut fut: BoxFut<Option<CoreResult<Item>>> = Box::pin(async move { halves.recv().await });
        if let Poll::Ready(out) = poll_now(py, &mut fut) {
            return recv_result(py, out).map(|v| (true, v));
        }
        let (lp, pyfut, notify) = new_future(py)?;
        let deliver = native_fn(py, &DELIVER, "_deliver")?.unbind();
        let conn = slf.clone().unbind();
        let (lp_u, fut_u) = (lp.unbind(), pyfut.clone().unbind());
        fal_realtime::runtime::shared().spawn(async move {
            tokio::select! {
                biased;
                _ = notify.notified() => {}
                out = fut => {
                    Python::try_attach(|py| {
                        let (value, is_err) = match recv_result(py, out) {
                            Ok(v) => (v, false),
                            Err(e) => (e.into_value(py).into_bound(py).into_any(), true),
                        };
                        if let Ok(args) = (deliver.bind(py), conn.bind(py), fut_u.bind(py), value, is_err).into_pyobject(py) {
                            call_soon_threadsafe(lp_u.bind(py), args);
                        }
                    });
                }
            }
        });
        Ok((false, pyfut))
    }

    /// Close (code 1000). Returns `None` when done already, else an awaitable.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        let halves = self.halves.clone();
        let mut fut: BoxFut<CoreResult<()>> = Box::pin(async move {
            match halves.close().await {
                Err(e) if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Connect) => Ok(()),
                r => r,
            }
        });
        match poll_now(py, &mut fut) {
            Poll::Ready(r) => unit_result(py, r).map(|_| None),
            Poll::Pending => spawn_future(py, fut, unit_result).map(Some),
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Counters of this connection.
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyStats {
        if let Some(s) = self.halves.try_stats() {
            return s.into();
        }
        let halves = self.halves.clone();
        py.detach(|| fal_realtime::runtime::block_on(async move { halves.stats().await }))
            .unwrap_or_default()
            .into()
    }
}
