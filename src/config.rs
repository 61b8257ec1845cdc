//! Configuration types shared by every connection style and door: the
//! client's [`ClientConfig`], a realtime connection's [`RealtimeOptions`], and
//! the codec hooks ([`Encoder`], [`Decoder`]). Plain data, no I/O.

use crate::auth::{Credentials, TokenProvider};
use crate::codec::Frame;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default run host.
pub const DEFAULT_RUN_HOST: &str = "fal.run";
/// Default REST base URL (the token endpoint is `{rest}/tokens/`).
pub const DEFAULT_REST_URL: &str = "https://rest.fal.ai";
/// Default open timeout (token fetch plus handshake).
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(90);
/// Default token life requested from the token endpoint.
pub const DEFAULT_TOKEN_EXPIRATION: Duration = Duration::from_secs(120);
/// The shortest accepted token life: shorter ones would refresh in a storm.
pub const MIN_TOKEN_EXPIRATION: Duration = Duration::from_secs(1);
/// Default time between keepalive pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default time to wait for any frame (a pong or data) after a keepalive ping.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default limit of one incoming WebSocket frame (tungstenite's default).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;
/// Default limit of one incoming WebSocket message (tungstenite's default).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// Default size of each socket read: 16 KiB (see [`ClientConfig::read_buffer_size`]).
pub const DEFAULT_READ_BUFFER_SIZE: usize = 16 * 1024;

/// A custom encoder: the msgpack encoding of an input → the frame to send
/// (binary or text). Called on the sending thread.
pub type Encoder = Arc<dyn Fn(bytes::Bytes) -> Result<Frame> + Send + Sync>;

/// A custom decoder: an incoming binary frame → msgpack bytes, which are then
/// classified as usual (results, `x-fal-error`, …). Text frames are JSON and
/// never pass through it (the rule of fal's JS and Python clients), in every
/// door. Called on the thread that reads the frame.
pub type Decoder = Arc<dyn Fn(Frame) -> Result<bytes::Bytes> + Send + Sync>;

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
    /// Allow plain `ws://` and `http://` to any host (the local emulator). Off by default.
    pub allow_insecure: bool,
    /// Allow plain `ws://` and `http://` to a loopback host (`127.0.0.0/8`,
    /// `[::1]`, `localhost`) without [`allow_insecure`](Self::allow_insecure):
    /// a token sent in clear to this machine never leaves it, so
    /// environment-configured code (`FAL_RUN_HOST=ws://127.0.0.1:8080`)
    /// reaches a local emulator. On by default.
    pub allow_insecure_loopback: bool,
    /// Time allowed for the token fetch plus the WebSocket handshake.
    pub open_timeout: Duration,
    /// Largest accepted incoming frame and message, in bytes. `None`: 16 MiB
    /// per frame and 64 MiB per message ([`DEFAULT_MAX_FRAME_SIZE`],
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]). A larger message from the server ends
    /// the connection (close code 1009) with an [`ErrorKind::Closed`](crate::ErrorKind::Closed) error.
    pub max_frame_size: Option<usize>,
    /// How many times a failed token request is retried (429/502/503/504 and transport errors).
    pub token_retries: u32,
    /// Size of each socket read, in bytes. `None`: [`DEFAULT_READ_BUFFER_SIZE`]
    /// (16 KiB). The buffer starts at this size and grows to hold a whole
    /// frame when a larger one arrives; every read touches (zero-fills) this
    /// many bytes, so it is both the bulk of an idle connection's memory and a
    /// per-message cost. tungstenite's own default, 128 KiB, measured slower
    /// for small messages and no faster for 256 KiB ones (bench/ANALYSIS.md).
    pub read_buffer_size: Option<usize>,
    /// Keepalive: send a WebSocket ping this often (default 20 s); `None` disables pings.
    pub ping_interval: Option<Duration>,
    /// Keepalive: after a ping, how long to wait for any frame from the server
    /// (a pong or data) before the connection is declared dead and closed with
    /// 1011 (default 20 s); `None` never gives up.
    pub ping_timeout: Option<Duration>,
    /// The host renders pages on a server (server-side rendering): callback
    /// connections opened with [`RealtimeOptions::client_only`] are then
    /// no-ops whose inputs are dropped (logged, and counted in
    /// [`Stats::inputs_dropped_client_only`](crate::Stats::inputs_dropped_client_only)),
    /// as fal's JS client does outside a browser. Off by default.
    pub server_side: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            credentials: None,
            run_host: DEFAULT_RUN_HOST.to_string(),
            rest_url: DEFAULT_REST_URL.to_string(),
            extra_ca_file: None,
            allow_insecure: false,
            allow_insecure_loopback: true,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            max_frame_size: None,
            token_retries: 3,
            read_buffer_size: None,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            ping_timeout: Some(DEFAULT_PING_TIMEOUT),
            server_side: false,
        }
    }
}

impl ClientConfig {
    /// Defaults, with credentials from `FAL_KEY` (or `FAL_KEY_ID` + `FAL_KEY_SECRET`),
    /// the run host from `FAL_RUN_HOST` and the REST URL from `FAL_REST_URL`.
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured when the system roots are
    /// loaded: once per process, by the first client that needs TLS.
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
    pub encoder: Option<Encoder>,
    /// Custom decoder: every incoming binary frame → msgpack bytes (text frames are JSON).
    pub decoder: Option<Decoder>,
    /// Host-supplied token provider, called with `{id}{path}`.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// Token life: requested from the token endpoint (default 120 s), or the
    /// provider's token life. When known, tokens are refreshed at 90 % of it.
    /// At least 1 s ([`MIN_TOKEN_EXPIRATION`]); shorter is an
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error.
    pub token_expiration: Option<Duration>,
    /// `true` (default): short-lived JWT in the URL; `false`: `Authorization: Key` header.
    pub use_jwt: bool,
    /// The JS client's `clientOnly`: on a host marked
    /// [`ClientConfig::server_side`], a callback connection with this set is a
    /// no-op (it never connects; its inputs are dropped, logged and counted in
    /// [`Stats::inputs_dropped_client_only`](crate::Stats::inputs_dropped_client_only)).
    /// Anywhere else it has no effect. Pull sessions and raw sockets ignore it.
    pub client_only: bool,
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
            client_only: false,
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
            .field("client_only", &self.client_only)
            .finish()
    }
}

/// Check a token life: at least [`MIN_TOKEN_EXPIRATION`].
pub(crate) fn validate_token_expiration(d: Option<Duration>) -> Result<Option<Duration>> {
    match d {
        Some(d) if d < MIN_TOKEN_EXPIRATION => Err(Error::invalid(format!(
            "token_expiration must be at least 1 s (got {} ms)",
            d.as_millis()
        ))),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiration_floor() {
        assert!(validate_token_expiration(None).unwrap().is_none());
        assert!(validate_token_expiration(Some(Duration::from_secs(1))).is_ok());
        let e = validate_token_expiration(Some(Duration::from_millis(1))).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.message().contains("at least 1 s"), "{}", e.message());
        assert!(validate_token_expiration(Some(Duration::ZERO)).is_err());
    }
}
