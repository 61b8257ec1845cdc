//! One WebSocket session: the apps and fal's unary server-template semantics.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::conn::ConnFaults;
use crate::{AppSettings, Counters, Shared};

pub(crate) type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// The text frame sent to connections that failed authentication.
pub(crate) const UNAUTHORIZED: &str = r#"{"status":"error","error":"Unauthorized"}"#;
const TIMEOUT: &str =
    r#"{"type":"x-fal-error","error":"TIMEOUT","reason":"no inputs, reconnect when needed!"}"#;
/// How long an unauthorized connection may stay open before the server closes it.
const UNAUTHORIZED_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the peer's close frame after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Upper bound of the `count` of a `stream` input.
const MAX_STREAM_COUNT: u64 = 100_000;
/// How long a `silent` connection is held at most.
const SILENT_MAX: Duration = Duration::from_secs(120);
/// Default and upper bound of the `ms` of a `pause` input.
const PAUSE_DEFAULT_MS: u64 = 2000;
const PAUSE_MAX_MS: u64 = 120_000;
/// Default and upper bound of the `size` of an `oversized` input.
const OVERSIZED_DEFAULT: u64 = 17 * 1024 * 1024;
const OVERSIZED_MAX: u64 = 1 << 30;
/// The payload length a `cut` frame announces, and how much of it is sent.
const CUT_ANNOUNCED: u16 = 1000;
const CUT_SENT: usize = 100;

/// Which behaviour an app name selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppKind {
    Echo,
    Stream,
    Fail,
    Control,
}

impl AppKind {
    pub(crate) fn from_name(name: &str) -> AppKind {
        match name {
            "stream" => AppKind::Stream,
            "fail" => AppKind::Fail,
            "control" => AppKind::Control,
            _ => AppKind::Echo,
        }
    }
}

/// Everything a session needs to know.
pub(crate) struct SessionCtx {
    /// The session's number, for the log.
    pub id: u64,
    pub kind: AppKind,
    pub settings: AppSettings,
    /// Queue length (`max_buffering` or the app's `buffering`), at least 1.
    pub buffering: usize,
    pub authorized: bool,
    pub shared: Arc<Shared>,
    /// Fault switches of the connection's TCP stream.
    pub faults: Arc<ConnFaults>,
}

/// Whether the session goes on after handling an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// How a session ended, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The connection was not authorized: `Unauthorized` sent, then closed.
    Unauthorized,
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<u16>),
    /// The connection ended without a close frame: the end of the stream, or a read error.
    Lost(Option<String>),
    /// Idle for the session timeout: `TIMEOUT` sent, then a 1000 close.
    TimedOut,
    /// The app ended it: an error reply, a control hook, or a failed write.
    App,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Unauthorized => f.write_str("unauthorized (Unauthorized sent, then closed)"),
            End::ClientClosed(Some(code)) => write!(f, "closed by the client (code {code})"),
            End::ClientClosed(None) => f.write_str("closed by the client (no code)"),
            End::Lost(None) => f.write_str("connection lost (no close frame)"),
            End::Lost(Some(e)) => write!(f, "connection lost ({e})"),
            End::TimedOut => f.write_str("idle timeout (TIMEOUT sent, closed with 1000)"),
            End::App => f.write_str("ended by the app (error reply, control hook or failed write)"),
        }
    }
}

