//! The explicit-connect, pull-style realtime API: `connect().await`, then
//! `send`, `recv().await`, `close`. No background task: the caller's task
//! reads and writes the socket itself, so a round trip costs what a bare
//! WebSocket client costs.

use crate::codec::{self, Frame, Incoming, Message};
use crate::error::{Error, ErrorKind, Result};
use crate::stats::{Stats, StatsCell};
use crate::transport::{ws_error, WsStream};
use crate::{Decoder, Encoder};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Convert an outgoing frame.
pub(crate) fn to_ws(frame: Frame) -> WsMessage {
    match frame {
        Frame::Binary(b) => WsMessage::Binary(b),
        Frame::Text(t) => WsMessage::Text(t.into()),
    }
}

/// What a close frame means to the caller: `None` for a normal close (1000/1001).
pub(crate) fn close_error(frame: Option<&CloseFrame>) -> Option<Error> {
    let f = frame?;
    let code = u16::from(f.code);
    if code == 1000 || code == 1001 {
        return None;
    }
    let reason = f.reason.as_str();
    let msg = if reason.is_empty() {
        format!("the server closed the connection with code {code}")
    } else {
        format!("the server closed the connection with code {code}: {reason}")
    };
    Some(Error::new(ErrorKind::Closed, msg).with_close_code(code))
}

pub(crate) fn lost() -> Error {
    Error::new(
        ErrorKind::Closed,
        "the connection was lost (no close frame from the server)",
    )
    .with_close_code(1006)
}

/// One item read from the socket, mapped.
pub(crate) enum Read {
    /// A data frame (already counted in `stats`).
    Frame(Frame),
    /// The stream ended: `None` for a normal close, else why. `close_frame` is
    /// true when the server sent a close frame (tungstenite then owes a reply).
    End { error: Option<Error>, close_frame: bool },
    /// A ping, pong or raw frame: nothing for the caller.
    Skip,
}

/// Map one item of the WebSocket stream and count data frames.
pub(crate) fn map_read(
    item: Option<std::result::Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    stats: &StatsCell,
) -> Read {
    use tokio_tungstenite::tungstenite::Error as E;
    let frame = match item {
        None | Some(Err(E::Protocol(_))) | Some(Err(E::Io(_))) => {
            return Read::End {
                error: Some(lost()),
                close_frame: false,
            }
        }
        Some(Err(E::ConnectionClosed)) | Some(Err(E::AlreadyClosed)) => {
            return Read::End {
                error: None,
                close_frame: false,
            }
        }
        Some(Err(e)) => {
            return Read::End {
                error: Some(ws_error("the connection failed", e)),
                close_frame: false,
            }
        }
        Some(Ok(WsMessage::Binary(b))) => Frame::Binary(b),
        Some(Ok(WsMessage::Text(t))) => Frame::Text(t.as_str().to_string()),
        Some(Ok(WsMessage::Close(cf))) => {
            return Read::End {
                error: close_error(cf.as_ref()),
                close_frame: true,
            }
        }
        Some(Ok(_)) => return Read::Skip,
    };
    stats.received(frame.len());
    Read::Frame(frame)
}

/// Send a 1000 close frame; an already closed socket is not an error.
pub(crate) async fn send_close<S>(sink: &mut S) -> Result<()>
where
    S: futures_util::Sink<WsMessage, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    use tokio_tungstenite::tungstenite::Error as E;
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    match sink.send(WsMessage::Close(Some(frame))).await {
        Ok(()) | Err(E::ConnectionClosed) | Err(E::AlreadyClosed) => Ok(()),
        Err(e) => Err(ws_error("could not close", e)),
    }
}

/// The sending half of a [`RealtimeSession`]. Owned by one task at a time.
pub struct RealtimeSender {
    sink: SplitSink<WsStream, WsMessage>,
    encoder: Option<Encoder>,
    stats: Arc<StatsCell>,
}

/// The receiving half of a [`RealtimeSession`]. Owned by one task at a time.
pub struct RealtimeReceiver {
    stream: SplitStream<WsStream>,
    decoder: Option<Decoder>,
    stats: Arc<StatsCell>,
    done: bool,
}

/// An open realtime session (pull style). Not `Clone`; [`split`](Self::split)
/// it to send and receive from different tasks or threads.
pub struct RealtimeSession {
    tx: RealtimeSender,
    rx: RealtimeReceiver,
    #[cfg(unix)]
    fd: Option<std::os::fd::RawFd>,
}

