//! The codec: msgpack encoding, a zero-copy msgpack scanner, message
//! classification and JSON conversions. Pure functions, no I/O.
//!
//! Results are passed through as the server's msgpack bytes, untouched; they are
//! only scanned (not decoded) to classify them.

use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One WebSocket data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A binary frame (msgpack for realtime apps).
    Binary(Bytes),
    /// A text frame.
    Text(String),
}

impl Frame {
    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Binary(b) => b.len(),
            Frame::Text(t) => t.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Frame::Binary(b) => b,
            Frame::Text(t) => t.as_bytes(),
        }
    }
}

/// A result from the server: msgpack bytes, passed through without decoding.
///
/// Cheap to clone (reference-counted). Decode it on demand with
/// [`Message::decode`], [`Message::to_value`] or [`Message::to_json`].
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Bytes,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_json() {
            Ok(j) if j.len() <= 256 => write!(f, "Message({j})"),
            _ => write!(f, "Message({} bytes)", self.bytes.len()),
        }
    }
}

impl Message {
    /// Wrap msgpack bytes.
    pub fn from_msgpack(bytes: impl Into<Bytes>) -> Self {
        Message { bytes: bytes.into() }
    }

    /// The raw msgpack bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw msgpack bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The top-level `request_id` string, if the result is a map that has one.
    pub fn request_id(&self) -> Option<&str> {
        peek(&self.bytes).ok().and_then(|p| p.request_id)
    }

    /// Deserialize into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        rmp_serde::from_slice(&self.bytes)
            .map_err(|e| Error::new(ErrorKind::Decode, format!("could not decode result: {e}")))
    }

    /// Decode into a dynamic msgpack value.
    pub fn to_value(&self) -> Result<rmpv::Value> {
        decode_value(&self.bytes)
    }

    /// Render as JSON text (binary payloads become arrays of byte values).
    pub fn to_json(&self) -> Result<String> {
        msgpack_to_json(&self.bytes)
    }
}

/// Encode any serializable value as msgpack (structs as maps, `serde_bytes` as bin).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(128);
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut buf).with_struct_map())
        .map_err(|e| {
            Error::new(
                ErrorKind::Encode,
                format!("could not encode input as msgpack: {e}"),
            )
        })?;
    Ok(Bytes::from(buf))
}

/// Decode msgpack bytes into a dynamic value; the whole buffer must be one
/// value. Accepts exactly what the scanner ([`peek`]) accepts: the reserved
/// byte 0xc1 and nesting deeper than [`MAX_DEPTH`] are errors in both.
pub fn decode_value(bytes: &[u8]) -> Result<rmpv::Value> {
    peek(bytes)?;
    let mut rd = bytes;
    let v = rmpv::decode::read_value(&mut rd)
        .map_err(|e| Error::new(ErrorKind::Decode, format!("invalid msgpack: {e}")))?;
    if !rd.is_empty() {
        return Err(Error::new(
            ErrorKind::Decode,
            "invalid msgpack: trailing bytes after the value",
        ));
    }
    Ok(v)
}

/// Encode a dynamic value as msgpack.
pub fn encode_value(v: &rmpv::Value) -> Bytes {
    let mut buf = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, v);
    Bytes::from(buf)
}

/// Convert JSON text to msgpack (the easy path for hosts without a msgpack library).
pub fn json_to_msgpack(json: &str) -> Result<Bytes> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::new(ErrorKind::Encode, format!("invalid JSON input: {e}")))?;
    Ok(encode_value(&json_to_value(v)))
}

