//! Raw WebSocket (`ws_connect`): the same URL and auth rules as realtime
//! connections, any path, text and binary frames, no codec. Keepalive and the
//! end-of-socket rules are those of pull sessions (see `link`).

use crate::auth::TokenProvider;
use crate::codec::Frame;
use crate::error::Result;
use crate::keepalive::KeepAliveConfig;
use crate::link::{self, PullRx, PullTx};
use crate::stats::{Stats, StatsCell};
use crate::transport::WsStream;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

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
    /// Token life to request (default 120 s; at least 1 s).
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
/// from different tasks. Once it has ended (a close frame, a lost connection,
/// an oversized frame, a dead peer, or your own `close`), every later send
/// fails at once with an [`ErrorKind::Closed`](crate::ErrorKind::Closed) error that says why.
pub struct WsConnection {
    tx: WsSender,
    rx: WsReceiver,
}

/// The sending half of a [`WsConnection`].
pub struct WsSender {
    link: PullTx,
}

/// The receiving half of a [`WsConnection`].
pub struct WsReceiver {
    link: PullRx,
}

impl WsConnection {
    pub(crate) fn new(ws: WsStream, keepalive: KeepAliveConfig) -> Self {
        let (tx, rx) = link::pull(ws, keepalive, "WebSocket");
        WsConnection {
            tx: WsSender { link: tx },
            rx: WsReceiver { link: rx },
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

    /// The next data frame; `None` after a normal close (and for ever after
    /// any end); `Some(Err)` for an abnormal one.
    pub async fn recv(&mut self) -> Option<Result<Frame>> {
        self.rx.recv().await
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.tx.stats()
    }

    pub(crate) fn count_token_fetch(&self) {
        StatsCell::inc(&self.tx.link.shared.stats.token_fetches);
    }

    /// Split into independently owned halves.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.tx, self.rx)
    }

    /// The OS socket, for readiness notifications from a host event loop
    /// (e.g. Python's asyncio). Do not read, write or close it.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.tx.link.shared.raw_fd()
    }
}

impl WsSender {
    /// Send a frame.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        self.link.send(frame).await
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        self.link.close().await
    }

    /// Counters of the connection.
    pub fn stats(&self) -> Stats {
        self.link.shared.stats.snapshot()
    }
}

impl WsReceiver {
    /// The next data frame. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Frame>> {
        let item = self.link.read().await;
        if let Some(Err(_)) = &item {
            StatsCell::inc(&self.link.shared.stats.errors);
        }
        item
    }

    /// Counters of the connection.
    pub fn stats(&self) -> Stats {
        self.link.shared.stats.snapshot()
    }
}
