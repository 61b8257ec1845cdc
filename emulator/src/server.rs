//! Accept loop, TLS, HTTP routing, the token endpoint and the WebSocket handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::conn::{ConnFaults, FaultTcp};
use crate::session::{self, AppKind, SessionCtx};
use crate::{Counters, Shared, TlsConfig, TokenEntry, TokenFault};

type Body = Full<Bytes>;

const MAX_BODY: usize = 1 << 20;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Purge expired tokens when the store grows past this.
const TOKEN_STORE_PURGE: usize = 1024;
/// How long a request that is never answered (the `stall` app, [`TokenFault::Hang`]) holds
/// its connection before dropping it.
pub(crate) const HOLD_MAX: Duration = Duration::from_secs(120);
/// The number of the next WebSocket session, for the log (shared by every emulator of the
/// process, so that the numbers of one log never repeat).
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The service's error: hyper drops the connection without writing a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped without an answer (injected fault)")
    }
}

impl std::error::Error for DropConnection {}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

/// Builds the TLS acceptor from PEM material (ring provider).
pub(crate) fn tls_acceptor(tls: &TlsConfig) -> std::io::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut tls.cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the TLS certificate PEM"));
    }
    let key = rustls_pemfile::private_key(&mut tls.key_pem.as_slice())
        .map_err(invalid)?
        .ok_or_else(|| invalid("no private key in the TLS key PEM"))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(invalid)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // E.g. EMFILE: back off a little instead of spinning.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tcp, faults) = FaultTcp::new(tcp);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.subscribe();
            if *shutdown.borrow_and_update() {
                return;
            }
            let serve = async {
                match acceptor {
                    None => serve_http(tcp, peer, shared.clone(), faults).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_http(tls, peer, shared.clone(), faults).await,
                            Ok(Err(e)) => log::info!("TLS handshake with {peer} failed: {e}"),
                            Err(_) => log::info!("TLS handshake with {peer} timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, faults: Arc<ConnFaults>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let faults = faults.clone();
        async move { handle(req, peer, shared, faults).await }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        log::debug!("HTTP connection with {peer}: {e}");
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn detail(status: StatusCode, detail: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "detail": detail }).to_string())
}

/// Only the path of a request is ever logged: its query may carry a token (`fal_jwt_token`).
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    faults: Arc<ConnFaults>,
) -> Result<Response<Body>, DropConnection> {
    let path = req.uri().path();
    if path == "/tokens/" || path == "/tokens" {
        if req.method() != Method::POST {
            log::info!("{} {path} from {peer}: 405 Method Not Allowed", req.method());
            return Ok(detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"));
        }
        return tokens(req, peer, &shared, &faults).await;
    }
    match realtime_app(path) {
        Some("stall") => {
            // The handshake is never answered.
            let started = Instant::now();
            log::info!("stall: holding {path} from {peer} without an answer");
            let path = path.to_owned();
            hold(&shared).await;
            log::info!(
                "stall: dropped {path} from {peer} unanswered after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Err(DropConnection)
        }
        Some(app) => {
            let app = app.to_owned();
            Ok(upgrade(req, app, peer, shared, faults))
        }
        None => {
            log::info!("{} {path} from {peer}: 404 Not Found", req.method());
            Ok(detail(StatusCode::NOT_FOUND, "Not Found"))
        }
    }
}

/// Waits [`HOLD_MAX`], or less when the emulator kills its connections or shuts down.
async fn hold(shared: &Shared) {
    let mut kill = shared.kill.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(HOLD_MAX) => {}
        _ = kill.changed() => {}
        _ = shutdown.changed() => {}
    }
}

/// The key of an `Authorization: Key <key>` header.
fn auth_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("key").then(|| key.trim())
}

/// `POST /tokens/`.
async fn tokens(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    faults: &ConnFaults,
) -> Result<Response<Body>, DropConnection> {
    Counters::inc(&shared.counters.token_requests);
    let fault = shared
        .token_fault
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let injected = match &fault {
        TokenFault::None => None,
        TokenFault::Body(_) => Some("a raw 201 body".to_owned()),
        TokenFault::Status(status, _) => Some(format!("status {status}")),
        TokenFault::Hang => Some("no answer (hang)".to_owned()),
        TokenFault::Reset => Some("a reset".to_owned()),
    };
    if let Some(what) = injected {
        log::info!("token request from {peer}: injected fault, {what}");
    }
    match fault {
        TokenFault::None => {}
        TokenFault::Body(body) => return Ok(json_response(StatusCode::CREATED, body)),
        TokenFault::Status(status, body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(json_response(status, body));
        }
        TokenFault::Hang => {
            hold(shared).await;
            return Err(DropConnection);
        }
        TokenFault::Reset => {
            faults.reset_on_drop();
            return Err(DropConnection);
        }
    }
    Ok(issue_token(req, peer, shared).await)
}

