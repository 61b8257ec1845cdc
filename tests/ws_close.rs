//! How a pull socket ended: close codes and reasons (`close_code`,
//! `close_reason`), closing with a code and reason (`close_with`), and the
//! idle `TIMEOUT` record of sessions. Against the emulator; every wait is bounded.

mod common;

use common::*;
use fal_realtime::{Client, ClientConfig, ErrorKind, FnHandler, Frame, RealtimeOptions, WsOptions};
use fal_realtime_emulator::AppSettings;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(10);

fn control_opts() -> WsOptions {
    WsOptions {
        path: Some("/realtime".into()),
        ..Default::default()
    }
}

fn msgpack(v: serde_json::Value) -> Frame {
    Frame::Binary(fal_realtime::codec::json_to_msgpack(&v.to_string()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_a_code_and_reason_records_the_servers_reply() {
    let emu = emulator().await;
    let mut ws = client(&emu)
        .ws_connect("me/echo", WsOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (ws.close_code(), ws.close_reason()),
        (None, None),
        "open: not ended"
    );
    ws.send_text("hi").await.unwrap();
    tokio::time::timeout(BOUND, ws.close_with(4000, "bye"))
        .await
        .unwrap()
        .unwrap();
    // The emulator answers a close frame with the same code and reason.
    assert_eq!(ws.close_code(), Some(4000));
    assert_eq!(ws.close_reason().as_deref(), Some("bye"));
    let e = ws.send_text("late").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(tokio::time::timeout(BOUND, ws.recv()).await.unwrap().is_none());
    // A second close sends nothing and keeps the record.
    tokio::time::timeout(BOUND, ws.close_with(1000, ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.close_code(), Some(4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_that_cannot_be_sent_are_refused() {
    let emu = emulator().await;
    let mut ws = client(&emu)
        .ws_connect("me/echo", WsOptions::default())
        .await
        .unwrap();
    for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        let e = ws.close_with(code, "").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{code}");
    }
    let e = ws.close_with(1000, &"x".repeat(124)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // Nothing was sent: the socket still works.
    ws.send_text("still").await.unwrap();
    let f = tokio::time::timeout(BOUND, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f, Frame::Text("still".into()));
    assert_eq!(ws.close_code(), None);
    tokio::time::timeout(BOUND, ws.close_with(1000, &"x".repeat(123)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.close_code(), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_close_and_a_dropped_connection_are_recorded() {
    let emu = emulator().await;
    let c = client(&emu);

    let mut ws = c.ws_connect("me/control", control_opts()).await.unwrap();
    ws.send(msgpack(json!({"do": "close", "code": 4001})))
        .await
        .unwrap();
    let e = tokio::time::timeout(BOUND, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!((e.kind(), e.close_code()), (ErrorKind::Closed, Some(4001)));
    assert_eq!(ws.close_code(), Some(4001));
    assert_eq!(ws.close_reason().as_deref(), Some("closing as asked"));

    let mut ws = c.ws_connect("me/control", control_opts()).await.unwrap();
    ws.send(msgpack(json!({"do": "close", "code": 1000})))
        .await
        .unwrap();
    assert!(tokio::time::timeout(BOUND, ws.recv()).await.unwrap().is_none());
    assert_eq!(ws.close_code(), Some(1000));

    let mut ws = c.ws_connect("me/control", control_opts()).await.unwrap();
    ws.send(msgpack(json!({"do": "drop"}))).await.unwrap();
    let e = tokio::time::timeout(BOUND, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.close_code(), Some(1006));
    assert_eq!(ws.close_code(), Some(1006), "no close frame: 1006");
    assert_eq!(ws.close_reason().as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_close_and_both_see_the_record() {
    let emu = emulator().await;
    let ws = client(&emu)
        .ws_connect("me/echo", WsOptions::default())
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    tx.send(Frame::Text("a".into())).await.unwrap();
    assert_eq!(
        tokio::time::timeout(BOUND, rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Frame::Text("a".into())
    );
    tx.close_with(3001, "done").await.unwrap();
    assert_eq!(tx.close_code(), None, "the reply has not been read yet");
    tokio::time::timeout(BOUND, rx.finish_close()).await.unwrap();
    assert_eq!((tx.close_code(), rx.close_code()), (Some(3001), Some(3001)));
    assert_eq!(rx.close_reason().as_deref(), Some("done"));
    // finish_close after the end is a no-op.
    tokio::time::timeout(BOUND, rx.finish_close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_the_servers_idle_timeout_message() {
    let apps = HashMap::from([(
        "idle".to_string(),
        AppSettings {
            session_timeout: Some(Duration::from_millis(150)),
            ..Default::default()
        },
    )]);
    let emu = emulator_with(apps).await;
    let mut s = client(&emu)
        .connect("me/idle", RealtimeOptions::default())
        .await
        .unwrap();
    s.send(&json!({"i": 1})).await.unwrap();
    assert!(s.recv().await.unwrap().is_ok());
    assert_eq!(s.idle_timeout(), None);
    assert!(tokio::time::timeout(BOUND, s.recv()).await.unwrap().is_none());
    let body: serde_json::Value = serde_json::from_str(s.idle_timeout().expect("recorded")).unwrap();
    assert_eq!(body["type"], "x-fal-error");
    assert_eq!(body["error"], "TIMEOUT");
    assert_eq!(body["reason"], "no inputs, reconnect when needed!");
    // A session that ended otherwise has none.
    let mut s = client(&emu)
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    s.close().await.unwrap();
    assert!(tokio::time::timeout(BOUND, s.recv()).await.unwrap().is_none());
    assert_eq!(s.idle_timeout(), None);
}
