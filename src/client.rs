//! The [`Client`]: configuration, token fetching and the entry points for
//! realtime connections and raw WebSockets.

use crate::auth::{self, Credentials, TokenProvider, TokenSource};
use crate::connection::{RealtimeConnection, RealtimeHandler};
use crate::endpoint::{self, AppId, DefaultPath};
use crate::error::{Error, ErrorKind, Result};
use crate::session::RealtimeSession;
use crate::transport::{self, WsStream};
use crate::ws::{WsConnection, WsOptions};
use once_cell::sync::OnceCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Default run host.
pub const DEFAULT_RUN_HOST: &str = "fal.run";
/// Default REST base URL (the token endpoint is `{rest}/tokens/`).
pub const DEFAULT_REST_URL: &str = "https://rest.fal.ai";
/// Default open timeout (token fetch plus handshake).
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(90);
/// Default token life requested from the token endpoint.
pub const DEFAULT_TOKEN_EXPIRATION: Duration = Duration::from_secs(120);

/// Client configuration. Build with [`ClientConfig::from_env`] or
/// [`ClientConfig::default`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// API credentials; `None` means only custom token providers (or no auth) can be used.
    pub credentials: Option<Credentials>,
    /// Host (and optional port) of the realtime endpoints. May carry a scheme:
    /// `ws://host:port` is accepted only with [`allow_insecure`](Self::allow_insecure).
    pub run_host: String,
    /// REST base URL; `http://` only with [`allow_insecure`](Self::allow_insecure).
    pub rest_url: String,
    /// An extra PEM file of CA certificates trusted beside the system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Allow plain `ws://` and `http://` (the local emulator). Off by default.
    pub allow_insecure: bool,
    /// Time allowed for the token fetch plus the WebSocket handshake.
    pub open_timeout: Duration,
    /// Largest accepted incoming message/frame, in bytes (default: 64 MiB message, 16 MiB frame).
    pub max_frame_size: Option<usize>,
    /// How many times a failed token request is retried (429/502/503/504 and transport errors).
    pub token_retries: u32,
    /// Size of each socket's read buffer (tungstenite's default: 128 KiB). It is
    /// the largest part of an idle connection's memory; 16 KiB suits hosts with
    /// thousands of connections and small payloads.
    pub read_buffer_size: Option<usize>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            credentials: None,
            run_host: DEFAULT_RUN_HOST.to_string(),
            rest_url: DEFAULT_REST_URL.to_string(),
            extra_ca_file: None,
            allow_insecure: false,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            max_frame_size: None,
            token_retries: 3,
            read_buffer_size: None,
        }
    }
}

impl ClientConfig {
    /// Defaults, with credentials from `FAL_KEY` (or `FAL_KEY_ID` + `FAL_KEY_SECRET`),
    /// the run host from `FAL_RUN_HOST` and the REST URL from `FAL_REST_URL`.
    /// `SSL_CERT_FILE` is honoured when the system roots are loaded.
    pub fn from_env() -> Self {
        let mut c = ClientConfig {
            credentials: Credentials::from_env(),
            ..Default::default()
        };
        if let Ok(h) = std::env::var("FAL_RUN_HOST") {
            if !h.is_empty() {
                c.run_host = h;
            }
        }
        if let Ok(r) = std::env::var("FAL_REST_URL") {
            if !r.is_empty() {
                c.rest_url = r;
            }
        }
        c
    }

    /// Point at a local emulator: `host` is `127.0.0.1:PORT`, plain ws/http allowed.
    pub fn local(host: &str, key: &str) -> Self {
        ClientConfig {
            credentials: Some(Credentials::key(key)),
            run_host: format!("ws://{host}"),
            rest_url: format!("http://{host}"),
            allow_insecure: true,
            ..Default::default()
        }
    }
}

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

pub(crate) struct ClientInner {
    pub config: ClientConfig,
    tls: OnceCell<Arc<rustls::ClientConfig>>,
    ws_scheme: &'static str,
    ws_host: String,
    pub registry: Mutex<HashMap<String, Weak<crate::connection::Inner>>>,
}

/// Everything a connection needs to open sockets for one app.
#[derive(Clone)]
pub(crate) struct Target {
    pub client: Arc<ClientInner>,
    pub app: AppId,
    /// `{id}{path}`
    pub id_and_path: String,
    pub max_buffering: Option<u8>,
    pub use_jwt: bool,
    pub source: TokenSource,
    pub token_expiration: Option<Duration>,
}

