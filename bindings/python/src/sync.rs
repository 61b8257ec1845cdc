//! The blocking API: `realtime()` and `ws_connect()` connections.
//!
//! Each connection owns a current-thread tokio runtime that the calling
//! thread drives while it waits (GIL released): a `recv` reads the socket on
//! the caller's own thread, with no thread hop. Several threads may use one
//! connection: one drives the runtime, the others poll their own futures.

use crate::errors;
use crate::halves::{Halves, Item};
use crate::hooks;
use crate::stats::PyStats;
use crate::util::{self, First};
use fal_realtime::{ErrorKind, Frame};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::Runtime;

pub struct SyncCore {
    rt: Option<Runtime>,
    halves: Halves,
    closed: AtomicBool,
    encode: Option<Py<PyAny>>,
}

/// A new current-thread runtime for one connection.
pub fn new_runtime() -> PyResult<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| errors::of_kind(ErrorKind::Internal, format!("could not start a runtime: {e}")))
}

impl SyncCore {
    pub fn new(rt: Runtime, halves: Halves, encode: Option<Py<PyAny>>) -> Self {
        SyncCore {
            rt: Some(rt),
            halves,
            closed: AtomicBool::new(false),
            encode,
        }
    }

    fn rt(&self) -> &Runtime {
        // Only taken in Drop.
        self.rt.as_ref().expect("runtime present until drop")
    }

    fn send_frame(&self, py: Python<'_>, frame: Frame) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(errors::closed_by_caller());
        }
        let halves = &self.halves;
        match util::block_on(py, self.rt(), halves.send(frame), None, First::Poll)? {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(errors::to_py(py, &e)),
            None => unreachable!("no deadline"),
        }
    }

    /// The next item; `None` once the connection has ended (or was closed).
    fn recv_item(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Item>> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let deadline = util::deadline(timeout)?;
        let halves = &self.halves;
        // Read ahead by an earlier recv: no runtime entry, no GIL hand-off.
        let got = match halves.take_ready() {
            Some(x) => Some(x),
            None => util::block_on(py, self.rt(), halves.recv(), deadline, First::Wait)?,
        };
        match got {
            None => Err(errors::of_kind(
                ErrorKind::Timeout,
                format!("no message within {:.3} s", timeout.unwrap_or(0.0)),
            )),
            Some(None) => Ok(None),
            Some(Some(Ok(item))) => Ok(Some(item)),
            Some(Some(Err(e))) => Err(errors::to_py(py, &e)),
        }
    }

    /// `recv()`: the server's idle `TIMEOUT` raises `RealtimeError("TIMEOUT", ...)`.
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.recv_item(py, timeout)? {
            Some(item) => item.into_py(py).map(Some),
            None => Ok(None),
        }
    }

    /// Iteration: ends cleanly on a normal close and on the idle `TIMEOUT`.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.recv_item(py, None)? {
            Some(Item::IdleTimeout(_)) | None => Ok(None),
            Some(item) => item.into_py(py).map(Some),
        }
    }

    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let halves = &self.halves;
        match util::block_on(py, self.rt(), halves.close(code, reason), None, First::Poll)? {
            Some(Ok(())) | None => Ok(()),
            Some(Err(e)) if e.kind() == ErrorKind::InvalidArgument => {
                // Nothing was sent: the connection stays open.
                self.closed.store(false, Ordering::Release);
                Err(errors::to_py(py, &e))
            }
            // Already gone: nothing left to close.
            Some(Err(e)) if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Connect) => Ok(()),
            Some(Err(e)) => Err(errors::to_py(py, &e)),
        }
    }

    fn stats(&self) -> PyStats {
        self.halves.try_stats().into()
    }
}

impl Drop for SyncCore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A blocking realtime connection, from `realtime()`.
///
/// `send(input)` encodes a dict as msgpack and sends it; `recv()` returns the
/// next result (`None` once the connection closed cleanly, also after the
/// server's idle `TIMEOUT`); iterate it to get results until then. Thread-safe:
/// one thread may block in `recv` while others `send`.
#[pyclass(frozen, weakref, module = "fal_realtime", name = "RealtimeConnection")]
pub struct RealtimeConnection {
    pub core: SyncCore,
}

#[pymethods]
impl RealtimeConnection {
    /// Send one input, encoded as msgpack (`bytes` become a msgpack bin, as in
    /// `fal_client`), or through `encode_message`.
    fn send(&self, py: Python<'_>, arguments: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = hooks::encode_input(py, arguments, self.core.encode.as_ref())?;
        self.core.send_frame(py, frame)
    }

