//! Python-supplied hooks: `decode_message`, `encode_message` and `token_provider`.

use crate::errors;
use bytes::Bytes;
use fal_realtime::codec;
use fal_realtime::{Error, ErrorKind, Frame, Message, TokenFuture, TokenProvider};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// `decode_message`: called with the payload of every binary frame.
///
/// The object it returns is parked in a process-wide table and the core gets a
/// 10-byte placeholder (msgpack ext type 127 holding the table key), which it
/// classifies as a result; [`message_to_py`] swaps the placeholder for the
/// object. Control messages returned by the hook (`x-fal-error`, …) are
/// re-encoded so the core handles them as usual. Text frames keep the default
/// JSON handling, as in `fal_client`.
pub struct DecodeHook {
    func: Py<PyAny>,
}

const PLACEHOLDER_EXT: u8 = 0x7f;

static PARKED: Mutex<Option<HashMap<u64, Py<PyAny>>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn park(obj: Py<PyAny>) -> Bytes {
    // A salted counter: a placeholder cannot be guessed by a server.
    static SALT: OnceLock<u64> = OnceLock::new();
    let salt = *SALT.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ (std::process::id() as u64).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15
    });
    let id = NEXT_ID
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ salt;
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(id, obj);
    let mut v = Vec::with_capacity(10);
    v.push(0xd7);
    v.push(PLACEHOLDER_EXT);
    v.extend_from_slice(&id.to_be_bytes());
    Bytes::from(v)
}

fn unpark(bytes: &[u8]) -> Option<Py<PyAny>> {
    if bytes.len() != 10 || bytes[0] != 0xd7 || bytes[1] != PLACEHOLDER_EXT {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[2..]);
    PARKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()?
        .remove(&u64::from_be_bytes(id))
}

impl DecodeHook {
    pub fn new(func: Py<PyAny>) -> Arc<Self> {
        Arc::new(DecodeHook { func })
    }

    /// The core decoder that calls this hook.
    pub fn decoder(self: &Arc<Self>) -> fal_realtime::Decoder {
        let hook = self.clone();
        Arc::new(move |frame: Frame| hook.decode(frame))
    }

    fn decode(&self, frame: Frame) -> fal_realtime::Result<Bytes> {
        match frame {
            Frame::Text(t) => codec::json_to_msgpack(&t),
            Frame::Binary(b) => Python::attach(|py| {
                let arg = crate::msgpack::new_bytes(py, &b).map_err(|e| py_decode_error(py, e))?;
                let obj = self
                    .func
                    .bind(py)
                    .call1((arg,))
                    .map_err(|e| py_decode_error(py, e))?;
                if let Some(control) = control_message(&obj) {
                    return Ok(control);
                }
                Ok(park(obj.unbind()))
            }),
        }
    }
}

fn py_decode_error(py: Python<'_>, e: PyErr) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("decode_message raised {}", errors::describe(py, &e)),
    )
}

/// If `obj` is a control message (`x-fal-message`, `x-fal-error`,
/// `Unauthorized`), its msgpack for the core to classify.
fn control_message(obj: &Bound<'_, PyAny>) -> Option<Bytes> {
    let d = obj.cast::<PyDict>().ok()?;
    let get = |k: &str| -> Option<String> {
        d.get_item(k).ok().flatten().and_then(|v| {
            v.cast::<PyString>()
                .ok()
                .map(|s| s.to_string_lossy().into_owned())
        })
    };
    let ty = get("type");
    let control = matches!(ty.as_deref(), Some("x-fal-message") | Some("x-fal-error"))
        || (get("status").as_deref() == Some("error") && get("error").as_deref() == Some("Unauthorized"));
    if !control {
        return None;
    }
    match crate::msgpack::pack(obj) {
        Ok(v) => Some(Bytes::from(v)),
        Err(_) => {
            // Keep only the fields that matter for classification.
            let py = obj.py();
            let slim = PyDict::new(py);
            for k in ["type", "status", "error", "reason", "action", "timing"] {
                if let Ok(Some(v)) = d.get_item(k) {
                    let _ = slim.set_item(k, v);
                }
            }
            crate::msgpack::pack(slim.as_any()).ok().map(Bytes::from)
        }
    }
}

/// A result → its Python object: the `decode_message` result it stands for,
/// or the msgpack decoded.
pub fn message_to_py<'py>(py: Python<'py>, m: &Message) -> PyResult<Bound<'py, PyAny>> {
    let b = m.as_bytes();
    if b.len() == 10 && b[1] == PLACEHOLDER_EXT {
        if let Some(obj) = unpark(b) {
            return Ok(obj.into_bound(py));
        }
    }
    crate::msgpack::unpack(py, b)
}

