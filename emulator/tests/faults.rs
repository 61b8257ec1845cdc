//! The emulator's fault modes (control-app `do` values, the `stall` app, token faults),
//! observed with plain clients (tokio-tungstenite and raw TCP).

use std::time::{Duration, Instant};

use fal_realtime_emulator::{Emulator, EmulatorConfig, TokenFault};
use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

type Client = WebSocketStream<TcpStream>;

const STEP: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

// ----------------------------------------------------------------------------------------
// helpers

async fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("start the emulator")
}

fn pack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn ctl(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (Value::from(*k), v.clone())).collect())
}

fn act(action: &str) -> Value {
    ctl(&[("do", Value::from(action))])
}

/// A WebSocket to `/owner/{app}/realtime` over a TCP stream the test owns.
async fn connect_with(emu: &Emulator, app: &str, config: Option<WebSocketConfig>) -> Client {
    let url = format!("ws://{}/owner/{app}/realtime", emu.ws_host());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Key test-key".parse().unwrap());
    let tcp = TcpStream::connect(emu.addr()).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async_with_config(req, tcp, config),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    ws
}

async fn connect(emu: &Emulator, app: &str) -> Client {
    connect_with(emu, app, None).await
}

async fn send_value(ws: &mut Client, v: &Value) {
    ws.send(Message::binary(pack(v))).await.unwrap();
}

async fn next(ws: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(STEP, ws.next())
        .await
        .expect("an event in time")
}

async fn recv(ws: &mut Client) -> Message {
    next(ws)
        .await
        .expect("a frame, not the end")
        .expect("a frame, not an error")
}

/// Nothing at all (no byte, no FIN, no RST) arrives on the TCP stream for `QUIET`.
async fn assert_quiet_and_open(tcp: &TcpStream) {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(QUIET, tcp.peek(&mut byte)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("the server closed the connection"),
        Ok(Ok(_)) => panic!("the server sent something"),
        Ok(Err(e)) => panic!("the connection failed: {e}"),
    }
}

/// The request head of a WebSocket upgrade to `path`, with the key header.
fn upgrade_request(emu: &Emulator, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Key test-key\r\n\r\n",
        emu.ws_host()
    )
}

/// A raw WebSocket handshake; returns the stream right after the 101's head.
async fn raw_ws(emu: &Emulator, app: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(emu.addr()).await.unwrap();
    let req = upgrade_request(emu, &format!("/owner/{app}/realtime"));
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "an overlong response head");
        let n = tokio::time::timeout(STEP, tcp.read(&mut byte))
            .await
            .expect("the 101 in time")
            .unwrap();
        assert_eq!(n, 1, "the connection ended in the handshake");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// A masked client binary frame (payload < 126 bytes).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x82, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Writes a token request on a fresh connection.
async fn token_request(emu: &Emulator) -> TcpStream {
    let body = r#"{"allowed_apps":["echo"],"token_expiration":60}"#;
    let req = format!(
        "POST /tokens/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Key test-key\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        emu.ws_host(),
        body.len()
    );
    let mut tcp = TcpStream::connect(emu.addr()).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

/// Sends a token request and reads the whole answer: `(status, body)`.
async fn post_token(emu: &Emulator) -> (u16, String) {
    let mut tcp = token_request(emu).await;
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, tcp.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full HTTP response");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// Reads until the end of the stream; the stream must end, cleanly or not, within `STEP`.
async fn read_until_end(tcp: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("the end of the stream in time")
        {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e)),
        }
    }
}

// ----------------------------------------------------------------------------------------
// control-app faults