/// The entry point: holds configuration, TLS roots and the connection registry.
///
/// Cheap to clone (reference-counted); thread-safe.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client {
    /// A client from [`ClientConfig::from_env`].
    pub fn from_env() -> Result<Self> {
        Client::new(ClientConfig::from_env())
    }

    /// A client from `config`. Validates the run host and REST URL.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let (scheme, host) = endpoint::split_scheme(&config.run_host);
        let ws_scheme = match scheme {
            None | Some("wss") | Some("https") => "wss",
            Some("ws") | Some("http") if config.allow_insecure => "ws",
            Some("ws") | Some("http") => {
                return Err(Error::invalid(format!(
                    "plain ws:// to {host} is not allowed; set allow_insecure to use it (local emulator only)"
                )))
            }
            Some(other) => return Err(Error::invalid(format!("unsupported run host scheme {other}://"))),
        };
        let host = host.trim_end_matches('/').to_string();
        if host.is_empty() || host.contains('/') {
            return Err(Error::invalid(format!(
                "invalid run host {:?}: expected host[:port]",
                config.run_host
            )));
        }
        let rest = transport::parse_http_url(&config.rest_url)?;
        if !rest.tls && !config.allow_insecure {
            return Err(Error::invalid(format!(
                "plain http:// REST URL {} is not allowed; set allow_insecure to use it (local emulator only)",
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
        Ok(Client {
            inner: Arc::new(ClientInner {
                config,
                tls: OnceCell::new(),
                ws_scheme,
                ws_host: host,
                registry: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A callback-style realtime connection (what `fal.realtime.connect` does in JS).
    ///
    /// Returns at once: the connection opens lazily on the first send. With a
    /// [`connection_key`](RealtimeOptions::connection_key), a live connection
    /// with the same key is returned and `handler` replaces its handler.
    /// Fails immediately on an invalid app id or `max_buffering`.
    pub fn realtime(
        &self,
        app: &str,
        options: RealtimeOptions,
        handler: impl RealtimeHandler,
    ) -> Result<RealtimeConnection> {
        self.realtime_dyn(app, options, Arc::new(handler))
    }

    /// Like [`realtime`](Self::realtime) with a shared handler.
    pub fn realtime_dyn(
        &self,
        app: &str,
        options: RealtimeOptions,
        handler: Arc<dyn RealtimeHandler>,
    ) -> Result<RealtimeConnection> {
        let target = self.target(app, &options, DefaultPath::Realtime)?;
        RealtimeConnection::open(target, options, handler)
    }

    /// An explicit-connect, pull-style realtime session (what Python's
    /// `fal_client.realtime()` does): connects now, then `send` / `recv`.
    pub async fn connect(&self, app: &str, options: RealtimeOptions) -> Result<RealtimeSession> {
        let target = self.target(app, &options, DefaultPath::Realtime)?;
        let (ws, _token, fetched) =
            with_timeout(self.inner.config.open_timeout, open_target(&target, None)).await?;
        let session = RealtimeSession::new(ws, options.encoder.clone(), options.decoder.clone());
        if fetched {
            session.count_token_fetch();
        }
        Ok(session)
    }

    /// A raw WebSocket with the same URL and auth rules; no codec. The default
    /// path is empty (`/{id}`).
    pub async fn ws_connect(&self, app: &str, options: WsOptions) -> Result<WsConnection> {
        let ropts = RealtimeOptions {
            path: options.path.clone(),
            max_buffering: options.max_buffering,
            use_jwt: options.use_jwt,
            token_provider: options.token_provider.clone(),
            token_expiration: options.token_expiration,
            ..Default::default()
        };
        let target = self.target(app, &ropts, DefaultPath::None)?;
        let (ws, _token, fetched) =
            with_timeout(self.inner.config.open_timeout, open_target(&target, None)).await?;
        let conn = WsConnection::new(ws);
        if fetched {
            conn.count_token_fetch();
        }
        Ok(conn)
    }

    pub(crate) fn target(
        &self,
        app: &str,
        options: &RealtimeOptions,
        default: DefaultPath,
    ) -> Result<Target> {
        let app_id = endpoint::parse_app_id(app)?;
        let path = endpoint::resolve_path(&app_id, options.path.as_deref(), default);
        let max_buffering = endpoint::validate_max_buffering(options.max_buffering)?;
        let source = match &options.token_provider {
            Some(p) => TokenSource::Custom(p.clone()),
            None => TokenSource::Default,
        };
        if matches!(source, TokenSource::Default) && self.inner.config.credentials.is_none() {
            return Err(Error::new(
                ErrorKind::Credentials,
                "no fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or pass a token provider",
            ));
        }
        if !options.use_jwt && self.inner.config.credentials.is_none() {
            return Err(Error::new(
                ErrorKind::Credentials,
                "header auth (use_jwt = false) needs FAL_KEY",
            ));
        }
        Ok(Target {
            client: self.inner.clone(),
            id_and_path: format!("{}{}", app_id.id, path),
            app: app_id,
            max_buffering,
            use_jwt: options.use_jwt,
            source,
            token_expiration: options.token_expiration,
        })
    }
}

impl ClientInner {
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
        .ok_or_else(|| Error::new(ErrorKind::Credentials, "no fal credentials: set FAL_KEY"))?;
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
            return auth::parse_token_response(&resp);
        }
        let text = String::from_utf8_lossy(&resp).into_owned();
        let (kind, what) = match status {
            401 | 403 => (
                ErrorKind::Auth,
                "the token endpoint rejected the API key; check FAL_KEY",
            ),
            _ => (ErrorKind::Http, "the token endpoint failed"),
        };
        return Err(Error::new(kind, format!("{what} (app {})", target.app.alias))
            .with_status(status)
            .with_body(text));
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
                fetch_token(target).await?
            }
        };
        (Some(t), None)
    } else {
        let creds = inner
            .config
            .credentials
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Credentials, "no fal credentials"))?;
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
    let ws = transport::open_ws(&url, auth_header.as_deref(), tls, &inner.config).await?;
    Ok((ws, token, fetched))
}

/// Options of a realtime connection: every option of the JS
/// `RealtimeConnectionHandler`, plus header auth.
#[derive(Clone)]
pub struct RealtimeOptions {
    /// Reuse one live connection per key; the latest handler replaces the earlier one.
    pub connection_key: Option<String>,
    /// Minimum time between sends (callback style); zero disables throttling. Default 128 ms.
    pub throttle_interval: Duration,
    /// Server-side input queue length, 1..=60.
    pub max_buffering: Option<i64>,
    /// Path after the app id; default `/realtime` (never doubled).
    pub path: Option<String>,
    /// Custom encoder: msgpack of the input → the frame to send.
    pub encoder: Option<crate::Encoder>,
    /// Custom decoder: an incoming frame → msgpack bytes.
    pub decoder: Option<crate::Decoder>,
    /// Host-supplied token provider, called with `{id}{path}`.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// Token life: requested from the token endpoint (default 120 s), or the
    /// provider's token life. When known, tokens are refreshed at 90 % of it.
    pub token_expiration: Option<Duration>,
    /// `true` (default): short-lived JWT in the URL; `false`: `Authorization: Key` header.
    pub use_jwt: bool,
}

impl Default for RealtimeOptions {
    fn default() -> Self {
        RealtimeOptions {
            connection_key: None,
            throttle_interval: Duration::from_millis(128),
            max_buffering: None,
            path: None,
            encoder: None,
            decoder: None,
            token_provider: None,
            token_expiration: None,
            use_jwt: true,
        }
    }
}

impl std::fmt::Debug for RealtimeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeOptions")
            .field("connection_key", &self.connection_key)
            .field("throttle_interval", &self.throttle_interval)
            .field("max_buffering", &self.max_buffering)
            .field("path", &self.path)
            .field("encoder", &self.encoder.is_some())
            .field("decoder", &self.decoder.is_some())
            .field("token_provider", &self.token_provider.is_some())
            .field("token_expiration", &self.token_expiration)
            .field("use_jwt", &self.use_jwt)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_schemes_need_opt_in() {
        let mut c = ClientConfig {
            run_host: "ws://127.0.0.1:1".into(),
            ..Default::default()
        };
        assert_eq!(
            Client::new(c.clone()).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        c.allow_insecure = true;
        c.rest_url = "http://127.0.0.1:1".into();
        assert!(Client::new(c.clone()).is_ok());
        c.allow_insecure = false;
        c.run_host = "fal.run".into();
        assert!(Client::new(c).unwrap_err().message().contains("http://"));
    }

    #[test]
    fn missing_credentials_is_a_clear_error() {
        let c = Client::new(ClientConfig::default()).unwrap();
        let e = c
            .target("a/b", &RealtimeOptions::default(), DefaultPath::Realtime)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Credentials);
        assert!(e.message().contains("FAL_KEY"));
    }

    #[test]
    fn target_rules() {
        let c = Client::new(ClientConfig::local("127.0.0.1:9", "k")).unwrap();
        let t = c
            .target("123-app", &RealtimeOptions::default(), DefaultPath::Realtime)
            .unwrap();
        assert_eq!(t.id_and_path, "123/app/realtime");
        let o = RealtimeOptions {
            max_buffering: Some(61),
            ..Default::default()
        };
        assert_eq!(
            c.target("a/b", &o, DefaultPath::Realtime).err().unwrap().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
