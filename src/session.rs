//! The explicit-connect, pull-style realtime API: `connect().await`, then
//! `send`, `recv().await`, `close`. No background task: the caller's task
//! reads and writes the socket itself, so a round trip costs what a bare
//! WebSocket client costs. Keepalive runs while a `recv` waits.
//!
//! Once the session has ended (the server's idle `TIMEOUT`, `Unauthorized`,
//! a close frame, a lost connection, an oversized frame, a dead peer, or your
//! own `close`), the socket is closed and every later send fails at once with
//! an [`ErrorKind::Closed`](crate::ErrorKind::Closed) error that says why.

use crate::codec::{self, Frame, Incoming, Message};
use crate::config::{Decoder, Encoder};
use crate::error::Result;
use crate::keepalive::KeepAliveConfig;
use crate::link::{self, decode_frame, CloseAction, PullRx, PullTx, Style};
use crate::stats::{Stats, StatsCell};
use crate::transport::WsStream;
use bytes::Bytes;
use serde::Serialize;

/// The sending half of a [`RealtimeSession`]. Owned by one task at a time.
pub struct RealtimeSender {
    link: PullTx,
    encoder: Option<Encoder>,
}

/// The receiving half of a [`RealtimeSession`]. Owned by one task at a time.
pub struct RealtimeReceiver {
    link: PullRx,
    decoder: Option<Decoder>,
    /// The server's idle `TIMEOUT` message (JSON), once it ended the session.
    idle_timeout: Option<String>,
}

/// An open realtime session (pull style). Not `Clone`; [`split`](Self::split)
/// it to send and receive from different tasks or threads.
pub struct RealtimeSession {
    tx: RealtimeSender,
    rx: RealtimeReceiver,
}

impl RealtimeSession {
    pub(crate) fn new(
        ws: WsStream,
        keepalive: KeepAliveConfig,
        encoder: Option<Encoder>,
        decoder: Option<Decoder>,
    ) -> Self {
        let (tx, rx) = link::pull(ws, keepalive, "session");
        RealtimeSession {
            tx: RealtimeSender { link: tx, encoder },
            rx: RealtimeReceiver {
                link: rx,
                decoder,
                idle_timeout: None,
            },
        }
    }

    /// Encode `input` as msgpack and send it.
    pub async fn send<T: Serialize + ?Sized>(&mut self, input: &T) -> Result<()> {
        self.tx.send(input).await
    }

    /// Send pre-encoded msgpack bytes (passed through the custom encoder, if
    /// any). They must be one well-formed msgpack value
    /// ([`ErrorKind::Encode`](crate::ErrorKind::Encode) otherwise).
    pub async fn send_msgpack(&mut self, bytes: Bytes) -> Result<()> {
        self.tx.send_msgpack(bytes).await
    }

    /// Send a frame as is.
    pub async fn send_frame(&mut self, frame: Frame) -> Result<()> {
        self.tx.send_frame(frame).await
    }

    /// The next result; `Some(Err)` for a server error, an undecodable frame
    /// or an abnormal end (abnormal close, lost connection, `Unauthorized`,
    /// oversized frame, no answer to keepalive pings); `None` once the session
    /// ended cleanly (normal close or the server's idle `TIMEOUT`), and for
    /// ever after any end.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.rx.recv().await
    }

    /// See [`RealtimeReceiver::idle_timeout`].
    pub fn idle_timeout(&self) -> Option<&str> {
        self.rx.idle_timeout()
    }

    /// Close with code 1000. Results already on the way can still be
    /// received; later sends fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Counters of this session.
    pub fn stats(&self) -> Stats {
        self.tx.stats()
    }

    pub(crate) fn count_token_fetch(&self) {
        StatsCell::inc(&self.tx.link.shared.stats.token_fetches);
    }

    /// Split into independently owned halves.
    pub fn split(self) -> (RealtimeSender, RealtimeReceiver) {
        (self.tx, self.rx)
    }

    /// The OS socket, for readiness notifications from a host event loop
    /// (e.g. Python's asyncio). Do not read, write or close it.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.tx.link.shared.raw_fd()
    }
}

