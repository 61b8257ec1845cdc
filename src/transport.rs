//! I/O plumbing shared by every connection: TLS configuration, the small
//! HTTP/1.1 client for the token endpoint, and WebSocket opening.

use crate::auth::USER_AGENT;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The WebSocket stream type used by every connection.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<NetStream>>;

/// The TCP socket under every WebSocket: a tokio `TcpStream` that can move to
/// another runtime's reactor ([`reregister`]), or out of every reactor to a
/// host's own event loop ([`hand_to_host`]). Our own type because neither
/// tokio-tungstenite nor tokio-rustls gives the socket back out of the layers
/// above it, and a host that opens connections on one runtime and drives them
/// from another (the Python asyncio door) needs exactly that. Costs one
/// `match` per read and write.
pub(crate) struct NetStream(Net);

enum Net {
    /// Registered with the reactor of the runtime it was made or moved on.
    Reactor(TcpStream),
    /// Non-blocking and in no reactor: each poll tries the system call, and a
    /// poll that would block returns `Pending` without arranging a wake-up.
    /// Its host polls again when its own event loop reports the socket ready
    /// (see [`hand_to_host`]).
    Host(std::net::TcpStream),
    /// A failed move lost the socket.
    Lost,
}

/// One non-blocking system call as a poll: `Pending` when it would block.
fn host_poll<T>(mut op: impl FnMut() -> std::io::Result<T>) -> Poll<std::io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return Poll::Ready(r),
        }
    }
}

impl NetStream {
    fn new(tcp: TcpStream) -> Self {
        NetStream(Net::Reactor(tcp))
    }

