//! A local emulator of fal.ai realtime endpoints.
//!
//! One port, served by hyper (HTTP/1.1 with upgrades), optionally behind TLS:
//!
//! * `POST /tokens/` (or `/tokens`): the token endpoint of `rest.fal.ai`. Requires
//!   `Authorization: Key <key>`; the body is `{"allowed_apps": [...], "token_expiration": secs}`
//!   and the answer (201) is a JSON string token.
//! * `GET /{owner}/{app}[/...]/realtime` with a WebSocket upgrade: a realtime app that behaves
//!   like fal's server template (unary queue of `buffering` inputs that drops the oldest,
//!   `session_timeout`, timings messages, `x-fal-error` frames). Authentication is the query
//!   parameter `fal_jwt_token` (a token issued for `{app}`) or the handshake header
//!   `Authorization: Key <key>`. Namespaced ids (`workflows/...`, `comfy/...`) use the third
//!   segment as the app name. For the app `echo`, any path below `/{owner}/echo` is accepted.
//!
//! Apps, by `{app}` name (the owner is ignored):
//!
//! * `echo`: returns every input unchanged (the original bytes, after checking that they are
//!   one well-formed msgpack value). Text frames are echoed as text frames (not something fal
//!   does: it lets clients test custom text codecs).
//! * `slow`: `echo` with a per-input delay (200 ms unless configured).
//! * `stream`: for each input map, `count` (or [`AppSettings::stream_count`]) outputs, each the
//!   input map plus `"index": i`.
//! * `fail`: answers the first input with an `INTERNAL_ERROR` `x-fal-error` text frame and
//!   closes with 1000.
//! * `control`: test hooks driven by the input map's `"do"` key:
//!   - `"garbage"`: a binary frame that is not msgpack (`c1 ff`), then the echo;
//!   - `"close"`: close with the input's `"code"` (default 4001), reason `"closing as asked"`;
//!   - `"drop"`: drop the TCP connection without a close frame;
//!   - `"error_bin"`: a *binary* msgpack `x-fal-error` map (`INTERNAL_ERROR`, `"binary error"`),
//!     the connection stays open;
//!   - `"unauthorized"`: the text frame `{"status":"error","error":"Unauthorized"}`, stays open;
//!   - `"timings"`: a timings text frame, then the echo;
//!   - `"text"`: the input as a JSON text frame;
//!   - `"silent"`: from now on the WebSocket is neither read nor written (pings get no pong,
//!     nothing is sent) but the TCP connection stays open, as with a stopped server process or
//!     a network black hole: what the client sends is read and discarded unprocessed until it
//!     closes the connection, for at most 120 s, then the connection is dropped;
//!   - `"pause"`: the socket is not read for the input's `"ms"` milliseconds (default 2000,
//!     at most 120 000), so pongs to the client's pings come late; then the echo of this input,
//!     and the session goes on;
//!   - `"reset"`: the TCP connection is aborted with an RST (`SO_LINGER` 0), no close frame;
//!   - `"cut"`: the first 104 bytes of a binary frame (a header announcing 1000 payload bytes,
//!     then 100 of them) written directly on the stream, then a FIN; the connection is dropped
//!     when the client closes it (at most 2 s later);
//!   - `"oversized"`: one binary frame of exactly the input's `"size"` bytes (default
//!     17 MiB = 17 * 1024 * 1024, at most 1 GiB; one msgpack value, a `bin` of zeros), then
//!     the session goes on (the input itself is not echoed);
//!   - anything else: the echo.
//!
//!   Text frames are echoed by every app but `fail`, and an input that is not msgpack gets
//!   an `INTERNAL_ERROR` `"could not decode input"` text frame and a 1000 close.
//! * `stall`: the WebSocket upgrade request is never answered: the connection is held open
//!   for at most 120 s (less on [`Emulator::kill_connections`] or shutdown), then dropped
//!   without a response.
//! * any other name: like `echo`, with the settings from [`EmulatorConfig::apps`].
//!
//! Faults of the token endpoint are set at run time with [`Emulator::set_token_fault`]
//! (see [`TokenFault`]) and [`Emulator::fail_next_token_requests`]. Network faults between a
//! client and any TCP server (latency, bandwidth, stalls, cuts) come from
//! [`proxy::FaultProxy`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fal_realtime_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! println!("token endpoint: {}/tokens/, run host: {}", emu.http_base(), emu.ws_host());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod certs;
mod conn;
mod msgpack;
pub mod proxy;
mod server;
mod session;