impl RealtimeSender {
    /// Encode `input` as msgpack and send it.
    pub async fn send<T: Serialize + ?Sized>(&mut self, input: &T) -> Result<()> {
        let bytes = codec::encode(input)?;
        self.send_encoded(bytes).await
    }

    /// Send msgpack bytes (through the custom encoder, if any); they must be
    /// one well-formed msgpack value.
    pub async fn send_msgpack(&mut self, bytes: Bytes) -> Result<()> {
        codec::validate_input(&bytes)?;
        self.send_encoded(bytes).await
    }

    async fn send_encoded(&mut self, bytes: Bytes) -> Result<()> {
        let frame = match &self.encoder {
            Some(enc) => enc(bytes)?,
            None => Frame::Binary(bytes),
        };
        self.send_frame(frame).await
    }

    /// Send a frame as is.
    pub async fn send_frame(&mut self, frame: Frame) -> Result<()> {
        self.link.send(frame).await
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        self.link.close(1000, "").await
    }

    /// Counters of the session.
    pub fn stats(&self) -> Stats {
        self.link.shared.stats.snapshot()
    }
}

impl RealtimeReceiver {
    /// See [`RealtimeSession::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        loop {
            let frame = match self.link.read().await? {
                Ok(f) => f,
                Err(e) => {
                    StatsCell::inc(&self.link.shared.stats.errors);
                    return Some(Err(e));
                }
            };
            let stats = &self.link.shared.stats;
            // Text frames are JSON and skip the decoder (see `decode_frame`);
            // classifying them here keeps the text for an idle TIMEOUT.
            let (incoming, raw) = match frame {
                Frame::Text(t) => (codec::classify_text(&t), Frame::Text(t)),
                Frame::Binary(b) => (
                    decode_frame(&self.decoder, Frame::Binary(b.clone())),
                    Frame::Binary(b),
                ),
            };
            match incoming {
                Incoming::Result(m) => {
                    StatsCell::inc(&stats.results);
                    return Some(Ok(m));
                }
                Incoming::Control { timing } => {
                    if let Some(t) = timing {
                        stats.set_timing(t);
                    }
                }
                Incoming::Timeout => {
                    self.idle_timeout = Some(match raw {
                        Frame::Text(t) => t,
                        // Through a custom decoder the frame may not be msgpack.
                        Frame::Binary(b) => codec::msgpack_to_json(&b)
                            .unwrap_or_else(|_| r#"{"type":"x-fal-error","error":"TIMEOUT"}"#.to_string()),
                    });
                    let why = "the server closed it after its idle timeout (TIMEOUT)";
                    self.link.end(why.into(), None, CloseAction::Send(1000)).await;
                    return None;
                }
                Incoming::Unauthorized(e) => {
                    let e = link::unauthorized(e, Style::Pull);
                    let why = "the server rejected the token (Unauthorized)";
                    // Cancel-safe: dropped during the close, the next read returns it.
                    let e = self
                        .link
                        .end_with(Some(e), why.into(), None, CloseAction::Send(1000))
                        .await?;
                    StatsCell::inc(&self.link.shared.stats.errors);
                    return Some(Err(e));
                }
                Incoming::ServerError(e) | Incoming::Undecodable(e) => {
                    StatsCell::inc(&stats.errors);
                    return Some(Err(e));
                }
            }
        }
    }

    /// The server's idle `TIMEOUT` message (its JSON text), once it ended
    /// the session: `recv` then returned `None` (a clean end) and will for
    /// ever. For hosts whose API reports that end as an error, as Python's
    /// `fal_client` does.
    pub fn idle_timeout(&self) -> Option<&str> {
        self.idle_timeout.as_deref()
    }

    /// Counters of the session.
    pub fn stats(&self) -> Stats {
        self.link.shared.stats.snapshot()
    }
}
