//! Core errors → the exception classes of `fal_realtime._errors`.

use fal_realtime::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The exception instance (not raised) for a core error.
pub fn exception<'py>(py: Python<'py>, e: &Error) -> PyResult<Bound<'py, PyAny>> {
    let f = FACTORY.get_or_try_init(py, || {
        py.import("fal_realtime._errors")?
            .getattr("_from_core")
            .map(Bound::unbind)
    })?;
    f.bind(py).call1((
        e.kind().as_str(),
        e.message(),
        e.status(),
        e.close_code(),
        e.body(),
    ))
}

/// The Python exception for a core error.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    match exception(py, e) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// Like [`to_py`], attaching to the interpreter first.
pub fn to_py_attach(e: &Error) -> PyErr {
    Python::attach(|py| to_py(py, e))
}

/// A Python exception of `kind` with `message`.
pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> PyErr {
    to_py_attach(&Error::new(kind, message))
}

/// `InvalidArgumentError` (also a `ValueError`).
pub fn invalid(message: impl Into<String>) -> PyErr {
    of_kind(ErrorKind::InvalidArgument, message)
}

/// What `recv` of a raw WebSocket raises once it has ended, as `websockets`:
/// `ConnectionClosedOK` after a clean close (1000/1001), else `ClosedError`
/// (`fal_realtime._errors._ws_end`). `info`: the close code and reason.
pub fn ws_end(py: Python<'_>, info: Option<(u16, String)>) -> PyErr {
    let (code, reason) = match info {
        Some((c, r)) => (Some(c), Some(r)),
        None => (None, None),
    };
    let exc = py
        .import("fal_realtime._errors")
        .and_then(|m| m.getattr("_ws_end"))
        .and_then(|f| f.call1((code, reason)));
    match exc {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// `NotConnectedError`: the connection was closed by the caller.
pub fn closed_by_caller() -> PyErr {
    of_kind(ErrorKind::NotConnected, "the connection is closed")
}

/// `ClosedError`: `close()` gave up waiting for this queued send to go out
/// (no queued send finished for `waited`); it was not sent.
pub fn unsent_at_close(waited: std::time::Duration) -> PyErr {
    of_kind(
        ErrorKind::Closed,
        format!(
            "not sent: close() was called with this input still queued, and for {} s no queued input went out (the server read nothing, or too little); the connection was shut down",
            waited.as_secs()
        ),
    )
}

/// A `DecodeError` wrapping a Python exception raised while decoding.
pub fn decode_from(py: Python<'_>, what: &str, err: PyErr) -> PyErr {
    let detail = describe(py, &err);
    to_py(py, &Error::new(ErrorKind::Decode, format!("{what}: {detail}")))
}

/// `TypeName: message` of a Python exception.
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let name = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_string());
    let value = err.value(py);
    match value.str() {
        Ok(s) if !s.to_string_lossy().is_empty() => format!("{name}: {}", s.to_string_lossy()),
        _ => name,
    }
}