fn json_to_value(v: serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::Boolean(b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => rmpv::Value::from(s),
        J::Array(a) => rmpv::Value::Array(a.into_iter().map(json_to_value).collect()),
        J::Object(o) => rmpv::Value::Map(
            o.into_iter()
                .map(|(k, v)| (rmpv::Value::from(k), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Render msgpack as JSON text, keeping map keys in their order. Binary
/// becomes an array of byte values; map keys that are not strings are
/// rendered as their JSON text (nested at most [`MAX_KEY_NESTING`] deep: each
/// level escapes the one inside it, so deeper keys would grow exponentially
/// and are a [`ErrorKind::Decode`] error); NaN and infinities become `null`; ext values
/// become `{"ext_type": t, "data": [...]}`. Written straight into the output
/// (no intermediate JSON tree), so memory stays proportional to the output.
pub fn msgpack_to_json(bytes: &[u8]) -> Result<String> {
    let v = decode_value(bytes)?;
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(2).min(1 << 20) + 16);
    write_json(&mut out, &v, 0)?;
    // Only ASCII and serde_json-escaped UTF-8 were written.
    String::from_utf8(out)
        .map_err(|_| Error::new(ErrorKind::Internal, "JSON rendering produced invalid UTF-8"))
}

fn write_str_json(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_u8_array(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'[');
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let b = *b;
        if b >= 100 {
            out.push(b'0' + b / 100);
        }
        if b >= 10 {
            out.push(b'0' + (b / 10) % 10);
        }
        out.push(b'0' + b % 10);
    }
    out.push(b']');
}

fn write_f64_json(out: &mut Vec<u8>, f: f64) {
    use std::io::Write;
    match serde_json::Number::from_f64(f) {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// How deep map keys that are not strings may nest inside such keys when
/// rendered as JSON.
pub const MAX_KEY_NESTING: usize = 4;

fn write_json(out: &mut Vec<u8>, v: &rmpv::Value, key_nesting: usize) -> Result<()> {
    use rmpv::Value as V;
    use std::io::Write;
    match v {
        V::Nil => out.extend_from_slice(b"null"),
        V::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        V::Integer(i) => {
            let _ = match i.as_u64() {
                Some(u) => write!(out, "{u}"),
                None => write!(out, "{}", i.as_i64().unwrap_or_default()),
            };
        }
        V::F32(f) => write_f64_json(out, f64::from(*f)),
        V::F64(f) => write_f64_json(out, *f),
        V::String(s) => match s.as_str() {
            Some(t) => write_str_json(out, t),
            None => write_str_json(out, &String::from_utf8_lossy(s.as_bytes())),
        },
        V::Binary(b) => write_u8_array(out, b),
        V::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, x, key_nesting)?;
            }
            out.push(b']');
        }
        V::Map(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    V::String(s) => match s.as_str() {
                        Some(t) => write_str_json(out, t),
                        None => write_str_json(out, &String::from_utf8_lossy(s.as_bytes())),
                    },
                    other => {
                        if key_nesting >= MAX_KEY_NESTING {
                            return Err(Error::new(
                                ErrorKind::Decode,
                                format!(
                                    "map keys nested more than {MAX_KEY_NESTING} deep inside other map keys cannot be rendered as JSON"
                                ),
                            ));
                        }
                        let mut key = Vec::new();
                        write_json(&mut key, other, key_nesting + 1)?;
                        write_str_json(out, &String::from_utf8_lossy(&key));
                    }
                }
                out.push(b':');
                write_json(out, x, key_nesting)?;
            }
            out.push(b'}');
        }
        V::Ext(t, data) => {
            let _ = write!(out, "{{\"ext_type\":{t},\"data\":");
            write_u8_array(out, data);
            out.push(b'}');
        }
    }
    Ok(())
}

/// Check that `bytes` are exactly one well-formed msgpack value (what every
/// `send_msgpack` requires); [`ErrorKind::Encode`] otherwise.
pub fn validate_input(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::new(
            ErrorKind::Encode,
            "the input is empty; it must be one msgpack value",
        ));
    }
    peek(bytes).map(|_| ()).map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            format!("the input is not one well-formed msgpack value: {}", e.message()),
        )
    })
}

