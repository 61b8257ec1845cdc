//! Endpoint rules: app id normalisation, path resolution and URL building.
//! Pure functions, no I/O.

use crate::error::{Error, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Characters escaped in a path segment (RFC 3986 `pchar` complement).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Characters escaped in a query value.
const QUERY_VALUE: &AsciiSet = &PATH_SEGMENT.add(b'&').add(b'=').add(b'+').add(b';');

/// Namespaces whose ids are `namespace/owner/alias[/sub/path]`.
const NAMESPACES: &[&str] = &["workflows", "comfy"];

/// A normalised app id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppId {
    /// The id as it appears in the URL path, e.g. `123/myapp` or `owner/app/sub`.
    pub id: String,
    /// The app owner, e.g. `fal-ai`.
    pub owner: String,
    /// The app alias (the name tokens are scoped to), e.g. `fast-sdxl`.
    pub alias: String,
}

fn invalid_id(app: &str) -> Error {
    Error::invalid(format!(
        "Invalid app id: {app}. Must be in the format <appOwner>/<appId>"
    ))
}

/// Parse and normalise an app id.
///
/// * `owner/app[/sub/path]` is used as given;
/// * `workflows/owner/alias[/...]` and `comfy/owner/alias[/...]` take owner and alias from the 2nd and 3rd segments;
/// * a legacy id `123-myapp` becomes `123/myapp`;
/// * anything else is an [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error.
pub fn parse_app_id(app: &str) -> Result<AppId> {
    if app.is_empty()
        || app
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(invalid_id(app));
    }
    if app.contains('/') {
        let segments: Vec<&str> = app.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(invalid_id(app));
        }
        let (owner, alias) = if NAMESPACES.contains(&segments[0]) {
            if segments.len() < 3 {
                return Err(invalid_id(app));
            }
            (segments[1], segments[2])
        } else {
            (segments[0], segments[1])
        };
        return Ok(AppId {
            id: app.to_string(),
            owner: owner.to_string(),
            alias: alias.to_string(),
        });
    }
    // Legacy: ^([0-9]+)-([a-zA-Z0-9-]+)$
    let digits = app.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &app[digits..];
    if digits > 0 {
        if let Some(name) = rest.strip_prefix('-') {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                let owner = &app[..digits];
                return Ok(AppId {
                    id: format!("{owner}/{name}"),
                    owner: owner.to_string(),
                    alias: name.to_string(),
                });
            }
        }
    }
    Err(invalid_id(app))
}

/// Which default applies when no explicit path is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPath {
    /// Realtime: append `/realtime` unless the id already ends with it.
    Realtime,
    /// Raw `ws_connect`: no path.
    None,
}

/// Resolve the path appended to the id: an explicit non-empty path gets exactly
/// one leading `/`; otherwise the default applies, never doubling `/realtime`.
pub fn resolve_path(app: &AppId, path: Option<&str>, default: DefaultPath) -> String {
    match path {
        Some(p) if !p.trim_start_matches('/').is_empty() => {
            format!("/{}", p.trim_start_matches('/'))
        }
        _ => match default {
            DefaultPath::Realtime if !app.id.ends_with("/realtime") => "/realtime".to_string(),
            _ => String::new(),
        },
    }
}

/// Validate `max_buffering`: an integer in 1..=60.
pub fn validate_max_buffering(n: Option<i64>) -> Result<Option<u8>> {
    match n {
        None => Ok(None),
        Some(v) if (1..=60).contains(&v) => Ok(Some(v as u8)),
        Some(v) => Err(Error::invalid(format!(
            "max_buffering must be an integer between 1 and 60, got {v}"
        ))),
    }
}

/// Percent-encode each segment of a `/`-separated path, keeping the slashes.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| utf8_percent_encode(s, PATH_SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-encode a query value.
pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

/// Build the WebSocket URL: `{scheme}://{host}/{id}{path}?fal_jwt_token={token}[&max_buffering={n}]`.
pub fn build_ws_url(
    scheme: &str,
    host: &str,
    id_and_path: &str,
    token: Option<&str>,
    max_buffering: Option<u8>,
) -> String {
    let mut url = format!("{scheme}://{host}/{}", encode_path(id_and_path));
    let mut sep = '?';
    if let Some(t) = token {
        url.push(sep);
        url.push_str("fal_jwt_token=");
        url.push_str(&encode_query_value(t));
        sep = '&';
    }
    if let Some(n) = max_buffering {
        url.push(sep);
        url.push_str("max_buffering=");
        url.push_str(&n.to_string());
    }
    url
}

