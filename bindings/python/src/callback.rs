//! The callback API (`connect()`): the JS client's style. The core runs the
//! connection on the shared runtime; callbacks run on its threads, holding
//! the GIL. An exception inside a callback is logged (logger `fal_realtime`)
//! and never reaches the connection.
//!
//! Each callback runs in a copy of the `contextvars` context of the
//! `connect()` call (as `loop.call_soon` copies the caller's): values set
//! before `connect()` are seen, and a value a callback sets is not seen by
//! the next one nor by other connections' callbacks on the same thread.

use crate::errors;
use crate::hooks;
use crate::stats::PyStats;
use fal_realtime::{ConnectionState, Error, Message, RealtimeHandler};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::PyTraverseError;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Callbacks {
    pub on_result: Option<Py<PyAny>>,
    pub on_error: Option<Py<PyAny>>,
    pub on_state: Option<Py<PyAny>>,
    /// The `contextvars` context of the `connect()` call.
    pub context: Option<Py<PyAny>>,
}

/// The callbacks of one `connect()` call, shared by the core's handler and
/// the Python object (which exposes them to the garbage collector).
pub struct Slot {
    cbs: Mutex<Callbacks>,
}

impl Slot {
    fn get(&self, py: Python<'_>, pick: impl Fn(&Callbacks) -> Option<&Py<PyAny>>) -> Option<Py<PyAny>> {
        let g = self.cbs.lock().unwrap_or_else(|p| p.into_inner());
        pick(&g).map(|c| c.clone_ref(py))
    }

    /// `cb(arg)` in a copy of the context of the `connect()` call.
    fn call<'py>(
        &self,
        py: Python<'py>,
        cb: &Py<PyAny>,
        arg: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.get(py, |c| c.context.as_ref()) {
            Some(ctx) => ctx
                .bind(py)
                .call_method0(intern!(py, "copy"))?
                .call_method1(intern!(py, "run"), (cb, arg)),
            // Cleared by the garbage collector.
            None => cb.bind(py).call1((arg,)),
        }
    }
}

pub struct PyHandler {
    slot: Arc<Slot>,
}

fn log_callback_error(py: Python<'_>, which: &str, err: PyErr) {
    let logged = crate::util::support(py)
        .and_then(|m| m.getattr("_log_callback_error"))
        .and_then(|f| f.call1((which, err.value(py))));
    if logged.is_err() {
        err.print(py);
    }
}

impl PyHandler {
    fn report_error(&self, py: Python<'_>, exc: Bound<'_, PyAny>) {
        match self.slot.get(py, |c| c.on_error.as_ref()) {
            Some(cb) => {
                if let Err(e) = self.slot.call(py, &cb, exc) {
                    log_callback_error(py, "on_error", e);
                }
            }
            None => {
                let _ = crate::util::support(py)
                    .and_then(|m| m.getattr("_log_connection_error"))
                    .and_then(|f| f.call1((exc,)));
            }
        }
    }
}

impl PyHandler {
    fn deliver(&self, py: Python<'_>, cb: &Py<PyAny>, message: &Message) {
        match hooks::message_to_py(py, message) {
            Ok(v) => {
                if let Err(e) = self.slot.call(py, cb, v) {
                    log_callback_error(py, "on_result", e);
                }
            }
            Err(e) => self.report_error(py, e.into_value(py).into_bound(py).into_any()),
        }
    }
}

impl RealtimeHandler for PyHandler {
    fn on_result(&self, message: Message) {
        crate::attach(|py| {
            if let Some(cb) = self.slot.get(py, |c| c.on_result.as_ref()) {
                self.deliver(py, &cb, &message);
            }
        });
    }

    /// Every result that was ready at once, under one GIL hold: one thread
    /// state and one GIL hand-off per batch instead of per message.
    fn on_results(&self, messages: &mut dyn Iterator<Item = Message>) {
        crate::attach(|py| {
            for message in messages {
                // Looked up per message: a callback may replace the handler's callbacks.
                if let Some(cb) = self.slot.get(py, |c| c.on_result.as_ref()) {
                    self.deliver(py, &cb, &message);
                }
            }
        });
    }

    fn on_error(&self, error: Error) {
        crate::attach(|py| match errors::exception(py, &error) {
            Ok(exc) => self.report_error(py, exc),
            Err(e) => log_callback_error(py, "on_error", e),
        });
    }

