//! The [`Client`]: the face that builds realtime connections, pull sessions
//! and raw WebSockets. The machinery below it lives in `config` (options),
//! `open` (token fetch and socket open), `link` (the socket rules every style
//! shares) and the style modules `connection`, `session` and `ws`.

use crate::auth::TokenSource;
use crate::config::{validate_token_expiration, ClientConfig, RealtimeOptions};
use crate::connection::{RealtimeConnection, RealtimeHandler, Registry};
use crate::endpoint::{self, DefaultPath};
use crate::error::{Error, ErrorKind, Result};
use crate::open::{open_target, with_timeout, Endpoint, Target};
use crate::session::RealtimeSession;
use crate::ws::{WsConnection, WsOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The entry point: holds configuration, TLS roots and the connection registry.
///
/// Cheap to clone (reference-counted); thread-safe.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Endpoint>,
    pub(crate) registry: Arc<Registry>,
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
        Ok(Client {
            inner: Arc::new(Endpoint::new(config)?),
            registry: Arc::new(Mutex::new(HashMap::new())),
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
        RealtimeConnection::open(target, &self.registry, options, handler)
    }

    /// An explicit-connect, pull-style realtime session (what Python's
    /// `fal_client.realtime()` does): connects now, then `send` / `recv`.
    pub async fn connect(&self, app: &str, options: RealtimeOptions) -> Result<RealtimeSession> {
        self.connect_inner(app, options, None).await
    }

    /// [`connect`](Self::connect), for hosts that open sessions on one
    /// runtime and drive them from another: the token fetch and handshake run
    /// on the runtime this future runs on, then the session's socket and
    /// keepalive timer move to `driver`'s reactor. Poll the session only on
    /// `driver`'s runtime from then on (its I/O is reported there): e.g.
    /// open many in parallel on a multi-thread runtime and drive each from a
    /// current-thread one.
    pub async fn connect_on(
        &self,
        driver: &tokio::runtime::Handle,
        app: &str,
        options: RealtimeOptions,
    ) -> Result<RealtimeSession> {
        self.connect_inner(app, options, Some((driver, Socket::Reactor)))
            .await
    }

    /// [`connect_on`](Self::connect_on) for a host whose own event loop
    /// watches the socket: the session's timers move to `driver`, and its
    /// socket is in no tokio reactor. Each read or write that would block
    /// returns `Pending` without arranging a wake-up; the host polls the
    /// session's futures again (inside `driver`'s runtime) when its loop
    /// reports the socket ([`RealtimeSession::raw_fd`]) readable, for a
    /// pending `recv` or close, or writable, for a pending `send` (a `recv`
    /// or close can wait on a write too: a ping, a pong, a close frame), and
    /// lets `driver`'s timers run now and then (turn it, e.g. `block_on` of
    /// `tokio::task::yield_now()`): keepalive pings and the dead-peer check,
    /// and the 1 s deadline of a close handshake whose server stays silent
    /// (a poll after that deadline ends the handshake too). Saves the
    /// second poller: no tokio reactor turn is needed to learn what the
    /// host's loop already reported. The Python asyncio door drives its
    /// connections this way.
    pub async fn connect_host_polled(
        &self,
        driver: &tokio::runtime::Handle,
        app: &str,
        options: RealtimeOptions,
    ) -> Result<RealtimeSession> {
        self.connect_inner(app, options, Some((driver, Socket::Host)))
            .await
    }

    async fn connect_inner(
        &self,
        app: &str,
        options: RealtimeOptions,
        driver: Option<(&tokio::runtime::Handle, Socket)>,
    ) -> Result<RealtimeSession> {
        let target = self.target(app, &options, DefaultPath::Realtime)?;
        let (mut ws, _token, fetched) =
            with_timeout(self.inner.config.open_timeout, open_target(&target, None)).await?;
        let _on = moved_to(driver, &mut ws)?;
        let session = RealtimeSession::new(
            ws,
            self.inner.keepalive(),
            options.encoder.clone(),
            options.decoder.clone(),
        );
        if fetched {
            session.count_token_fetch();
        }
        Ok(session)
    }

    /// A raw WebSocket with the same URL and auth rules; no codec. The default
    /// path is empty (`/{id}`).
    pub async fn ws_connect(&self, app: &str, options: WsOptions) -> Result<WsConnection> {
        self.ws_connect_inner(app, options, None).await
    }

    /// [`ws_connect`](Self::ws_connect) with the socket moved to `driver`'s
    /// reactor once open, as [`connect_on`](Self::connect_on) does.
    pub async fn ws_connect_on(
        &self,
        driver: &tokio::runtime::Handle,
        app: &str,
        options: WsOptions,
    ) -> Result<WsConnection> {
        self.ws_connect_inner(app, options, Some((driver, Socket::Reactor)))
            .await
    }

    /// [`ws_connect_on`](Self::ws_connect_on) with the socket left to the
    /// host's event loop, as [`connect_host_polled`](Self::connect_host_polled)
    /// does.
    pub async fn ws_connect_host_polled(
        &self,
        driver: &tokio::runtime::Handle,
        app: &str,
        options: WsOptions,
    ) -> Result<WsConnection> {
        self.ws_connect_inner(app, options, Some((driver, Socket::Host)))
            .await
    }

    async fn ws_connect_inner(
        &self,
        app: &str,
        options: WsOptions,
        driver: Option<(&tokio::runtime::Handle, Socket)>,
    ) -> Result<WsConnection> {
        let ropts = RealtimeOptions {
            path: options.path.clone(),
            max_buffering: options.max_buffering,
            use_jwt: options.use_jwt,
            token_provider: options.token_provider.clone(),
            token_expiration: options.token_expiration,
            ..Default::default()
        };
        let target = self.target(app, &ropts, DefaultPath::None)?;
        let (mut ws, _token, fetched) =
            with_timeout(self.inner.config.open_timeout, open_target(&target, None)).await?;
        let _on = moved_to(driver, &mut ws)?;
        let conn = WsConnection::new(ws, self.inner.keepalive());
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
        let token_expiration = validate_token_expiration(options.token_expiration)?;
        let source = match &options.token_provider {
            Some(p) => TokenSource::Custom(p.clone()),
            None => TokenSource::Default,
        };
        if matches!(source, TokenSource::Default) && self.inner.config.credentials.is_none() {
            return Err(Error::new(
                ErrorKind::Credentials,
                crate::auth::MISSING_CREDENTIALS,
            ));
        }
        if !options.use_jwt && self.inner.config.credentials.is_none() {
            return Err(Error::new(
                ErrorKind::Credentials,
                format!(
                    "{} Header auth (use_jwt = false) needs a key.",
                    crate::auth::MISSING_CREDENTIALS
                ),
            ));
        }
        Ok(Target {
            client: self.inner.clone(),
            id_and_path: format!("{}{}", app_id.id, path),
            app: app_id,
            max_buffering,
            use_jwt: options.use_jwt,
            source,
            token_expiration,
        })
    }
}

/// Who watches a moved socket.
#[derive(Clone, Copy)]
enum Socket {
    /// The driving runtime's reactor.
    Reactor,
    /// The host's own event loop (no reactor).
    Host,
}

/// Move a new socket to `driver`, if one is given (to its reactor, or out of
/// every reactor for a host's loop), and enter that runtime so the pull
/// halves built next (their keepalive timer) belong to it too. Keep the
/// guard until they are built; nothing may be awaited meanwhile.
fn moved_to<'a>(
    driver: Option<(&'a tokio::runtime::Handle, Socket)>,
    ws: &mut crate::transport::WsStream,
) -> Result<Option<tokio::runtime::EnterGuard<'a>>> {
    let Some((h, socket)) = driver else {
        return Ok(None);
    };
    let guard = h.enter();
    match socket {
        Socket::Reactor => crate::transport::reregister(ws)?,
        Socket::Host => crate::transport::hand_to_host(ws)?,
    }
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_schemes_need_opt_in() {
        let mut c = ClientConfig {
            run_host: "ws://emulator.example:1".into(),
            ..Default::default()
        };
        assert_eq!(
            Client::new(c.clone()).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        c.allow_insecure = true;
        c.rest_url = "http://emulator.example:1".into();
        assert!(Client::new(c.clone()).is_ok());
        c.allow_insecure = false;
        c.run_host = "fal.run".into();
        assert!(Client::new(c).unwrap_err().message().contains("http://"));
    }

    #[test]
    fn plain_transport_to_loopback_needs_no_flag() {
        // A token sent in clear to this machine never leaves it.
        for (run_host, rest_url) in [
            ("ws://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("ws://127.1.2.3:1", "http://localhost:1"),
            ("ws://localhost:9", "http://[::1]:9"),
            ("http://[::1]:9/", "https://rest.fal.ai"),
        ] {
            let c = ClientConfig {
                run_host: run_host.into(),
                rest_url: rest_url.into(),
                ..Default::default()
            };
            assert!(Client::new(c).is_ok(), "{run_host} {rest_url}");
        }
        // Anything else still needs allow_insecure, for the run host and the REST URL alike.
        for (run_host, rest_url) in [
            ("ws://10.0.0.1:8080", "https://rest.fal.ai"),
            ("ws://localhost.example:1", "https://rest.fal.ai"),
            ("wss://fal.run", "http://192.168.0.1:80"),
            ("fal.run", "http://128.0.0.1"),
        ] {
            let c = ClientConfig {
                run_host: run_host.into(),
                rest_url: rest_url.into(),
                ..Default::default()
            };
            let e = Client::new(c).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{run_host} {rest_url}");
            assert!(e.message().contains("allow_insecure"), "{}", e.message());
        }
        // The loopback allowance can be turned off (the C door does for explicit hosts).
        let c = ClientConfig {
            run_host: "ws://127.0.0.1:8080".into(),
            allow_insecure_loopback: false,
            ..Default::default()
        };
        assert!(Client::new(c).is_err());
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
