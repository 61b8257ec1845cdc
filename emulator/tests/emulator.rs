//! End-to-end tests of the emulator with raw clients (tokio-tungstenite and hand-written HTTP).

use std::sync::Arc;
use std::time::Duration;

use fal_realtime_emulator::{certs, AppSettings, Emulator, EmulatorConfig};
use futures_util::{SinkExt, StreamExt};
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const STEP: Duration = Duration::from_secs(2);

// ----------------------------------------------------------------------------------------
// helpers

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("start the emulator")
}

async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .ok(); // TLS peers may close without close_notify
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

async fn post_token(emu: &Emulator, key: Option<&str>, body: &str) -> (u16, String) {
    let stream = TcpStream::connect(emu.addr()).await.unwrap();
    let auth = key.map(|k| format!("Key {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(stream, &emu.ws_host(), "POST", "/tokens/", &headers, body).await
}

async fn token(emu: &Emulator, app: &str) -> String {
    let body = format!(r#"{{"allowed_apps":["{app}"],"token_expiration":120}}"#);
    let (status, body) = post_token(emu, Some("test-key"), &body).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<String>(&body).expect("a JSON string token")
}

async fn connect_url(url: &str) -> Client {
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Connects to `/owner/{app}/realtime` with the header key (no token).
async fn connect_app(emu: &Emulator, app: &str, query: &str) -> Client {
    let url = format!("ws://{}/owner/{app}/realtime{query}", emu.ws_host());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Key test-key".parse().unwrap());
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

async fn recv(ws: &mut Client) -> Message {
    tokio::time::timeout(STEP, ws.next())
        .await
        .expect("a frame in time")
        .expect("a frame, not the end")
        .expect("a frame, not an error")
}

/// Receives until the close frame; returns its code.
async fn recv_close(ws: &mut Client) -> CloseCode {
    match recv(ws).await {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn pack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

fn unpack(msg: &Message) -> Value {
    match msg {
        Message::Binary(b) => rmpv::decode::read_value(&mut &b[..]).expect("msgpack output"),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

fn text_json(msg: &Message) -> serde_json::Value {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("JSON text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (Value::from(*k), v.clone())).collect())
}

fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v:?}"))
}

async fn send_value(ws: &mut Client, v: &Value) {
    ws.send(Message::binary(pack(v))).await.unwrap();
}

/// Reads the next frame and expects the end of the connection without a close frame.
async fn expect_dropped(ws: &mut Client) {
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("an end in time")
    {
        None => {}
        Some(Err(
            WsError::Protocol(_) | WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed,
        )) => {}
        other => panic!("expected a dropped connection, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------------------
// token endpoint

#[tokio::test]
async fn token_issue_auth_and_use() {
    let emu = start(EmulatorConfig::default()).await;
    let (status, body) = post_token(&emu, Some("wrong"), r#"{"allowed_apps":["echo"]}"#).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["detail"],
        "Unauthorized"
    );
    let (status, _) = post_token(&emu, None, r#"{"allowed_apps":["echo"]}"#).await;
    assert_eq!(status, 401);
    let (status, body) = post_token(&emu, Some("test-key"), "{not json").await;
    assert_eq!(status, 422);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["detail"].is_string());

    let tok = token(&emu, "echo").await;
    assert!(tok.starts_with("emu."), "{tok}");
    let mut ws = connect_url(&format!(
        "ws://{}/owner/echo/realtime?fal_jwt_token={tok}",
        emu.ws_host()
    ))
    .await;
    let input = map(&[("prompt", Value::from("a cat"))]);
    send_value(&mut ws, &input).await;
    assert_eq!(unpack(&recv(&mut ws).await), input);
    ws.close(None).await.unwrap();

    let stats = emu.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.token_requests, 4);
    assert_eq!(stats.ws_connections, 1);
    assert_eq!(stats.ws_unauthorized, 0);
    assert_eq!(stats.inputs_received, 1);
    assert_eq!(stats.outputs_sent, 1);
}

#[tokio::test]
async fn token_endpoint_accepts_id_secret_keys_and_no_slash() {
    let emu = start(EmulatorConfig {
        keys: vec!["id:secret".into()],
        ..Default::default()
    })
    .await;
    let stream = TcpStream::connect(emu.addr()).await.unwrap();
    let (status, body) = http(
        stream,
        &emu.ws_host(),
        "POST",
        "/tokens",
        &[("Authorization", "Key id:secret")],
        r#"{"allowed_apps":["x"],"token_expiration":10}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post_token(&emu, Some("test-key"), r#"{"allowed_apps":["x"]}"#).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn injected_token_failures() {
    let emu = start(EmulatorConfig::default()).await;
    emu.fail_next_token_requests(2, 503);
    let body = r#"{"allowed_apps":["echo"],"token_expiration":120}"#;
    for _ in 0..2 {
        let (status, body) = post_token(&emu, Some("test-key"), body).await;
        assert_eq!(status, 503);
        assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["detail"].is_string());
    }
    let (status, _) = post_token(&emu, Some("test-key"), body).await;
    assert_eq!(status, 201);
    assert_eq!(emu.stats().tokens_issued, 1);
    assert_eq!(emu.stats().token_requests, 3);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let emu = start(EmulatorConfig::default()).await;
    for path in ["/", "/nope", "/owner/app", "/owner/app/ws"] {
        let stream = TcpStream::connect(emu.addr()).await.unwrap();
        let (status, _) = http(stream, &emu.ws_host(), "GET", path, &[], "").await;
        assert_eq!(status, 404, "{path}");
    }
    // A realtime path without an upgrade.
    let stream = TcpStream::connect(emu.addr()).await.unwrap();
    let (status, _) = http(stream, &emu.ws_host(), "GET", "/o/a/realtime", &[], "").await;
    assert_eq!(status, 426);
}

// ----------------------------------------------------------------------------------------
// authentication

async fn expect_unauthorized(ws: &mut Client) {
    let msg = recv(ws).await;
    assert_eq!(
        text_json(&msg),
        serde_json::json!({"status": "error", "error": "Unauthorized"})
    );
}

#[tokio::test]
async fn bad_tokens_get_the_unauthorized_frame() {
    let emu = start(EmulatorConfig::default()).await;
    let other_app = token(&emu, "other").await;
    for query in [
        "",
        "?fal_jwt_token=emu.nope",
        &format!("?fal_jwt_token={other_app}"),
    ] {
        let mut ws = connect_url(&format!("ws://{}/owner/echo/realtime{query}", emu.ws_host())).await;
        expect_unauthorized(&mut ws).await;
        // Inputs are ignored; a client close ends it cleanly.
        send_value(&mut ws, &Value::from(1)).await;
        ws.close(None).await.unwrap();
        match tokio::time::timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) | None => {}
            other => panic!("expected the close reply, got {other:?}"),
        }
    }
    let stats = emu.stats();
    assert_eq!(stats.ws_connections, 3);
    assert_eq!(stats.ws_unauthorized, 3);
    assert_eq!(stats.inputs_received, 0);
}

#[tokio::test]
async fn expired_and_revoked_tokens() {
    let emu = start(EmulatorConfig::default()).await;
    let (status, body) = post_token(
        &emu,
        Some("test-key"),
        r#"{"allowed_apps":["echo"],"token_expiration":0}"#,
    )
    .await;
    assert_eq!(status, 201);
    let expired: String = serde_json::from_str(&body).unwrap();
    let mut ws = connect_url(&format!(
        "ws://{}/owner/echo/realtime?fal_jwt_token={expired}",
        emu.ws_host()
    ))
    .await;
    expect_unauthorized(&mut ws).await;

    let tok = token(&emu, "echo").await;
    let url = format!("ws://{}/owner/echo/realtime?fal_jwt_token={tok}", emu.ws_host());
    let mut ws = connect_url(&url).await;
    send_value(&mut ws, &Value::from(7)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(7));
    emu.revoke_tokens();
    // The open connection stays open...
    send_value(&mut ws, &Value::from(8)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(8));
    // ...but the token no longer opens new ones.
    let mut ws2 = connect_url(&url).await;
    expect_unauthorized(&mut ws2).await;
}

#[tokio::test]
async fn namespaced_ids_use_the_alias() {
    let emu = start(EmulatorConfig::default()).await;
    let tok = token(&emu, "alias").await;
    let mut ws = connect_url(&format!(
        "ws://{}/workflows/owner/alias/realtime?fal_jwt_token={tok}",
        emu.ws_host()
    ))
    .await;
    send_value(&mut ws, &Value::from("hi")).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from("hi"));
}

// ----------------------------------------------------------------------------------------
// apps

#[tokio::test]
async fn echo_round_trips_any_msgpack_and_text() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "echo", "").await;
    let values = [
        map(&[
            ("image", Value::Binary(vec![0, 1, 2, 254, 255])),
            (
                "nested",
                Value::Array(vec![Value::Nil, Value::from(1.5), Value::from("s")]),
            ),
            ("request_id", Value::from("r-1")),
        ]),
        Value::Binary(vec![9; 100_000]),
        Value::from(42),
        Value::Ext(3, vec![1, 2, 3]),
    ];
    for v in &values {
        let raw = pack(v);
        ws.send(Message::binary(raw.clone())).await.unwrap();
        match recv(&mut ws).await {
            Message::Binary(b) => assert_eq!(&b[..], &raw[..]),
            other => panic!("{other:?}"),
        }
    }
    ws.send(Message::text(r#"{"custom":"codec"}"#)).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text(r#"{"custom":"codec"}"#));
    ws.close(None).await.unwrap();
    assert_eq!(emu.stats().outputs_sent, 5);
}

#[tokio::test]
async fn echo_on_custom_paths() {
    let emu = start(EmulatorConfig::default()).await;
    let url = format!("ws://{}/owner/echo", emu.ws_host());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Key test-key".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send_value(&mut ws, &Value::from(true)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(true));
}

#[tokio::test]
async fn malformed_input_is_an_internal_error() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "echo", "").await;
    ws.send(Message::binary(vec![0xc1, 0x00])).await.unwrap();
    let err = text_json(&recv(&mut ws).await);
    assert_eq!(err["type"], "x-fal-error");
    assert_eq!(err["error"], "INTERNAL_ERROR");
    assert_eq!(err["reason"], "could not decode input");
    assert_eq!(recv_close(&mut ws).await, CloseCode::Normal);
}

#[tokio::test]
async fn slow_drops_the_oldest_inputs() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "slow", "?max_buffering=2").await;
    for i in 0..10 {
        send_value(&mut ws, &Value::from(i)).await;
    }
    // 0 is in progress when the others arrive; the queue keeps the latest two.
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(unpack(&recv(&mut ws).await).as_i64().unwrap());
    }
    assert_eq!(got, vec![0, 8, 9]);
    let stats = emu.stats();
    assert_eq!(stats.inputs_received, 10);
    assert_eq!(stats.inputs_dropped, 7);
    assert_eq!(stats.outputs_sent, 3);
    // Nothing else comes.
    assert!(tokio::time::timeout(Duration::from_millis(300), ws.next())
        .await
        .is_err());
}

#[tokio::test]
async fn app_settings_buffering_and_delay() {
    let mut config = EmulatorConfig::default();
    config.apps.insert(
        "queue".into(),
        AppSettings {
            buffering: 1,
            delay: Duration::from_millis(100),
            ..AppSettings::default()
        },
    );
    let emu = start(config).await;
    let mut ws = connect_app(&emu, "queue", "").await;
    for i in 0..5 {
        send_value(&mut ws, &Value::from(i)).await;
    }
    let a = unpack(&recv(&mut ws).await);
    let b = unpack(&recv(&mut ws).await);
    assert_eq!((a, b), (Value::from(0), Value::from(4)));
    assert_eq!(emu.stats().inputs_dropped, 3);
}

#[tokio::test]
async fn session_timeout_sends_timeout_then_closes() {
    let mut config = EmulatorConfig::default();
    config.default_app.session_timeout = Some(Duration::from_millis(200));
    let emu = start(config).await;
    let mut ws = connect_app(&emu, "echo", "").await;
    send_value(&mut ws, &Value::from(1)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(1));
    let started = std::time::Instant::now();
    let msg = text_json(&recv(&mut ws).await);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        msg,
        serde_json::json!({"type": "x-fal-error", "error": "TIMEOUT", "reason": "no inputs, reconnect when needed!"})
    );
    assert_eq!(recv_close(&mut ws).await, CloseCode::Normal);
}

#[tokio::test]
async fn session_timeout_finishes_pending_outputs() {
    let mut config = EmulatorConfig::default();
    config.apps.insert(
        "slowidle".into(),
        AppSettings {
            delay: Duration::from_millis(150),
            session_timeout: Some(Duration::from_millis(100)),
            ..AppSettings::default()
        },
    );
    let emu = start(config).await;
    let mut ws = connect_app(&emu, "slowidle", "").await;
    for i in 0..3 {
        send_value(&mut ws, &Value::from(i)).await;
    }
    for i in 0..3 {
        assert_eq!(unpack(&recv(&mut ws).await), Value::from(i));
    }
    assert_eq!(text_json(&recv(&mut ws).await)["error"], "TIMEOUT");
    assert_eq!(recv_close(&mut ws).await, CloseCode::Normal);
}

#[tokio::test]
async fn timings_follow_each_output() {
    let mut config = EmulatorConfig::default();
    config.default_app.timings = true;
    let emu = start(config).await;
    let mut ws = connect_app(&emu, "echo", "").await;
    send_value(&mut ws, &Value::from("x")).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from("x"));
    let t = text_json(&recv(&mut ws).await);
    assert_eq!(t["type"], "x-fal-message");
    assert_eq!(t["action"], "timings");
    assert!(t["timing"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn fail_sends_internal_error_then_closes() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "fail", "").await;
    send_value(&mut ws, &map(&[("a", Value::from(1))])).await;
    let err = text_json(&recv(&mut ws).await);
    assert_eq!(err["type"], "x-fal-error");
    assert_eq!(err["error"], "INTERNAL_ERROR");
    assert_eq!(err["reason"], "handler raised: boom");
    assert_eq!(recv_close(&mut ws).await, CloseCode::Normal);
}

#[tokio::test]
async fn stream_emits_indexed_outputs() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "stream", "").await;
    send_value(&mut ws, &map(&[("x", Value::from("y"))])).await;
    for i in 0..3 {
        let out = unpack(&recv(&mut ws).await);
        assert_eq!(get(&out, "x"), &Value::from("y"));
        assert_eq!(get(&out, "index"), &Value::from(i));
    }
    send_value(&mut ws, &map(&[("count", Value::from(5))])).await;
    for i in 0..5 {
        let out = unpack(&recv(&mut ws).await);
        assert_eq!(get(&out, "count"), &Value::from(5));
        assert_eq!(get(&out, "index"), &Value::from(i));
    }
    assert_eq!(emu.stats().outputs_sent, 8);
}