    /// The error of a socket that a failed [`reregister`](Self::reregister) lost.
    fn lost() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "the socket was lost while moving to another runtime",
        )
    }

    /// Register the socket with the reactor of the runtime entered on this
    /// thread (readiness already pending is reported there again).
    fn reregister(&mut self) -> std::io::Result<()> {
        let std = self.take_std()?;
        self.0 = Net::Reactor(TcpStream::from_std(std)?);
        Ok(())
    }

    /// Take the socket out of its reactor, for its host's event loop.
    fn hand_to_host(&mut self) -> std::io::Result<()> {
        let std = self.take_std()?;
        self.0 = Net::Host(std);
        Ok(())
    }

    /// The socket as a non-blocking std socket in no reactor.
    fn take_std(&mut self) -> std::io::Result<std::net::TcpStream> {
        match std::mem::replace(&mut self.0, Net::Lost) {
            // `into_std` leaves it non-blocking.
            Net::Reactor(s) => s.into_std(),
            Net::Host(s) => Ok(s),
            Net::Lost => Err(Self::lost()),
        }
    }

    #[cfg(unix)]
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.0 {
            Net::Reactor(s) => Some(s.as_raw_fd()),
            Net::Host(s) => Some(s.as_raw_fd()),
            Net::Lost => None,
        }
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.0 {
            Net::Reactor(s) => Pin::new(s).poll_read(cx, buf),
            Net::Host(s) => {
                // The layers above pass initialized buffers (tungstenite's
                // and rustls' own): this zero-fills nothing then.
                let dst = buf.initialize_unfilled();
                let n = std::task::ready!(host_poll(|| std::io::Read::read(&mut &*s, dst)))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Net::Lost => Poll::Ready(Err(Self::lost())),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.0 {
            Net::Reactor(s) => Pin::new(s).poll_write(cx, buf),
            Net::Host(s) => host_poll(|| std::io::Write::write(&mut &*s, buf)),
            Net::Lost => Poll::Ready(Err(Self::lost())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.0 {
            Net::Reactor(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Net::Host(s) => host_poll(|| std::io::Write::write_vectored(&mut &*s, bufs)),
            Net::Lost => Poll::Ready(Err(Self::lost())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        !matches!(self.0, Net::Lost)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.0 {
            Net::Reactor(s) => Pin::new(s).poll_flush(cx),
            Net::Host(_) => Poll::Ready(Ok(())),
            Net::Lost => Poll::Ready(Err(Self::lost())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.0 {
            Net::Reactor(s) => Pin::new(s).poll_shutdown(cx),
            Net::Host(s) => Poll::Ready(s.shutdown(std::net::Shutdown::Write)),
            Net::Lost => Poll::Ready(Err(Self::lost())),
        }
    }
}

/// The TCP socket of a WebSocket stream (plain or TLS).
fn net_of(ws: &mut WsStream) -> Option<&mut NetStream> {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => Some(s),
        MaybeTlsStream::Rustls(s) => Some(s.get_mut().0),
        _ => None,
    }
}

/// Move the socket of `ws` to the reactor of the runtime entered on this
/// thread (`Handle::enter`). Call it between polls, never while a read or a
/// write is in flight on another runtime.
pub(crate) fn reregister(ws: &mut WsStream) -> Result<()> {
    let Some(net) = net_of(ws) else { return Ok(()) };
    net.reregister()
        .map_err(|e| io_error("could not move the socket to the runtime that drives it", &e))
}

/// Take the socket of `ws` out of its reactor: from now on a read or write
/// that would block returns `Pending` and arranges no wake-up, and the host
/// must poll again when its own event loop reports the socket (`raw_fd`)
/// ready for what is pending. Call it between polls.
pub(crate) fn hand_to_host(ws: &mut WsStream) -> Result<()> {
    let Some(net) = net_of(ws) else { return Ok(()) };
    net.hand_to_host()
        .map_err(|e| io_error("could not hand the socket to its event loop", &e))
}

/// The OS socket of a WebSocket stream (plain or TLS).
#[cfg(unix)]
pub(crate) fn raw_fd(ws: &WsStream) -> Option<std::os::fd::RawFd> {
    match ws.get_ref() {
        MaybeTlsStream::Plain(s) => s.raw_fd(),
        MaybeTlsStream::Rustls(s) => s.get_ref().0.raw_fd(),
        _ => None,
    }
}

/// The system roots (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`), parsed once
/// per process: loading them costs milliseconds, and every client needs them.
fn native_roots() -> &'static rustls::RootCertStore {
    static ROOTS: once_cell::sync::OnceCell<rustls::RootCertStore> = once_cell::sync::OnceCell::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

/// Build the rustls client configuration: the system roots (loaded once per
/// process) plus an optional extra CA file. Without an extra CA file every
/// client shares one configuration.
pub(crate) fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    static DEFAULT: once_cell::sync::OnceCell<Arc<rustls::ClientConfig>> = once_cell::sync::OnceCell::new();
    match extra_ca {
        None => DEFAULT.get_or_try_init(|| build_tls(None)).cloned(),
        Some(p) => build_tls(Some(p)),
    }
}

fn build_tls(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = native_roots().clone();
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| Error::invalid(format!("could not read the CA file {}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::invalid(format!("invalid PEM in the CA file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::invalid(format!(
                "the CA file {} holds no certificates",
                path.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| Error::invalid(format!("unusable certificate in {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Tls, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Map an I/O error, recognising TLS failures inside it.
pub(crate) fn io_error(context: &str, e: &std::io::Error) -> Error {
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Error::new(ErrorKind::Tls, format!("{context}: TLS error: {tls}"));
        }
    }
    match e.kind() {
        std::io::ErrorKind::InvalidData if e.to_string().contains("certificate") => {
            Error::new(ErrorKind::Tls, format!("{context}: TLS error: {e}"))
        }
        _ => Error::new(ErrorKind::Connect, format!("{context}: {e}")),
    }
}

/// A parsed `http(s)://host[:port]/path` URL.
pub(crate) struct HttpTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
    pub authority: String,
}

pub(crate) fn parse_http_url(url: &str) -> Result<HttpTarget> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::invalid(format!("invalid URL {url}: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(Error::invalid(format!(
                "invalid URL {url}: the scheme must be http or https"
            )))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| Error::invalid(format!("invalid URL {url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "/".into());
    Ok(HttpTarget {
        tls,
        host,
        port,
        path_and_query,
        authority,
    })
}

/// `POST` a JSON body; returns the status and the body.
pub(crate) async fn post_json(
    tls: Option<Arc<rustls::ClientConfig>>,
    target: &HttpTarget,
    authorization: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes)> {
    let what = format!("could not reach the token endpoint at {}", target.authority);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| io_error(&what, &e))?;
    let _ = tcp.set_nodelay(true);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(target.path_and_query.as_str())
        .header("host", target.authority.as_str())
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("user-agent", USER_AGENT)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("could not build the token request: {e}"),
            )
        })?;
    match tls {
        Some(cfg) if target.tls => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| Error::invalid(format!("invalid host name {}: {e}", target.host)))?;
            let stream = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| io_error(&what, &e))?;
            send(stream, req, &what).await
        }
        _ => send(tcp, req, &what).await,
    }
}

async fn send<S>(stream: S, req: hyper::Request<Full<Bytes>>, what: &str) -> Result<(u16, Bytes)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_err = |e: hyper::Error| Error::new(ErrorKind::Connect, format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(conn_err)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(conn_err);
    let out = match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Bound the body: a token response is tiny.
            let limited = http_body_util::Limited::new(resp.into_body(), 1 << 20);
            match limited.collect().await {
                Ok(b) => Ok((status, b.to_bytes())),
                Err(e) => Err(Error::new(
                    ErrorKind::Connect,
                    format!("{what}: reading the response failed: {e}"),
                )),
            }
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

/// Open a WebSocket. `url` carries the token where there is one; errors never do.
pub(crate) async fn open_ws(
    url: &str,
    auth_header: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: &crate::config::ClientConfig,
) -> Result<WsStream> {
    use tungstenite::client::IntoClientRequest;
    let public_url = url.split('?').next().unwrap_or(url).to_string();
    let mut req = url.into_client_request().map_err(|e| {
        Error::invalid(format!(
            "invalid WebSocket URL {public_url}: {}",
            scrub(&e.to_string())
        ))
    })?;
    let headers = req.headers_mut();
    headers.insert(
        "user-agent",
        tungstenite::http::HeaderValue::from_static(USER_AGENT),
    );
    if let Some(a) = auth_header {
        let mut v = tungstenite::http::HeaderValue::from_str(a)
            .map_err(|_| Error::invalid("the API key contains characters not allowed in a header"))?;
        v.set_sensitive(true);
        headers.insert("authorization", v);
    }
    let mut cfg = tungstenite::protocol::WebSocketConfig::default();
    if let Some(n) = config.max_frame_size {
        cfg = cfg.max_message_size(Some(n)).max_frame_size(Some(n));
    }
    let read = config
        .read_buffer_size
        .unwrap_or(crate::config::DEFAULT_READ_BUFFER_SIZE);
    cfg = cfg.read_buffer_size(read.max(1024));
    let connector = match tls {
        Some(c) => tokio_tungstenite::Connector::Rustls(c),
        None => tokio_tungstenite::Connector::Plain,
    };
    let what = format!("could not connect to {public_url}");
    // What tokio-tungstenite's `connect_async` does, onto our `NetStream`.
    let uri = req.uri();
    let host = match uri.host() {
        // rustls and the resolver take IPv6 addresses without the brackets.
        Some(h) if h.starts_with('[') && h.ends_with(']') => h[1..h.len() - 1].to_string(),
        Some(h) => h.to_string(),
        None => {
            return Err(ws_error(
                &what,
                tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName),
            ))
        }
    };
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("wss") => Some(443),
        Some("ws") => Some(80),
        _ => None,
    });
    let Some(port) = port else {
        return Err(ws_error(
            &what,
            tungstenite::Error::Url(tungstenite::error::UrlError::UnsupportedUrlScheme),
        ));
    };
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| io_error(&what, &e))?;
    tcp.set_nodelay(true).map_err(|e| io_error(&what, &e))?;
    match tokio_tungstenite::client_async_tls_with_config(
        req,
        NetStream::new(tcp),
        Some(cfg),
        Some(connector),
    )
    .await
    {
        Ok((ws, _resp)) => Ok(ws),
        Err(e) => Err(ws_error(&what, e)),
    }
}