impl RealtimeSession {
    pub(crate) fn new(ws: WsStream, encoder: Option<Encoder>, decoder: Option<Decoder>) -> Self {
        let stats = Arc::new(StatsCell::new());
        StatsCell::inc(&stats.connects);
        #[cfg(unix)]
        let fd = crate::transport::raw_fd(&ws);
        let (sink, stream) = ws.split();
        RealtimeSession {
            #[cfg(unix)]
            fd,
            tx: RealtimeSender {
                sink,
                encoder,
                stats: stats.clone(),
            },
            rx: RealtimeReceiver {
                stream,
                decoder,
                stats,
                done: false,
            },
        }
    }

    /// Encode `input` as msgpack and send it.
    pub async fn send<T: Serialize + ?Sized>(&mut self, input: &T) -> Result<()> {
        self.tx.send(input).await
    }

    /// Send pre-encoded msgpack bytes (passed through the custom encoder, if any).
    pub async fn send_msgpack(&mut self, bytes: Bytes) -> Result<()> {
        self.tx.send_msgpack(bytes).await
    }

    /// Send a frame as is.
    pub async fn send_frame(&mut self, frame: Frame) -> Result<()> {
        self.tx.send_frame(frame).await
    }

    /// The next result; `Some(Err)` for a server error, an abnormal close or an
    /// undecodable frame; `None` once the session ended cleanly (normal close
    /// or the server's idle `TIMEOUT`).
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.rx.recv().await
    }

    /// Close with code 1000.
    pub async fn close(&mut self) -> Result<()> {
        self.tx.close().await
    }

    /// Counters of this session.
    pub fn stats(&self) -> Stats {
        self.tx.stats.snapshot()
    }

    pub(crate) fn count_token_fetch(&self) {
        StatsCell::inc(&self.tx.stats.token_fetches);
    }

    /// Split into independently owned halves.
    pub fn split(self) -> (RealtimeSender, RealtimeReceiver) {
        (self.tx, self.rx)
    }

    /// The OS socket, for readiness notifications from a host event loop
    /// (e.g. Python's asyncio). Do not read, write or close it.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.fd
    }
}

impl RealtimeSender {
    /// Encode `input` as msgpack and send it.
    pub async fn send<T: Serialize + ?Sized>(&mut self, input: &T) -> Result<()> {
        let bytes = codec::encode(input)?;
        self.send_msgpack(bytes).await
    }

    /// Send msgpack bytes (through the custom encoder, if any).
    pub async fn send_msgpack(&mut self, bytes: Bytes) -> Result<()> {
        let frame = match &self.encoder {
            Some(enc) => enc(bytes)?,
            None => Frame::Binary(bytes),
        };
        self.send_frame(frame).await
    }

    /// Send a frame as is.
    pub async fn send_frame(&mut self, frame: Frame) -> Result<()> {
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

    /// Counters of the session.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}

impl RealtimeReceiver {
    /// See [`RealtimeSession::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        while !self.done {
            let frame = match map_read(self.stream.next().await, &self.stats) {
                Read::Frame(f) => f,
                Read::Skip => continue,
                Read::End { error, .. } => {
                    self.done = true;
                    return error.map(Err);
                }
            };
            match decode_frame(&self.decoder, frame) {
                Incoming::Result(m) => {
                    StatsCell::inc(&self.stats.results);
                    return Some(Ok(m));
                }
                Incoming::Control { timing } => {
                    if let Some(t) = timing {
                        self.stats.set_timing(t);
                    }
                }
                Incoming::Timeout => {
                    self.done = true;
                    return None;
                }
                Incoming::Unauthorized(e) => {
                    self.done = true;
                    StatsCell::inc(&self.stats.errors);
                    return Some(Err(e));
                }
                Incoming::ServerError(e) | Incoming::Undecodable(e) => {
                    StatsCell::inc(&self.stats.errors);
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Counters of the session.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}

/// Apply the custom decoder (if any), then classify.
pub(crate) fn decode_frame(decoder: &Option<Decoder>, frame: Frame) -> Incoming {
    match decoder {
        None => codec::classify(frame),
        Some(d) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d(frame))) {
            Ok(Ok(bytes)) => codec::classify_binary(bytes),
            Ok(Err(e)) => Incoming::Undecodable(Error::new(
                ErrorKind::Decode,
                format!("the custom decoder failed: {}", e.message()),
            )),
            Err(_) => Incoming::Undecodable(Error::new(ErrorKind::Decode, "the custom decoder panicked")),
        },
    }
}
