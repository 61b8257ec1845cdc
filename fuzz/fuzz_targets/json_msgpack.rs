//! The JSON ↔ msgpack conversions: `codec::json_to_msgpack` and
//! `codec::msgpack_to_json` (and `Message::to_json`, `value_to_json`).
//!
//! The input is used twice: as JSON text (lossy UTF-8) and as msgpack bytes.
//!
//! Properties:
//! * nothing panics;
//! * `json_to_msgpack` accepts exactly what serde_json accepts; its output is
//!   accepted by both the scanner and the decoder, and `msgpack_to_json` of it
//!   parses back to a value equal to the original (floats compared loosely);
//!   converting that JSON again gives the same bytes when there are no floats;
//! * `msgpack_to_json` accepts exactly what `decode_value` accepts; when Ok its
//!   output is valid JSON (unless nested deeper than serde_json's parse limit)
//!   equal to `value_to_json` of the decoded value, and `Message::to_json` agrees.
#![no_main]

use fal_realtime::codec;
use fal_realtime::{ErrorKind, Message};
use fuzz_support::{hex, json_depth, json_has_float, json_loose_eq};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    json_side(&String::from_utf8_lossy(data));
    msgpack_side(data);
});

fn json_side(text: &str) {
    let parsed = serde_json::from_str::<serde_json::Value>(text);
    let mp = codec::json_to_msgpack(text);
    let (v, mp) = match (parsed, mp) {
        (Err(_), Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::Encode);
            return;
        }
        (Ok(v), Ok(mp)) => (v, mp),
        (Ok(_), Err(e)) => panic!(
            "json_to_msgpack rejects valid JSON ({}); text {text:?}",
            e.message()
        ),
        (Err(e), Ok(_)) => panic!("json_to_msgpack accepts invalid JSON ({e}); text {text:?}"),
    };
    if let Err(e) = codec::peek(&mp) {
        panic!(
            "the scanner rejects json_to_msgpack output ({}); text {text:?}, msgpack {}",
            e.message(),
            hex(&mp)
        );
    }
    let decoded = codec::decode_value(&mp).expect("the decoder rejects json_to_msgpack output");
    assert!(
        json_loose_eq(&codec::value_to_json(&decoded), &v),
        "value changed; text {text:?}"
    );
    let json = codec::msgpack_to_json(&mp).expect("msgpack_to_json rejects json_to_msgpack output");
    let back: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("msgpack_to_json output is not JSON ({e}): {json:?}; text {text:?}"));
    assert!(
        json_loose_eq(&back, &v),
        "round trip changed the value: {text:?} -> {json:?}"
    );
    if !json_has_float(&v) {
        let again = codec::json_to_msgpack(&json).expect("round-trip JSON rejected");
        assert_eq!(again, mp, "second conversion differs; text {text:?}");
    }
}

fn msgpack_side(data: &[u8]) {
    let decoded = codec::decode_value(data);
    let json = codec::msgpack_to_json(data);
    let (json, decoded) = match (json, decoded) {
        (Err(a), Err(b)) => {
            assert_eq!(a.kind(), ErrorKind::Decode);
            assert_eq!(a.message(), b.message());
            return;
        }
        // Finding 5, fixed: map keys nested in keys past the bound are refused
        // (in linear time) instead of rendered exponentially.
        (Err(a), Ok(d)) if a.message().contains("nested more than") => {
            assert!(
                fuzz_support::nested_key_renderings(&d) > codec::MAX_KEY_NESTING,
                "refused a value within the key-nesting bound; input {}",
                hex(data)
            );
            return;
        }
        (Ok(j), Ok(d)) => {
            assert!(fuzz_support::nested_key_renderings(&d) <= codec::MAX_KEY_NESTING);
            (j, d)
        }
        (j, d) => panic!(
            "msgpack_to_json {:?} vs decode_value {:?}; input {}",
            j.is_ok(),
            d.is_ok(),
            hex(data)
        ),
    };
    let expected = codec::value_to_json(&decoded);
    // The streaming renderer writes duplicate keys as they come; parsed back,
    // they merge as value_to_json merges them (last value, first position).
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(back) => assert!(
            json_loose_eq(&back, &expected),
            "output does not parse back; input {}",
            hex(data)
        ),
        Err(e) => {
            // serde_json refuses to parse more than 128 levels; anything else is a bug.
            let deep = e.to_string().contains("recursion limit exceeded") && json_depth(&expected) > 127;
            assert!(
                deep,
                "msgpack_to_json output is not JSON ({e}): {json:?}; input {}",
                hex(data)
            );
        }
    }
    let m = Message::from_msgpack(data.to_vec());
    assert_eq!(m.to_json().ok().as_deref(), Some(json.as_str()));
    // Compared as bytes: rmpv's `==` says NaN != NaN.
    let value = m
        .to_value()
        .expect("Message::to_value rejects what decode_value accepts");
    assert_eq!(codec::encode_value(&value), codec::encode_value(&decoded));
}