    fn on_state(&self, state: ConnectionState) {
        crate::attach(|py| {
            if let Some(cb) = self.slot.get(py, |c| c.on_state.as_ref()) {
                let name = pyo3::types::PyString::intern(py, state.as_str()).into_any();
                if let Err(e) = self.slot.call(py, &cb, name) {
                    log_callback_error(py, "on_state", e);
                }
            }
        });
    }
}

/// The handler of a `connect()` call made now, on this thread (its
/// `contextvars` context is the one the callbacks run in).
pub fn handler(
    py: Python<'_>,
    on_result: Py<PyAny>,
    on_error: Option<Py<PyAny>>,
    on_state: Option<Py<PyAny>>,
) -> PyResult<(Arc<Slot>, PyHandler)> {
    let context = py
        .import(intern!(py, "contextvars"))?
        .call_method0(intern!(py, "copy_context"))?;
    let slot = Arc::new(Slot {
        cbs: Mutex::new(Callbacks {
            on_result: Some(on_result),
            on_error,
            on_state,
            context: Some(context.unbind()),
        }),
    });
    Ok((slot.clone(), PyHandler { slot }))
}

/// A callback-style realtime connection, from `connect()`.
///
/// Opens lazily on the first `send`; while connecting only the latest input is
/// kept; sends are throttled (`throttle_interval`); after any close the next
/// `send` reconnects with a fresh token. `send` and `close` never block and
/// may be called from any thread, including from inside callbacks.
#[pyclass(frozen, weakref, module = "fal_realtime", name = "CallbackConnection")]
pub struct CallbackConnection {
    pub conn: fal_realtime::RealtimeConnection,
    pub slot: Arc<Slot>,
    pub encode: Option<Py<PyAny>>,
    /// Set by `shutdown()` on this handle.
    pub shut: std::sync::atomic::AtomicBool,
}

#[pymethods]
impl CallbackConnection {
    /// Queue one input, encoded as msgpack (`bytes` become a msgpack bin), or
    /// through `encode_message`. Never blocks; connection errors go to `on_error`.
    fn send(&self, py: Python<'_>, arguments: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.shut.load(std::sync::atomic::Ordering::Acquire) {
            return Err(errors::of_kind(
                fal_realtime::ErrorKind::NotConnected,
                "the connection was shut down",
            ));
        }
        let frame = hooks::encode_input(py, arguments, self.encode.as_ref())?;
        self.conn.send_frame(frame).map_err(|e| errors::to_py(py, &e))
    }

    /// Queue pre-encoded msgpack (`bytes`, exactly one msgpack value) as is,
    /// without `encode_message`. Never blocks.
    fn send_msgpack(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.shut.load(std::sync::atomic::Ordering::Acquire) {
            return Err(errors::of_kind(
                fal_realtime::ErrorKind::NotConnected,
                "the connection was shut down",
            ));
        }
        let frame = hooks::msgpack_frame(data)?;
        self.conn.send_frame(frame).map_err(|e| errors::to_py(py, &e))
    }

    /// Close the socket (code 1000) from any state and drop a pending input.
    /// The next `send` reconnects.
    fn close(&self) {
        self.conn.close();
    }

    /// Close for good and stop the connection: no callback runs after this
    /// returns (unless called from inside a callback, where it does not wait).
    /// Later sends raise `NotConnectedError`.
    fn shutdown(&self, py: Python<'_>) {
        self.shut.store(true, std::sync::atomic::Ordering::Release);
        if fal_realtime::in_callback() || fal_realtime::runtime::in_runtime() {
            self.conn.shutdown_nowait();
            return;
        }
        let conn = self.conn.clone();
        py.detach(|| {
            if fal_realtime::runtime::block_on(async move { conn.shutdown().await }).is_none() {
                self.conn.shutdown_nowait();
            }
        });
    }

    /// The connection state: "idle", "authenticating", "connecting", "open" or "closed".
    #[getter]
    fn state(&self) -> &'static str {
        self.conn.state().as_str()
    }

    /// Counters of this connection.
    #[getter]
    fn stats(&self) -> PyStats {
        self.conn.stats().into()
    }

    /// The connection itself.
    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Shut the connection down (see `shutdown`).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.shutdown(py);
        false
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(g) = self.slot.cbs.try_lock() {
            visit.call(&g.on_result)?;
            visit.call(&g.on_error)?;
            visit.call(&g.on_state)?;
            visit.call(&g.context)?;
        }
        visit.call(&self.encode)?;
        Ok(())
    }

    fn __clear__(&self) {
        // Only reached when the connection object is garbage: stop it.
        self.conn.shutdown_nowait();
        if let Ok(mut g) = self.slot.cbs.lock() {
            *g = Callbacks::default();
        }
    }
}