/// Runs a session to its end: how it ended and how many inputs it read. Dropping the future
/// drops the connection without a close frame.
pub(crate) async fn run(mut ws: Ws, ctx: SessionCtx) -> (End, u64) {
    if !ctx.authorized {
        unauthorized(&mut ws).await;
        return (End::Unauthorized, 0);
    }
    let mut inputs = 0u64;
    let counters = &ctx.shared.counters;
    let delay = ctx.settings.delay;
    let idle_timeout = ctx.settings.session_timeout;
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);

    let mut queue: VecDeque<Message> = VecDeque::new();
    // The input being processed (waiting for `delay`), with its start time.
    let mut current: Option<(Message, Instant)> = None;
    let work = tokio::time::sleep_until(far_future);
    tokio::pin!(work);

    let mut last_input = Instant::now();
    let idle = tokio::time::sleep_until(idle_timeout.map_or(far_future, |t| last_input + t));
    tokio::pin!(idle);
    let mut timing_out = false;

    loop {
        if timing_out && current.is_none() {
            // Pending outputs are out (the queue is empty when nothing is in progress).
            if ws.feed(Message::text(TIMEOUT)).await.is_ok() {
                close(&mut ws, CloseCode::Normal, "").await;
            }
            return (End::TimedOut, inputs);
        }
        tokio::select! {
            biased;
            () = &mut work, if current.is_some() => {
                let Some((input, started)) = current.take() else { continue };
                if handle_input(&mut ws, &ctx, input, started).await == Flow::Stop {
                    return (End::App, inputs);
                }
                if let Some(next) = queue.pop_front() {
                    let now = Instant::now();
                    work.as_mut().reset(now + delay);
                    current = Some((next, now));
                }
            }
            () = &mut idle, if idle_timeout.is_some() && !timing_out => {
                // The timer is reset lazily: inputs only move `last_input`.
                let deadline = last_input + idle_timeout.unwrap_or_default();
                if Instant::now() >= deadline {
                    log::debug!("session idle for {idle_timeout:?}: timing out");
                    timing_out = true;
                } else {
                    idle.as_mut().reset(deadline);
                }
            }
            msg = ws.next(), if !timing_out => match msg {
                None => return (End::Lost(None), inputs),
                Some(Err(e)) => return (End::Lost(Some(e.to_string())), inputs),
                Some(Ok(Message::Close(frame))) => {
                    // Let tungstenite send its close reply, then stop.
                    drain(&mut ws).await;
                    return (End::ClientClosed(frame.map(|f| u16::from(f.code))), inputs);
                }
                Some(Ok(input @ (Message::Binary(_) | Message::Text(_)))) => {
                    Counters::inc(&counters.inputs_received);
                    inputs += 1;
                    let now = Instant::now();
                    last_input = now;
                    if current.is_some() {
                        if queue.len() >= ctx.buffering {
                            queue.pop_front();
                            Counters::inc(&counters.inputs_dropped);
                        }
                        queue.push_back(input);
                    } else if delay.is_zero() {
                        // Fast path: answer from the task that read the input.
                        if handle_input(&mut ws, &ctx, input, now).await == Flow::Stop {
                            return (End::App, inputs);
                        }
                    } else {
                        work.as_mut().reset(now + delay);
                        current = Some((input, now));
                    }
                }
                Some(Ok(_)) => {} // ping / pong: tungstenite answers pings itself
            },
            else => return (End::App, inputs),
        }
    }
}

/// An unauthorized connection: tell the client, give it a few seconds to close, then close
/// with 1008.
async fn unauthorized(ws: &mut Ws) {
    if ws.send(Message::text(UNAUTHORIZED)).await.is_err() {
        return;
    }
    let client_closed = tokio::time::timeout(UNAUTHORIZED_GRACE, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(_) = msg {
                break;
            }
        }
    })
    .await;
    match client_closed {
        Ok(()) => drain(ws).await,
        Err(_) => close(ws, CloseCode::Policy, "Unauthorized").await,
    }
}

/// Reads (and discards) until the connection ends, for at most [`CLOSE_GRACE`]. After a
/// received close frame this makes tungstenite flush its reply.
async fn drain(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// Sends a close frame (flushing anything fed before) and waits for the peer's reply.
async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        drain(ws).await;
    }
}

/// A handler exception, as fal's template reports it: an `INTERNAL_ERROR` text frame, then a
/// 1000 close.
async fn internal_error(ws: &mut Ws, reason: &str) -> Flow {
    let body = serde_json::json!({"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": reason});
    if ws.feed(Message::text(body.to_string())).await.is_ok() {
        close(ws, CloseCode::Normal, "").await;
    }
    Flow::Stop
}

fn timings_message(started: Instant) -> Message {
    let secs = started.elapsed().as_secs_f64();
    Message::text(format!(
        r#"{{"type":"x-fal-message","action":"timings","timing":{secs}}}"#
    ))
}

/// Queues one result (and its timings message) without flushing.
async fn feed_result(ws: &mut Ws, ctx: &SessionCtx, out: Message, started: Instant) -> bool {
    ctx.shared.counters.outputs_sent.fetch_add(1, Ordering::Relaxed);
    if ws.feed(out).await.is_err() {
        return false;
    }
    !ctx.settings.timings || ws.feed(timings_message(started)).await.is_ok()
}

