//! Credentials and short-lived tokens: the default token endpoint
//! (`POST {rest}/tokens/`), response parsing, retry with capped exponential
//! backoff and jitter, and host-supplied token providers.

use crate::error::{Error, ErrorKind, Result};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// API credentials: `FAL_KEY`, or `FAL_KEY_ID` + `FAL_KEY_SECRET` joined as `id:secret`.
///
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// Credentials from a key (`FAL_KEY` format).
    pub fn key(key: impl Into<String>) -> Self {
        Credentials { key: key.into() }
    }

    /// Credentials from a key id and secret.
    pub fn id_secret(id: &str, secret: &str) -> Self {
        Credentials {
            key: format!("{id}:{secret}"),
        }
    }

    /// From `FAL_KEY`, or `FAL_KEY_ID` + `FAL_KEY_SECRET`; `None` if neither is set.
    pub fn from_env() -> Option<Self> {
        if let Ok(k) = std::env::var("FAL_KEY") {
            if !k.is_empty() {
                return Some(Credentials::key(k));
            }
        }
        match (std::env::var("FAL_KEY_ID"), std::env::var("FAL_KEY_SECRET")) {
            (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => {
                Some(Credentials::id_secret(&id, &secret))
            }
            _ => None,
        }
    }

    /// The `Authorization` header value: `Key {key}`.
    pub(crate) fn header_value(&self) -> String {
        format!("Key {}", self.key)
    }
}

/// A future returned by a [`TokenProvider`].
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String>> + Send>>;

/// A host-supplied source of tokens. Called with the normalised `{id}{path}`
/// (e.g. `123/myapp/realtime`). Must be thread-safe; may be called from any
/// runtime thread.
pub trait TokenProvider: Send + Sync + 'static {
    /// Fetch a token for `app`.
    fn token(&self, app: &str) -> TokenFuture;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String>> + Send + 'static,
{
    fn token(&self, app: &str) -> TokenFuture {
        Box::pin(self(app.to_string()))
    }
}

/// Parse the token endpoint's response: a JSON string, or an object with
/// `token` (or legacy `detail`). Anything else is an [`ErrorKind::Http`]
/// error (the endpoint misbehaved; the key is not the problem) with the body.
pub fn parse_token_response(body: &[u8]) -> Result<String> {
    let bad = || {
        Error::new(
            ErrorKind::Http,
            "the token endpoint returned an unexpected response (no token in it)",
        )
        .with_body(String::from_utf8_lossy(body).into_owned())
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let token = match &v {
        serde_json::Value::String(s) => Some(s.as_str()),
        serde_json::Value::Object(o) => o
            .get("token")
            .and_then(|t| t.as_str())
            .or_else(|| o.get("detail").and_then(|t| t.as_str())),
        _ => None,
    };
    match token {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(bad()),
    }
}

/// Whether a token-endpoint status is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Backoff before retry number `attempt` (0-based): 250 ms doubling, capped at
/// 4 s, with jitter in [50 %, 100 %] of that. `unit` is a random number in [0, 1).
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1u32 << attempt.min(10));
    let capped = base.min(Duration::from_secs(4));
    // NaN would panic in `mul_f64`: treat it as 0.
    let unit = if unit.is_nan() { 0.0 } else { unit.clamp(0.0, 1.0) };
    capped.mul_f64(0.5 + 0.5 * unit)
}

/// The JSON body of a token request.
pub fn token_request_body(alias: &str, expiration_secs: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "allowed_apps": [alias],
        "token_expiration": expiration_secs,
    }))
    .unwrap_or_default()
}

/// The message of a missing-credentials error: the variables named as
/// `fal_client` names them.
pub const MISSING_CREDENTIALS: &str =
    "No credentials found. Set FAL_KEY (or FAL_KEY_ID/FAL_KEY_SECRET), or pass a key or a token provider.";

/// What a failed token request said, for the error message: the `detail` of
/// a JSON body (what `fal_client` shows), or a short plain-text body; at most
/// 200 characters on one line.
pub(crate) fn error_detail(body: &str) -> Option<String> {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(o)) => match o.get("detail") {
            Some(serde_json::Value::String(d)) => d.clone(),
            _ => return None,
        },
        Ok(serde_json::Value::String(d)) => d,
        Ok(_) => return None,
        Err(_) if body.contains('<') => return None,
        Err(_) => body.to_string(),
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return None;
    }
    Some(match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    })
}

/// The `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("fal-realtime/", env!("CARGO_PKG_VERSION"), " (rust)");

/// Where tokens come from.
#[derive(Clone)]
pub(crate) enum TokenSource {
    /// `POST {rest}/tokens/` with the client's key.
    Default,
    /// A host-supplied provider.
    Custom(Arc<dyn TokenProvider>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses() {
        assert_eq!(parse_token_response(br#""abc""#).unwrap(), "abc");
        assert_eq!(parse_token_response(br#"{"token":"t1"}"#).unwrap(), "t1");
        assert_eq!(parse_token_response(br#"{"detail":"t2"}"#).unwrap(), "t2");
        for bad in [
            &b"{}"[..],
            b"42",
            b"not json",
            br#""""#,
            br#"{"token":5}"#,
            br#"{"weird":1}"#,
        ] {
            let e = parse_token_response(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Http);
        }
    }

    #[test]
    fn retry_rules() {
        for s in [429, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [400, 401, 403, 404, 500] {
            assert!(!is_retryable_status(s));
        }
        assert_eq!(backoff(0, 0.999_999).as_millis(), 249);
        assert_eq!(backoff(0, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(10, 0.0), Duration::from_secs(2));
        assert!(backoff(30, 1.0) <= Duration::from_secs(4));
        assert_eq!(backoff(0, f64::NAN), Duration::from_millis(125));
    }

    #[test]
    fn request_body() {
        let b = token_request_body("myapp", 120);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"allowed_apps": ["myapp"], "token_expiration": 120})
        );
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials::id_secret("id", "secret");
        assert_eq!(format!("{c:?}"), "Credentials(***)");
        assert_eq!(c.header_value(), "Key id:secret");
    }
}
