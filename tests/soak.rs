//! Soak and accounting: many concurrent connections × many messages with
//! every `request_id` accounted for (none lost, none duplicated), and fds and
//! threads flat across connect/close cycles. The bounded smoke versions run
//! in the test command; the full sizes (1,000 × 1,000, 1,000 cycles) are
//! `#[ignore]`d and run with `cargo test --release --test soak -- --ignored`
//! (numbers in tests/RELIABILITY.md).

mod common;

use common::*;
use fal_realtime::{Client, Message, RealtimeOptions, WsOptions};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::timeout;

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `conns` pull sessions and `conns` callback connections at once, each doing
/// `msgs` round trips with unique request ids; every id comes back exactly once.
async fn accounting(conns: usize, msgs: usize) {
    raise_fd_limit();
    let emu = emulator().await;
    let c = client(&emu);
    let mut tasks = Vec::new();
    for k in 0..conns {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
            let mut seen = HashSet::new();
            for i in 0..msgs {
                s.send(&json!({"request_id": format!("p{k}-{i}")})).await.unwrap();
                let m = timeout(Duration::from_secs(30), s.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert!(seen.insert(m.request_id().unwrap().to_string()), "duplicate");
            }
            s.close().await.unwrap();
            seen.len()
        }));
    }
    // Callback connections: the next input is sent from inside on_result.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut handles = Vec::new();
    for k in 0..conns {
        let seen = seen.clone();
        let slot: Arc<Mutex<Option<fal_realtime::RealtimeConnection>>> = Arc::default();
        let me = slot.clone();
        let opts = RealtimeOptions {
            throttle_interval: Duration::ZERO,
            ..Default::default()
        };
        let conn = c
            .realtime(
                "me/echo",
                opts,
                fal_realtime::FnHandler::new(move |m: Message| {
                    let id = m.request_id().unwrap().to_string();
                    let i: usize = id.rsplit('-').next().unwrap().parse().unwrap();
                    assert!(seen.lock().unwrap().insert(id), "duplicate");
                    if i + 1 < msgs {
                        if let Some(c) = me.lock().unwrap().as_ref() {
                            c.send(&json!({"request_id": format!("c{k}-{}", i + 1)})).unwrap();
                        }
                    }
                }),
            )
            .unwrap();
        *slot.lock().unwrap() = Some(conn.clone());
        conn.send(&json!({"request_id": format!("c{k}-0")})).unwrap();
        handles.push((conn, slot));
    }
    let mut pulled = 0;
    for t in tasks {
        pulled += timeout(Duration::from_secs(600), t).await.unwrap().unwrap();
    }
    assert_eq!(pulled, conns * msgs, "pull: lost results");
    let want = conns * msgs;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while seen.lock().unwrap().len() < want {
        assert!(tokio::time::Instant::now() < deadline, "callback: lost results");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), want);
    for (conn, slot) in handles {
        slot.lock().unwrap().take();
        assert_eq!(conn.stats().errors, 0);
        conn.shutdown().await;
    }
}

/// Connect/close cycles in every style; fds and threads end where they started.
async fn cycles(n: usize) -> (usize, usize, usize, usize, usize, usize) {
    let emu = emulator().await;
    let c: Client = client(&emu);
    // Warm up: the runtime's threads and the emulator's first sockets.
    let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
    s.close().await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (fd0, th0, rss0) = (fds(), threads(), rss_kib());
    for i in 0..n {
        let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
        s.send(&json!({"i": i})).await.unwrap();
        s.recv().await.unwrap().unwrap();
        s.close().await.unwrap();
        assert!(timeout(Duration::from_secs(10), s.recv())
            .await
            .unwrap()
            .is_none());
        let mut w = c.ws_connect("me/echo", WsOptions::default()).await.unwrap();
        w.send_text("x").await.unwrap();
        w.recv().await.unwrap().unwrap();
        w.close().await.unwrap();
        let rec = Recorder::default();
        let conn = c
            .realtime("me/echo", RealtimeOptions::default(), rec.clone())
            .unwrap();
        conn.send(&json!({"i": i})).unwrap();
        wait_until("result", || rec.n_results() == 1).await;
        conn.shutdown().await;
    }
    // Sockets whose server side lingers briefly: give them a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fds() > fd0 + 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (fd0, fds(), th0, threads(), rss0, rss_kib())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_smoke_accounting() {
    accounting(40, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_smoke_fds_and_threads_stay_flat() {
    let (fd0, fd1, th0, th1, _, _) = cycles(100).await;
    assert!(fd1 <= fd0 + 2, "fds grew from {fd0} to {fd1}");
    assert!(th1 <= th0 + 2, "threads grew from {th0} to {th1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full soak: cargo test --release --test soak -- --ignored --nocapture"]
async fn soak_full_1000_connections_x_1000_messages() {
    let t = std::time::Instant::now();
    accounting(1000, 1000).await;
    println!(
        "soak: 2 x 1000 connections x 1000 round trips in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full soak: cargo test --release --test soak -- --ignored --nocapture"]
async fn soak_full_1000_cycles_per_style() {
    let (fd0, fd1, th0, th1, rss0, rss1) = cycles(1000).await;
    println!("cycles: fds {fd0} -> {fd1}, threads {th0} -> {th1}, RSS {rss0} KiB -> {rss1} KiB");
    assert!(fd1 <= fd0 + 2 && th1 <= th0 + 2);
}