/// Remove anything that looks like a token from a message.
fn scrub(s: &str) -> String {
    crate::endpoint::redact_url(s)
}

/// Map a tungstenite error to ours.
pub(crate) fn ws_error(context: &str, e: tungstenite::Error) -> Error {
    use tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let kind = if status == 401 || status == 403 {
                ErrorKind::Auth
            } else {
                ErrorKind::Connect
            };
            let mut err =
                Error::new(kind, format!("{context}: the server answered HTTP {status}")).with_status(status);
            if !body.is_empty() {
                err = err.with_body(body);
            }
            err
        }
        E::Io(io) => io_error(context, &io),
        E::Tls(t) => Error::new(ErrorKind::Tls, format!("{context}: TLS error: {t}")),
        E::Url(u) => Error::invalid(format!("{context}: {}", scrub(&u.to_string()))),
        E::Capacity(c) => Error::new(
            ErrorKind::Closed,
            format!("{context}: a frame exceeded the size limit: {c}"),
        )
        .with_close_code(1009),
        E::ConnectionClosed | E::AlreadyClosed => {
            Error::new(ErrorKind::Closed, format!("{context}: the connection is closed"))
        }
        E::Protocol(tungstenite::error::ProtocolError::SendAfterClosing) => Error::new(
            ErrorKind::Closed,
            format!("{context}: the connection is closing (a close frame was already sent)"),
        ),
        other => Error::new(
            ErrorKind::Connect,
            format!("{context}: {}", scrub(&other.to_string())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let t = parse_http_url("https://rest.fal.ai/tokens/").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("rest.fal.ai", 443, "/tokens/")
        );
        let t = parse_http_url("http://127.0.0.1:8080/tokens/").unwrap();
        assert!(!t.tls);
        assert_eq!((t.port, t.authority.as_str()), (8080, "127.0.0.1:8080"));
        assert!(parse_http_url("ftp://x/").is_err());
    }
}
