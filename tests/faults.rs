//! Faults every style must survive with a clear error: the session ends for
//! good (with a reason later sends get), dead peers are detected by
//! keepalive, oversized frames end the connection, the close handshake
//! completes, stale keyed handles cannot close a newer one's connection.
//! Every wait is bounded.

mod common;

use common::*;
use fal_realtime::{Client, ClientConfig, ErrorKind, FnHandler, RealtimeOptions, RealtimeSession, WsOptions};
use fal_realtime_emulator::AppSettings;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

/// The TCP state of a local socket from /proc/net/tcp (`01` = ESTABLISHED), by fd.
#[cfg(target_os = "linux")]
fn tcp_state(fd: std::os::fd::RawFd) -> Option<String> {
    use std::os::fd::BorrowedFd;
    // SAFETY: the session holds the socket open for this call.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let local = nix_port(sock, libc::getsockname)?;
    // Both ends: an ephemeral local port may be in use at once towards
    // another server (another test's socket).
    let remote = nix_port(sock, libc::getpeername);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of =
        |field: Option<&&str>| -> Option<u16> { u16::from_str_radix(field?.rsplit(':').next()?, 16).ok() };
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let same_remote = match remote {
            Some(r) => port_of(f.get(2)) == Some(r),
            None => true,
        };
        (port_of(f.get(1)) == Some(local) && same_remote).then(|| f.get(3).map(|s| s.to_string()))?
    })
}

#[cfg(target_os = "linux")]
type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// The port of one end of a socket (`getsockname`: local, `getpeername`:
/// remote); `None` once the remote end is gone.
#[cfg(target_os = "linux")]
fn nix_port(fd: std::os::fd::BorrowedFd<'_>, name: NameFn) -> Option<u16> {
    use std::os::fd::AsRawFd;
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a valid socket and a buffer of the right size.
    let rc = unsafe {
        name(
            fd.as_raw_fd(),
            &mut addr as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    (rc == 0).then(|| u16::from_be(addr.sin_port))
}

#[cfg(target_os = "linux")]
fn assert_not_established(s: &RealtimeSession) {
    let fd = s.raw_fd().expect("a socket");
    assert_ne!(
        tcp_state(fd).as_deref(),
        Some("01"),
        "the socket is still ESTABLISHED"
    );
}

async fn send_then_fails(s: &mut RealtimeSession, why: &str) {
    let e = s.send(&json!({"n": 1})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    assert!(e.message().contains(why), "{e}");
    assert!(!e.message().contains("next send"), "promises a reconnect: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_session_after_idle_timeout_refuses_sends() {
    let emu = emulator_with(HashMap::from([(
        "idle".to_string(),
        AppSettings {
            session_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        },
    )]))
    .await;
    let mut s = client(&emu)
        .connect("me/idle", RealtimeOptions::default())
        .await
        .unwrap();
    assert!(timeout(BOUND, s.recv()).await.unwrap().is_none());
    #[cfg(target_os = "linux")]
    assert_not_established(&s);
    send_then_fails(&mut s, "idle timeout").await;
    assert_eq!(s.stats().frames_sent, 0, "a refused send is not counted");
    assert!(s.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_session_after_unauthorized_is_closed() {
    let emu = emulator().await;
    let mut s = client(&emu)
        .connect("me/control", RealtimeOptions::default())
        .await
        .unwrap();
    s.send(&json!({"do": "unauthorized"})).await.unwrap();
    let e = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!e.message().contains("next send"), "{e}");
    #[cfg(target_os = "linux")]
    assert_not_established(&s);
    send_then_fails(&mut s, "Unauthorized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_session_after_close_frame_refuses_sends() {
    let emu = emulator().await;
    let mut s = client(&emu)
        .connect("me/control", RealtimeOptions::default())
        .await
        .unwrap();
    s.send(&json!({"do": "close", "code": 4001})).await.unwrap();
    let e = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap_err();
    assert_eq!((e.kind(), e.close_code()), (ErrorKind::Closed, Some(4001)));
    send_then_fails(&mut s, "4001").await;
    // Our own close: later sends say so.
    let mut s = client(&emu)
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    s.close().await.unwrap();
    send_then_fails(&mut s, "you closed it").await;
    assert!(timeout(BOUND, s.recv()).await.unwrap().is_none());
}

fn small_frames(emu: &fal_realtime_emulator::Emulator) -> Client {
    let mut cfg = ClientConfig::local(&emu.ws_host(), KEY);
    cfg.max_frame_size = Some(1024);
    Client::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_ends_the_connection_in_every_style() {
    let emu = emulator().await;
    let big = json!({"pad": "x".repeat(4096)});
    // Pull: a Closed error with 1009, the socket closed, sends refused.
    let mut s = small_frames(&emu)
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    s.send(&big).await.unwrap();
    let e = timeout(BOUND, s.recv()).await.unwrap().unwrap().unwrap_err();
    assert_eq!((e.kind(), e.close_code()), (ErrorKind::Closed, Some(1009)), "{e}");
    #[cfg(target_os = "linux")]
    assert_not_established(&s);
    send_then_fails(&mut s, "size limit").await;
    // Raw socket: the same.
    let opts = WsOptions {
        path: Some("/realtime".into()),
        ..Default::default()
    };
    let mut w = small_frames(&emu).ws_connect("me/echo", opts).await.unwrap();
    w.send_binary(fal_realtime::codec::encode(&big).unwrap())
        .await
        .unwrap();
    let e = timeout(BOUND, w.recv()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.close_code(), Some(1009));
    assert_eq!(w.send_text("x").await.unwrap_err().kind(), ErrorKind::Closed);
    // Callback: on_error with 1009, then the next send reconnects.
    let rec = Recorder::default();
    let conn = small_frames(&emu)
        .realtime("me/echo", RealtimeOptions::default(), rec.clone())
        .unwrap();
    conn.send(&big).unwrap();
    wait_until("the oversized error", || rec.n_errors() == 1).await;
    assert_eq!(rec.errors()[0].kind(), ErrorKind::Closed);
    assert_eq!(rec.errors()[0].close_code(), Some(1009));
    assert!(rec.errors()[0].message().contains("next send reconnects"));
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("a result after reconnecting", || rec.n_results() == 1).await;
    assert_eq!(conn.stats().connects, 2);
}

/// A WebSocket server that completes the handshake and then never reads or
/// writes again (a stopped process: TCP stays up, pings go unanswered).
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok(Ok((tcp, _))) = timeout(Duration::from_secs(30), l.accept()).await else {
                return;
            };
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(ws);
                }
            });
        }
    });
    (addr, accepted)
}

