//! The pull-style session, raw `ws_connect` and TLS, against the emulator.

mod common;

use common::*;
use fal_realtime::{Client, ClientConfig, ErrorKind, Frame, RealtimeOptions, WsOptions};
use fal_realtime_emulator::{certs, AppSettings, Emulator, EmulatorConfig, TlsConfig};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_session_round_trips_and_keeps_bytes() {
    let emu = emulator().await;
    let mut s = client(&emu)
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct In {
        request_id: String,
        #[serde(with = "serde_bytes_like")]
        image: Vec<u8>,
    }
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_bytes(V)
        }
    }
    let input = In {
        request_id: "r1".into(),
        image: (0..=255u8).cycle().take(300_000).collect(),
    };
    s.send(&input).await.unwrap();
    let m = s.recv().await.unwrap().unwrap();
    assert_eq!(m.request_id(), Some("r1"));
    let out: In = m.decode().unwrap();
    assert_eq!(out, input);
    let st = s.stats();
    assert_eq!((st.frames_sent, st.results, st.token_fetches), (1, 1, 1));
    s.close().await.unwrap();
    assert!(s.recv().await.is_none(), "a normal close ends the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_session_errors_and_timeout() {
    let apps = HashMap::from([(
        "idle".to_string(),
        AppSettings {
            session_timeout: Some(Duration::from_millis(150)),
            ..Default::default()
        },
    )]);
    let emu = emulator_with(apps).await;
    let c = client(&emu);

    let mut s = c.connect("me/idle", RealtimeOptions::default()).await.unwrap();
    s.send(&json!({"i": 1})).await.unwrap();
    assert!(s.recv().await.unwrap().is_ok());
    assert!(s.recv().await.is_none(), "TIMEOUT ends the session cleanly");

    let mut s = c.connect("me/fail", RealtimeOptions::default()).await.unwrap();
    s.send(&json!({"i": 1})).await.unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Server);

    let mut s = c.connect("me/control", RealtimeOptions::default()).await.unwrap();
    s.send(&json!({"do": "garbage", "i": 1})).await.unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap_err().kind(), ErrorKind::Decode);
    assert!(
        s.recv().await.unwrap().is_ok(),
        "the session survives a garbage frame"
    );
    s.send(&json!({"do": "close", "code": 4002})).await.unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.close_code(), Some(4002));
    assert!(s.recv().await.is_none());

    let e = c
        .connect("bad id", RealtimeOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_session_sends_while_receiving() {
    let emu = emulator().await;
    let s = client(&emu)
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    let (mut tx, mut rx) = s.split();
    let reader = tokio::spawn(async move {
        let mut ids = vec![];
        while ids.len() < 20 {
            let m = rx.recv().await.unwrap().unwrap();
            ids.push(m.to_value().unwrap()["i"].as_i64().unwrap());
        }
        ids
    });
    for i in 0..20 {
        tx.send(&json!({"i": i})).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), (0..20).collect::<Vec<_>>());
    tx.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_connect_text_and_binary() {
    let emu = emulator().await;
    let c = client(&emu);
    let mut ws = c
        .ws_connect(
            "me/echo",
            WsOptions {
                path: Some("/realtime".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ws.send_text("hello").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Frame::Text("hello".into()));
    let mp = fal_realtime::codec::json_to_msgpack(r#"{"a":1}"#).unwrap();
    ws.send_binary(mp.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Frame::Binary(mp));
    ws.close().await.unwrap();
    assert!(ws.recv().await.is_none());
    // Header auth works for raw sockets too.
    let mut ws = c
        .ws_connect(
            "me/echo",
            WsOptions {
                path: Some("realtime".into()),
                use_jwt: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ws.send_text("x").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Frame::Text("x".into()));
}

async fn tls_emulator() -> (Emulator, tempdir::Dir) {
    let tc = certs::generate(&["localhost", "127.0.0.1"]);
    let emu = Emulator::start(EmulatorConfig {
        tls: Some(TlsConfig {
            cert_pem: tc.cert_pem.into_bytes(),
            key_pem: tc.key_pem.into_bytes(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path().join("ca.pem"), tc.ca_pem).unwrap();
    (emu, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_test_ca_and_rejection_of_untrusted() {
    let (emu, dir) = tls_emulator().await;
    let port = emu.addr().port();
    let trusted = ClientConfig {
        credentials: Some(fal_realtime::Credentials::key(KEY)),
        run_host: format!("localhost:{port}"),
        rest_url: format!("https://localhost:{port}"),
        extra_ca_file: Some(dir.path().join("ca.pem")),
        ..Default::default()
    };
    let c = Client::new(trusted.clone()).unwrap();
    let mut s = c.connect("me/echo", RealtimeOptions::default()).await.unwrap();
    s.send(&json!({"i": 1})).await.unwrap();
    assert!(s.recv().await.unwrap().is_ok());

    // Without the CA the certificate is rejected (token endpoint first).
    let untrusted = Client::new(ClientConfig {
        extra_ca_file: None,
        ..trusted.clone()
    })
    .unwrap();
    let e = untrusted
        .connect("me/echo", RealtimeOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    // And the WebSocket itself (header auth skips the token endpoint).
    let e = untrusted
        .connect(
            "me/echo",
            RealtimeOptions {
                use_jwt: false,
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
}

/// A tiny temporary directory (no extra dependency).
mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p =
                std::env::temp_dir().join(format!("fal-rt-test-{}-{}", std::process::id(), fastrand_u64()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn fastrand_u64() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        h.finish()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_read_buffer_still_carries_large_frames() {
    let emu = emulator().await;
    let mut cfg = ClientConfig::local(&emu.ws_host(), KEY);
    cfg.read_buffer_size = Some(4096);
    let mut s = Client::new(cfg)
        .unwrap()
        .connect("me/echo", RealtimeOptions::default())
        .await
        .unwrap();
    let big = rmpv::Value::Binary(vec![7u8; 300_000]);
    s.send_msgpack(fal_realtime::codec::encode_value(&big))
        .await
        .unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap().to_value().unwrap(), big);
}

/// For sessions opened on one runtime and driven from another: a plain and
/// a TLS emulator on a runtime of their own, a client of each with 20 ms
/// keepalive pings, the runtime that drives (current-thread) and the one
/// that opens (one worker).
struct Elsewhere {
    plain: Client,
    tls: Client,
    driver: tokio::runtime::Runtime,
    opener: tokio::runtime::Runtime,
    _emus: (Emulator, Emulator, tempdir::Dir),
    _rt: tokio::runtime::Runtime,
}

impl Elsewhere {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt.block_on(emulator());
        let (tls_emu, dir) = rt.block_on(tls_emulator());
        let keepalive = |c: ClientConfig| ClientConfig {
            ping_interval: Some(Duration::from_millis(20)),
            ping_timeout: Some(Duration::from_secs(5)),
            ..c
        };
        let plain = Client::new(keepalive(ClientConfig::local(&emu.ws_host(), KEY))).unwrap();
        let port = tls_emu.addr().port();
        let tls = Client::new(keepalive(ClientConfig {
            credentials: Some(fal_realtime::Credentials::key(KEY)),
            run_host: format!("localhost:{port}"),
            rest_url: format!("https://localhost:{port}"),
            extra_ca_file: Some(dir.path().join("ca.pem")),
            ..Default::default()
        }))
        .unwrap();
        let driver = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let opener = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Elsewhere {
            plain,
            tls,
            driver,
            opener,
            _emus: (emu, tls_emu, dir),
            _rt: rt,
        }
    }
}

/// `connect_on` / `ws_connect_on`: open on one runtime, then drive from
/// another. The opening runtime is shut down before the first send, so the
/// sessions work only if their sockets (plain and TLS) and keepalive timers
/// moved to the driving runtime.
#[test]
fn connect_on_moves_the_socket_and_timer_to_the_driving_runtime() {
    let h = Elsewhere::start();
    let (plain, tls, driver, opener) = (&h.plain, &h.tls, &h.driver, h.opener);
    fn bounded<T>(what: &'static str) -> impl Fn(Result<T, tokio::time::error::Elapsed>) -> T {
        move |r| r.unwrap_or_else(|_| panic!("timed out: {what}"))
    }
    let (mut sessions, mut sockets) = (Vec::new(), Vec::new());
    for c in [plain, tls] {
        let s = opener.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                c.connect_on(driver.handle(), "me/echo", RealtimeOptions::default()),
            )
            .await
        });
        sessions.push(bounded("connect_on")(s).expect("connect_on"));
        let ws = opener.block_on(async {
            let opts = WsOptions {
                path: Some("/realtime".into()),
                ..Default::default()
            };
            tokio::time::timeout(
                Duration::from_secs(10),
                c.ws_connect_on(driver.handle(), "me/echo", opts),
            )
            .await
        });
        sockets.push(bounded("ws_connect_on")(ws).expect("ws_connect_on"));
    }
    opener.shutdown_timeout(Duration::from_secs(5));

    driver.block_on(async {
        for (i, s) in sessions.iter_mut().enumerate() {
            s.send(&json!({"request_id": format!("s{i}")})).await.unwrap();
            let m = bounded("session recv")(tokio::time::timeout(Duration::from_secs(10), s.recv()).await);
            assert_eq!(m.unwrap().unwrap().request_id(), Some(format!("s{i}").as_str()));
            // A recv that waits runs keepalive: pings go out, pongs come back.
            let idle = tokio::time::timeout(Duration::from_millis(200), s.recv()).await;
            assert!(idle.is_err(), "no message was due");
            let st = s.stats();
            assert!(st.pings_sent >= 1 && st.pongs_received >= 1, "{st:?}");
            s.close().await.unwrap();
        }
        for ws in &mut sockets {
            ws.send_text("hello").await.unwrap();
            let f = bounded("ws recv")(tokio::time::timeout(Duration::from_secs(10), ws.recv()).await);
            assert_eq!(f.unwrap().unwrap(), Frame::Text("hello".into()));
            ws.close().await.unwrap();
        }
    });
}

/// `connect_host_polled` / `ws_connect_host_polled`: the socket is in no
/// tokio reactor, and a host's own loop (here `poll(2)` on the descriptor)
/// says when to poll again. The driving runtime is never turned while a
/// round trip or a close waits, so they finish only if their sockets left
/// every reactor; it is turned while a recv idles, as the Python asyncio
/// door's heartbeat does, for the keepalive pings.
#[cfg(unix)]
#[test]
fn host_polled_sessions_are_driven_by_the_host_loop() {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Instant;
    let h = Elsewhere::start();
    let (plain, tls, driver, opener) = (&h.plain, &h.tls, &h.driver, h.opener);

    /// The host's loop: poll `fut` inside `driver` (no reactor turn), and
    /// while it is pending wait for `fd` with `poll(2)` (at most 10 ms; then,
    /// with `timers`, a turn of the driver, whose timers fire); bounded to
    /// 10 s.
    fn drive<F: Future>(
        driver: &tokio::runtime::Runtime,
        fd: i32,
        events: i16,
        timers: bool,
        fut: F,
    ) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Poll::Ready(v) = fal_realtime::runtime::poll_now(driver.handle(), fut.as_mut()) {
                return v;
            }
            assert!(Instant::now() < deadline, "not done within 10 s");
            let mut p = libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            let n = unsafe { libc::poll(&mut p, 1, 10) };
            if n == 0 && timers {
                // The heartbeat: let the timers (keepalive) run.
                driver.block_on(tokio::task::yield_now());
            }
        }
    }
    let (rd, wr) = (libc::POLLIN, libc::POLLOUT);
    for c in [plain, tls] {
        let opened = opener.block_on(async {
            let s = c.connect_host_polled(driver.handle(), "me/echo", RealtimeOptions::default());
            let opts = WsOptions {
                path: Some("/realtime".into()),
                ..Default::default()
            };
            let ws = c.ws_connect_host_polled(driver.handle(), "me/echo", opts);
            let t = Duration::from_secs(10);
            (
                tokio::time::timeout(t, s).await,
                tokio::time::timeout(t, ws).await,
            )
        });
        let mut s = opened.0.expect("connect_host_polled in time").unwrap();
        let mut ws = opened.1.expect("ws_connect_host_polled in time").unwrap();
        let fd = s.raw_fd().expect("a socket");
        for i in 0..3 {
            let id = format!("s{i}");
            drive(driver, fd, wr, false, s.send(&json!({ "request_id": id }))).unwrap();
            let m = drive(driver, fd, rd, false, s.recv()).unwrap().unwrap();
            assert_eq!(m.request_id(), Some(id.as_str()));
        }
        // A recv that waits runs keepalive: pings go out, pongs come back
        // (recvs of 50 ms each, until a pong came; at most 10 s).
        let mut st = s.stats();
        for _ in 0..200 {
            if st.pings_sent >= 1 && st.pongs_received >= 1 {
                break;
            }
            let idle = drive(driver, fd, rd, true, async {
                tokio::time::timeout(Duration::from_millis(50), s.recv()).await
            });
            assert!(idle.is_err(), "no message was due");
            st = s.stats();
        }
        assert!(st.pings_sent >= 1 && st.pongs_received >= 1, "{st:?}");
        drive(driver, fd, rd, false, s.close()).unwrap();

        let fd = ws.raw_fd().expect("a socket");
        drive(driver, fd, wr, false, ws.send_text("hello")).unwrap();
        let f = drive(driver, fd, rd, false, ws.recv()).unwrap().unwrap();
        assert_eq!(f, Frame::Text("hello".into()));
        drive(driver, fd, rd, false, ws.close()).unwrap();
    }
    opener.shutdown_timeout(Duration::from_secs(5));
}

/// A recv dropped while the session ends (after an `Unauthorized` frame its
/// close handshake waits for the server's reply) loses nothing: the next
/// recv returns the error, then `None`. Each recv here is polled once and
/// dropped when it would wait, as a timeout or a host's non-blocking poll
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recv_dropped_while_the_session_ends_keeps_its_error() {
    let emu = emulator().await;
    // The emulator accepts a token it did not mint, then answers the first input Unauthorized.
    let mut s = client(&emu).connect("me/echo", static_token()).await.unwrap();
    s.send(&json!({"n": 1})).await.unwrap();
    let waker = futures_util::task::noop_waker_ref();
    let mut dropped = 0;
    let got = loop {
        let mut recv = std::pin::pin!(s.recv());
        if let std::task::Poll::Ready(x) =
            std::future::Future::poll(recv.as_mut(), &mut std::task::Context::from_waker(waker))
        {
            break x;
        }
        dropped += 1;
        assert!(dropped < 10_000, "no end within 10 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let e = got.expect("the error, not the end").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(s.recv().await.is_none());
}