// ----------------------------------------------------------------------------------------
// control hooks

fn ctl(action: &str) -> Value {
    map(&[("do", Value::from(action)), ("n", Value::from(1))])
}

#[tokio::test]
async fn control_garbage_error_bin_unauthorized_timings_text() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "control", "").await;

    send_value(&mut ws, &ctl("garbage")).await;
    match recv(&mut ws).await {
        Message::Binary(b) => assert_eq!(&b[..], &[0xc1, 0xff]),
        other => panic!("{other:?}"),
    }
    assert_eq!(unpack(&recv(&mut ws).await), ctl("garbage"));

    send_value(&mut ws, &ctl("error_bin")).await;
    let err = unpack(&recv(&mut ws).await);
    assert_eq!(get(&err, "type"), &Value::from("x-fal-error"));
    assert_eq!(get(&err, "error"), &Value::from("INTERNAL_ERROR"));
    assert_eq!(get(&err, "reason"), &Value::from("binary error"));

    send_value(&mut ws, &ctl("unauthorized")).await;
    expect_unauthorized(&mut ws).await;

    send_value(&mut ws, &ctl("timings")).await;
    assert_eq!(text_json(&recv(&mut ws).await)["action"], "timings");
    assert_eq!(unpack(&recv(&mut ws).await), ctl("timings"));

    send_value(&mut ws, &ctl("text")).await;
    assert_eq!(
        text_json(&recv(&mut ws).await),
        serde_json::json!({"do": "text", "n": 1})
    );

    send_value(&mut ws, &ctl("whatever")).await;
    assert_eq!(unpack(&recv(&mut ws).await), ctl("whatever"));
    send_value(&mut ws, &Value::from(5)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(5));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn control_close_with_code() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "control", "").await;
    send_value(&mut ws, &ctl("close")).await;
    match recv(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4001);
            assert_eq!(f.reason.as_str(), "closing as asked");
        }
        other => panic!("{other:?}"),
    }
    let mut ws = connect_app(&emu, "control", "").await;
    send_value(
        &mut ws,
        &map(&[("do", Value::from("close")), ("code", Value::from(4003))]),
    )
    .await;
    assert_eq!(u16::from(recv_close(&mut ws).await), 4003);
}