/// `encode_message` (or the built-in encoder) applied to an input.
///
/// Without a hook every input is encoded as msgpack, `bytes` as a msgpack
/// `bin` (as `fal_client` does; pre-encoded msgpack goes through
/// [`msgpack_frame`]). With a hook: its `bytes` go out as a binary frame, its
/// `str` as a text frame.
pub fn encode_input(py: Python<'_>, input: &Bound<'_, PyAny>, hook: Option<&Py<PyAny>>) -> PyResult<Frame> {
    match hook {
        None => Ok(Frame::Binary(Bytes::from(crate::msgpack::pack(input)?))),
        Some(f) => {
            let out = f.bind(py).call1((input,))?;
            frame_from_py(&out).map_err(|_| {
                errors::of_kind(
                    ErrorKind::Encode,
                    "encode_message must return bytes (a binary frame) or str (a text frame)",
                )
            })
        }
    }
}

/// A Python `bytes` object lent to the core without copying: `bytes` are
/// immutable and their buffer lives as long as the object, which this keeps.
struct LentBytes {
    _obj: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// The buffer is immutable and owned by `_obj`; dropping a `Py` without the GIL
// defers the decref to pyo3's reference pool.
unsafe impl Send for LentBytes {}
unsafe impl Sync for LentBytes {}

impl AsRef<[u8]> for LentBytes {
    fn as_ref(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The contents of a `bytes`: borrowed when large, copied when small.
fn bytes_of(b: &Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < 16 * 1024 {
        return Bytes::copy_from_slice(data);
    }
    Bytes::from_owner(LentBytes {
        ptr: data.as_ptr(),
        len: data.len(),
        _obj: b.clone().unbind(),
    })
}

/// `send_msgpack(data)`: pre-encoded msgpack (`bytes`, `bytearray` or
/// `memoryview`) sent as one binary frame, as is (no `encode_message`). It
/// must be exactly one well-formed msgpack value (`EncodeError` otherwise),
/// so that the server never sees half a value.
pub fn msgpack_frame(data: &Bound<'_, PyAny>) -> PyResult<Frame> {
    let frame = match data.cast::<PyString>() {
        Ok(_) => None,
        Err(_) => frame_from_py(data).ok(),
    };
    let Some(Frame::Binary(bytes)) = frame else {
        return Err(errors::of_kind(
            ErrorKind::Encode,
            "send_msgpack takes bytes, bytearray or memoryview holding one msgpack value",
        ));
    };
    codec::validate_input(&bytes).map_err(|e| errors::to_py_attach(&e))?;
    Ok(Frame::Binary(bytes))
}

/// `bytes`/`bytearray`/`memoryview` → binary frame, `str` → text frame.
pub fn frame_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Frame> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Frame::Binary(bytes_of(b)));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Frame::Text(s.to_cow()?.into_owned()));
    }
    if let Ok(b) = obj.cast::<pyo3::types::PyByteArray>() {
        return Ok(Frame::Binary(Bytes::from(b.to_vec())));
    }
    if obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        return Ok(Frame::Binary(Bytes::copy_from_slice(
            b.cast::<PyBytes>()?.as_bytes(),
        )));
    }
    Err(pyo3::exceptions::PyTypeError::new_err("expected bytes or str"))
}

/// A frame → `bytes` or `str`.
pub fn frame_to_py(py: Python<'_>, f: Frame) -> PyResult<Bound<'_, PyAny>> {
    match f {
        Frame::Binary(b) => Ok(crate::msgpack::new_bytes(py, &b)?.into_any()),
        Frame::Text(t) => Ok(PyString::new(py, &t).into_any()),
    }
}

/// A Python token provider: `provider(app) -> str`, or an awaitable of it.
///
/// Sync providers run on a blocking thread of the runtime; awaitables run on
/// the event loop that was running when the connection was made (if any), else
/// in a fresh event loop on that blocking thread.
pub struct PyTokenProvider {
    func: Arc<Py<PyAny>>,
    event_loop: Option<Arc<Py<PyAny>>>,
}

impl PyTokenProvider {
    pub fn new(func: Py<PyAny>, event_loop: Option<Py<PyAny>>) -> Self {
        PyTokenProvider {
            func: Arc::new(func),
            event_loop: event_loop.map(Arc::new),
        }
    }
}

impl TokenProvider for PyTokenProvider {
    fn token(&self, app: &str) -> TokenFuture {
        let func = self.func.clone();
        let event_loop = self.event_loop.clone();
        let app = app.to_string();
        Box::pin(async move {
            let call = move || {
                Python::attach(|py| -> fal_realtime::Result<String> {
                    let helper = crate::util::support(py)
                        .and_then(|m| m.getattr("_call_token_provider"))
                        .map_err(|e| Error::new(ErrorKind::Internal, errors::describe(py, &e)))?;
                    let lp = match &event_loop {
                        Some(l) => l.bind(py).clone(),
                        None => py.None().into_bound(py),
                    };
                    let out = helper
                        .call1((func.bind(py), app, lp))
                        .map_err(|e| Error::new(ErrorKind::TokenProvider, errors::describe(py, &e)))?;
                    out.extract::<String>().map_err(|_| {
                        Error::new(ErrorKind::TokenProvider, "the token provider must return a str")
                    })
                })
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => h
                    .spawn_blocking(call)
                    .await
                    .map_err(|_| Error::new(ErrorKind::TokenProvider, "the token provider panicked"))?,
                Err(_) => call(),
            }
        })
    }
}