/// Configuration of an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to bind; default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// Accepted FAL keys (compared verbatim, so `id:secret` forms work too);
    /// default `["test-key"]`.
    pub keys: Vec<String>,
    /// Serve HTTPS / WSS with this certificate; `None` (the default) serves plain HTTP / WS.
    pub tls: Option<TlsConfig>,
    /// Per app name (the `{app}` path segment) settings, overriding [`EmulatorConfig::default_app`].
    pub apps: HashMap<String, AppSettings>,
    /// Settings of every app not listed in [`EmulatorConfig::apps`] (the `slow` app gets a
    /// 200 ms delay on top of these when their delay is zero).
    pub default_app: AppSettings,
    /// Upper bound, in seconds, of the lifetime of an issued token (the requested
    /// `token_expiration` is clamped to it); default 3600.
    pub max_token_expiration: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            keys: vec!["test-key".into()],
            tls: None,
            apps: HashMap::new(),
            default_app: AppSettings::default(),
            max_token_expiration: 3600,
        }
    }
}

/// TLS material for the emulator (PEM encoded).
#[derive(Clone)]
pub struct TlsConfig {
    /// The certificate chain, leaf first, PEM encoded.
    pub cert_pem: Vec<u8>,
    /// The private key of the leaf certificate, PEM encoded (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Behaviour of one realtime app.
#[derive(Clone, Debug)]
pub struct AppSettings {
    /// Length of the unary input queue (the oldest input is dropped when it is full);
    /// default 4. The `max_buffering` query parameter (1..=60) overrides it per connection.
    /// Only matters when inputs arrive faster than `delay` lets them through.
    pub buffering: usize,
    /// Close idle sessions: when no input arrived for this long, pending outputs are sent,
    /// then the text frame `{"type":"x-fal-error","error":"TIMEOUT",...}` and a 1000 close.
    /// Default `None`.
    pub session_timeout: Option<Duration>,
    /// Send `{"type":"x-fal-message","action":"timings","timing":secs}` after each output;
    /// default false.
    pub timings: bool,
    /// Processing time of each input; default zero (the `slow` app uses 200 ms when this is
    /// zero and the app has no entry of its own in [`EmulatorConfig::apps`]).
    pub delay: Duration,
    /// Outputs per input of the `stream` app when the input has no integer `count`; default 3.
    pub stream_count: usize,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            buffering: 4,
            session_timeout: None,
            timings: false,
            delay: Duration::ZERO,
            stream_count: 3,
        }
    }
}

/// A fault of the token endpoint, set with [`Emulator::set_token_fault`]; it applies to every
/// token request (before authentication and before [`Emulator::fail_next_token_requests`])
/// until it is set back to [`TokenFault::None`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenFault {
    /// No fault: tokens are issued normally.
    #[default]
    None,
    /// Answer 201 with this raw body (`Content-Type: application/json`), e.g. `{"weird":1}`.
    Body(String),
    /// Answer this status (500 when it is not a valid status code) with this raw body.
    Status(u16, String),
    /// Accept the request and never answer: the connection is held for at most 120 s, then
    /// dropped (sooner on [`Emulator::kill_connections`] or shutdown).
    Hang,
    /// Close the TCP connection without an answer, with an RST (`SO_LINGER` 0).
    Reset,
}

/// A snapshot of the emulator's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// Tokens issued by `POST /tokens/`.
    pub tokens_issued: u64,
    /// Requests to `POST /tokens/`, whatever their outcome.
    pub token_requests: u64,
    /// Accepted WebSocket upgrades (authorized or not).
    pub ws_connections: u64,
    /// WebSocket connections that failed authentication.
    pub ws_unauthorized: u64,
    /// Data frames (binary or text) received on authorized connections.
    pub inputs_received: u64,
    /// Inputs dropped because the unary queue was full.
    pub inputs_dropped: u64,
    /// Result frames sent (control frames such as timings or errors are not counted).
    pub outputs_sent: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub tokens_issued: AtomicU64,
    pub token_requests: AtomicU64,
    pub ws_connections: AtomicU64,
    pub ws_unauthorized: AtomicU64,
    pub inputs_received: AtomicU64,
    pub inputs_dropped: AtomicU64,
    pub outputs_sent: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> EmulatorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EmulatorStats {
            tokens_issued: get(&self.tokens_issued),
            token_requests: get(&self.token_requests),
            ws_connections: get(&self.ws_connections),
            ws_unauthorized: get(&self.ws_unauthorized),
            inputs_received: get(&self.inputs_received),
            inputs_dropped: get(&self.inputs_dropped),
            outputs_sent: get(&self.outputs_sent),
        }
    }
}

pub(crate) struct TokenEntry {
    pub allowed_apps: Vec<String>,
    pub expires: Instant,
}

