//! Opening sockets: the validated [`Endpoint`] of a client, the [`Target`] of
//! one app, token fetching (default endpoint or a provider) and the
//! WebSocket open. Every connection style and door opens through here.

use crate::auth::{self, TokenProvider, TokenSource};
use crate::config::{ClientConfig, DEFAULT_TOKEN_EXPIRATION};
use crate::endpoint::{self, AppId};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::{self, WsStream};
use once_cell::sync::OnceCell;
use std::sync::Arc;
use std::time::Duration;

/// Cached token with its expiry.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub life: Option<Duration>,
    pub fetched_at: tokio::time::Instant,
}

impl Token {
    /// Usable for a new handshake: at least 10 % of its life left.
    pub fn is_fresh(&self) -> bool {
        match self.life {
            Some(l) => self.fetched_at.elapsed() < l.mul_f64(0.9),
            None => false,
        }
    }
}

/// A validated endpoint: the configuration, the WebSocket scheme and host,
/// and the TLS configuration (built once, on first use).
pub(crate) struct Endpoint {
    pub config: ClientConfig,
    tls: OnceCell<Arc<rustls::ClientConfig>>,
    ws_scheme: &'static str,
    ws_host: String,
}

/// Everything a connection needs to open sockets for one app.
#[derive(Clone)]
pub(crate) struct Target {
    pub client: Arc<Endpoint>,
    pub app: AppId,
    /// `{id}{path}`
    pub id_and_path: String,
    pub max_buffering: Option<u8>,
    pub use_jwt: bool,
    pub source: TokenSource,
    pub token_expiration: Option<Duration>,
}

impl Endpoint {
    /// Validate `config` (run host, REST URL, CA file).
    pub(crate) fn new(config: ClientConfig) -> Result<Self> {
        let (scheme, host) = endpoint::split_scheme(&config.run_host);
        let host = host.trim_end_matches('/');
        // Plain transport sends the token (or the key) in clear: allowed when
        // the caller opted in, or to this machine itself, where it never
        // leaves the loopback interface.
        let plain_ok = |host: &str| {
            config.allow_insecure || (config.allow_insecure_loopback && endpoint::is_loopback_host(host))
        };
        let ws_scheme = match scheme {
            None | Some("wss") | Some("https") => "wss",
            Some("ws") | Some("http") if plain_ok(host) => "ws",
            Some("ws") | Some("http") => {
                return Err(Error::invalid(format!(
                "plain ws:// to {host} is not allowed; set allow_insecure to use it (local emulator only; \
                     loopback hosts need no flag)"
            )))
            }
            Some(other) => return Err(Error::invalid(format!("unsupported run host scheme {other}://"))),
        };
        let host = host.to_string();
        if host.is_empty() || host.contains('/') {
            return Err(Error::invalid(format!(
                "invalid run host {:?}: expected host[:port]",
                config.run_host
            )));
        }
        let rest = transport::parse_http_url(&config.rest_url)?;
        if !rest.tls && !plain_ok(&rest.host) {
            return Err(Error::invalid(format!(
                "plain http:// REST URL {} is not allowed; set allow_insecure to use it (local emulator only; \
                 loopback hosts need no flag)",
                config.rest_url
            )));
        }
        if let Some(p) = &config.extra_ca_file {
            if !p.exists() {
                return Err(Error::invalid(format!(
                    "the CA file {} does not exist",
                    p.display()
                )));
            }
        }
        Ok(Endpoint {
            config,
            tls: OnceCell::new(),
            ws_scheme,
            ws_host: host,
        })
    }
}

impl Endpoint {
    /// The keepalive settings of every socket of this client.
    pub(crate) fn keepalive(&self) -> crate::keepalive::KeepAliveConfig {
        crate::keepalive::KeepAliveConfig {
            interval: self.config.ping_interval,
            timeout: self.config.ping_timeout,
        }
    }

    pub(crate) fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        self.tls
            .get_or_try_init(|| transport::tls_config(self.config.extra_ca_file.as_deref()))
            .cloned()
    }
}

pub(crate) async fn with_timeout<T>(
    d: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "the connection did not open within {:.1} s (token fetch and handshake)",
                d.as_secs_f64()
            ),
        )),
    }
}

