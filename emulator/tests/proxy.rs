//! The fault proxy, in front of a plain TCP echo server and of the emulator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fal_realtime_emulator::proxy::FaultProxy;
use fal_realtime_emulator::{Emulator, EmulatorConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const STEP: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

/// A TCP echo server: echoes each connection until its FIN, then closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test runtime ends with the test.
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    addr
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect in time")
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp
}

async fn read_exact(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(STEP, tcp.read_exact(&mut buf))
        .await
        .expect("the bytes in time")
        .expect("the bytes");
    buf
}

async fn round_trip(tcp: &mut TcpStream, msg: &[u8]) {
    tcp.write_all(msg).await.unwrap();
    assert_eq!(read_exact(tcp, msg.len()).await, msg);
}

/// Reads until the end of the stream, which must come within `STEP`.
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

/// Nothing at all (no byte, no FIN, no RST) arrives for `QUIET`.
async fn assert_quiet_and_open(tcp: &TcpStream) {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(QUIET, tcp.peek(&mut byte)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("the connection was closed"),
        Ok(Ok(_)) => panic!("bytes arrived"),
        Ok(Err(e)) => panic!("the connection failed: {e}"),
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn latency_keeps_content_and_order() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set_latency(Duration::from_millis(40), Duration::from_millis(10));
    let mut tcp = connect(&proxy).await;
    let started = Instant::now();
    let rounds = 200;
    for i in 0..rounds {
        let msg = format!("round trip {i} {}", "x".repeat(i % 50));
        round_trip(&mut tcp, msg.as_bytes()).await;
    }
    let mean = started.elapsed() / rounds as u32;
    assert!(mean >= Duration::from_millis(30), "mean round trip {mean:?}");

    // Many chunks in flight at once, each with its own jitter: never reordered.
    let mut expected = Vec::new();
    for i in 0..rounds {
        let msg = format!("<{i}>");
        tcp.write_all(msg.as_bytes()).await.unwrap();
        expected.extend_from_slice(msg.as_bytes());
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    assert_eq!(read_exact(&mut tcp, expected.len()).await, expected);
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn stall_holds_bytes_and_keeps_connections_open() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut tcp = connect(&proxy).await;
    round_trip(&mut tcp, b"hello").await;

    proxy.set_stall(true);
    tcp.write_all(b"held back").await.unwrap();
    assert_quiet_and_open(&tcp).await;
    // New connections are accepted, their bytes held too.
    let mut other = connect(&proxy).await;
    other.write_all(b"me too").await.unwrap();
    assert_quiet_and_open(&other).await;
    assert_eq!(proxy.open_connections(), 2);

    proxy.set_stall(false);
    assert_eq!(read_exact(&mut tcp, 9).await, b"held back");
    assert_eq!(read_exact(&mut other, 6).await, b"me too");
    round_trip(&mut tcp, b"after").await;

    // A FIN is forwarded in order, after the bytes before it.
    other.write_all(b"bye").await.unwrap();
    other.shutdown().await.unwrap();
    let (bytes, err) = read_until_end(&mut other).await;
    assert_eq!((bytes.as_slice(), err.is_none()), (&b"bye"[..], true));
}

#[tokio::test]
async fn cut_after_forwards_exactly_n_bytes() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let data = pattern(10_000);
    for (n, bandwidth) in [(1234u64, None), (2500, Some(100_000))] {
        proxy.set_bandwidth(bandwidth);
        let mut tcp = connect(&proxy).await;
        round_trip(&mut tcp, b"ready").await;
        proxy.cut_after(n);
        tcp.write_all(&data).await.unwrap();
        let (bytes, err) = read_until_end(&mut tcp).await;
        assert!(err.is_none(), "a FIN after the bytes, got {err:?}");
        assert_eq!(bytes.len() as u64, n);
        assert_eq!(bytes, data[..n as usize]);
    }
    proxy.set_bandwidth(None);

    // A cut applies to the connections open when it is asked for, not to later ones.
    let mut tcp = connect(&proxy).await;
    round_trip(&mut tcp, &data).await;

    // cut_now: at once, even while stalled.
    proxy.set_stall(true);
    tcp.write_all(b"lost").await.unwrap();
    proxy.cut_now();
    let (bytes, _) = read_until_end(&mut tcp).await;
    assert!(bytes.is_empty(), "{bytes:?}");
    proxy.set_stall(false);
    assert_eq!(proxy.connections(), 3);
    let deadline = Instant::now() + STEP;
    while proxy.open_connections() > 0 {
        assert!(Instant::now() < deadline, "connections still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn bandwidth_limits_the_rate() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set_bandwidth(Some(20_000));
    let mut tcp = connect(&proxy).await;
    let data = pattern(10_000);
    let started = Instant::now();
    round_trip(&mut tcp, &data).await;
    // 10 000 bytes at 20 000 B/s in pieces of 400 bytes: at least 24 waits of 20 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    proxy.set_bandwidth(None);
    round_trip(&mut tcp, &data).await;
}

#[tokio::test]
async fn websocket_frames_through_the_proxy() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let proxy = FaultProxy::start(emu.addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(5), Duration::from_millis(5));
    let url = format!("ws://{}/owner/echo/realtime", proxy.addr());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Key test-key".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .unwrap();
    // msgpack bin 16 of 1000 bytes.
    let mut input = vec![0xc5, 0x03, 0xe8];
    input.extend(pattern(1000));
    for _ in 0..3 {
        ws.send(Message::binary(input.clone())).await.unwrap();
        let echo = tokio::time::timeout(STEP, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo, Message::binary(input.clone()));
    }
    // Cut the next echo in the middle of its frame.
    proxy.cut_after(100);
    ws.send(Message::binary(input.clone())).await.unwrap();
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("an end in time")
    {
        Some(Err(WsError::Protocol(_) | WsError::Io(_))) | None => {}
        other => panic!("expected a cut connection, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut tcp = connect(&proxy).await;
    round_trip(&mut tcp, b"ping").await;
    drop(proxy);
    let (bytes, _) = read_until_end(&mut tcp).await;
    assert!(bytes.is_empty());
}

#[test]
fn detached_proxy_serves_synchronous_clients() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(STEP)).unwrap();
        let mut buf = [0u8; 5];
        tcp.read_exact(&mut buf).unwrap();
        tcp.write_all(&buf).unwrap();
    });
    let proxy = FaultProxy::start_detached(upstream).unwrap();
    let mut tcp = std::net::TcpStream::connect(proxy.addr()).unwrap();
    tcp.set_read_timeout(Some(STEP)).unwrap();
    tcp.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    server.join().unwrap();
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.upstream(), upstream);
}