/// Convert a msgpack value to a JSON value (lossy for bin and ext; a map key
/// nested deeper than [`MAX_KEY_NESTING`] inside other keys becomes
/// `"<map key nested too deep>"`).
pub fn value_to_json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as V;
    use serde_json::Value as J;
    match v {
        V::Nil => J::Null,
        V::Boolean(b) => J::Bool(*b),
        V::Integer(i) => {
            if let Some(u) = i.as_u64() {
                J::from(u)
            } else {
                J::from(i.as_i64().unwrap_or_default())
            }
        }
        V::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        V::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        V::String(s) => J::String(s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        )),
        V::Binary(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        V::Array(a) => J::Array(a.iter().map(value_to_json).collect()),
        V::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        V::String(s) => s.as_str().map_or_else(
                            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
                            str::to_string,
                        ),
                        // The same text (and nesting bound) as `msgpack_to_json`.
                        other => {
                            let mut key = Vec::new();
                            match write_json(&mut key, other, 1) {
                                Ok(()) => String::from_utf8_lossy(&key).into_owned(),
                                Err(_) => "<map key nested too deep>".to_string(),
                            }
                        }
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        V::Ext(t, data) => serde_json::json!({ "ext_type": t, "data": data }),
    }
}

// ---------------------------------------------------------------------------
// Zero-copy scanner

/// The deepest nesting of arrays and maps accepted anywhere (the top-level
/// value is depth 0). Below the decoder's own limit, so the scanner and the
/// decoder agree on every input.
pub const MAX_DEPTH: usize = 256;

/// Fields of a top-level map that matter for classification, borrowed from the frame.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Peek<'a> {
    /// Whether the top-level value is a map.
    pub is_map: bool,
    /// `type`
    pub type_: Option<&'a str>,
    /// `status`
    pub status: Option<&'a str>,
    /// `error`
    pub error: Option<&'a str>,
    /// `reason`
    pub reason: Option<&'a str>,
    /// `request_id`
    pub request_id: Option<&'a str>,
    /// `timing` (seconds)
    pub timing: Option<f64>,
}

struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> Error {
    Error::new(ErrorKind::Decode, "invalid msgpack: truncated frame")
}

impl<'a> Scanner<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<usize> {
        let s = self.take(n)?;
        Ok(s.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
    }

    /// Read a string if the next value is one, else skip the value and return None.
    fn str_or_skip(&mut self) -> Result<Option<&'a str>> {
        let start = self.pos;
        let m = self.byte()?;
        let len = match m {
            0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 => self.uint(1)?,
            0xda => self.uint(2)?,
            0xdb => self.uint(4)?,
            _ => {
                self.pos = start;
                self.skip(1)?;
                return Ok(None);
            }
        };
        let s = self.take(len)?;
        Ok(std::str::from_utf8(s).ok())
    }

    fn f64_or_skip(&mut self) -> Result<Option<f64>> {
        let start = self.pos;
        let m = self.byte()?;
        let v = match m {
            0xca => {
                let s = self.take(4)?;
                Some(f32::from_be_bytes([s[0], s[1], s[2], s[3]]) as f64)
            }
            0xcb => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Some(f64::from_be_bytes(a))
            }
            0x00..=0x7f => Some(m as f64),
            0xe0..=0xff => Some((m as i8) as f64),
            0xcc..=0xcf => {
                let n = 1usize << (m - 0xcc);
                let s = self.take(n)?;
                Some(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) as f64)
            }
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let s = self.take(n)?;
                let u = s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                // Sign-extend from n bytes.
                let shift = 64 - 8 * n as u32;
                Some((((u << shift) as i64) >> shift) as f64)
            }
            _ => {
                self.pos = start;
                self.skip(1)?;
                None
            }
        };
        Ok(v)
    }

    /// Skip one value; `depth` guards against hostile nesting.
    fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::new(ErrorKind::Decode, "invalid msgpack: nesting too deep"));
        }
        let m = self.byte()?;
        let (skip_bytes, items) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (m & 0x0f) as usize),
            0x90..=0x9f => (0, (m & 0x0f) as usize),
            0xa0..=0xbf => ((m & 0x1f) as usize, 0),
            0xc1 => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    "invalid msgpack: reserved byte 0xc1",
                ))
            }
            0xc4 | 0xd9 => (self.uint(1)?, 0),
            0xc5 | 0xda => (self.uint(2)?, 0),
            0xc6 | 0xdb => (self.uint(4)?, 0),
            0xc7 => (self.uint(1)? + 1, 0),
            0xc8 => (self.uint(2)? + 1, 0),
            0xc9 => (self.uint(4)? + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, self.uint(2)?),
            0xdd => (0, self.uint(4)?),
            0xde => (0, 2 * self.uint(2)?),
            0xdf => (0, 2usize.saturating_mul(self.uint(4)?)),
        };
        self.take(skip_bytes)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn map_len(&mut self) -> Result<Option<usize>> {
        let start = self.pos;
        let m = self.byte()?;
        let n = match m {
            0x80..=0x8f => (m & 0x0f) as usize,
            0xde => self.uint(2)?,
            0xdf => self.uint(4)?,
            _ => {
                self.pos = start;
                return Ok(None);
            }
        };
        Ok(Some(n))
    }
}