#[tokio::test]
async fn silent_answers_no_ping_and_keeps_the_connection_open() {
    let emu = start().await;
    let mut ws = connect(&emu, "control").await;
    send_value(&mut ws, &Value::from(1)).await;
    assert_eq!(recv(&mut ws).await, Message::binary(pack(&Value::from(1))));

    send_value(&mut ws, &act("silent")).await;
    ws.send(Message::Ping("are you there".into())).await.unwrap();
    assert_quiet_and_open(ws.get_ref()).await;
    // Inputs are not answered either.
    send_value(&mut ws, &Value::from(2)).await;
    assert_quiet_and_open(ws.get_ref()).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), ws.next())
            .await
            .is_err(),
        "no frame and no end"
    );
    drop(ws);

    // The server closes its side once the client closed its own (here a half-close).
    let mut tcp = raw_ws(&emu, "control").await;
    tcp.write_all(&client_frame(&pack(&act("silent")))).await.unwrap();
    tcp.write_all(&[0x89, 0x80, 1, 2, 3, 4]).await.unwrap(); // a masked empty ping
    assert_quiet_and_open(&tcp).await;
    tcp.shutdown().await.unwrap();
    let (bytes, err) = read_until_end(&mut tcp).await;
    assert!(bytes.is_empty() && err.is_none(), "{bytes:?} {err:?}");

    let mut ws = connect(&emu, "control").await;
    send_value(&mut ws, &Value::from(3)).await;
    assert_eq!(recv(&mut ws).await, Message::binary(pack(&Value::from(3))));
}