/// Sends one result (and its timings message) and flushes.
async fn send_result(ws: &mut Ws, ctx: &SessionCtx, out: Message, started: Instant) -> Flow {
    if !ctx.settings.timings {
        ctx.shared.counters.outputs_sent.fetch_add(1, Ordering::Relaxed);
        return match ws.send(out).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        };
    }
    if feed_result(ws, ctx, out, started).await {
        flush(ws).await
    } else {
        Flow::Stop
    }
}

async fn flush(ws: &mut Ws) -> Flow {
    match ws.flush().await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Stop,
    }
}

fn decode(bytes: &[u8]) -> Option<Value> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value(&mut rd).ok()?;
    rd.is_empty().then_some(value)
}

fn encode(value: &Value) -> Message {
    let mut out = Vec::with_capacity(64);
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    Message::Binary(Bytes::from(out))
}

fn map_get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// A non-negative integer (or float, truncated) of the map.
fn map_u64(map: &[(Value, Value)], key: &str) -> Option<u64> {
    let v = map_get(map, key)?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// One msgpack value (`nil`, or a `bin 8/16/32` of zeros) that encodes to exactly `total`
/// bytes; empty when `total` is 0.
fn msgpack_of_len(total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total);
    match total {
        0 => {}
        1 => out.push(0xc0),
        2..=257 => out.extend_from_slice(&[0xc4, (total - 2) as u8]),
        258..=65_538 => {
            out.push(0xc5);
            out.extend_from_slice(&((total - 3) as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc6);
            out.extend_from_slice(&u32::try_from(total - 5).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    out.resize(total, 0);
    out
}

/// Reads and discards until the end of the stream or an error.
async fn discard<R: AsyncRead + Unpin>(io: &mut R) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// `silent`: no more WebSocket processing (no pongs, nothing sent). What the client sends is
/// read and discarded unprocessed, until it closes the connection or [`SILENT_MAX`].
async fn silent(ws: &mut Ws) {
    let _ = tokio::time::timeout(SILENT_MAX, discard(ws.get_mut())).await;
}

/// `cut`: the start of a binary frame announcing [`CUT_ANNOUNCED`] payload bytes, only
/// [`CUT_SENT`] of them, then a FIN. The connection is dropped when the client closes it (so
/// that unread input does not turn the close into an RST), or after [`CLOSE_GRACE`].
async fn cut(ws: &mut Ws) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        ws.flush().await.map_err(std::io::Error::other)?;
        let mut frame = vec![0x82, 126];
        frame.extend_from_slice(&CUT_ANNOUNCED.to_be_bytes());
        // The payload starts like the msgpack bin 16 that would fill it.
        frame.extend_from_slice(&msgpack_of_len(usize::from(CUT_ANNOUNCED))[..CUT_SENT]);
        let io = ws.get_mut();
        io.write_all(&frame).await?;
        io.flush().await?;
        io.shutdown().await?;
        discard(io).await;
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Handles one input after its delay.
async fn handle_input(ws: &mut Ws, ctx: &SessionCtx, input: Message, started: Instant) -> Flow {
    match ctx.kind {
        AppKind::Fail => internal_error(ws, "handler raised: boom").await,
        AppKind::Echo => match input {
            Message::Binary(ref b) if !crate::msgpack::is_single_value(b) => {
                internal_error(ws, "could not decode input").await
            }
            other => send_result(ws, ctx, other, started).await,
        },
        AppKind::Stream => match input {
            Message::Binary(b) => match decode(&b) {
                Some(Value::Map(map)) => stream(ws, ctx, map, started).await,
                Some(_) => internal_error(ws, "stream input must be a map").await,
                None => internal_error(ws, "could not decode input").await,
            },
            other => send_result(ws, ctx, other, started).await,
        },
        AppKind::Control => match input {
            Message::Binary(b) => match decode(&b) {
                Some(value) => control(ws, ctx, b, value, started).await,
                None => internal_error(ws, "could not decode input").await,
            },
            other => send_result(ws, ctx, other, started).await,
        },
    }
}

/// The `stream` app: `count` outputs, each the input map plus `"index": i`.
async fn stream(ws: &mut Ws, ctx: &SessionCtx, map: Vec<(Value, Value)>, started: Instant) -> Flow {
    let count = match map_get(&map, "count") {
        Some(Value::Integer(n)) => n
            .as_u64()
            .unwrap_or(0) // negative
            .min(MAX_STREAM_COUNT),
        _ => ctx.settings.stream_count as u64,
    };
    let mut out: Vec<(Value, Value)> = map
        .into_iter()
        .filter(|(k, _)| k.as_str() != Some("index"))
        .collect();
    out.push((Value::from("index"), Value::from(0)));
    let mut value = Value::Map(out);
    for i in 0..count {
        if let Value::Map(m) = &mut value {
            if let Some(last) = m.last_mut() {
                last.1 = Value::from(i);
            }
        }
        if !feed_result(ws, ctx, encode(&value), started).await {
            return Flow::Stop;
        }
    }
    flush(ws).await
}

/// The `control` app's test hooks.
async fn control(ws: &mut Ws, ctx: &SessionCtx, raw: Bytes, value: Value, started: Instant) -> Flow {
    let map = match &value {
        Value::Map(m) => m.as_slice(),
        _ => &[],
    };
    let action = map_get(map, "do").and_then(Value::as_str).unwrap_or("");
    if !action.is_empty() {
        log::debug!("session {}: control hook {action:?}", ctx.id);
    }
    let echo = Message::Binary(raw);
    match action {
        "garbage" => {
            if ws
                .feed(Message::Binary(Bytes::from_static(&[0xc1, 0xff])))
                .await
                .is_err()
            {
                return Flow::Stop;
            }
            send_result(ws, ctx, echo, started).await
        }
        "close" => {
            let code = map_get(map, "code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(4001);
            close(ws, CloseCode::from(code), "closing as asked").await;
            Flow::Stop
        }
        "drop" => Flow::Stop,
        "silent" => {
            silent(ws).await;
            Flow::Stop
        }
        "pause" => {
            let ms = map_u64(map, "ms").unwrap_or(PAUSE_DEFAULT_MS).min(PAUSE_MAX_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            send_result(ws, ctx, echo, started).await
        }
        "reset" => {
            ctx.faults.reset_on_drop();
            Flow::Stop
        }
        "cut" => {
            cut(ws).await;
            Flow::Stop
        }
        "oversized" => {
            let size = map_u64(map, "size")
                .unwrap_or(OVERSIZED_DEFAULT)
                .min(OVERSIZED_MAX);
            let frame = msgpack_of_len(size as usize);
            match ws.send(Message::Binary(Bytes::from(frame))).await {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Stop,
            }
        }
        "error_bin" => {
            let err = Value::Map(vec![
                (Value::from("type"), Value::from("x-fal-error")),
                (Value::from("error"), Value::from("INTERNAL_ERROR")),
                (Value::from("reason"), Value::from("binary error")),
            ]);
            match ws.send(encode(&err)).await {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Stop,
            }
        }
        "unauthorized" => match ws.send(Message::text(UNAUTHORIZED)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        },
        "timings" => {
            if ws.feed(timings_message(started)).await.is_err() {
                return Flow::Stop;
            }
            send_result(ws, ctx, echo, started).await
        }
        "text" => match serde_json::to_string(&value) {
            Ok(json) => send_result(ws, ctx, Message::text(json), started).await,
            Err(_) => internal_error(ws, "input cannot be represented as JSON").await,
        },
        _ => send_result(ws, ctx, echo, started).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_of_any_length() {
        for total in [1, 2, 3, 257, 258, 259, 65_538, 65_539, 65_540, 1 << 20] {
            let bytes = msgpack_of_len(total);
            assert_eq!(bytes.len(), total);
            let mut rd = &bytes[..];
            let value = rmpv::decode::read_value(&mut rd).expect("valid msgpack");
            assert!(rd.is_empty(), "{total}: one value");
            match value {
                Value::Nil => assert_eq!(total, 1),
                Value::Binary(b) => assert!(b.iter().all(|&x| x == 0)),
                other => panic!("{other:?}"),
            }
        }
        assert!(msgpack_of_len(0).is_empty());
    }
}