/// Scan a msgpack frame: validate it is exactly one well-formed value, and pick
/// the classification fields out of a top-level map without decoding anything else.
pub fn peek(buf: &[u8]) -> Result<Peek<'_>> {
    let mut sc = Scanner { buf, pos: 0 };
    let mut p = Peek::default();
    match sc.map_len()? {
        Some(n) => {
            p.is_map = true;
            for _ in 0..n {
                match sc.str_or_skip()? {
                    Some("type") => p.type_ = sc.str_or_skip()?,
                    Some("status") => p.status = sc.str_or_skip()?,
                    Some("error") => p.error = sc.str_or_skip()?,
                    Some("reason") => p.reason = sc.str_or_skip()?,
                    Some("request_id") => p.request_id = sc.str_or_skip()?,
                    Some("timing") => p.timing = sc.f64_or_skip()?,
                    _ => sc.skip(1)?,
                }
            }
        }
        None => sc.skip(0)?,
    }
    if sc.pos != buf.len() {
        return Err(Error::new(
            ErrorKind::Decode,
            "invalid msgpack: trailing bytes after the value",
        ));
    }
    Ok(p)
}

/// What an incoming frame means.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A result for the caller.
    Result(Message),
    /// An `x-fal-message` control message; `timing` in seconds when it carries one.
    Control {
        /// The server's processing time, if this was a timings message.
        timing: Option<f64>,
    },
    /// `x-fal-error` `TIMEOUT`: the server closes an idle session. Not an error.
    Timeout,
    /// Any other `x-fal-error`: reported to the caller.
    ServerError(Error),
    /// `{"status":"error","error":"Unauthorized"}`: drop the token and close.
    Unauthorized(Error),
    /// The frame could not be decoded (not msgpack / not JSON); the
    /// connection stays up.
    Undecodable(Error),
}

fn classify_peek(p: &Peek<'_>, body: impl FnOnce() -> String) -> Option<Incoming> {
    if !p.is_map {
        return None;
    }
    match p.type_ {
        Some("x-fal-message") => return Some(Incoming::Control { timing: p.timing }),
        Some("x-fal-error") => {
            if p.error == Some("TIMEOUT") {
                return Some(Incoming::Timeout);
            }
            let err = p.error.unwrap_or("UNKNOWN_ERROR");
            let msg = match p.reason {
                Some(r) => format!("{err}: {r}"),
                None => err.to_string(),
            };
            return Some(Incoming::ServerError(
                Error::new(ErrorKind::Server, msg).with_body(body()),
            ));
        }
        _ => {}
    }
    if p.status == Some("error") && p.error == Some("Unauthorized") {
        return Some(Incoming::Unauthorized(
            Error::new(ErrorKind::Auth, "Unauthorized: the server rejected the token")
                .with_status(401)
                .with_body(body()),
        ));
    }
    None
}