/// Replace the token in a URL with `***`, for logs.
pub fn redact_url(url: &str) -> String {
    const MARK: &str = "fal_jwt_token=";
    // Every occurrence: the host or the path may contain the marker too, and
    // the real token must not survive behind a decoy.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find(MARK) {
        let start = i + MARK.len();
        out.push_str(&rest[..start]);
        out.push_str("***");
        let tail = &rest[start..];
        // The value ends where a query value we built cannot go on: `&`, `#`,
        // and (in error text around a URL) `"` or white space, all of which
        // `build_ws_url` percent-encodes inside a token.
        let end = tail
            .find(|c: char| c == '&' || c == '#' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Split an optional `scheme://` prefix off a host or base URL.
pub fn split_scheme(s: &str) -> (Option<&str>, &str) {
    match s.find("://") {
        Some(i) => (Some(&s[..i]), &s[i + 3..]),
        None => (None, s),
    }
}

/// Whether `authority` (`host`, `host:port`, `[v6]`, `[v6]:port` or a bare
/// IPv6 address) names this machine: `localhost`, an address in
/// `127.0.0.0/8`, or `::1`. The only hosts plain `ws://` / `http://` may
/// reach without opting in to insecure transport: a token sent in clear over
/// the loopback interface never leaves the machine.
pub fn is_loopback_host(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &rest[..end],
            None => return false,
        }
    } else if authority.matches(':').count() == 1 {
        authority.split(':').next().unwrap_or("")
    } else {
        authority
    };
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AppId {
        parse_app_id(s).unwrap()
    }

    #[test]
    fn redaction_covers_every_token_marker() {
        let u = "wss://h/a/fal_jwt_token=decoy/realtime?fal_jwt_token=SECRET123&max_buffering=2";
        let r = redact_url(u);
        assert!(!r.contains("SECRET123"), "{r}");
        assert!(r.ends_with("&max_buffering=2"), "{r}");
        let e = redact_url("error for ws://h/x?fal_jwt_token=abc def");
        assert_eq!(e, "error for ws://h/x?fal_jwt_token=*** def");
        assert_eq!(redact_url("no token here"), "no token here");
        // Characters a token may carry unencoded do not end the redaction.
        let u = build_ws_url("wss", "h", "a/b", Some("x'y!z(1)"), None);
        assert_eq!(redact_url(&u), "wss://h/a/b?fal_jwt_token=***");
    }

    #[test]
    fn ids_with_slash_are_used_as_given() {
        let a = id("fal-ai/fast-sdxl");
        assert_eq!(
            (a.id.as_str(), a.owner.as_str(), a.alias.as_str()),
            ("fal-ai/fast-sdxl", "fal-ai", "fast-sdxl")
        );
        let a = id("owner/app/sub/path");
        assert_eq!((a.id.as_str(), a.alias.as_str()), ("owner/app/sub/path", "app"));
    }

    #[test]
    fn namespaced_ids() {
        let a = id("workflows/me/my-flow/extra");
        assert_eq!((a.owner.as_str(), a.alias.as_str()), ("me", "my-flow"));
        assert_eq!(a.id, "workflows/me/my-flow/extra");
        let a = id("comfy/me/graph");
        assert_eq!((a.owner.as_str(), a.alias.as_str()), ("me", "graph"));
        assert!(parse_app_id("workflows/me").is_err());
    }

    #[test]
    fn legacy_ids() {
        let a = id("123-myapp");
        assert_eq!(
            (a.id.as_str(), a.owner.as_str(), a.alias.as_str()),
            ("123/myapp", "123", "myapp")
        );
        assert_eq!(id("42-my-app-2").id, "42/my-app-2");
        for bad in [
            "myapp",
            "123",
            "123-",
            "-app",
            "12a-app",
            "123-my_app",
            "",
            "a b/c",
            "a//b",
            "/a",
            "a/",
            "a/b?x",
        ] {
            let e = parse_app_id(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains("Must be in the format <appOwner>/<appId>"));
        }
    }

    #[test]
    fn path_resolution() {
        let a = id("owner/app");
        assert_eq!(resolve_path(&a, None, DefaultPath::Realtime), "/realtime");
        assert_eq!(resolve_path(&a, Some(""), DefaultPath::Realtime), "/realtime");
        assert_eq!(resolve_path(&a, Some("ws"), DefaultPath::Realtime), "/ws");
        assert_eq!(resolve_path(&a, Some("///ws/x"), DefaultPath::Realtime), "/ws/x");
        assert_eq!(resolve_path(&a, None, DefaultPath::None), "");
        let r = id("owner/app/realtime");
        assert_eq!(resolve_path(&r, None, DefaultPath::Realtime), "");
        assert_eq!(
            resolve_path(&r, Some("/realtime"), DefaultPath::Realtime),
            "/realtime"
        );
    }

    #[test]
    fn max_buffering_bounds() {
        assert_eq!(validate_max_buffering(None).unwrap(), None);
        assert_eq!(validate_max_buffering(Some(1)).unwrap(), Some(1));
        assert_eq!(validate_max_buffering(Some(60)).unwrap(), Some(60));
        for bad in [0, -1, 61, 1000] {
            let e = validate_max_buffering(Some(bad)).unwrap_err();
            assert!(e.message().contains("between 1 and 60"));
        }
    }

    #[test]
    fn url_building_and_encoding() {
        assert_eq!(
            build_ws_url("wss", "fal.run", "123/myapp/realtime", Some("a b&c=d"), Some(5)),
            "wss://fal.run/123/myapp/realtime?fal_jwt_token=a%20b%26c%3Dd&max_buffering=5"
        );
        assert_eq!(
            build_ws_url("ws", "127.0.0.1:8080", "o/a", None, Some(2)),
            "ws://127.0.0.1:8080/o/a?max_buffering=2"
        );
        assert_eq!(build_ws_url("wss", "h", "o/a b", None, None), "wss://h/o/a%20b");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("wss://h/a?fal_jwt_token=SECRET&max_buffering=3"),
            "wss://h/a?fal_jwt_token=***&max_buffering=3"
        );
        assert_eq!(
            redact_url("wss://h/a?fal_jwt_token=SECRET"),
            "wss://h/a?fal_jwt_token=***"
        );
    }

    #[test]
    fn scheme_split() {
        assert_eq!(split_scheme("ws://h:1"), (Some("ws"), "h:1"));
        assert_eq!(split_scheme("fal.run"), (None, "fal.run"));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.9.8.7:1",
            "localhost",
            "LOCALHOST:443",
            "[::1]",
            "[::1]:8080",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "fal.run",
            "10.0.0.1:80",
            "128.0.0.1",
            "192.168.1.1:8080",
            "localhost.example.com",
            "127.0.0.1.nip.io:80",
            "[::2]:80",
            "[::ffff:127.0.0.1]:80",
            "[::1",
            "",
            "0.0.0.0:80",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
