//! Helpers shared by the fuzz targets: loose JSON comparison, nesting depth,
//! and the switch for findings that were already reported (see tests/FUZZING.md).

use rmpv::Value as V;
use serde_json::Value as J;
use std::sync::OnceLock;

/// Whether already-reported findings are tolerated: `FUZZ_ALLOW_KNOWN=1`.
///
/// Off by default, so a target fails on every known finding until the core is
/// fixed. With it on, each target skips exactly the inputs that a `known::*`
/// predicate explains, and keeps failing on anything else.
pub fn allow_known() -> bool {
    static FLAG: OnceLock<bool> = OnceLock::new();
    *FLAG.get_or_init(|| {
        matches!(
            std::env::var("FUZZ_ALLOW_KNOWN").as_deref(),
            Ok("1" | "true" | "yes")
        )
    })
}

/// Hex of (at most the first 256 bytes of) `data`, for panic messages.
pub fn hex(data: &[u8]) -> String {
    let mut s: String = data.iter().take(256).map(|b| format!("{b:02x}")).collect();
    if data.len() > 256 {
        s.push_str(&format!("… ({} bytes)", data.len()));
    }
    s
}

/// Two JSON numbers are equal: exactly for integers, within a relative 1e-12
/// for floats (serde_json's default float parser may be 1 ulp off).
pub fn num_loose_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => {
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan())
        }
        _ => false,
    }
}

/// Structural JSON equality with loose floats; iterative (no recursion limit).
pub fn json_loose_eq(a: &J, b: &J) -> bool {
    let mut stack = vec![(a, b)];
    while let Some((a, b)) = stack.pop() {
        match (a, b) {
            (J::Null, J::Null) => {}
            (J::Bool(x), J::Bool(y)) if x == y => {}
            (J::Number(x), J::Number(y)) if num_loose_eq(x, y) => {}
            (J::String(x), J::String(y)) if x == y => {}
            (J::Array(x), J::Array(y)) if x.len() == y.len() => stack.extend(x.iter().zip(y)),
            (J::Object(x), J::Object(y)) if x.len() == y.len() => {
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => stack.push((v, w)),
                        None => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// Whether a JSON value contains a float anywhere.
pub fn json_has_float(v: &J) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            J::Number(n) if n.is_f64() => return true,
            J::Array(a) => stack.extend(a),
            J::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    false
}

/// Nesting depth of a JSON value (a scalar is 0, `[]` is 1).
pub fn json_depth(v: &J) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            J::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            J::Object(o) => {
                max = max.max(d + 1);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// How many times `codec::value_to_json` renders a map key inside a map key
/// (a non-string key is rendered as JSON text, which is then escaped again as
/// the key of the map around it): the largest number of non-string keys
/// crossed on any path from the root. Each one can double the output length.
/// Iterative (no recursion limit).
pub fn nested_key_renderings(v: &V) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, n)) = stack.pop() {
        max = max.max(n);
        match v {
            V::Array(a) => stack.extend(a.iter().map(|x| (x, n))),
            V::Map(m) => {
                for (k, x) in m {
                    stack.push((x, n));
                    if !k.is_str() {
                        stack.push((k, n + 1));
                    }
                }
            }
            _ => {}
        }
    }
    max
}

/// Predicates for findings that were reported and not yet fixed in the core.
/// Each one is as narrow as the finding; `allow_known()` decides whether they apply.
pub mod known {
    use serde_json::Value as J;

    /// Finding 1a (scanner vs decoder): `codec::decode_value` (rmpv) decodes the
    /// reserved marker 0xc1 as nil, while `codec::peek` rejects it. Applies only
    /// when the scanner's own error names that byte.
    pub fn decoder_accepts_reserved_c1(scanner_error: &str) -> bool {
        scanner_error.contains("reserved byte 0xc1")
    }

    /// Finding 1b (scanner vs decoder): the two nesting limits differ. rmpv's
    /// limit of 1024 counts about two per array/map level (and three for a string
    /// leaf), so it rejects 512 nested arrays; the scanner allows 512 levels,
    /// counted afresh inside each value of a top-level map. Applies only when the
    /// decoder's error is its depth limit.
    pub fn decoder_depth_limit_lower(decoder_error: &str) -> bool {
        decoder_error.contains("depth limit exceeded")
    }

    /// The classification fields of a JSON text frame, read all or nothing,
    /// like the codec's text path does.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct AllOrNothing {
        #[serde(rename = "type", default)]
        type_: Option<String>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        timing: Option<f64>,
    }

    /// Finding 2 (text vs binary classification): `classify_text` reads the
    /// classification fields with one typed deserialization, so a single field of
    /// an unexpected type (e.g. `"status": 5`) or a duplicated field makes it ignore
    /// all of them, while the binary path skips just that field.
    pub fn text_peek_all_or_nothing(text: &str) -> bool {
        serde_json::from_str::<AllOrNothing>(text).is_err()
    }

    /// Finding 3 (text vs binary classification): the binary scanner reads
    /// `timing` only as float32/float64 or a positive fixint (0..=127); any other
    /// integer encoding (what `json_to_msgpack` produces for e.g. `200` or `-1`)
    /// is dropped, so the same control message has a timing as text and none as binary.
    pub fn integer_timing_dropped(v: &J) -> bool {
        match v.get("timing") {
            Some(J::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u > 127,
                (None, Some(_)) => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// Finding 5 (exponential JSON rendering): `codec::value_to_json` renders a
    /// non-string map key as JSON text, so keys nested inside keys are escaped
    /// once per level and the output (and time) doubles per level: 45 bytes of
    /// msgpack take seconds, 60 bytes minutes and gigabytes. Reached through
    /// `msgpack_to_json`, `Message::to_json`, `Message`'s `Debug`, and the body
    /// of every `x-fal-error` frame in `classify_binary`. The targets skip the
    /// rendering when more than this many nested key renderings would happen
    /// (at most 2^8 = 256 times the input size, harmless).
    pub const MAX_KEY_RENDERINGS: usize = 8;

    /// Whether rendering `v` as JSON is in finding 5's exponential range.
    pub fn exponential_key_rendering(v: &rmpv::Value) -> bool {
        super::nested_key_renderings(v) > MAX_KEY_RENDERINGS
    }

    /// Finding 4 (redaction): `endpoint::redact_url` redacts only the first
    /// `fal_jwt_token=` in the URL. When the host or the id/path (which may contain
    /// `=` and `&`) contains that text, the real token in the query is left in the
    /// "redacted" URL.
    pub fn redaction_marker_before_query(url_without_token: &str) -> bool {
        url_without_token.contains("fal_jwt_token=")
    }
}
