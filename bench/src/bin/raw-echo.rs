//! `raw-echo`: the minimal msgpack echo server over ws/wss, so the server's
//! own cost is visible beside the emulator's. One thread; every binary frame
//! is checked to be one msgpack value (borrowed decode, no copies) and echoed
//! as is. Any path is accepted and no auth is checked.
//!
//! `raw-echo [--port N] [--tls-cert FILE --tls-key FILE]` prints
//! `raw-echo listening on ws://127.0.0.1:PORT` and serves until killed.

use futures_util::{SinkExt, StreamExt};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn valid_msgpack(b: &[u8]) -> bool {
    let mut rd = b;
    rmpv::decode::read_value_ref(&mut rd).is_ok() && rd.is_empty()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Binary(b) if valid_msgpack(&b) => Message::Binary(b),
            Message::Binary(_) => {
                let _ = ws.close(None).await;
                return;
            }
            Message::Text(t) => Message::Text(t),
            Message::Close(_) => {
                // tungstenite queues the close reply; flush it.
                let _ = ws.flush().await;
                return;
            }
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

fn main() {
    let mut port = 0u16;
    let mut cert: Option<PathBuf> = None;
    let mut key: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = v().parse().expect("--port N"),
            "--tls-cert" => cert = Some(v().into()),
            "--tls-key" => key = Some(v().into()),
            other => {
                eprintln!("raw-echo: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let acceptor = match (cert, key) {
        (Some(c), Some(k)) => match fal_realtime_bench::tls::server_config(&c, &k) {
            Ok(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
            Err(e) => {
                eprintln!("raw-echo: {e}");
                std::process::exit(2);
            }
        },
        (None, None) => None,
        _ => {
            eprintln!("raw-echo: --tls-cert and --tls-key go together");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let scheme = if acceptor.is_some() { "wss" } else { "ws" };
        println!("raw-echo listening on {scheme}://{addr}");
        let _ = std::io::stdout().flush();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            match &acceptor {
                None => {
                    tokio::spawn(serve(tcp));
                }
                Some(acc) => {
                    let acc = acc.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acc.accept(tcp).await {
                            serve(tls).await;
                        }
                    });
                }
            }
        }
    });
}
