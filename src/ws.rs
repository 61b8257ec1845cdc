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

    /// Send a close frame with code 1000 (without waiting for the reply; see
    /// [`close_with`](Self::close_with)).
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Close with `code` (1000–1003, 1007–1014 or 3000–4999) and `reason` (at
    /// most 123 bytes; [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// otherwise), then wait up to 1 s for the server's close reply: when this
    /// returns, the socket has ended and [`close_code`](Self::close_code) is
    /// known. Frames still on the way are dropped. Later sends fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed); only the first close
    /// frame goes out.
    pub async fn close_with(&mut self, code: u16, reason: &str) -> Result<()> {
        let sent = self.tx.close_with(code, reason).await;
        if !matches!(&sent, Err(e) if e.kind() == crate::ErrorKind::InvalidArgument) {
            self.rx.link.finish_close().await;
        }
        sent
    }

    /// The close code of how the socket ended: the code of the server's close
    /// frame (its reply to ours, or its own close; 1005 for a close frame
    /// without one), or 1006 when it ended without one (the connection
    /// dropped, the peer stopped answering, no reply to our close within
    /// 1 s). `None` while the socket has not ended. As Python's `websockets`.
    pub fn close_code(&self) -> Option<u16> {
        self.tx.close_code()
    }

    /// The reason of the server's close frame (`""` when it had none, or the
    /// socket ended without one); `None` while the socket has not ended.
    pub fn close_reason(&self) -> Option<String> {
        self.tx.close_reason()
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

/// How a socket ended, readable without its halves (`close_info` of its shared state).
#[derive(Clone)]
pub(crate) struct CloseWatch(Arc<link::PullShared>);

impl CloseWatch {
    /// See [`WsConnection::close_code`] and [`WsConnection::close_reason`].
    pub(crate) fn get(&self) -> Option<(u16, String)> {
        self.0.close_info()
    }
}

impl WsSender {
    /// Send a frame.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        self.link.send(frame).await
    }

    /// Send a close frame with code 1000. The receiving half gets the
    /// server's reply (its `recv` then returns `None`).
    pub async fn close(&mut self) -> Result<()> {
        self.link.close(1000, "").await
    }

    /// Send a close frame with `code` and `reason` (checked as in
    /// [`WsConnection::close_with`]) without waiting for the reply: the
    /// receiving half reads it ([`WsReceiver::finish_close`] waits for it).
    pub async fn close_with(&mut self, code: u16, reason: &str) -> Result<()> {
        self.link.close(code, reason).await
    }

    /// Whether [`close_with`](Self::close_with) accepts `code` and `reason`
    /// (1000–1003, 1007–1014 or 3000–4999; at most 123 bytes), without
    /// sending anything: an [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) error otherwise.
    pub fn check_close(code: u16, reason: &str) -> Result<()> {
        link::check_close(code, reason)
    }

    /// See [`WsConnection::close_code`].
    pub fn close_code(&self) -> Option<u16> {
        self.link.shared.close_info().map(|(c, _)| c)
    }

    /// A view of how the socket ended that outlives this half's lock (for the C door).
    pub(crate) fn close_watch(&self) -> CloseWatch {
        CloseWatch(self.link.shared.clone())
    }

    /// See [`WsConnection::close_reason`].
    pub fn close_reason(&self) -> Option<String> {
        self.link.shared.close_info().map(|(_, r)| r)
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

    /// After a close frame was sent (by either half): read and drop what is
    /// still on the way until the server's close reply ends the socket, for
    /// at most 1 s (then the socket is dropped: close code 1006). Afterwards
    /// [`close_code`](Self::close_code) is known.
    pub async fn finish_close(&mut self) {
        self.link.finish_close().await
    }

    /// See [`WsConnection::close_code`].
    pub fn close_code(&self) -> Option<u16> {
        self.link.shared.close_info().map(|(c, _)| c)
    }

    /// See [`WsConnection::close_reason`].
    pub fn close_reason(&self) -> Option<String> {
        self.link.shared.close_info().map(|(_, r)| r)
    }

    /// Counters of the connection.
    pub fn stats(&self) -> Stats {
        self.link.shared.stats.snapshot()
    }
}
