//! Endpoint rules: `parse_app_id`, `resolve_path`, `validate_max_buffering`,
//! `encode_path`, `encode_query_value`, `build_ws_url`, `redact_url`, `split_scheme`.
//!
//! Properties:
//! * nothing panics;
//! * an accepted app id is well formed (non-empty owner and alias, a `/` in the
//!   id, no empty segment, no whitespace/control/`?`/`#`) and round-trips: parsing
//!   the normalised id gives the same `AppId`; a rejected one is an
//!   InvalidArgument error with the documented message;
//! * a resolved path is empty or starts with exactly one `/`; an explicit path
//!   is used as given (minus leading slashes); the realtime default is never doubled;
//! * `validate_max_buffering` accepts exactly 1..=60;
//! * percent-encoding round-trips and leaves no reserved character unescaped;
//! * `build_ws_url` has the documented shape; `redact_url` of it equals the URL
//!   built with `***` as the token, and never contains the token text when the
//!   token is at least 8 characters of [A-Za-z0-9] (and not part of the rest of the URL);
//! * `split_scheme` splits at the first `://` and loses nothing.
#![no_main]

use fal_realtime::endpoint::{self, DefaultPath};
use fal_realtime::ErrorKind;
use fuzz_support::{allow_known, known};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// The input, in a line format so seeds and dictionaries stay readable:
/// one flags byte, then `app`, `path`, `scheme`, `host`, `token`,
/// `max_buffering` lines, and the rest (newlines allowed) is a raw URL/path.
/// Flags: bit 0 path is set, bit 1 realtime default, bit 2 token is set,
/// bit 3 max_buffering is set. Missing lines are empty.
#[derive(Debug)]
struct Input<'a> {
    app: Cow<'a, str>,
    path: Option<Cow<'a, str>>,
    realtime_default: bool,
    scheme: Cow<'a, str>,
    host: Cow<'a, str>,
    token: Option<Cow<'a, str>>,
    max_buffering: Option<i64>,
    raw_url: Cow<'a, str>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let mut it = rest.splitn(7, |b| *b == b'\n');
        let mut next = || String::from_utf8_lossy(it.next().unwrap_or_default());
        let app = next();
        let path = next();
        let scheme = next();
        let host = next();
        let token = next();
        let mb = next();
        let raw_url = next();
        let max_buffering = mb.trim().parse::<i64>().unwrap_or_else(|_| {
            let mut a = [0u8; 8];
            let b = mb.as_bytes();
            a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            i64::from_le_bytes(a)
        });
        Some(Input {
            app,
            path: (flags & 1 != 0).then_some(path),
            realtime_default: flags & 2 != 0,
            scheme,
            host,
            token: (flags & 4 != 0).then_some(token),
            max_buffering: (flags & 8 != 0).then_some(max_buffering),
            raw_url,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let id_and_path = check_app_id(&input);
    check_encoding(&input.app);
    if let Some(p) = &input.path {
        check_encoding(p);
    }
    check_encoding(&input.raw_url);
    let mb = check_max_buffering(input.max_buffering);
    // Both a normalised id+path and a raw string (callers of ws_connect pass paths through).
    check_url(&input, &id_and_path.unwrap_or_else(|| input.app.to_string()), mb);
    check_url(&input, &input.raw_url, mb);
    check_split_scheme(&input.host);
    check_split_scheme(&input.raw_url);
    let _ = endpoint::redact_url(&input.raw_url);
});

fn check_app_id(input: &Input<'_>) -> Option<String> {
    let app: &str = &input.app;
    let parsed = match endpoint::parse_app_id(app) {
        Ok(a) => a,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{app:?}");
            assert!(
                e.message().contains("Must be in the format <appOwner>/<appId>"),
                "{app:?}"
            );
            return None;
        }
    };
    assert!(
        !parsed.owner.is_empty() && !parsed.alias.is_empty(),
        "{app:?} -> {parsed:?}"
    );
    assert!(parsed.id.contains('/'), "{app:?} -> {parsed:?}");
    assert!(
        parsed.id.split('/').all(|s| !s.is_empty()),
        "{app:?} -> {parsed:?}"
    );
    assert!(
        !parsed
            .id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#'),
        "{app:?} -> {parsed:?}"
    );
    assert!(
        !parsed.owner.contains('/') && !parsed.alias.contains('/'),
        "{app:?} -> {parsed:?}"
    );
    let segments: Vec<&str> = parsed.id.split('/').collect();
    assert!(
        segments
            .windows(2)
            .any(|w| w[0] == parsed.owner && w[1] == parsed.alias),
        "owner/alias are adjacent segments of the id: {app:?} -> {parsed:?}"
    );
    if app.contains('/') {
        assert_eq!(parsed.id, app, "ids with a slash are used as given");
    }
    let again = endpoint::parse_app_id(&parsed.id)
        .unwrap_or_else(|e| panic!("normalised id {:?} rejected: {}", parsed.id, e.message()));
    assert_eq!(again, parsed, "normalisation is not stable for {app:?}");

    let default = if input.realtime_default {
        DefaultPath::Realtime
    } else {
        DefaultPath::None
    };
    let resolved = endpoint::resolve_path(&parsed, input.path.as_deref(), default);
    assert!(
        resolved.is_empty() || (resolved.starts_with('/') && !resolved.starts_with("//")),
        "{resolved:?}"
    );
    let explicit = input
        .path
        .as_deref()
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !p.is_empty());
    match (explicit, default) {
        (Some(p), _) => assert_eq!(resolved, format!("/{p}")),
        (None, DefaultPath::None) => assert_eq!(resolved, ""),
        (None, DefaultPath::Realtime) => {
            let full = format!("{}{resolved}", parsed.id);
            assert!(full.ends_with("/realtime"), "{full:?}");
            assert!(
                !full.ends_with("/realtime/realtime") || parsed.id.ends_with("/realtime/realtime"),
                "default doubled: {full:?}"
            );
        }
    }
    Some(format!("{}{resolved}", parsed.id))
}