#[tokio::test]
async fn control_drop_and_kill_connections() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_app(&emu, "control", "").await;
    send_value(&mut ws, &ctl("drop")).await;
    expect_dropped(&mut ws).await;

    let mut a = connect_app(&emu, "echo", "").await;
    let mut b = connect_app(&emu, "slow", "").await;
    send_value(&mut a, &Value::from(1)).await;
    assert_eq!(unpack(&recv(&mut a).await), Value::from(1));
    emu.kill_connections();
    expect_dropped(&mut a).await;
    expect_dropped(&mut b).await;
    // New connections still work.
    let mut c = connect_app(&emu, "echo", "").await;
    send_value(&mut c, &Value::from(2)).await;
    assert_eq!(unpack(&recv(&mut c).await), Value::from(2));
}

#[tokio::test]
async fn max_buffering_out_of_range_is_400() {
    let emu = start(EmulatorConfig::default()).await;
    for q in ["0", "61", "abc", "-1", ""] {
        let url = format!("ws://{}/owner/echo/realtime?max_buffering={q}", emu.ws_host());
        match tokio_tungstenite::connect_async(url).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400, "{q}"),
            other => panic!(
                "max_buffering={q}: expected HTTP 400, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // 1 and 60 are fine.
    for q in ["1", "60"] {
        let mut ws = connect_app(&emu, "echo", &format!("?max_buffering={q}")).await;
        send_value(&mut ws, &Value::from(1)).await;
        assert_eq!(unpack(&recv(&mut ws).await), Value::from(1));
    }
}

#[tokio::test]
async fn shutdown_stops_everything() {
    let emu = start(EmulatorConfig::default()).await;
    let addr = emu.addr();
    let mut ws = connect_app(&emu, "echo", "").await;
    emu.shutdown();
    expect_dropped(&mut ws).await;
    // The listener goes away shortly after.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}

// ----------------------------------------------------------------------------------------
// TLS

fn client_tls(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn tls_token_and_websocket() {
    let certs = certs::generate(&["localhost", "127.0.0.1"]);
    let emu = start(EmulatorConfig {
        tls: Some(certs.tls_config()),
        ..Default::default()
    })
    .await;
    assert!(emu.http_base().starts_with("https://localhost:"));
    assert!(emu.ws_host().starts_with("localhost:"));
    let tls = client_tls(&certs.ca_pem);

    // Token over HTTPS.
    let tcp = TcpStream::connect(emu.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let (status, body) = http(
        stream,
        &emu.ws_host(),
        "POST",
        "/tokens/",
        &[("Authorization", "Key test-key")],
        r#"{"allowed_apps":["echo"],"token_expiration":60}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let tok: String = serde_json::from_str(&body).unwrap();

    // WSS with the token; the client trusts only the generated CA.
    let url = format!("wss://{}/owner/echo/realtime?fal_jwt_token={tok}", emu.ws_host());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await
    .unwrap();
    let input = map(&[("bytes", Value::Binary(vec![1, 2, 3]))]);
    send_value(&mut ws, &input).await;
    assert_eq!(unpack(&recv(&mut ws).await), input);
    ws.close(None).await.unwrap();

    // A client that does not trust the CA fails the handshake.
    let untrusted = client_tls(&certs::generate(&["localhost"]).ca_pem);
    let url = format!("wss://{}/owner/echo/realtime", emu.ws_host());
    assert!(tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(untrusted)),
    )
    .await
    .is_err());
}

#[tokio::test]
async fn bad_tls_material_is_an_error() {
    let config = EmulatorConfig {
        tls: Some(fal_realtime_emulator::TlsConfig {
            cert_pem: b"nope".to_vec(),
            key_pem: b"nope".to_vec(),
        }),
        ..Default::default()
    };
    let err = Emulator::start(config).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Slow (5 s): run with `--ignored`.
#[tokio::test]
#[ignore]
async fn unauthorized_connections_are_closed_with_1008() {
    let emu = start(EmulatorConfig::default()).await;
    let mut ws = connect_url(&format!("ws://{}/owner/echo/realtime", emu.ws_host())).await;
    expect_unauthorized(&mut ws).await;
    let frame = tokio::time::timeout(Duration::from_secs(7), ws.next())
        .await
        .expect("closed within the grace period")
        .unwrap()
        .unwrap();
    match frame {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("{other:?}"),
    }
}

#[test]
fn detached_emulator_serves_without_a_caller_runtime() {
    let emu = Emulator::start_detached(EmulatorConfig::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut ws = connect_app(&emu, "echo", "").await;
        send_value(&mut ws, &Value::from(3)).await;
        assert_eq!(unpack(&recv(&mut ws).await), Value::from(3));
    });
    assert_eq!(emu.stats().outputs_sent, 1);
    drop(emu);
    drop(rt);
}

#[tokio::test]
async fn detached_emulator_can_be_started_and_dropped_in_async_code() {
    let emu = Emulator::start_detached(EmulatorConfig::default()).unwrap();
    let mut ws = connect_app(&emu, "echo", "").await;
    send_value(&mut ws, &Value::from(4)).await;
    assert_eq!(unpack(&recv(&mut ws).await), Value::from(4));
    drop(emu);
    expect_dropped(&mut ws).await;
}
