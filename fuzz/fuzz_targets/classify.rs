//! Arbitrary bytes through the scanner (`codec::peek`), the decoder
//! (`codec::decode_value`) and the classifiers (`classify_binary`,
//! `classify_text`, `classify`).
//!
//! Properties:
//! * nothing panics;
//! * the scanner and the decoder agree on well-formedness (either both accept
//!   the bytes or both reject them);
//! * when both accept, the fields the scanner picked out of a top-level map are
//!   the ones the decoded value has (last occurrence of a key wins);
//! * `classify_binary` says `Undecodable` exactly when the scanner rejects the
//!   bytes, otherwise follows the documented rules from the scanned fields, and
//!   a `Result` keeps the exact input bytes; `classify(Frame::Binary)` agrees;
//! * for UTF-8 input, `classify_text` says `Undecodable` exactly when the text
//!   is not JSON; a `Result` holds the JSON converted to msgpack (equal to
//!   `json_to_msgpack`); and the text frame is classified like the same JSON
//!   sent as a msgpack binary frame; `classify(Frame::Text)` agrees.
#![no_main]

use bytes::Bytes;
use fal_realtime::codec::{self, Frame, Incoming, Peek};
use fal_realtime::ErrorKind;
use fuzz_support::{allow_known, hex, json_loose_eq, known};
use libfuzzer_sys::fuzz_target;
use rmpv::Value as V;

fuzz_target!(|data: &[u8]| {
    check_binary(data);
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
});