/// `POST /tokens/` without token faults.
async fn issue_token(req: Request<Incoming>, peer: SocketAddr, shared: &Shared) -> Response<Body> {
    let injected = shared
        .fail_remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if injected {
        let status = StatusCode::from_u16(shared.fail_status.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        log::info!("token request from {peer}: injected failure {status}");
        return detail(status, "Injected failure (emulator)");
    }
    if !auth_key(req.headers()).is_some_and(|k| shared.key_is_valid(k)) {
        log::info!("token request from {peer}: 401 Unauthorized (missing or unknown key)");
        return detail(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("could not read body: {e}")),
    };
    let (allowed_apps, expiration) = match parse_token_request(&body, shared.max_token_expiration) {
        Ok(r) => r,
        Err(msg) => {
            log::info!("token request from {peer}: 422 {msg}");
            return detail(StatusCode::UNPROCESSABLE_ENTITY, &msg);
        }
    };
    log::info!(
        "token issued to {peer} for {allowed_apps:?}, expires in {:.0} s",
        expiration.as_secs_f64()
    );
    let token = format!("emu.{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let now = Instant::now();
    {
        let mut store = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if store.len() >= TOKEN_STORE_PURGE {
            store.retain(|_, t| t.expires > now);
        }
        store.insert(
            token.clone(),
            TokenEntry {
                allowed_apps,
                expires: now + expiration,
            },
        );
    }
    Counters::inc(&shared.counters.tokens_issued);
    json_response(StatusCode::CREATED, serde_json::Value::from(token).to_string())
}

/// Parses `{"allowed_apps": [...], "token_expiration": secs}`; the expiration defaults to
/// and is clamped to `max_expiration`.
fn parse_token_request(body: &[u8], max_expiration: u64) -> Result<(Vec<String>, Duration), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let obj = value.as_object().ok_or("the body must be a JSON object")?;
    let apps = obj
        .get("allowed_apps")
        .and_then(|a| a.as_array())
        .ok_or("allowed_apps: a list of app aliases is required")?;
    let allowed_apps = apps
        .iter()
        .map(|a| a.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or("allowed_apps: every entry must be a string")?;
    let max = max_expiration as f64;
    let secs = match obj.get("token_expiration") {
        None | Some(serde_json::Value::Null) => max,
        Some(v) => match v.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 => s.min(max),
            _ => return Err("token_expiration: must be a non-negative number of seconds".into()),
        },
    };
    Ok((allowed_apps, Duration::from_secs_f64(secs)))
}

/// The app name of a realtime path, or `None` when the path is not one.
///
/// `/{owner}/{app}[/...]/realtime`; namespaced `/workflows|comfy/{owner}/{alias}[/...]/realtime`
/// use the alias. The app `echo` accepts any path below `/{owner}/echo`.
fn realtime_app(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let namespaced = matches!(segments.first(), Some(&"workflows") | Some(&"comfy"));
    let app_index = if namespaced { 2 } else { 1 };
    if segments.len() <= app_index || segments[..=app_index].iter().any(|s| s.is_empty()) {
        return None;
    }
    let app = segments[app_index];
    let ends_realtime = segments.len() > app_index + 1 && segments.last() == Some(&"realtime");
    (ends_realtime || app == "echo").then_some(app)
}

/// Minimal percent-decoding of a query component (`+` is left alone).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The WebSocket handshake of a realtime path.
fn upgrade(
    mut req: Request<Incoming>,
    app: String,
    peer: SocketAddr,
    shared: Arc<Shared>,
    faults: Arc<ConnFaults>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut token = None;
    let mut max_buffering = None;
    for pair in req.uri().query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "fal_jwt_token" => token = Some(percent_decode(v)),
            "max_buffering" => match percent_decode(v).parse::<usize>() {
                Ok(n) if (1..=60).contains(&n) => max_buffering = Some(n),
                _ => {
                    log::info!("upgrade of {path} from {peer}: 400 (bad max_buffering)");
                    return detail(
                        StatusCode::BAD_REQUEST,
                        "max_buffering must be an integer between 1 and 60",
                    );
                }
            },
            _ => {}
        }
    }

    let headers = req.headers();
    let is_upgrade = req.method() == Method::GET
        && header_has_token(headers, header::UPGRADE, "websocket")
        && header_has_token(headers, header::CONNECTION, "upgrade");
    if !is_upgrade {
        log::info!(
            "{} {path} from {peer}: 426 (not a WebSocket upgrade)",
            req.method()
        );
        let mut resp = detail(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: upgrade required",
        );
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return resp;
    }
    if !matches!(headers.get(header::SEC_WEBSOCKET_VERSION), Some(v) if v.as_bytes() == b"13") {
        log::info!("upgrade of {path} from {peer}: 400 (unsupported Sec-WebSocket-Version)");
        let mut resp = detail(StatusCode::BAD_REQUEST, "unsupported Sec-WebSocket-Version");
        resp.headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return resp;
    }
    let Some(accept) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        log::info!("upgrade of {path} from {peer}: 400 (missing Sec-WebSocket-Key)");
        return detail(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };

    let now = Instant::now();
    let token_ok = token.is_some_and(|t| {
        let store = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        store
            .get(&t)
            .is_some_and(|e| e.expires > now && e.allowed_apps.contains(&app))
    });
    let key_ok = !token_ok && auth_key(headers).is_some_and(|k| shared.key_is_valid(k));
    let authorized = token_ok || key_ok;
    let auth = if token_ok {
        "token"
    } else if key_ok {
        "key"
    } else {
        "none (unauthorized)"
    };

    Counters::inc(&shared.counters.ws_connections);
    if !authorized {
        Counters::inc(&shared.counters.ws_unauthorized);
    }
    let settings = shared.app_settings(&app);
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let ctx = SessionCtx {
        id,
        kind: AppKind::from_name(&app),
        buffering: max_buffering.unwrap_or(settings.buffering).max(1),
        settings,
        authorized,
        shared: shared.clone(),
        faults,
    };
    // Subscribe before answering, so a kill right after the client sees the 101 applies.
    let mut kill = shared.kill.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let who = format!("session {id} (app {app}, path {path}, peer {peer})");
    log::info!("{who} accepted: auth {auth}, buffering {}", ctx.buffering);
    tokio::spawn(async move {
        let started = Instant::now();
        if *shutdown.borrow_and_update() {
            return;
        }
        let io = tokio::select! {
            r = on_upgrade => match r {
                Ok(io) => io,
                Err(e) => {
                    log::info!("{who} ended: the upgrade failed ({e})");
                    return;
                }
            },
            _ = shutdown.changed() => {
                log::info!("{who} ended: the emulator shut down");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(ws_config())).await;
        let how = tokio::select! {
            (end, inputs) = session::run(ws, ctx) => format!("{end}, {inputs} input(s)"),
            _ = kill.changed() => "killed (kill_connections)".to_owned(),
            _ = shutdown.changed() => "the emulator shut down".to_owned(),
        };
        log::info!(
            "{who} ended after {:.3} s: {how}",
            started.elapsed().as_secs_f64()
        );
    });

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

fn ws_config() -> WebSocketConfig {
    // 16 KiB reads, as the client's default: tungstenite's 128 KiB is touched
    // on every read, so thousands of idle sessions (bench fan-out) would cost
    // 128 KiB each here.
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_paths() {
        assert_eq!(realtime_app("/owner/app/realtime"), Some("app"));
        assert_eq!(realtime_app("/owner/app/sub/path/realtime"), Some("app"));
        assert_eq!(realtime_app("/workflows/owner/alias/realtime"), Some("alias"));
        assert_eq!(realtime_app("/comfy/owner/alias/x/realtime"), Some("alias"));
        assert_eq!(realtime_app("/owner/echo"), Some("echo"));
        assert_eq!(realtime_app("/owner/echo/ws"), Some("echo"));
        assert_eq!(realtime_app("/owner/app"), None);
        assert_eq!(realtime_app("/owner/app/ws"), None);
        assert_eq!(realtime_app("/owner/realtime"), None);
        assert_eq!(realtime_app("//app/realtime"), None);
        assert_eq!(realtime_app("/workflows/owner/realtime"), None);
        assert_eq!(realtime_app("/"), None);
        assert_eq!(realtime_app(""), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("emu.abc"), "emu.abc");
        assert_eq!(percent_decode("a%2Fb%3d"), "a/b=");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    #[test]
    fn token_requests() {
        let (apps, exp) =
            parse_token_request(br#"{"allowed_apps":["a"],"token_expiration":120}"#, 3600).unwrap();
        assert_eq!(apps, vec!["a".to_string()]);
        assert_eq!(exp, Duration::from_secs(120));
        let (_, exp) = parse_token_request(br#"{"allowed_apps":[],"token_expiration":1e9}"#, 3600).unwrap();
        assert_eq!(exp, Duration::from_secs(3600));
        let (_, exp) = parse_token_request(br#"{"allowed_apps":[]}"#, 60).unwrap();
        assert_eq!(exp, Duration::from_secs(60));
        assert!(parse_token_request(b"nope", 60).is_err());
        assert!(parse_token_request(br#"{"token_expiration":1}"#, 60).is_err());
        assert!(parse_token_request(br#"{"allowed_apps":[1]}"#, 60).is_err());
        assert!(parse_token_request(br#"{"allowed_apps":[],"token_expiration":-1}"#, 60).is_err());
    }
}