/// Classify a binary (msgpack) frame. Results keep the original bytes.
pub fn classify_binary(bytes: Bytes) -> Incoming {
    let control = match peek(&bytes) {
        Ok(p) => classify_peek(&p, || msgpack_to_json(&bytes).unwrap_or_default()),
        Err(e) => {
            return Incoming::Undecodable(Error::new(
                ErrorKind::Decode,
                format!(
                    "could not decode a binary frame from the server ({} bytes): {}",
                    bytes.len(),
                    e.message()
                ),
            ))
        }
    };
    control.unwrap_or(Incoming::Result(Message { bytes }))
}

/// Classify a text (JSON) frame. A JSON result is converted to msgpack.
pub fn classify_text(text: &str) -> Incoming {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Undecodable(Error::new(
                ErrorKind::Decode,
                format!("could not decode a text frame from the server as JSON: {e}"),
            ))
        }
    };
    if let Some(obj) = value.as_object() {
        // Field by field, as the binary scanner does: a field of an unexpected
        // type is ignored on its own (duplicates: the last one counts, in both).
        let s = |k: &str| obj.get(k).and_then(serde_json::Value::as_str);
        let p = Peek {
            is_map: true,
            type_: s("type"),
            status: s("status"),
            error: s("error"),
            reason: s("reason"),
            request_id: None,
            timing: obj.get("timing").and_then(serde_json::Value::as_f64),
        };
        if let Some(c) = classify_peek(&p, || text.to_string()) {
            return c;
        }
    }
    Incoming::Result(Message {
        bytes: encode_value(&json_to_value(value)),
    })
}