#[tokio::test]
async fn pause_delays_pongs_then_echoes() {
    let emu = start().await;
    let mut ws = connect(&emu, "control").await;
    let input = ctl(&[("do", Value::from("pause")), ("ms", Value::from(700))]);
    let sent = Instant::now();
    send_value(&mut ws, &input).await;
    ws.send(Message::Ping("p".into())).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "nothing during the pause"
    );
    let mut got_echo = false;
    let mut got_pong = false;
    for _ in 0..2 {
        match recv(&mut ws).await {
            Message::Binary(b) => {
                assert_eq!(&b[..], &pack(&input)[..]);
                got_echo = true;
            }
            Message::Pong(p) => {
                assert_eq!(&p[..], b"p");
                got_pong = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(got_echo && got_pong);
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "{:?}",
        sent.elapsed()
    );
    // The session goes on.
    send_value(&mut ws, &Value::from(7)).await;
    assert_eq!(recv(&mut ws).await, Message::binary(pack(&Value::from(7))));
    // The default pause is 2 s.
    let sent = Instant::now();
    send_value(&mut ws, &act("pause")).await;
    assert_eq!(recv(&mut ws).await, Message::binary(pack(&act("pause"))));
    assert!(
        sent.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn reset_aborts_with_an_rst() {
    let emu = start().await;
    let mut ws = connect(&emu, "control").await;
    send_value(&mut ws, &act("reset")).await;
    match next(&mut ws).await {
        Some(Err(WsError::Io(e))) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected a connection reset, got {other:?}"),
    }
}

#[tokio::test]
async fn cut_sends_a_truncated_frame_then_a_fin() {
    let emu = start().await;
    // With a WebSocket client: an error, not a message.
    let mut ws = connect(&emu, "control").await;
    send_value(&mut ws, &act("cut")).await;
    match next(&mut ws).await {
        Some(Err(WsError::Protocol(_) | WsError::Io(_))) => {}
        other => panic!("expected a protocol or I/O error, got {other:?}"),
    }

    // On the wire: the 4-byte header announcing 1000 bytes, 100 of them, then a FIN.
    let mut tcp = raw_ws(&emu, "control").await;
    tcp.write_all(&client_frame(&pack(&act("cut")))).await.unwrap();
    let (bytes, err) = read_until_end(&mut tcp).await;
    assert!(err.is_none(), "a FIN, not {err:?}");
    assert_eq!(bytes.len(), 104);
    assert_eq!(&bytes[..4], &[0x82, 126, 0x03, 0xe8]);
    // The payload starts like a msgpack bin 16 of 997 bytes.
    assert_eq!(&bytes[4..7], &[0xc5, 0x03, 0xe5]);
}

#[tokio::test]
async fn oversized_sends_one_frame_of_exactly_size_bytes() {
    let emu = start().await;
    let config = WebSocketConfig::default()
        .max_frame_size(Some(64 << 20))
        .max_message_size(Some(64 << 20));
    let mut ws = connect_with(&emu, "control", Some(config)).await;
    send_value(&mut ws, &act("oversized")).await;
    match recv(&mut ws).await {
        Message::Binary(b) => {
            assert_eq!(b.len(), 17 * 1024 * 1024);
            let mut rd = &b[..];
            let v = rmpv::decode::read_value(&mut rd).expect("one msgpack value");
            assert!(rd.is_empty() && v.is_bin());
        }
        other => panic!("{other:?}"),
    }
    for size in [1u64, 300, 100_000] {
        send_value(
            &mut ws,
            &ctl(&[("do", Value::from("oversized")), ("size", Value::from(size))]),
        )
        .await;
        match recv(&mut ws).await {
            Message::Binary(b) => assert_eq!(b.len() as u64, size),
            other => panic!("{other:?}"),
        }
    }
    // Then it goes on as the echo.
    send_value(&mut ws, &Value::from("after")).await;
    assert_eq!(recv(&mut ws).await, Message::binary(pack(&Value::from("after"))));
}

// ----------------------------------------------------------------------------------------
// the stall app

#[tokio::test]
async fn stall_never_answers_the_handshake() {
    let emu = start().await;
    let url = format!("ws://{}/owner/stall/realtime", emu.ws_host());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Key test-key".parse().unwrap());
    assert!(
        tokio::time::timeout(QUIET, tokio_tungstenite::connect_async(req))
            .await
            .is_err(),
        "the handshake must not complete"
    );

    // On the wire: no answer, the connection open; killing connections drops it.
    let mut tcp = TcpStream::connect(emu.addr()).await.unwrap();
    tcp.write_all(upgrade_request(&emu, "/owner/stall/realtime").as_bytes())
        .await
        .unwrap();
    assert_quiet_and_open(&tcp).await;
    emu.kill_connections();
    let (bytes, _) = read_until_end(&mut tcp).await;
    assert!(
        bytes.is_empty(),
        "no answer at all, got {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(emu.stats().ws_connections, 0);
}

// ----------------------------------------------------------------------------------------
// token faults

#[tokio::test]
async fn token_fault_bodies_and_statuses() {
    let emu = start().await;
    emu.set_token_fault(TokenFault::Body(r#"{"weird":1}"#.into()));
    for _ in 0..2 {
        assert_eq!(post_token(&emu).await, (201, r#"{"weird":1}"#.to_string()));
    }
    emu.set_token_fault(TokenFault::Status(429, "slow down".into()));
    assert_eq!(post_token(&emu).await, (429, "slow down".to_string()));
    emu.set_token_fault(TokenFault::Status(1000, "bad status".into()));
    assert_eq!(post_token(&emu).await, (500, "bad status".to_string()));
    // A token fault takes precedence over fail_next_token_requests, which waits.
    emu.fail_next_token_requests(1, 503);
    emu.set_token_fault(TokenFault::Status(502, String::new()));
    assert_eq!(post_token(&emu).await, (502, String::new()));
    emu.set_token_fault(TokenFault::None);
    assert_eq!(post_token(&emu).await.0, 503);
    let (status, body) = post_token(&emu).await;
    assert_eq!(status, 201);
    assert!(serde_json::from_str::<String>(&body).unwrap().starts_with("emu."));
    assert_eq!(emu.stats().token_requests, 7);
    assert_eq!(emu.stats().tokens_issued, 1);
}

#[tokio::test]
async fn token_fault_hang_holds_the_request() {
    let emu = start().await;
    emu.set_token_fault(TokenFault::Hang);
    let mut tcp = token_request(&emu).await;
    assert_quiet_and_open(&tcp).await;
    emu.kill_connections();
    let (bytes, _) = read_until_end(&mut tcp).await;
    assert!(
        bytes.is_empty(),
        "no answer at all, got {:?}",
        String::from_utf8_lossy(&bytes)
    );
    emu.set_token_fault(TokenFault::None);
    assert_eq!(post_token(&emu).await.0, 201);
}

#[tokio::test]
async fn token_fault_reset_aborts_the_connection() {
    let emu = start().await;
    emu.set_token_fault(TokenFault::Reset);
    let mut tcp = token_request(&emu).await;
    let (bytes, err) = read_until_end(&mut tcp).await;
    assert!(bytes.is_empty());
    let err = err.expect("a reset, not a clean end");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    emu.set_token_fault(TokenFault::None);
    assert_eq!(post_token(&emu).await.0, 201);
}
