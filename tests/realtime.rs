//! Life-cycle rules of the callback-style connection, against the emulator
//! over real sockets.

mod common;

use common::*;
use fal_realtime::{ConnectionState, ErrorKind, RealtimeOptions, TokenProvider};
use fal_realtime_emulator::AppSettings;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

fn no_throttle() -> RealtimeOptions {
    RealtimeOptions {
        throttle_interval: Duration::ZERO,
        ..Default::default()
    }
}

/// A token provider that waits for a permit before fetching a real token, so a
/// test can hold a connection in the connecting state.
fn gated_provider(emu_addr: String, gate: Arc<Semaphore>) -> Arc<dyn TokenProvider> {
    Arc::new(move |_app: String| {
        let gate = gate.clone();
        let addr = emu_addr.clone();
        async move {
            let _permit = gate
                .acquire()
                .await
                .map_err(|_| fal_realtime::Error::new(ErrorKind::Internal, "gate closed"))?;
            Ok(raw_token(&addr, "echo").await)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_connect_then_result() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/echo", no_throttle(), rec.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(conn.state(), ConnectionState::Idle);
    assert_eq!(emu.stats().token_requests, 0);
    assert_eq!(emu.stats().ws_connections, 0);
    conn.send(&json!({"i": 1, "request_id": "r-1"})).unwrap();
    wait_until("a result", || rec.n_results() == 1).await;
    let m = &rec.results()[0];
    assert_eq!(m.request_id(), Some("r-1"));
    assert_eq!(m.to_json().unwrap(), r#"{"i":1,"request_id":"r-1"}"#);
    assert_eq!(conn.state(), ConnectionState::Open);
    assert_eq!(
        rec.states(),
        vec![
            ConnectionState::Authenticating,
            ConnectionState::Connecting,
            ConnectionState::Open
        ]
    );
    let s = conn.stats();
    assert_eq!(
        (s.connects, s.frames_sent, s.results, s.token_fetches),
        (1, 1, 1, 1)
    );
    assert_eq!(emu.stats().ws_connections, 1);
    assert!(rec.errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_input_wins_while_connecting() {
    let emu = emulator().await;
    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        token_provider: Some(gated_provider(emu.addr().to_string(), gate.clone())),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    for i in 0..5 {
        conn.send(&json!({"i": i})).unwrap();
    }
    wait_until("authenticating", || {
        conn.state() == ConnectionState::Authenticating
    })
    .await;
    gate.add_permits(10);
    wait_until("a result", || rec.n_results() == 1).await;
    conn.send(&json!({"i": 99})).unwrap();
    wait_until("second result", || rec.n_results() == 2).await;
    assert_eq!(rec.ids(), vec![4, 99]);
    assert_eq!(conn.stats().inputs_replaced, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_delivers_the_last_input_of_a_burst() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        throttle_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    for i in 0..10 {
        conn.send(&json!({"i": i})).unwrap();
    }
    wait_until("the last input's result", || rec.ids().last() == Some(&9)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = rec.ids();
    assert_eq!(ids.last(), Some(&9));
    assert!(
        ids.len() <= 2,
        "a burst while connecting sends only the latest input: {ids:?}"
    );
    // While open: the first goes at once, the rest of the burst collapses to the last.
    let before = rec.n_results();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for i in 10..20 {
        conn.send(&json!({"i": i})).unwrap();
    }
    wait_until("the burst's last result", || rec.ids().last() == Some(&19)).await;
    let burst: Vec<i64> = rec.ids()[before..].to_vec();
    assert_eq!(burst.first(), Some(&10));
    assert!(burst.len() <= 3, "throttled burst: {burst:?}");
    assert!(conn.stats().inputs_replaced >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unthrottled_sends_are_all_delivered_in_order() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/echo", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 0})).unwrap();
    wait_until("open", || rec.n_results() == 1).await;
    for i in 1..50 {
        conn.send(&json!({"i": i})).unwrap();
    }
    wait_until("all results", || rec.n_results() == 50).await;
    assert_eq!(rec.ids(), (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reuse_by_key_replaces_the_handler() {
    let emu = emulator().await;
    let c = client(&emu);
    let first = Recorder::default();
    let second = Recorder::default();
    let opts = RealtimeOptions {
        connection_key: Some("k".into()),
        ..no_throttle()
    };
    let a = c.realtime("me/echo", opts.clone(), first.clone()).unwrap();
    a.send(&json!({"i": 1})).unwrap();
    wait_until("first result", || first.n_results() == 1).await;
    let b = c.realtime("me/echo", opts, second.clone()).unwrap();
    b.send(&json!({"i": 2})).unwrap();
    wait_until("second result", || second.n_results() == 1).await;
    assert_eq!(first.n_results(), 1);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(emu.stats().ws_connections, 1);
    // A different key is a different connection.
    let other = Recorder::default();
    let o = c
        .realtime(
            "me/echo",
            RealtimeOptions {
                connection_key: Some("other".into()),
                ..no_throttle()
            },
            other.clone(),
        )
        .unwrap();
    o.send(&json!({"i": 3})).unwrap();
    wait_until("other result", || other.n_results() == 1).await;
    assert_eq!(emu.stats().ws_connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_refreshed_without_dropping_the_socket() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        token_expiration: Some(Duration::from_secs(1)),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    wait_until("two refreshes", || conn.stats().token_fetches >= 3).await;
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("result after refresh", || rec.n_results() == 2).await;
    assert_eq!(emu.stats().ws_connections, 1);
    assert_eq!(conn.stats().connects, 1);
    assert!(emu.stats().tokens_issued >= 3);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_drops_token_closes_and_reauthenticates() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"do": "unauthorized"})).unwrap();
    wait_until("an auth error", || rec.n_errors() == 1).await;
    assert_eq!(rec.errors()[0].kind(), ErrorKind::Auth);
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    conn.send(&json!({"i": 7})).unwrap();
    wait_until("result after re-auth", || rec.n_results() == 1).await;
    assert_eq!(emu.stats().tokens_issued, 2, "a fresh token after Unauthorized");
    assert_eq!(emu.stats().ws_connections, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_from_provider_is_reported_as_unauthorized() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let provider: Arc<dyn TokenProvider> = Arc::new(|_app: String| async { Ok("bogus".to_string()) });
    let opts = RealtimeOptions {
        token_provider: Some(provider),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("an auth error", || rec.n_errors() == 1).await;
    let e = &rec.errors()[0];
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!e.message().contains("bogus"), "no token in messages: {e}");
    assert_eq!(rec.n_results(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_timeout_is_silent_and_the_next_send_reconnects() {
    let apps = HashMap::from([(
        "idle".to_string(),
        AppSettings {
            session_timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    )]);
    let emu = emulator_with(apps).await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/idle", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    wait_until("closed by the server", || conn.state() == ConnectionState::Closed).await;
    assert!(
        rec.errors().is_empty(),
        "TIMEOUT is not an error: {:?}",
        rec.errors()
    );
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("result after reconnect", || rec.n_results() == 2).await;
    assert_eq!(conn.stats().reconnects, 1);
    assert!(rec.errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_error_is_reported_with_body() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/fail", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("an error", || rec.n_errors() >= 1).await;
    let e = &rec.errors()[0];
    assert_eq!(e.kind(), ErrorKind::Server);
    assert!(e.message().starts_with("INTERNAL_ERROR: "), "{e}");
    let body: serde_json::Value = serde_json::from_str(e.body().unwrap()).unwrap();
    assert_eq!(body["type"], "x-fal-error");
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_x_fal_error_is_reported_and_connection_stays() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"do": "error_bin"})).unwrap();
    wait_until("an error", || rec.n_errors() == 1).await;
    assert_eq!(rec.errors()[0].message(), "INTERNAL_ERROR: binary error");
    conn.send(&json!({"i": 5})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    assert_eq!(conn.stats().connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abnormal_close_code_is_reported() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"do": "close", "code": 4001})).unwrap();
    wait_until("an error", || rec.n_errors() == 1).await;
    let e = &rec.errors()[0];
    assert_eq!((e.kind(), e.close_code()), (ErrorKind::Closed, Some(4001)));
    assert!(e.message().contains("closing as asked"), "{e}");
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result after reconnect", || rec.n_results() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_stream_is_reported_and_recovered() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    emu.kill_connections();
    wait_until("an error", || rec.n_errors() == 1).await;
    assert_eq!(rec.errors()[0].kind(), ErrorKind::Closed);
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("result after reconnect", || rec.n_results() == 2).await;
    // A dropped TCP connection (no close frame) too.
    conn.send(&json!({"do": "drop"})).unwrap();
    wait_until("second error", || rec.n_errors() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_is_reported_and_connection_survives() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"do": "garbage", "i": 3})).unwrap();
    wait_until("the echo after the garbage", || rec.n_results() == 1).await;
    assert_eq!(rec.errors().len(), 1);
    assert_eq!(rec.errors()[0].kind(), ErrorKind::Decode);
    assert_eq!(rec.ids(), vec![3]);
    assert_eq!(conn.state(), ConnectionState::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timings_are_surfaced_as_stats_not_results() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/control", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"do": "timings", "i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    wait_until("timing", || conn.stats().last_server_timing.is_some()).await;
    assert!(conn.stats().last_server_timing.unwrap() < Duration::from_secs(1));
    assert_eq!(rec.n_results(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_connecting_aborts_and_next_send_works() {
    let emu = emulator().await;
    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        token_provider: Some(gated_provider(emu.addr().to_string(), gate.clone())),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("authenticating", || {
        conn.state() == ConnectionState::Authenticating
    })
    .await;
    conn.close();
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    gate.add_permits(10);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(emu.stats().ws_connections, 0);
    assert_eq!(rec.n_results(), 0);
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    assert_eq!(rec.ids(), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_open_sends_1000_and_drops_pending() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        throttle_interval: Duration::from_secs(5),
        ..Default::default()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    conn.send(&json!({"i": 2})).unwrap(); // held by the throttle
    conn.close();
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.n_results(), 1);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_encoder_and_decoder_with_text_frames() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let encoder: fal_realtime::Encoder = Arc::new(|mp: bytes::Bytes| {
        Ok(fal_realtime::Frame::Text(fal_realtime::codec::msgpack_to_json(
            &mp,
        )?))
    });
    let decoder: fal_realtime::Decoder = Arc::new(|f: fal_realtime::Frame| match f {
        fal_realtime::Frame::Text(t) => fal_realtime::codec::json_to_msgpack(&t),
        fal_realtime::Frame::Binary(b) => Ok(b),
    });
    let opts = RealtimeOptions {
        encoder: Some(encoder),
        decoder: Some(decoder),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1, "s": "text"})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    assert_eq!(rec.results()[0].to_json().unwrap(), r#"{"i":1,"s":"text"}"#);
    assert_eq!(emu.stats().inputs_received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_fail_at_connect() {
    let emu = emulator().await;
    let c = client(&emu);
    for mb in [0, 61, -3] {
        let o = RealtimeOptions {
            max_buffering: Some(mb),
            ..Default::default()
        };
        let e = c.realtime("me/echo", o, Recorder::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("between 1 and 60"));
    }
    let e = c
        .realtime("not-an-id", RealtimeOptions::default(), Recorder::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_buffering_reaches_the_server() {
    let apps = HashMap::from([(
        "slowly".to_string(),
        AppSettings {
            delay: Duration::from_millis(100),
            buffering: 50,
            ..Default::default()
        },
    )]);
    let emu = emulator_with(apps).await;
    let rec = Recorder::default();
    let o = RealtimeOptions {
        max_buffering: Some(1),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/slowly", o, rec.clone()).unwrap();
    conn.send(&json!({"i": 0})).unwrap();
    wait_until("open", || conn.state() == ConnectionState::Open).await;
    for i in 1..6 {
        conn.send(&json!({"i": i})).unwrap();
    }
    wait_until("last result", || rec.ids().last() == Some(&5)).await;
    assert!(emu.stats().inputs_dropped >= 1, "{:?}", emu.stats());
    assert!(rec.n_results() < 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_errors_are_retried_then_reported() {
    let emu = emulator().await;
    let rec = Recorder::default();
    emu.fail_next_token_requests(2, 503);
    let conn = client(&emu)
        .realtime("me/echo", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result after retries", || rec.n_results() == 1).await;
    assert_eq!(emu.stats().token_requests, 3);
    assert!(rec.errors().is_empty());

    // A wrong key: 401, reported as Auth with the status, never retried.
    let mut cfg = fal_realtime::ClientConfig::local(&emu.ws_host(), "wrong-key");
    cfg.token_retries = 3;
    let bad = fal_realtime::Client::new(cfg).unwrap();
    let rec2 = Recorder::default();
    let conn2 = bad.realtime("me/echo", no_throttle(), rec2.clone()).unwrap();
    let before = emu.stats().token_requests;
    conn2.send(&json!({"i": 1})).unwrap();
    wait_until("auth error", || rec2.n_errors() == 1).await;
    let e = &rec2.errors()[0];
    assert_eq!((e.kind(), e.status()), (ErrorKind::Auth, Some(401)));
    assert!(!e.to_string().contains("wrong-key"));
    assert_eq!(emu.stats().token_requests, before + 1);
    wait_until("closed", || conn2.state() == ConnectionState::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_failing_token_providers_give_clear_errors() {
    let emu = emulator().await;
    let mut cfg = fal_realtime::ClientConfig::local(&emu.ws_host(), KEY);
    cfg.open_timeout = Duration::from_millis(200);
    let c = fal_realtime::Client::new(cfg).unwrap();
    let hang: Arc<dyn TokenProvider> =
        Arc::new(|_app: String| std::future::pending::<fal_realtime::Result<String>>());
    let rec = Recorder::default();
    let conn = c
        .realtime(
            "me/echo",
            RealtimeOptions {
                token_provider: Some(hang),
                ..no_throttle()
            },
            rec.clone(),
        )
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("timeout error", || rec.n_errors() == 1).await;
    assert_eq!(rec.errors()[0].kind(), ErrorKind::Timeout);

    let fail: Arc<dyn TokenProvider> = Arc::new(|app: String| async move {
        Err(fal_realtime::Error::new(
            ErrorKind::Auth,
            format!("no token for {app}"),
        ))
    });
    let rec = Recorder::default();
    let conn = c
        .realtime(
            "me/echo",
            RealtimeOptions {
                token_provider: Some(fail),
                ..no_throttle()
            },
            rec.clone(),
        )
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("provider error", || rec.n_errors() == 1).await;
    let e = &rec.errors()[0];
    assert_eq!(e.kind(), ErrorKind::TokenProvider);
    assert!(e.message().contains("no token for me/echo/realtime"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_auth_without_jwt() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime(
            "me/echo",
            RealtimeOptions {
                use_jwt: false,
                ..no_throttle()
            },
            rec.clone(),
        )
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    assert_eq!(emu.stats().token_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_never_contain_the_token() {
    let emu = emulator().await;
    // Tokens come from the emulator, the socket goes to a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = fal_realtime::ClientConfig::local(&emu.ws_host(), KEY);
    cfg.run_host = format!("ws://127.0.0.1:{port}");
    let c = fal_realtime::Client::new(cfg).unwrap();
    let rec = Recorder::default();
    let conn = c.realtime("me/echo", no_throttle(), rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("connect error", || rec.n_errors() == 1).await;
    let e = &rec.errors()[0];
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(
        !e.to_string().contains("fal_jwt_token") && !e.to_string().contains("emu."),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_may_send_and_close_reentrantly_and_panics_are_contained() {
    let emu = emulator().await;
    let c = client(&emu);
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slot: Arc<std::sync::Mutex<Option<fal_realtime::RealtimeConnection>>> = Default::default();
    let (count2, slot2) = (count.clone(), slot.clone());
    let handler = fal_realtime::FnHandler::new(move |m| {
        let n = count2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let conn = slot2.lock().unwrap().clone().unwrap();
        if n == 2 {
            panic!("a callback panic must not kill the connection");
        }
        if n < 5 {
            conn.send(&json!({"i": m.to_value().unwrap()["i"].as_i64().unwrap() + 1}))
                .unwrap();
        } else {
            conn.close();
        }
    });
    let conn = c.realtime("me/echo", no_throttle(), handler).unwrap();
    *slot.lock().unwrap() = Some(conn.clone());
    conn.send(&json!({"i": 0})).unwrap();
    wait_until("two callbacks", || {
        count.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    // The panicking callback (n == 2) did not send, so the chain stopped; the connection lives on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(conn.state(), ConnectionState::Open);
    conn.send(&json!({"i": 10})).unwrap();
    wait_until("chain to 5", || {
        count.load(std::sync::atomic::Ordering::SeqCst) == 5
    })
    .await;
    wait_until("closed from a callback", || {
        conn.state() == ConnectionState::Closed
    })
    .await;
    slot.lock().unwrap().take();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_callbacks_and_later_sends_fail() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let conn = client(&emu)
        .realtime("me/echo", no_throttle(), rec.clone())
        .unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    conn.shutdown().await;
    assert_eq!(conn.state(), ConnectionState::Closed);
    let e = conn.send(&json!({"i": 2})).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected);
    // The handler was released.
    assert_eq!(Arc::strong_count(&rec.0), 1);
}

#[test]
fn works_without_a_caller_runtime() {
    // Plain threads: the shared runtime runs the connection.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(emulator());
    let rec = Recorder::default();
    let c = client(&emu);
    let conn = std::thread::spawn(move || {
        let conn = c.realtime("me/echo", no_throttle(), rec.clone()).unwrap();
        conn.send(&json!({"i": 1})).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rec.n_results() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rec.ids(), vec![1]);
        conn
    })
    .join()
    .unwrap();
    assert!(fal_realtime::runtime::block_on(conn.shutdown()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_expiration_is_called_once_per_connect() {
    let emu = emulator().await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (calls2, addr) = (calls.clone(), emu.addr().to_string());
    let provider: Arc<dyn TokenProvider> = Arc::new(move |_app: String| {
        calls2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let addr = addr.clone();
        async move { Ok(raw_token(&addr, "echo").await) }
    });
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        token_provider: Some(provider),
        ..no_throttle()
    };
    let conn = client(&emu).realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("result", || rec.n_results() == 1).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(conn.stats().token_fetches, 1);
    // Without an expiration the token is not reused: a reconnect asks again.
    conn.close();
    wait_until("closed", || conn.state() == ConnectionState::Closed).await;
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("result", || rec.n_results() == 2).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