/// Classify any frame.
pub fn classify(frame: Frame) -> Incoming {
    match frame {
        Frame::Binary(b) => classify_binary(b),
        Frame::Text(t) => classify_text(&t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mp(v: serde_json::Value) -> Bytes {
        encode_value(&json_to_value(v))
    }

    #[test]
    fn results_pass_through_untouched() {
        let b = mp(json!({"request_id": "r1", "images": [1, 2, 3], "nested": {"type": "inner"}}));
        match classify_binary(b.clone()) {
            Incoming::Result(m) => {
                assert_eq!(m.as_bytes(), &b[..]);
                assert_eq!(m.request_id(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
        // Non-map values are results too.
        assert!(matches!(classify_binary(mp(json!([1, 2]))), Incoming::Result(_)));
    }

    #[test]
    fn control_messages() {
        let b = mp(json!({"type": "x-fal-message", "action": "timings", "timing": 0.012}));
        assert_eq!(classify_binary(b), Incoming::Control { timing: Some(0.012) });
        let t = r#"{"type":"x-fal-message","action":"timings","timing":0.5}"#;
        assert_eq!(classify_text(t), Incoming::Control { timing: Some(0.5) });
    }

    #[test]
    fn timeout_is_silent_and_errors_are_reported() {
        let t = r#"{"type":"x-fal-error","error":"TIMEOUT","reason":"no inputs, reconnect when needed!"}"#;
        assert_eq!(classify_text(t), Incoming::Timeout);
        let t = r#"{"type":"x-fal-error","error":"INTERNAL_ERROR","reason":"boom"}"#;
        match classify_text(t) {
            Incoming::ServerError(e) => {
                assert_eq!(e.kind(), ErrorKind::Server);
                assert_eq!(e.message(), "INTERNAL_ERROR: boom");
                assert_eq!(e.body(), Some(t));
            }
            other => panic!("{other:?}"),
        }
        let b = mp(json!({"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": "bin"}));
        match classify_binary(b) {
            Incoming::ServerError(e) => {
                assert_eq!(e.message(), "INTERNAL_ERROR: bin");
                assert!(e.body().unwrap().contains("\"reason\":\"bin\""));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unauthorized() {
        let t = r#"{"status":"error","error":"Unauthorized"}"#;
        assert!(matches!(classify_text(t), Incoming::Unauthorized(e) if e.kind() == ErrorKind::Auth));
        let b = mp(json!({"status": "error", "error": "Unauthorized"}));
        assert!(matches!(classify_binary(b), Incoming::Unauthorized(_)));
        // Other statuses are results.
        assert!(matches!(classify_text(r#"{"status":"ok"}"#), Incoming::Result(_)));
    }

    #[test]
    fn undecodable_frames() {
        assert!(matches!(
            classify_binary(Bytes::from_static(&[0xc1])),
            Incoming::Undecodable(_)
        ));
        assert!(matches!(
            classify_binary(Bytes::from_static(&[0x92, 0x01])),
            Incoming::Undecodable(_)
        ));
        assert!(matches!(
            classify_binary(Bytes::from_static(&[0x01, 0x02])),
            Incoming::Undecodable(_)
        ));
        assert!(matches!(classify_binary(Bytes::new()), Incoming::Undecodable(_)));
        // Hostile length prefixes do not allocate or panic.
        assert!(matches!(
            classify_binary(Bytes::from_static(&[0xdf, 0xff, 0xff, 0xff, 0xff])),
            Incoming::Undecodable(_)
        ));
        assert!(matches!(
            classify_binary(Bytes::from_static(&[0xdb, 0xff, 0xff, 0xff, 0xff])),
            Incoming::Undecodable(_)
        ));
        let deep = vec![0x91u8; 10_000];
        assert!(matches!(
            classify_binary(Bytes::from(deep)),
            Incoming::Undecodable(_)
        ));
        assert!(matches!(classify_text("not json"), Incoming::Undecodable(_)));
    }

    #[test]
    fn text_results_become_msgpack() {
        match classify_text(r#"{"a":1,"b":"x"}"#) {
            Incoming::Result(m) => assert_eq!(m.to_json().unwrap(), r#"{"a":1,"b":"x"}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_conversions_keep_key_order() {
        let j = r#"{"zeta":1,"alpha":{"y":2,"b":3},"mid":[{"q":1,"a":2}]}"#;
        let m = json_to_msgpack(j).unwrap();
        assert_eq!(msgpack_to_json(&m).unwrap(), j);
        match classify_text(j) {
            Incoming::Result(r) => assert_eq!(r.to_json().unwrap(), j),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_rendering_of_every_type() {
        let v = rmpv::Value::Map(vec![
            (
                rmpv::Value::from("b"),
                rmpv::Value::Binary(vec![0, 9, 10, 99, 100, 255]),
            ),
            (rmpv::Value::from(7), rmpv::Value::from("s\"q\n")),
            (rmpv::Value::from("nan"), rmpv::Value::F64(f64::NAN)),
            (rmpv::Value::from("f"), rmpv::Value::F32(1.5)),
            (rmpv::Value::from("neg"), rmpv::Value::from(-3)),
            (rmpv::Value::from("e"), rmpv::Value::Ext(2, vec![1])),
            (
                rmpv::Value::from("a"),
                rmpv::Value::Array(vec![rmpv::Value::Nil, true.into()]),
            ),
        ]);
        let j = msgpack_to_json(&encode_value(&v)).unwrap();
        assert_eq!(
            j,
            r#"{"b":[0,9,10,99,100,255],"7":"s\"q\n","nan":null,"f":1.5,"neg":-3,"e":{"ext_type":2,"data":[1]},"a":[null,true]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(parsed["b"][5], 255);
    }

    #[test]
    fn fuzz_findings_stay_fixed() {
        // 1a: the reserved byte is rejected by the decoder as by the scanner.
        assert!(decode_value(&[0xc1]).is_err());
        // 1b: nesting: accepted by both up to MAX_DEPTH, rejected by both past it.
        let deep = |n: usize| {
            let mut v = vec![0x91u8; n];
            v.push(0x01);
            v
        };
        assert!(peek(&deep(MAX_DEPTH)).is_ok() && decode_value(&deep(MAX_DEPTH)).is_ok());
        assert!(peek(&deep(MAX_DEPTH + 1)).is_err() && decode_value(&deep(MAX_DEPTH + 1)).is_err());
        let mut in_map = vec![0x81, 0xa1, b'a'];
        in_map.extend(deep(MAX_DEPTH));
        assert_eq!(peek(&in_map).is_ok(), decode_value(&in_map).is_ok());
        // 2: one field of another type does not hide the others in text frames.
        let t = r#"{"type":"x-fal-error","error":"INTERNAL_ERROR","status":5}"#;
        assert!(matches!(classify_text(t), Incoming::ServerError(_)));
        let t = r#"{"type":"x-fal-message","type":"x-fal-error","error":"TIMEOUT"}"#;
        assert_eq!(
            classify_text(t),
            classify_binary(json_to_msgpack(t).unwrap_or_else(|_| mp(json!({}))))
        );
        // 3: integer timings are read in binary frames as in text frames.
        for timing in [200, -1, 70000] {
            let j = json!({"type": "x-fal-message", "timing": timing});
            let b = classify_binary(mp(j.clone()));
            assert_eq!(b, classify_text(&j.to_string()));
            assert_eq!(
                b,
                Incoming::Control {
                    timing: Some(timing as f64)
                }
            );
        }
        // 5: keys nested in keys: bounded, an error past the bound, never exponential.
        let mut v = rmpv::Value::from(1);
        for _ in 0..40 {
            v = rmpv::Value::Map(vec![(v, rmpv::Value::Nil)]);
        }
        let e = msgpack_to_json(&encode_value(&v)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        let _ = value_to_json(&v);
        let mut ok = rmpv::Value::from(1);
        for _ in 0..MAX_KEY_NESTING {
            ok = rmpv::Value::Map(vec![(ok, rmpv::Value::Nil)]);
        }
        assert!(msgpack_to_json(&encode_value(&ok)).is_ok());
    }

    #[test]
    fn input_validation() {
        assert!(validate_input(&mp(json!({"a": 1}))).is_ok());
        for bad in [&[][..], &[0xc1], &[0x92, 0x01], &[0x01, 0x02]] {
            assert_eq!(
                validate_input(bad).unwrap_err().kind(),
                ErrorKind::Encode,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn scanner_handles_every_type() {
        let v = rmpv::Value::Map(vec![
            (rmpv::Value::from("bin"), rmpv::Value::Binary(vec![0; 300])),
            (rmpv::Value::from("f32"), rmpv::Value::F32(1.5)),
            (rmpv::Value::from("neg"), rmpv::Value::from(-70000i64)),
            (rmpv::Value::from("big"), rmpv::Value::from(u64::MAX)),
            (rmpv::Value::from("ext"), rmpv::Value::Ext(5, vec![1, 2, 3, 4])),
            (rmpv::Value::from(7), rmpv::Value::Nil),
            (rmpv::Value::from("long"), rmpv::Value::from("x".repeat(70000))),
            (
                rmpv::Value::from("arr"),
                rmpv::Value::Array(vec![rmpv::Value::Boolean(true); 20]),
            ),
            (rmpv::Value::from("request_id"), rmpv::Value::from("rid")),
        ]);
        let b = encode_value(&v);
        let p = peek(&b).unwrap();
        assert_eq!(p.request_id, Some("rid"));
        assert_eq!(decode_value(&b).unwrap(), v);
    }

    #[test]
    fn encode_and_json_round_trip() {
        #[derive(serde::Serialize)]
        struct In<'a> {
            prompt: &'a str,
            #[serde(with = "serde_bytes_compat")]
            image: Vec<u8>,
        }
        mod serde_bytes_compat {
            pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let b = encode(&In {
            prompt: "cat",
            image: vec![1, 2],
        })
        .unwrap();
        let v = decode_value(&b).unwrap();
        assert_eq!(v["prompt"].as_str(), Some("cat"));
        assert_eq!(v["image"], rmpv::Value::Binary(vec![1, 2]));
        let j = json_to_msgpack(r#"{"x":[1,-2,3.5,null,true,"s"]}"#).unwrap();
        assert_eq!(msgpack_to_json(&j).unwrap(), r#"{"x":[1,-2,3.5,null,true,"s"]}"#);
        assert!(json_to_msgpack("{").is_err());
    }
}
