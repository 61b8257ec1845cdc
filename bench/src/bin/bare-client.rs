//! `bare-client`: the floor. A plain tokio-tungstenite client on a
//! current-thread runtime: one task, encode with rmp-serde, send, read the
//! next frame, check its `request_id`. No library in between.

use fal_realtime_bench::runner::{self, AsyncConn};
use fal_realtime_bench::{echo_id, fail, http, tls, Input, Opts, Payload, Report, Workload};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const NAME: &str = "bare";

struct Bare {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AsyncConn for Bare {
    async fn send(&mut self, input: &Input<'_>) -> Result<(), String> {
        let bytes = rmp_serde::to_vec_named(input).map_err(|e| e.to_string())?;
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| e.to_string())
    }

    async fn recv(&mut self, expect: &str) -> Result<(), String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    return match echo_id(&b) {
                        Some(id) if id == expect => Ok(()),
                        other => Err(format!("expected {expect}, got {other:?}")),
                    }
                }
                Some(Ok(Message::Text(t))) if t.contains("x-fal-message") => continue,
                Some(Ok(Message::Text(t))) => return Err(format!("server said {t}")),
                Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection lost".into()),
            }
        }
    }
}

async fn open(o: &Opts, tls_cfg: Option<Arc<rustls::ClientConfig>>) -> Result<Bare, String> {
    let alias = o.app.split('/').nth(1).unwrap_or(&o.app);
    let url = if o.jwt {
        let token = http::fetch_token(&o.host, tls_cfg.clone(), &o.key, alias).await?;
        format!("{}?fal_jwt_token={token}", o.realtime_url())
    } else {
        o.realtime_url()
    };
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if !o.jwt {
        let v = format!("Key {}", o.key).parse().map_err(|_| "bad key")?;
        req.headers_mut().insert("authorization", v);
    }
    let connector = match tls_cfg {
        Some(c) => tokio_tungstenite::Connector::Rustls(c),
        None => tokio_tungstenite::Connector::Plain,
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, o.ws_config(), true, Some(connector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Bare { ws })
}

fn tls_config(o: &Opts) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if !o.tls {
        return Ok(None);
    }
    let ca = o.ca.as_deref().ok_or("--scheme wss needs --ca FILE")?;
    tls::client_config(ca).map(Some)
}

async fn run(o: Opts) -> Result<Report, String> {
    let payload = Payload::new(o.payload);
    let mut report = Report::new(NAME, &o);
    match o.workload {
        Workload::Fanout => return Err("the fan-out workload is the `fanout` binary".into()),
        Workload::Seq | Workload::Pipe => {
            let mut c = open(&o, tls_config(&o)?).await?;
            if o.workload == Workload::Seq {
                runner::seq(&mut c, &o, &payload, &mut report).await?;
            } else {
                runner::pipe(&mut c, &o, &payload, &mut report).await?;
            }
            let _ = c.ws.close(None).await;
        }
        Workload::Cold => {
            runner::cold(&o, &mut report, |i| {
                let (o, payload) = (&o, &payload);
                async move {
                    let id = format!("cold{i}");
                    let t = Instant::now();
                    // A fresh TLS config too: nothing is carried over.
                    let mut c = open(o, tls_config(o)?).await?;
                    c.send(&payload.input(&id)).await?;
                    c.recv(&id).await?;
                    let d = t.elapsed();
                    let _ = c.ws.close(None).await;
                    Ok(d)
                }
            })
            .await?;
        }
    }
    Ok(report)
}

fn main() {
    let o = Opts::from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(o)) {
        Ok(r) => r.print(),
        Err(e) => fail(NAME, e),
    }
}
