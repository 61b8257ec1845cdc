//! Raw WebSocket (`ws_connect`): the same URL and auth rules as realtime
//! connections, any path, text and binary frames, no codec.

use crate::auth::TokenProvider;
use crate::codec::Frame;
use crate::error::Result;
use crate::session::{map_read, send_close, to_ws, Read};
use crate::stats::{Stats, StatsCell};
use crate::transport::{ws_error, WsStream};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Options of [`Client::ws_connect`](crate::Client::ws_connect).
#[derive(Clone)]
pub struct WsOptions {
    /// Path after the app id; default none (`/{id}`).
    pub path: Option<String>,
    /// `true` (default): JWT in the URL; `false`: `Authorization: Key` header.
    pub use_jwt: bool,
    /// Server-side input queue length, 1..=60.
    pub max_buffering: Option<i64>,
    /// Host-supplied token provider, called with `{id}{path}`.
    pub token_provider: Option<Arc<dyn TokenProvider>>,
    /// Token life to request (default 120 s).
    pub token_expiration: Option<Duration>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            path: None,
            use_jwt: true,
            max_buffering: None,
            token_provider: None,
            token_expiration: None,
        }
    }
}

/// A raw WebSocket connection. [`split`](Self::split) it to send and receive
/// from different tasks.
pub struct WsConnection {
    tx: WsSender,
    rx: WsReceiver,
    #[cfg(unix)]
    fd: Option<std::os::fd::RawFd>,
}

/// The sending half of a [`WsConnection`].
pub struct WsSender {
    sink: SplitSink<WsStream, WsMessage>,
    stats: Arc<StatsCell>,
}

/// The receiving half of a [`WsConnection`].
pub struct WsReceiver {
    stream: SplitStream<WsStream>,
    stats: Arc<StatsCell>,
    done: bool,
}

impl WsConnection {
    pub(crate) fn new(ws: WsStream) -> Self {
        let stats = Arc::new(StatsCell::new());
        StatsCell::inc(&stats.connects);
        #[cfg(unix)]
        let fd = crate::transport::raw_fd(&ws);
        let (sink, stream) = ws.split();
        WsConnection {
            #[cfg(unix)]
            fd,
            tx: WsSender {
                sink,
                stats: stats.clone(),
            },
            rx: WsReceiver {
                stream,
                stats,
                done: false,
            },
        }
    }

    /// Send a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.tx.send(Frame::Text(text.into())).await
    }

    /// Send a binary frame.
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<()> {
        self.tx.send(Frame::Binary(data.into())).await
    }

    /// Send a frame.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        self.tx.send(frame).await
    }

    /// The next data frame; `None` after a normal close; `Some(Err)` for an abnormal one.
    pub async fn recv(&mut self) -> Option<Result<Frame>> {
        self.rx.recv().await
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.tx.stats.snapshot()
    }

    pub(crate) fn count_token_fetch(&self) {
        StatsCell::inc(&self.tx.stats.token_fetches);
    }

    /// Split into independently owned halves.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.tx, self.rx)
    }

    /// The OS socket, for readiness notifications from a host event loop
    /// (e.g. Python's asyncio). Do not read, write or close it.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.fd
    }
}

impl WsSender {
    /// Send a frame.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        let n = frame.len();
        self.sink
            .send(to_ws(frame))
            .await
            .map_err(|e| ws_error("could not send", e))?;
        self.stats.sent(n);
        Ok(())
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        send_close(&mut self.sink).await
    }

    /// Counters of the connection.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}

impl WsReceiver {
    /// The next data frame. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Frame>> {
        while !self.done {
            match map_read(self.stream.next().await, &self.stats) {
                Read::Frame(f) => return Some(Ok(f)),
                Read::Skip => {}
                Read::End { error, .. } => {
                    self.done = true;
                    return error.map(Err);
                }
            }
        }
        None
    }

    /// Counters of the connection.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}