    /// Send pre-encoded msgpack (`bytes`, exactly one msgpack value) as is,
    /// without `encode_message`.
    fn send_msgpack(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = hooks::msgpack_frame(data)?;
        self.core.send_frame(py, frame)
    }

    /// The next result; `None` once the connection has closed cleanly.
    /// The server's idle `TIMEOUT` raises `RealtimeError("TIMEOUT", ...)` once (as
    /// `fal_client`); `None` after it. With `timeout` (seconds), raises
    /// `FalTimeoutError` when nothing arrives in time.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.core.recv(py, timeout)
    }

    /// Close the connection (code 1000). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.core.close(py, 1000, "")
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.core.closed.load(Ordering::Acquire)
    }

    /// Counters of this connection.
    #[getter]
    fn stats(&self) -> PyStats {
        self.core.stats()
    }

    /// Iterate over results until the connection closes cleanly.
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next result (like `recv()`); stops when the connection has closed
    /// cleanly, also after the server's idle `TIMEOUT`.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.core.next(py)
    }

    /// The connection itself.
    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Close the connection.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.core.close(py, 1000, "")?;
        Ok(false)
    }
}

/// `recv(decode=...)` of a raw socket, as in `websockets`: `None` keeps the
/// frame's type; `True` decodes binary frames as UTF-8 (`str`); `False`
/// returns text frames as UTF-8 `bytes`.
pub fn apply_decode<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    decode: Option<bool>,
) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::{PyBytes, PyString};
    match decode {
        Some(true) if value.is_instance_of::<PyBytes>() => value.call_method0(pyo3::intern!(py, "decode")),
        Some(false) if value.is_instance_of::<PyString>() => value.call_method0(pyo3::intern!(py, "encode")),
        _ => Ok(value),
    }
}

/// A blocking raw WebSocket, from `ws_connect()`: frames in, frames out.
#[pyclass(frozen, weakref, module = "fal_realtime", name = "WsConnection")]
pub struct WsConnection {
    pub core: SyncCore,
}

#[pymethods]
impl WsConnection {
    /// Send `bytes` (a binary frame) or `str` (a text frame).
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = hooks::frame_from_py(data)?;
        self.core.send_frame(py, frame)
    }

    /// The next frame (`bytes` or `str`). Once the connection has ended, raises as
    /// `websockets` does: `ConnectionClosedOK` after a clean close (1000/1001), else
    /// `ClosedError` with the code. With `timeout` (seconds), raises
    /// `FalTimeoutError` (a `TimeoutError`) when nothing arrives in time. `decode`,
    /// as in `websockets`: `True` returns binary frames as `str` (UTF-8), `False`
    /// text frames as `bytes`.
    #[pyo3(signature = (timeout = None, decode = None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        decode: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.core.recv(py, timeout)? {
            Some(v) => apply_decode(py, v, decode),
            None => Err(errors::ws_end(py, self.core.halves.try_close_info())),
        }
    }

    /// Close with `code` (default 1000) and `reason`, and wait up to 1 s for the
    /// server's close reply (then `close_code` is known). Idempotent. A code that
    /// cannot be sent, or a reason over 123 bytes, raises `InvalidArgumentError`.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        fal_realtime::WsSender::check_close(code, reason).map_err(|e| errors::to_py(py, &e))?;
        self.core.close(py, code, reason)
    }

    /// The close code of how the socket ended, as in `websockets`: the code of the
    /// server's close frame, 1006 when it ended without one; `None` while open.
    #[getter]
    fn close_code(&self) -> Option<u16> {
        self.core.halves.try_close_info().map(|(c, _)| c)
    }

    /// The reason of the server's close frame (`""` if none); `None` while open.
    #[getter]
    fn close_reason(&self) -> Option<String> {
        self.core.halves.try_close_info().map(|(_, r)| r)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.core.closed.load(Ordering::Acquire)
    }

    /// Counters of this connection.
    #[getter]
    fn stats(&self) -> PyStats {
        self.core.stats()
    }

    /// Iterate over results until the connection closes cleanly.
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next result (like `recv()`); stops when the connection has closed cleanly.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.core.next(py)
    }

    /// The connection itself.
    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Close the connection (code 1000).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.core.close(py, 1000, "")?;
        Ok(false)
    }
}