fn check_binary(data: &[u8]) {
    let peeked = codec::peek(data);
    let decoded = codec::decode_value(data);
    match (&peeked, &decoded) {
        (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
        (Err(e), Ok(v)) => {
            if !(allow_known() && known::decoder_accepts_reserved_c1(e.message())) {
                panic!(
                    "scanner/decoder disagree: peek rejects ({}) but decode_value accepts {v:?}; input {}",
                    e.message(),
                    hex(data)
                );
            }
        }
        (Ok(p), Err(e)) => {
            if !(allow_known() && known::decoder_depth_limit_lower(e.message())) {
                panic!(
                    "scanner/decoder disagree: peek accepts ({p:?}) but decode_value rejects ({}); input {}",
                    e.message(),
                    hex(data)
                );
            }
        }
    }

    // Finding 5: rendering this value as JSON (a server error body, Debug) takes exponential time.
    if allow_known() && decoded.as_ref().is_ok_and(known::exponential_key_rendering) {
        return;
    }

    let bytes = Bytes::copy_from_slice(data);
    let incoming = codec::classify_binary(bytes.clone());
    assert_eq!(
        incoming,
        codec::classify(Frame::Binary(bytes)),
        "classify(Frame::Binary) differs"
    );

    match &peeked {
        Err(_) => match &incoming {
            Incoming::Undecodable(e) => assert_eq!(e.kind(), ErrorKind::Decode),
            other => panic!("peek rejects {} but classify_binary says {other:?}", hex(data)),
        },
        Ok(p) => {
            check_rules(p, &incoming, data);
            if let Ok(v) = &decoded {
                check_peek_matches_value(p, v, data);
            }
        }
    }
}

/// The documented classification rules, applied to the scanned fields.
fn check_rules(p: &Peek<'_>, incoming: &Incoming, data: &[u8]) {
    let ctx = || format!("peek {p:?}, input {}", hex(data));
    let is = |f: Option<&str>, s: &str| f == Some(s);
    if p.is_map && is(p.type_, "x-fal-message") {
        match incoming {
            Incoming::Control { timing } => {
                assert!(
                    same_f64(*timing, p.timing),
                    "control timing {timing:?}; {}",
                    ctx()
                )
            }
            other => panic!("expected Control, got {other:?}; {}", ctx()),
        }
    } else if p.is_map && is(p.type_, "x-fal-error") && is(p.error, "TIMEOUT") {
        assert!(
            matches!(incoming, Incoming::Timeout),
            "expected Timeout, got {incoming:?}; {}",
            ctx()
        );
    } else if p.is_map && is(p.type_, "x-fal-error") {
        match incoming {
            Incoming::ServerError(e) => {
                let err = p.error.unwrap_or("UNKNOWN_ERROR");
                let want = match p.reason {
                    Some(r) => format!("{err}: {r}"),
                    None => err.to_string(),
                };
                assert_eq!(e.kind(), ErrorKind::Server, "{}", ctx());
                assert_eq!(e.message(), want, "{}", ctx());
                let body = e.body().expect("a server error carries the frame as its body");
                assert_eq!(
                    body,
                    codec::msgpack_to_json(data).unwrap_or_default(),
                    "{}",
                    ctx()
                );
            }
            other => panic!("expected ServerError, got {other:?}; {}", ctx()),
        }
    } else if p.is_map && is(p.status, "error") && is(p.error, "Unauthorized") {
        match incoming {
            Incoming::Unauthorized(e) => {
                assert_eq!(e.kind(), ErrorKind::Auth, "{}", ctx());
                assert_eq!(e.status(), Some(401), "{}", ctx());
                assert!(e.body().is_some(), "{}", ctx());
            }
            other => panic!("expected Unauthorized, got {other:?}; {}", ctx()),
        }
    } else {
        match incoming {
            Incoming::Result(m) => {
                assert_eq!(
                    m.as_bytes(),
                    data,
                    "a Result must keep the exact bytes; {}",
                    ctx()
                );
                assert_eq!(m.request_id(), p.request_id, "{}", ctx());
                assert_eq!(m.clone().into_bytes().as_ref(), data);
                // Decoding on demand must work for every Result (the scanner accepted it).
                let _ = format!("{m:?}");
            }
            other => panic!("expected Result, got {other:?}; {}", ctx()),
        }
    }
}

fn same_f64(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

/// The scanned fields equal what the decoded value has: for each field, the
/// value of the last key that is a valid UTF-8 string equal to its name.
fn check_peek_matches_value(p: &Peek<'_>, v: &V, data: &[u8]) {
    assert_eq!(p.is_map, v.is_map(), "is_map; input {}", hex(data));
    let Some(pairs) = v.as_map() else {
        assert_eq!(
            *p,
            Peek::default(),
            "a non-map has no fields; input {}",
            hex(data)
        );
        return;
    };
    let last = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let str_field = |name: &str| last(name).and_then(|v| v.as_str());
    for (name, got) in [
        ("type", p.type_),
        ("status", p.status),
        ("error", p.error),
        ("reason", p.reason),
        ("request_id", p.request_id),
    ] {
        assert_eq!(got, str_field(name), "field {name}; input {}", hex(data));
    }
    match last("timing") {
        Some(V::F64(f)) => assert!(same_f64(p.timing, Some(*f)), "timing f64; input {}", hex(data)),
        Some(V::F32(f)) => assert!(
            same_f64(p.timing, Some(f64::from(*f))),
            "timing f32; input {}",
            hex(data)
        ),
        // Every integer encoding is read (finding 3, fixed).
        Some(V::Integer(i)) => {
            let want = i.as_u64().map(|u| u as f64).or_else(|| i.as_i64().map(|x| x as f64));
            assert_eq!(p.timing, want, "timing int; input {}", hex(data));
        }
        _ => assert_eq!(p.timing, None, "timing; input {}", hex(data)),
    }
}

fn check_text(text: &str) {
    let parsed = serde_json::from_str::<serde_json::Value>(text);
    let incoming = codec::classify_text(text);
    assert_eq!(
        incoming,
        codec::classify(Frame::Text(text.to_string())),
        "classify(Frame::Text) differs"
    );
    let v = match parsed {
        Err(_) => {
            assert!(
                matches!(&incoming, Incoming::Undecodable(e) if e.kind() == ErrorKind::Decode),
                "not JSON but classify_text says {incoming:?}; text {text:?}"
            );
            return;
        }
        Ok(v) => v,
    };
    let mp = codec::json_to_msgpack(text).expect("json_to_msgpack rejects JSON that serde_json accepts");
    if let Incoming::Result(m) = &incoming {
        assert_eq!(
            m.as_bytes(),
            &mp[..],
            "a text Result is the JSON as msgpack; text {text:?}"
        );
        let back = codec::decode_value(m.as_bytes()).expect("a text Result must decode");
        assert!(
            json_loose_eq(&codec::value_to_json(&back), &v),
            "text Result changed the value; text {text:?}"
        );
    }

    // The same JSON as a binary frame must be classified the same way.
    let bin = codec::classify_binary(mp);
    if !same_class(&incoming, &bin) {
        let explained = allow_known()
            && v.is_object()
            && (known::text_peek_all_or_nothing(text) || known::integer_timing_dropped(&v));
        if !explained {
            panic!("text/binary classification differ: text {incoming:?}, binary {bin:?}; text {text:?}");
        }
    }
}

/// Same classification: same variant, same timing, same error kind and message
/// (bodies differ by design: the text frame vs its JSON rendering).
fn same_class(a: &Incoming, b: &Incoming) -> bool {
    match (a, b) {
        (Incoming::Result(x), Incoming::Result(y)) => x == y,
        (Incoming::Control { timing: x }, Incoming::Control { timing: y }) => same_f64(*x, *y),
        (Incoming::Timeout, Incoming::Timeout) => true,
        (Incoming::ServerError(x), Incoming::ServerError(y))
        | (Incoming::Unauthorized(x), Incoming::Unauthorized(y)) => {
            x.kind() == y.kind() && x.message() == y.message() && x.status() == y.status()
        }
        _ => false,
    }
}
