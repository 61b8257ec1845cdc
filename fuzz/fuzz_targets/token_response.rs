//! The token endpoint's response: `auth::parse_token_response`.
//!
//! Properties:
//! * nothing panics;
//! * Ok means the input is JSON and the token is non-empty and is the input's
//!   value: the top-level string, else the object's `token` string, else its
//!   `detail` string; when the input has no escapes the token's bytes appear
//!   in it verbatim;
//! * Err is an Http error (the endpoint misbehaved) whose body is the input (lossy UTF-8), and happens
//!   exactly when no such token exists.
#![no_main]

use fal_realtime::auth;
use fal_realtime::ErrorKind;
use fuzz_support::hex;
use libfuzzer_sys::fuzz_target;
use serde_json::Value as J;

fuzz_target!(|data: &[u8]| {
    let expected = serde_json::from_slice::<J>(data)
        .ok()
        .and_then(|v| expected_token(&v));
    match auth::parse_token_response(data) {
        Ok(token) => {
            assert!(!token.is_empty(), "empty token from {}", hex(data));
            assert_eq!(Some(&token), expected.as_ref(), "wrong token from {}", hex(data));
            if !data.contains(&b'\\') {
                let found = data.windows(token.len()).any(|w| w == token.as_bytes());
                assert!(found, "token {token:?} is not in the input {}", hex(data));
            }
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Http);
            assert_eq!(expected, None, "a token was there in {}", hex(data));
            assert_eq!(e.body(), Some(String::from_utf8_lossy(data).as_ref()));
        }
    }
});

/// The documented rule: a JSON string, or an object's `token` (or legacy
/// `detail`) string; the first of these that is a string is the token, and it
/// must not be empty.
fn expected_token(v: &J) -> Option<String> {
    let s = match v {
        J::String(s) => Some(s),
        J::Object(o) => match (o.get("token"), o.get("detail")) {
            (Some(J::String(t)), _) => Some(t),
            (_, Some(J::String(d))) => Some(d),
            _ => None,
        },
        _ => None,
    };
    s.filter(|s| !s.is_empty()).cloned()
}
