//! The cost of one send call on a live connection, through the C ABI
//! (`fal_rt_realtime_send`, `fal_rt_realtime_send_json`) beside the Rust API
//! it wraps (`RealtimeConnection::send_msgpack`, `send`), against an
//! in-process emulator echoing every input.
//!
//! Only the calls are timed: every 64 sends the benchmark waits (untimed)
//! until all echoes came back, so the queue never grows without bound.
//!
//! `cargo bench -p fal-realtime-bench --bench ffi_send`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use fal_realtime::ffi::*;
use fal_realtime::{Client, ClientConfig, FnHandler, RealtimeOptions};
use fal_realtime_bench::{Payload, PayloadKind};
use fal_realtime_emulator::{Emulator, EmulatorConfig};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: u64 = 64;

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Time `send` calls only; drain the echoes every `BATCH` sends.
fn timed_sends(iters: u64, sent: &mut u64, send: impl Fn(), received: impl Fn() -> u64) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let t = Instant::now();
        send();
        total += t.elapsed();
        *sent += 1;
        if i % BATCH == BATCH - 1 {
            let target = *sent;
            wait_until("echoes", || received() >= target);
        }
    }
    let target = *sent;
    wait_until("echoes", || received() >= target);
    total
}

struct CConn {
    client: *mut fal_rt_client,
    conn: *mut fal_rt_realtime,
}

impl CConn {
    fn open(host: &str) -> CConn {
        let key = CString::new("test-key").unwrap();
        let run_host = CString::new(format!("ws://{host}")).unwrap();
        let rest = CString::new(format!("http://{host}")).unwrap();
        let app = CString::new("me/echo").unwrap();
        // SAFETY: all-zero option structs are valid (NULL pointers, no callbacks, defaults).
        unsafe {
            let mut co: fal_rt_client_options = std::mem::zeroed();
            co.struct_size = std::mem::size_of::<fal_rt_client_options>() as u32;
            co.key = key.as_ptr();
            co.run_host = run_host.as_ptr();
            co.rest_url = rest.as_ptr();
            co.allow_insecure = true;
            let mut client = std::ptr::null_mut();
            let rc = fal_rt_client_new(&co, &mut client, std::ptr::null_mut());
            assert_eq!(rc, fal_rt_result::FAL_RT_OK);
            let mut opt: fal_rt_connect_options = std::mem::zeroed();
            opt.struct_size = std::mem::size_of::<fal_rt_connect_options>() as u32;
            opt.throttle_ms = -1;
            opt.header_auth = true;
            let mut h: fal_rt_realtime_handler = std::mem::zeroed();
            h.struct_size = std::mem::size_of::<fal_rt_realtime_handler>() as u32;
            let mut conn = std::ptr::null_mut();
            let rc = fal_rt_realtime_connect(client, app.as_ptr(), &opt, &h, &mut conn, std::ptr::null_mut());
            assert_eq!(rc, fal_rt_result::FAL_RT_OK);
            CConn { client, conn }
        }
    }

    fn results(&self) -> u64 {
        let mut st = fal_rt_stats {
            struct_size: std::mem::size_of::<fal_rt_stats>() as u32,
            ..Default::default()
        };
        // SAFETY: conn is live; st is writable.
        unsafe { fal_rt_realtime_stats(self.conn, &mut st) };
        st.results
    }
}

impl Drop for CConn {
    fn drop(&mut self) {
        // SAFETY: handles from open(), freed once.
        unsafe {
            fal_rt_realtime_free(self.conn);
            fal_rt_client_free(self.client);
        }
    }
}

fn sends(c: &mut Criterion) {
    let emu = Emulator::start_detached(EmulatorConfig::default()).expect("emulator");
    let host = emu.ws_host();
    let payload = Payload::new(PayloadKind::Small);
    let msgpack = fal_realtime::codec::encode(&payload.input("r12345")).unwrap();
    let json = CString::new(fal_realtime::codec::msgpack_to_json(&msgpack).unwrap()).unwrap();

    let mut g = c.benchmark_group("send call (small input, live connection)");

    // C ABI.
    let cc = CConn::open(&host);
    let mut sent = 0u64;
    // SAFETY (all unsafe blocks below): live handle, valid buffers.
    unsafe { fal_rt_realtime_send(cc.conn, msgpack.as_ptr(), msgpack.len(), std::ptr::null_mut()) };
    sent += 1;
    wait_until("open", || cc.results() >= 1);
    g.bench_function("fal_rt_realtime_send (msgpack bytes)", |b| {
        b.iter_custom(|iters| {
            timed_sends(
                iters,
                &mut sent,
                || unsafe {
                    fal_rt_realtime_send(cc.conn, msgpack.as_ptr(), msgpack.len(), std::ptr::null_mut());
                },
                || cc.results(),
            )
        })
    });
    g.bench_function("fal_rt_realtime_send_json", |b| {
        b.iter_custom(|iters| {
            timed_sends(
                iters,
                &mut sent,
                || unsafe {
                    fal_rt_realtime_send_json(cc.conn, json.as_ptr(), std::ptr::null_mut());
                },
                || cc.results(),
            )
        })
    });
    drop(cc);

    // The Rust API it wraps.
    let received = Arc::new(AtomicU64::new(0));
    let r2 = received.clone();
    let client = Client::new(ClientConfig::local(&host, "test-key")).unwrap();
    let conn = client
        .realtime(
            "me/echo",
            RealtimeOptions {
                throttle_interval: Duration::ZERO,
                use_jwt: false,
                ..Default::default()
            },
            FnHandler::new(move |_| {
                r2.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .unwrap();
    let mut sent = 0u64;
    conn.send_msgpack(msgpack.clone()).unwrap();
    sent += 1;
    wait_until("open", || received.load(Ordering::Relaxed) >= 1);
    let bytes: Bytes = msgpack.clone();
    g.bench_function("RealtimeConnection::send_msgpack (Bytes)", |b| {
        b.iter_custom(|iters| {
            timed_sends(
                iters,
                &mut sent,
                || {
                    let _ = conn.send_msgpack(bytes.clone());
                },
                || received.load(Ordering::Relaxed),
            )
        })
    });
    g.bench_function("RealtimeConnection::send (serde, encodes)", |b| {
        b.iter_custom(|iters| {
            timed_sends(
                iters,
                &mut sent,
                || {
                    let _ = conn.send(&payload.input("r12345"));
                },
                || received.load(Ordering::Relaxed),
            )
        })
    });
    g.finish();
    fal_realtime::runtime::shared().block_on(conn.shutdown());
    drop(emu);
}

criterion_group!(benches, sends);
criterion_main!(benches);