/// State shared by the accept loop, the HTTP handlers and the sessions.
pub(crate) struct Shared {
    pub keys: Vec<String>,
    pub apps: HashMap<String, AppSettings>,
    pub default_app: AppSettings,
    pub max_token_expiration: u64,
    pub counters: Counters,
    pub tokens: Mutex<HashMap<String, TokenEntry>>,
    pub fail_remaining: AtomicU32,
    pub fail_status: AtomicU16,
    /// Set by [`Emulator::set_token_fault`].
    pub token_fault: Mutex<TokenFault>,
    /// Bumped by [`Emulator::kill_connections`]; every WebSocket task watches it.
    pub kill: tokio::sync::watch::Sender<u64>,
    /// Set once, when the emulator is shut down.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// The settings of the app `name`.
    pub(crate) fn app_settings(&self, name: &str) -> AppSettings {
        if let Some(s) = self.apps.get(name) {
            return s.clone();
        }
        let mut s = self.default_app.clone();
        if name == "slow" && s.delay.is_zero() {
            s.delay = Duration::from_millis(200);
        }
        s
    }

    pub(crate) fn key_is_valid(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

/// A running emulator. Dropping it (or calling [`Emulator::shutdown`]) stops it.
pub struct Emulator {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    /// The emulator's own runtime, when started with [`Emulator::start_detached`].
    runtime: Option<tokio::runtime::Runtime>,
}

impl Emulator {
    /// Binds `config.bind`, spawns the server on the current tokio runtime and returns at once.
    ///
    /// Fails when the address cannot be bound or the TLS material is unusable. With a
    /// current-thread runtime the emulator only makes progress while that runtime runs: tests
    /// that block their thread (synchronous client calls) should use a multi-thread runtime or
    /// [`Emulator::start_detached`].
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let acceptor = match &config.tls {
            Some(tls) => Some(server::tls_acceptor(tls)?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let (kill, _) = tokio::sync::watch::channel(0u64);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            keys: config.keys,
            apps: config.apps,
            default_app: config.default_app,
            max_token_expiration: config.max_token_expiration,
            counters: Counters::default(),
            tokens: Mutex::new(HashMap::new()),
            fail_remaining: AtomicU32::new(0),
            fail_status: AtomicU16::new(503),
            token_fault: Mutex::new(TokenFault::None),
            kill,
            shutdown,
        });
        tokio::spawn(server::accept_loop(listener, acceptor, shared.clone()));
        Ok(Emulator {
            addr,
            tls: config.tls.is_some(),
            shared,
            runtime: None,
        })
    }

    /// Like [`Emulator::start`], but synchronous and on a runtime of its own (one worker
    /// thread), for synchronous tests and programs; callable from any context, async or not.
    /// The runtime is shut down with the emulator.
    pub fn start_detached(config: EmulatorConfig) -> std::io::Result<Emulator> {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fal-realtime-emulator")
                .enable_all()
                .build()?;
            let mut emu = runtime.block_on(Emulator::start(config))?;
            emu.runtime = Some(runtime);
            Ok(emu)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the emulator's start-up thread panicked")))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS: the REST base URL that
    /// serves `/tokens/`.
    pub fn http_base(&self) -> String {
        if self.tls {
            format!("https://{}", self.ws_host())
        } else {
            format!("http://{}", self.ws_host())
        }
    }

    /// `127.0.0.1:PORT`, or `localhost:PORT` with TLS: the client's run host.
    pub fn ws_host(&self) -> String {
        if self.tls {
            return format!("localhost:{}", self.addr.port());
        }
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port()).to_string()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EmulatorStats {
        self.shared.counters.snapshot()
    }

    /// Makes the next `n` token requests answer `status` (e.g. 503) with a JSON error body,
    /// before any authentication check.
    pub fn fail_next_token_requests(&self, n: u32, status: u16) {
        self.shared.fail_status.store(status, Ordering::SeqCst);
        self.shared.fail_remaining.store(n, Ordering::SeqCst);
    }

    /// Sets the fault of the token endpoint; [`TokenFault::None`] ends it. Requests already
    /// being answered are not affected.
    pub fn set_token_fault(&self, fault: TokenFault) {
        *self.shared.token_fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Invalidates every token issued so far (open connections stay open).
    pub fn revoke_tokens(&self) {
        self.shared
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Abruptly drops every open WebSocket connection (no close frame), as a crashing server
    /// would.
    pub fn kill_connections(&self) {
        self.shared.kill.send_modify(|g| *g += 1);
    }

    /// Stops accepting connections and drops every open connection (also done on drop).
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so dropping the emulator inside async code is fine.
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish()
    }
}
