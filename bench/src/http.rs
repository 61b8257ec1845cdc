//! The smallest HTTP/1.1 client that fetches a realtime token (`POST
//! /tokens/`), for the bare client's cold start.

use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(req).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(1024);
    // The request says `Connection: close`: read to the end.
    match s.read_to_end(&mut out).await {
        Ok(_) => Ok(out),
        // Some TLS servers drop the connection without close_notify after the body.
        Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(out),
        Err(e) => Err(e.to_string()),
    }
}

/// Fetch a token for `alias` from `{scheme}://{host}/tokens/` with `Authorization: Key {key}`.
pub async fn fetch_token(
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    key: &str,
    alias: &str,
) -> Result<String, String> {
    let body = serde_json::json!({"allowed_apps": [alias], "token_expiration": 120}).to_string();
    let req = format!(
        "POST /tokens/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: Key {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let resp = match tls {
        None => exchange(tcp, req.as_bytes()).await?,
        Some(cfg) => {
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
            let name = rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, req.as_bytes()).await?
        }
    };
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no HTTP response from the token endpoint")?;
    if !head.starts_with("HTTP/1.1 2") && !head.starts_with("HTTP/1.0 2") {
        return Err(format!("token endpoint: {}", head.lines().next().unwrap_or("")));
    }
    // The emulator answers with Content-Length; a chunked body is not expected here.
    let v: serde_json::Value = serde_json::from_str(body.trim()).map_err(|e| format!("token body: {e}"))?;
    match v {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Object(m) => m
            .get("token")
            .or_else(|| m.get("detail"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| "token body has no token".into()),
        _ => Err("unexpected token body".into()),
    }
}