/// Fetch a token for `target`.
pub(crate) async fn fetch_token(target: &Target) -> Result<Token> {
    let started = tokio::time::Instant::now();
    match &target.source {
        TokenSource::Custom(p) => {
            let fut = {
                let p: &Arc<dyn TokenProvider> = p;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.token(&target.id_and_path)))
                    .map_err(|_| Error::new(ErrorKind::TokenProvider, "the token provider panicked"))?
            };
            let value = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut))
                .await
                .map_err(|_| Error::new(ErrorKind::TokenProvider, "the token provider panicked"))?
                .map_err(|e| {
                    let mut err = Error::new(
                        ErrorKind::TokenProvider,
                        format!("the token provider failed: {}", e.message()),
                    );
                    if let Some(s) = e.status() {
                        err = err.with_status(s);
                    }
                    if let Some(b) = e.body() {
                        err = err.with_body(b);
                    }
                    err
                })?;
            if value.is_empty() {
                return Err(Error::new(
                    ErrorKind::TokenProvider,
                    "the token provider returned an empty token",
                ));
            }
            Ok(Token {
                value,
                life: target.token_expiration,
                fetched_at: started,
            })
        }
        TokenSource::Default => {
            let life = target.token_expiration.unwrap_or(DEFAULT_TOKEN_EXPIRATION);
            let value = fetch_default_token(target, life).await?;
            Ok(Token {
                value,
                life: Some(life),
                fetched_at: started,
            })
        }
    }
}

async fn fetch_default_token(target: &Target, life: Duration) -> Result<String> {
    let inner = &target.client;
    let creds = inner
        .config
        .credentials
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::Credentials, crate::auth::MISSING_CREDENTIALS))?;
    let url = format!("{}/tokens/", inner.config.rest_url.trim_end_matches('/'));
    let http = transport::parse_http_url(&url)?;
    let tls = if http.tls { Some(inner.tls()?) } else { None };
    let body = auth::token_request_body(&target.app.alias, life.as_secs().max(1));
    let authz = creds.header_value();
    let mut attempt = 0u32;
    loop {
        let res = transport::post_json(tls.clone(), &http, &authz, body.clone()).await;
        let retry = match &res {
            Ok((s, _)) => auth::is_retryable_status(*s),
            Err(e) => e.kind() == ErrorKind::Connect,
        };
        if retry && attempt < inner.config.token_retries {
            let wait = auth::backoff(attempt, fastrand::f64());
            log::debug!(
                "token request failed (attempt {}), retrying in {:?}",
                attempt + 1,
                wait
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
            continue;
        }
        let (status, resp) = res?;
        if (200..300).contains(&status) {
            return auth::parse_token_response(&resp).map_err(|e| e.with_status(status));
        }
        // A server that echoes the request must not put the key in an error.
        let key = authz.strip_prefix("Key ").unwrap_or(&authz);
        let mut text = String::from_utf8_lossy(&resp).into_owned();
        if !key.is_empty() && text.contains(key) {
            text = text.replace(key, "***");
        }
        let (kind, what) = match status {
            401 | 403 => (
                ErrorKind::Auth,
                "the token endpoint rejected the API key; check FAL_KEY",
            ),
            _ => (ErrorKind::Http, "the token endpoint failed"),
        };
        let mut msg = format!("{what} (app {}, HTTP {status})", target.app.alias);
        if let Some(detail) = auth::error_detail(&text) {
            msg.push_str(": ");
            msg.push_str(&detail);
        }
        return Err(Error::new(kind, msg).with_status(status).with_body(text));
    }
}

/// Open a socket for `target` with `token` (the caller decided it is usable),
/// fetching one first when it is `None`. Returns the socket, the token used
/// (to cache) and whether it was fetched here.
pub(crate) async fn open_target(
    target: &Target,
    token: Option<Token>,
) -> Result<(WsStream, Option<Token>, bool)> {
    let inner = &target.client;
    let mut fetched = false;
    let (token, auth_header) = if target.use_jwt {
        let t = match token {
            Some(t) => t,
            None => {
                fetched = true;
                // Boxed, here and below: the handshake futures are ~15 KiB,
                // and inline they would stay in every connection's task for
                // its whole life (see bench/ANALYSIS.md, idle memory).
                Box::pin(fetch_token(target)).await?
            }
        };
        (Some(t), None)
    } else {
        let creds = inner
            .config
            .credentials
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Credentials, crate::auth::MISSING_CREDENTIALS))?;
        (None, Some(creds.header_value()))
    };
    let url = endpoint::build_ws_url(
        inner.ws_scheme,
        &inner.ws_host,
        &target.id_and_path,
        token.as_ref().map(|t| t.value.as_str()),
        target.max_buffering,
    );
    let tls = if inner.ws_scheme == "wss" {
        Some(inner.tls()?)
    } else {
        None
    };
    log::debug!("opening {}", endpoint::redact_url(&url));
    let ws = Box::pin(transport::open_ws(
        &url,
        auth_header.as_deref(),
        tls,
        &inner.config,
    ))
    .await?;
    Ok((ws, token, fetched))
}
