//! Data views: results (`fal_rt_message`), raw frames (`fal_rt_frame`) and the
//! output buffer the token, encode and decode callbacks write into (`fal_rt_buffer`).

use super::*;
use crate::codec::{Frame, Message};

/// A result from the app: the server's msgpack bytes, untouched.
///
/// Ownership: a message passed to `on_result` (`const fal_rt_message*`) is
/// borrowed for the duration of the call; keep it with `fal_rt_message_clone`
/// (cheap: reference-counted, no copy). A message from `fal_rt_session_recv`
/// is owned by the caller. Free owned messages with `fal_rt_message_free`.
/// Immutable: may be read from any thread.
pub struct fal_rt_message {
    pub(crate) msg: Message,
}

/// The raw msgpack bytes of `message` (zero-copy: a pointer into the library's
/// buffer, valid as long as `message`). Writes their length to `*out_len`.
/// Returns NULL (and writes nothing) if an argument is NULL.
///
/// # Safety
/// `message` is NULL or valid; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_message_data(
    message: *const fal_rt_message,
    out_len: *mut usize,
) -> *const u8 {
    boundary_value(std::ptr::null(), || {
        let Some(m) = message.as_ref() else {
            return std::ptr::null();
        };
        if out_len.is_null() {
            return std::ptr::null();
        }
        let b = m.msg.as_bytes();
        put(out_len, b.len());
        b.as_ptr()
    })
}

/// The top-level `request_id` string of the result, if it is a map that has
/// one: a pointer into the message bytes (zero-copy, valid as long as
/// `message`), NOT NUL-terminated; its length goes to `*out_len`. NULL (and
/// nothing written) if there is none or an argument is NULL.
///
/// # Safety
/// `message` is NULL or valid; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_message_request_id(
    message: *const fal_rt_message,
    out_len: *mut usize,
) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        let (Some(m), false) = (message.as_ref(), out_len.is_null()) else {
            return std::ptr::null();
        };
        match m.msg.request_id() {
            Some(id) => {
                put(out_len, id.len());
                id.as_ptr() as *const c_char
            }
            None => std::ptr::null(),
        }
    })
}

/// Render the result as JSON text (for hosts without a msgpack library; binary
/// payloads become arrays of byte values). On success writes a new
/// NUL-terminated string to `*out_json` (free it with `fal_rt_string_free`)
/// and, if `out_len` is not NULL, its length without the NUL to `*out_len`.
/// `FAL_RT_DECODE` if the bytes are not valid msgpack.
///
/// # Safety
/// `message` is NULL or valid; `out_json` is NULL or writable; `out_len` is
/// NULL or writable; `out_error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_message_to_json(
    message: *const fal_rt_message,
    out_json: *mut *mut c_char,
    out_len: *mut usize,
    out_error: *mut *mut fal_rt_error,
) -> fal_rt_result {
    boundary(out_error, || {
        let m = &*not_null(message, "message")?;
        not_null(out_json, "out_json")?;
        let json = m.msg.to_json()?;
        let len = json.len();
        // JSON text never contains a NUL byte (it would be escaped).
        let c = c_string_lossy(&json);
        put(out_json, c.into_raw());
        if !out_len.is_null() {
            put(out_len, len);
        }
        Ok(())
    })
}

/// An owned reference to the same message (no copy of the bytes). Free it with
/// `fal_rt_message_free`. NULL if `message` is NULL.
///
/// # Safety
/// `message` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_message_clone(message: *const fal_rt_message) -> *mut fal_rt_message {
    boundary_value(std::ptr::null_mut(), || match message.as_ref() {
        Some(m) => Box::into_raw(Box::new(fal_rt_message { msg: m.msg.clone() })),
        None => std::ptr::null_mut(),
    })
}

/// Free an owned message (from `fal_rt_session_recv` or `fal_rt_message_clone`).
/// Accepts NULL. Never pass a message borrowed by a callback.
///
/// # Safety
/// `message` is NULL or an owned message not freed before.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_message_free(message: *mut fal_rt_message) {
    boundary_value((), || {
        if !message.is_null() {
            drop(Box::from_raw(message));
        }
    })
}

/// One raw WebSocket data frame from `fal_rt_ws_recv`, owned by the caller
/// (free it with `fal_rt_frame_free`). Immutable: may be read from any thread.
pub struct fal_rt_frame {
    pub(crate) frame: Frame,
}

/// The payload of `frame` (for text frames: UTF-8, NOT NUL-terminated), valid
/// as long as `frame`; its length goes to `*out_len`. NULL (and nothing
/// written) if an argument is NULL.
///
/// # Safety
/// `frame` is NULL or valid; `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_frame_data(frame: *const fal_rt_frame, out_len: *mut usize) -> *const u8 {
    boundary_value(std::ptr::null(), || {
        let (Some(f), false) = (frame.as_ref(), out_len.is_null()) else {
            return std::ptr::null();
        };
        let b = f.frame.as_bytes();
        put(out_len, b.len());
        b.as_ptr()
    })
}

/// Whether `frame` is a text frame (false for binary frames and NULL).
///
/// # Safety
/// `frame` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_frame_is_text(frame: *const fal_rt_frame) -> bool {
    boundary_value(false, || {
        frame.as_ref().is_some_and(|f| matches!(f.frame, Frame::Text(_)))
    })
}

/// Free a frame from `fal_rt_ws_recv`. Accepts NULL.
///
/// # Safety
/// `frame` is NULL or an owned frame not freed before.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_frame_free(frame: *mut fal_rt_frame) {
    boundary_value((), || {
        if !frame.is_null() {
            drop(Box::from_raw(frame));
        }
    })
}

/// An output buffer owned by the library, lent to a token-provider, encode or
/// decode callback for the duration of the call. The callback appends its
/// output with `fal_rt_buffer_append` (and marks an encoded frame as text with
/// `fal_rt_buffer_set_text`). Never keep it after the callback returns.
pub struct fal_rt_buffer {
    pub(crate) data: Vec<u8>,
    pub(crate) text: bool,
}

impl fal_rt_buffer {
    pub(crate) fn new() -> Self {
        fal_rt_buffer {
            data: Vec::new(),
            text: false,
        }
    }
}

/// Append `len` bytes at `data` to `buffer`. `data` may be NULL only if `len` is 0.
///
/// # Safety
/// `buffer` is NULL or the buffer lent to the running callback; `data` points
/// to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_buffer_append(
    buffer: *mut fal_rt_buffer,
    data: *const u8,
    len: usize,
) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let b = &mut *(not_null(buffer, "buffer")? as *mut fal_rt_buffer);
        b.data.extend_from_slice(bytes_arg(data, len, "data")?);
        Ok(())
    })
}

/// Mark the frame an encode callback produced as a text frame (`true`) or a
/// binary frame (`false`, the default). Text must be UTF-8. Ignored for token
/// and decode outputs.
///
/// # Safety
/// `buffer` is NULL or the buffer lent to the running callback.
#[no_mangle]
pub unsafe extern "C" fn fal_rt_buffer_set_text(buffer: *mut fal_rt_buffer, text: bool) -> fal_rt_result {
    boundary(std::ptr::null_mut(), || {
        let b = &mut *(not_null(buffer, "buffer")? as *mut fal_rt_buffer);
        b.text = text;
        Ok(())
    })
}