fn check_max_buffering(n: Option<i64>) -> Option<u8> {
    match (n, endpoint::validate_max_buffering(n)) {
        (None, Ok(None)) => None,
        (Some(v), Ok(Some(b))) if (1..=60).contains(&v) && i64::from(b) == v => Some(b),
        (Some(v), Err(e)) if !(1..=60).contains(&v) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains("between 1 and 60"));
            None
        }
        (n, r) => panic!("validate_max_buffering({n:?}) = {r:?}"),
    }
}

fn check_encoding(s: &str) {
    let p = endpoint::encode_path(s);
    assert_eq!(
        percent_decode_str(&p).decode_utf8().ok().as_deref(),
        Some(s),
        "encode_path round trip"
    );
    assert_eq!(
        p.matches('/').count(),
        s.matches('/').count(),
        "encode_path keeps exactly the slashes"
    );
    assert!(
        !p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "?#\"<>`{}\\^|[]".contains(c)),
        "encode_path left a reserved character: {p:?}"
    );
    assert!(!p.contains('%') || valid_escapes(&p), "{p:?}");
    let q = endpoint::encode_query_value(s);
    assert_eq!(
        percent_decode_str(&q).decode_utf8().ok().as_deref(),
        Some(s),
        "encode_query_value round trip"
    );
    assert!(
        !q.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "?#&=+;/\"<>`{}\\^|[]".contains(c)),
        "encode_query_value left a reserved character: {q:?}"
    );
    assert!(!q.contains('%') || valid_escapes(&q), "{q:?}");
}

/// Every `%` starts a `%XX` escape (so a literal `%` was escaped too).
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().filter(|(_, c)| **c == b'%').all(|(i, _)| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

fn check_url(input: &Input<'_>, id_and_path: &str, mb: Option<u8>) {
    let (scheme, host, token) = (&*input.scheme, &*input.host, input.token.as_deref());
    let url = endpoint::build_ws_url(scheme, host, id_and_path, token, mb);
    let base = format!("{scheme}://{host}/{}", endpoint::encode_path(id_and_path));
    assert!(url.starts_with(&base), "{url:?} does not start with {base:?}");
    let mut query = Vec::new();
    if let Some(t) = token {
        query.push(format!("fal_jwt_token={}", endpoint::encode_query_value(t)));
    }
    if let Some(n) = mb {
        query.push(format!("max_buffering={n}"));
    }
    let want = if query.is_empty() {
        base.clone()
    } else {
        format!("{base}?{}", query.join("&"))
    };
    assert_eq!(url, want);

    let redacted = endpoint::redact_url(&url);
    let Some(token) = token else {
        // No token: nothing to redact unless the rest of the URL has the marker.
        if !url.contains("fal_jwt_token=") {
            assert_eq!(redacted, url);
        }
        return;
    };
    let without_token = endpoint::build_ws_url(scheme, host, id_and_path, None, mb);
    let marker_elsewhere = known::redaction_marker_before_query(&without_token);
    if !marker_elsewhere {
        let want = endpoint::build_ws_url(scheme, host, id_and_path, Some("***"), mb);
        assert_eq!(redacted, want, "redaction is not exactly the token");
    }
    let plain_token = token.len() >= 8 && token.bytes().all(|b| b.is_ascii_alphanumeric());
    let empty_token_url = endpoint::build_ws_url(scheme, host, id_and_path, Some(""), mb);
    let leaks = plain_token && !empty_token_url.contains(token) && redacted.contains(token);
    if leaks && !(allow_known() && marker_elsewhere) {
        panic!("redact_url leaks the token: {url:?} -> {redacted:?}");
    }
}

fn check_split_scheme(s: &str) {
    match endpoint::split_scheme(s) {
        (Some(scheme), rest) => {
            assert!(!scheme.contains("://"), "split at the first :// of {s:?}");
            assert_eq!(format!("{scheme}://{rest}"), s);
        }
        (None, rest) => {
            assert!(!s.contains("://"));
            assert_eq!(rest, s);
        }
    }
}