fn keepalive_client(addr: &str) -> Client {
    let mut cfg = ClientConfig::local(addr, KEY);
    cfg.ping_interval = Some(Duration::from_millis(100));
    cfg.ping_timeout = Some(Duration::from_millis(200));
    Client::new(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_detects_a_dead_peer_in_every_style() {
    let (addr, accepted) = silent_server().await;
    let c = keepalive_client(&addr);
    // Pull session: recv ends with a Timeout error (1011), sends refused.
    let mut s = c.connect("me/app", static_token()).await.unwrap();
    s.send(&json!({"n": 1})).await.unwrap();
    let e = timeout(BOUND, s.recv())
        .await
        .expect("bounded")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.close_code()),
        (ErrorKind::Timeout, Some(1011)),
        "{e}"
    );
    assert!(s.stats().pings_sent >= 1);
    send_then_fails(&mut s, "keepalive").await;
    // Raw socket.
    let wopts = WsOptions {
        token_provider: static_token().token_provider,
        ..Default::default()
    };
    let mut w = c.ws_connect("me/app", wopts).await.unwrap();
    let e = timeout(BOUND, w.recv())
        .await
        .expect("bounded")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // Callback: on_error, state closed, the next send reconnects.
    let rec = Recorder::default();
    let conn = c.realtime("me/app", static_token(), rec.clone()).unwrap();
    conn.send(&json!({"n": 1})).unwrap();
    wait_until("the keepalive error", || rec.n_errors() == 1).await;
    let e = &rec.errors()[0];
    assert_eq!(
        (e.kind(), e.close_code()),
        (ErrorKind::Timeout, Some(1011)),
        "{e}"
    );
    assert!(e.message().contains("next send reconnects"));
    assert_eq!(conn.state(), fal_realtime::ConnectionState::Closed);
    conn.send(&json!({"n": 2})).unwrap();
    wait_until("a reconnect", || conn.stats().connects == 2).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_are_answered_and_counted() {
    let emu = emulator().await;
    let mut cfg = ClientConfig::local(&emu.ws_host(), KEY);
    cfg.ping_interval = Some(Duration::from_millis(30));
    let c = Client::new(cfg).unwrap();
    let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
    let _ = timeout(Duration::from_millis(300), s.recv()).await;
    let st = s.stats();
    assert!(st.pings_sent >= 2 && st.pongs_received >= 2, "{st:?}");
    s.send(&json!({"n": 1})).await.unwrap();
    assert!(timeout(BOUND, s.recv()).await.unwrap().unwrap().is_ok());
    // Disabled: no pings at all.
    let mut cfg = ClientConfig::local(&emu.ws_host(), KEY);
    cfg.ping_interval = None;
    let mut s = Client::new(cfg)
        .unwrap()
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    let _ = timeout(Duration::from_millis(100), s.recv()).await;
    assert_eq!(s.stats().pings_sent, 0);
}

/// A server that answers the client's close frame only after a pause, then
/// reports how its side of the connection ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_close_waits_for_the_servers_reply() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // Echo until the client's close frame arrives.
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(m)) if m.is_binary() => ws.send(m).await.unwrap(),
                Some(Ok(_)) => {}
                other => return format!("before close: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // tungstenite queued the reply; send it now and see how the client ends.
        if let Err(e) = ws.flush().await {
            return format!("reply failed: {e}");
        }
        match timeout(Duration::from_secs(5), ws.next()).await {
            Ok(None) | Ok(Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed))) => {
                "clean".to_string()
            }
            other => format!("after reply: {other:?}"),
        }
    });
    let rec = Recorder::default();
    let conn = Client::new(ClientConfig::local(&addr, KEY))
        .unwrap()
        .realtime("me/app", static_token(), rec.clone())
        .unwrap();
    conn.send(&json!({"n": 1})).unwrap();
    wait_until("the echo", || rec.n_results() == 1).await;
    conn.close();
    let how = timeout(BOUND, server).await.unwrap().unwrap();
    assert_eq!(how, "clean");
    assert_eq!(rec.n_errors(), 0, "{:?}", rec.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keyed_handle_cannot_close_the_newer_ones_connection() {
    let emu = emulator().await;
    let c = client(&emu);
    let opts = || RealtimeOptions {
        connection_key: Some("k".into()),
        throttle_interval: Duration::ZERO,
        ..Default::default()
    };
    let old = Recorder::default();
    let first = c.realtime("me/echo", opts(), old.clone()).unwrap();
    first.send(&json!({"i": 1})).unwrap();
    wait_until("the first result", || old.n_results() == 1).await;
    let new = Recorder::default();
    let second = c.realtime("me/echo", opts(), new.clone()).unwrap();
    assert!(first.is_stale() && !second.is_stale());
    first.close();
    second.send(&json!({"i": 2})).unwrap();
    wait_until("the second result", || new.n_results() == 1).await;
    assert_eq!(
        second.stats().connects,
        1,
        "the stale close closed the shared connection"
    );
    assert_eq!(old.n_results(), 1, "the replaced handler got a callback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_life_under_a_second_is_refused() {
    let emu = emulator().await;
    let c = client(&emu);
    let o = RealtimeOptions {
        token_expiration: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let e = c.connect("me/echo", o.clone()).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = c.realtime("me/echo", o, FnHandler::new(|_| {})).err().unwrap();
    assert!(e.message().contains("at least 1 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_msgpack_checks_its_input() {
    let emu = emulator().await;
    let c = client(&emu);
    let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
    for bad in [&[][..], &[0x92, 0x01], &[0xc1]] {
        let e = s
            .send_msgpack(bytes::Bytes::copy_from_slice(bad))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Encode);
    }
    let conn = c
        .realtime("me/echo", RealtimeOptions::default(), FnHandler::new(|_| {}))
        .unwrap();
    assert_eq!(
        conn.send_msgpack(bytes::Bytes::new()).unwrap_err().kind(),
        ErrorKind::Encode
    );
}

/// Commands a callback gives its own connection run in the order given, right
/// after the callback returns: close then send reconnects for the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_inside_a_callback_keep_their_order() {
    use std::sync::Mutex;
    let emu = emulator().await;
    let slot: Arc<Mutex<Option<fal_realtime::RealtimeConnection>>> = Arc::default();
    let me = slot.clone();
    let seen = Arc::new(AtomicUsize::new(0));
    let n = seen.clone();
    let opts = RealtimeOptions {
        throttle_interval: Duration::ZERO,
        ..Default::default()
    };
    let conn = client(&emu)
        .realtime(
            "me/echo",
            opts,
            FnHandler::new(move |_| {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    let c = me.lock().unwrap().clone().unwrap();
                    c.close();
                    c.send(&json!({"i": 2})).unwrap();
                }
            }),
        )
        .unwrap();
    *slot.lock().unwrap() = Some(conn.clone());
    conn.send(&json!({"i": 1})).unwrap();
    wait_until("the result after reconnecting", || {
        seen.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(conn.stats().connects, 2);
    slot.lock().unwrap().take();
}
