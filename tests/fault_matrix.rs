//! The fault matrix, Rust doors (callback and pull): every fault of the
//! emulator and the fault proxy, each with the error kind it must produce
//! within a bounded time, and, for the callback style, recovery on the next
//! send. With `FAL_RT_MATRIX=path`, each cell is appended to `path` as a JSON
//! line for `scripts/reliability-report.sh` (tests/RELIABILITY.md).

mod common;

use common::*;
use fal_realtime::{Client, ClientConfig, ErrorKind, RealtimeOptions};
use fal_realtime_emulator::proxy::FaultProxy;
use fal_realtime_emulator::{Emulator, TokenFault};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(15);

fn record(door: &str, fault: &str, outcome: &str, elapsed: Duration) {
    if let Ok(path) = std::env::var("FAL_RT_MATRIX") {
        use std::io::Write;
        let line =
            json!({"door": door, "fault": fault, "outcome": outcome, "ms": elapsed.as_millis() as u64});
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

fn cfg(host: &str) -> ClientConfig {
    let mut c = ClientConfig::local(host, KEY);
    c.ping_interval = Some(Duration::from_millis(200));
    c.ping_timeout = Some(Duration::from_millis(400));
    c.open_timeout = Duration::from_millis(1500);
    c.max_frame_size = Some(1 << 20);
    c.token_retries = 0;
    c
}

fn kind_of(e: &fal_realtime::Error) -> String {
    match e.close_code() {
        Some(c) => format!("{} ({c})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A socket fault triggered by a control input: (name, input, expected kind, close code).
fn socket_faults() -> Vec<(&'static str, Value, ErrorKind, Option<u16>)> {
    vec![
        (
            "server stops answering",
            json!({"do": "silent"}),
            ErrorKind::Timeout,
            Some(1011),
        ),
        (
            "connection reset",
            json!({"do": "reset"}),
            ErrorKind::Closed,
            Some(1006),
        ),
        (
            "cut mid-frame",
            json!({"do": "cut"}),
            ErrorKind::Closed,
            Some(1006),
        ),
        (
            "oversized frame",
            json!({"do": "oversized", "size": 2 << 20}),
            ErrorKind::Closed,
            Some(1009),
        ),
        (
            "abnormal close 4001",
            json!({"do": "close", "code": 4001}),
            ErrorKind::Closed,
            Some(4001),
        ),
    ]
}

async fn pull_socket_fault(emu: &Emulator, input: &Value) -> fal_realtime::Error {
    let c = Client::new(cfg(&emu.ws_host())).unwrap();
    let mut s = c.connect("me/control", RealtimeOptions::default()).await.unwrap();
    s.send(input).await.unwrap();
    let e = timeout(BOUND, s.recv())
        .await
        .expect("bounded")
        .expect("an item")
        .unwrap_err();
    let later = s.send(&json!({"n": 1})).await.unwrap_err();
    assert_eq!(later.kind(), ErrorKind::Closed, "{later}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_pull_socket_faults() {
    let emu = emulator().await;
    for (name, input, kind, code) in socket_faults() {
        let t = Instant::now();
        let e = pull_socket_fault(&emu, &input).await;
        record("Rust pull", name, &kind_of(&e), t.elapsed());
        assert_eq!((e.kind(), e.close_code()), (kind, code), "{name}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_callback_socket_faults_and_recovery() {
    let emu = emulator().await;
    for (name, input, kind, code) in socket_faults() {
        let t = Instant::now();
        let rec = Recorder::default();
        let opts = RealtimeOptions {
            throttle_interval: Duration::ZERO,
            ..Default::default()
        };
        let conn = Client::new(cfg(&emu.ws_host()))
            .unwrap()
            .realtime("me/control", opts, rec.clone())
            .unwrap();
        conn.send(&input).unwrap();
        wait_until(name, || rec.n_errors() >= 1).await;
        let e = rec.errors()[0].clone();
        conn.send(&json!({"n": 2})).unwrap();
        wait_until("recovery", || rec.n_results() >= 1).await;
        record(
            "Rust callback",
            name,
            &format!("{}, recovers", kind_of(&e)),
            t.elapsed(),
        );
        assert_eq!((e.kind(), e.close_code()), (kind, code), "{name}: {e}");
        assert_eq!(conn.stats().connects, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_pongs_within_the_timeout_are_not_an_error() {
    let emu = emulator().await;
    let mut c = cfg(&emu.ws_host());
    c.ping_timeout = Some(Duration::from_secs(3));
    let c = Client::new(c).unwrap();
    let t = Instant::now();
    let mut s = c.connect("me/control", RealtimeOptions::default()).await.unwrap();
    s.send(&json!({"do": "pause", "ms": 700})).await.unwrap();
    let m = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m.to_value().unwrap()["do"].as_str(), Some("pause"));
    assert!(s.stats().pings_sent >= 2);
    record(
        "Rust pull",
        "pongs late (within the timeout)",
        "no error, result delivered",
        t.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_stall_and_token_endpoint_faults() {
    let emu = emulator().await;
    let c = Client::new(cfg(&emu.ws_host())).unwrap();
    let t = Instant::now();
    let e = c
        .connect("me/stall", RealtimeOptions::default())
        .await
        .err()
        .unwrap();
    record("Rust pull", "handshake stalls", &kind_of(&e), t.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let cases = [
        (
            "token: unexpected body",
            TokenFault::Body(r#"{"weird":1}"#.into()),
            ErrorKind::Http,
        ),
        (
            "token: HTTP 500",
            TokenFault::Status(500, "boom".into()),
            ErrorKind::Http,
        ),
        (
            "token: HTTP 401",
            TokenFault::Status(401, "no".into()),
            ErrorKind::Auth,
        ),
        ("token: hangs", TokenFault::Hang, ErrorKind::Timeout),
        ("token: connection reset", TokenFault::Reset, ErrorKind::Connect),
    ];
    for (name, fault, kind) in cases {
        emu.set_token_fault(fault);
        let t = Instant::now();
        let e = c
            .connect("me/echo", RealtimeOptions::default())
            .await
            .err()
            .unwrap();
        record("Rust pull", name, &kind_of(&e), t.elapsed());
        assert_eq!(e.kind(), kind, "{name}: {e}");
        // The callback style reports the same through on_error.
        let rec = Recorder::default();
        let conn = c
            .realtime("me/echo", RealtimeOptions::default(), rec.clone())
            .unwrap();
        conn.send(&json!({"n": 1})).unwrap();
        wait_until(name, || rec.n_errors() >= 1).await;
        record("Rust callback", name, &kind_of(&rec.errors()[0]), t.elapsed());
        assert_eq!(rec.errors()[0].kind(), kind, "{name}");
    }
    emu.set_token_fault(TokenFault::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_conditions_through_the_fault_proxy() {
    let emu = emulator().await;
    let proxy = FaultProxy::start(emu.addr()).await.unwrap();
    let host = proxy.addr().to_string();
    let c = Client::new(cfg(&host)).unwrap();

    // 40 ms ± 10 ms each way: results keep arriving, in order.
    proxy.set_latency(Duration::from_millis(40), Duration::from_millis(10));
    let t = Instant::now();
    let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
    for i in 0..20 {
        s.send(&json!({"i": i})).await.unwrap();
    }
    for i in 0..20 {
        let m = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m.to_value().unwrap()["i"].as_i64(), Some(i));
    }
    record(
        "Rust pull",
        "latency 40 ms ± 10 ms",
        "20/20 results in order",
        t.elapsed(),
    );
    proxy.set_latency(Duration::ZERO, Duration::ZERO);

    // A stall (TCP up, nothing forwarded): keepalive detects it.
    let t = Instant::now();
    proxy.set_stall(true);
    let e = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap_err();
    record("Rust pull", "network stall (proxy)", &kind_of(&e), t.elapsed());
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    proxy.set_stall(false);

    // A cut in the middle of a frame: Closed; the callback style recovers.
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        throttle_interval: Duration::ZERO,
        ..Default::default()
    };
    let conn = c.realtime("me/echo", opts, rec.clone()).unwrap();
    conn.send(&json!({"i": 0})).unwrap();
    wait_until("first echo", || rec.n_results() == 1).await;
    let t = Instant::now();
    proxy.cut_after(5);
    conn.send(&json!({"i": 1, "pad": "x".repeat(200)})).unwrap();
    wait_until("the cut", || rec.n_errors() >= 1).await;
    let e = rec.errors()[0].clone();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    conn.send(&json!({"i": 2})).unwrap();
    wait_until("recovery", || rec.n_results() >= 2).await;
    record(
        "Rust callback",
        "cut mid-frame (proxy)",
        &format!("{}, recovers", kind_of(&e)),
        t.elapsed(),
    );
}
