//! How a pull socket ended: close codes and reasons (`close_code`,
//! `close_reason`), closing with a code and reason (`close_with`), the idle
//! `TIMEOUT` record of sessions, and `client_only` connections on a
//! server-side host. Against the emulator; every wait is bounded.

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

fn server_side_client(emu: &fal_realtime_emulator::Emulator, server_side: bool) -> Client {
    Client::new(ClientConfig {
        server_side,
        ..ClientConfig::local(&emu.ws_host(), KEY)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_only_on_a_server_side_host_drops_inputs() {
    let emu = emulator().await;
    let rec = Recorder::default();
    let opts = RealtimeOptions {
        client_only: true,
        throttle_interval: Duration::ZERO,
        ..Default::default()
    };
    let conn = server_side_client(&emu, true)
        .realtime("me/echo", opts.clone(), rec.clone())
        .unwrap();
    for i in 0..3 {
        conn.send(&json!({"i": i})).unwrap();
    }
    conn.send_json(r#"{"i": 9}"#).unwrap();
    let st = conn.stats();
    assert_eq!(st.inputs_dropped_client_only, 4);
    assert_eq!((st.frames_sent, st.connects, st.token_fetches), (0, 0, 0));
    assert_eq!(conn.state(), fal_realtime::ConnectionState::Idle);
    conn.close();
    // Encoding errors are still reported: the input is checked before it is dropped.
    assert_eq!(
        conn.send_msgpack(bytes::Bytes::from_static(b"\xc1"))
            .unwrap_err()
            .kind(),
        ErrorKind::Encode
    );
    tokio::time::timeout(BOUND, conn.shutdown()).await.unwrap();
    assert_eq!(
        conn.send(&json!({"i": 1})).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    assert!(rec.results().is_empty() && rec.errors().is_empty());
    assert_eq!(emu.stats().tokens_issued, 0, "it never asked for a token");

    // Without server_side, client_only has no effect.
    let rec = Recorder::default();
    let conn = server_side_client(&emu, false)
        .realtime("me/echo", opts, rec.clone())
        .unwrap();
    conn.send(&json!({"i": 7})).unwrap();
    wait_until("the echo", || rec.n_results() == 1).await;
    assert_eq!(conn.stats().inputs_dropped_client_only, 0);
    // And a server-side host connects everything that is not client_only.
    let got = std::sync::Arc::new(std::sync::Mutex::new(0));
    let g = got.clone();
    let conn2 = server_side_client(&emu, true)
        .realtime(
            "me/echo",
            RealtimeOptions::default(),
            FnHandler::new(move |_| *g.lock().unwrap() += 1),
        )
        .unwrap();
    conn2.send(&json!({"i": 8})).unwrap();
    wait_until("the echo (server side, not client_only)", || {
        *got.lock().unwrap() == 1
    })
    .await;
    drop(conn);
}

#[test]
fn client_only_through_the_c_abi() {
    use fal_realtime::ffi::*;
    use std::ffi::CString;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(emulator());
    let host = emu.ws_host();
    let run_host = CString::new(format!("ws://{host}")).unwrap();
    let rest_url = CString::new(format!("http://{host}")).unwrap();
    let key = CString::new(KEY).unwrap();
    let app = CString::new("me/echo").unwrap();
    unsafe {
        let mut co: fal_rt_client_options = std::mem::zeroed();
        co.struct_size = std::mem::size_of::<fal_rt_client_options>() as u32;
        co.key = key.as_ptr();
        co.run_host = run_host.as_ptr();
        co.rest_url = rest_url.as_ptr();
        co.allow_insecure = true;
        co.server_side = true;
        let mut client = std::ptr::null_mut();
        assert_eq!(
            fal_rt_client_new(&co, &mut client, std::ptr::null_mut()),
            fal_rt_result::FAL_RT_OK
        );
        let mut o: fal_rt_connect_options = std::mem::zeroed();
        o.struct_size = std::mem::size_of::<fal_rt_connect_options>() as u32;
        o.client_only = true;
        let mut h: fal_rt_realtime_handler = std::mem::zeroed();
        h.struct_size = std::mem::size_of::<fal_rt_realtime_handler>() as u32;
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            fal_rt_realtime_connect(client, app.as_ptr(), &o, &h, &mut conn, std::ptr::null_mut()),
            fal_rt_result::FAL_RT_OK
        );
        let json = CString::new(r#"{"i": 1}"#).unwrap();
        for _ in 0..2 {
            assert_eq!(
                fal_rt_realtime_send_json(conn, json.as_ptr(), std::ptr::null_mut()),
                fal_rt_result::FAL_RT_OK
            );
        }
        let mut st: fal_rt_stats = std::mem::zeroed();
        st.struct_size = std::mem::size_of::<fal_rt_stats>() as u32;
        assert_eq!(fal_rt_realtime_stats(conn, &mut st), fal_rt_result::FAL_RT_OK);
        assert_eq!(
            (st.inputs_dropped_client_only, st.frames_sent, st.connects),
            (2, 0, 0)
        );
        fal_rt_realtime_free(conn);

        // A caller built against the first version of the struct (no
        // `client_only`) still works: the field reads as false.
        let v1 = std::mem::offset_of!(fal_rt_connect_options, client_only);
        let mut buf = vec![0xffu8; std::mem::size_of::<fal_rt_connect_options>()];
        let mut o1: fal_rt_connect_options = std::mem::zeroed();
        o1.struct_size = v1 as u32;
        std::ptr::copy_nonoverlapping(&o1 as *const _ as *const u8, buf.as_mut_ptr(), v1);
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            fal_rt_realtime_connect(
                client,
                app.as_ptr(),
                buf.as_ptr() as *const fal_rt_connect_options,
                &h,
                &mut conn,
                std::ptr::null_mut()
            ),
            fal_rt_result::FAL_RT_OK
        );
        assert_eq!(
            fal_rt_realtime_send_json(conn, json.as_ptr(), std::ptr::null_mut()),
            fal_rt_result::FAL_RT_OK
        );
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            assert_eq!(fal_rt_realtime_stats(conn, &mut st), fal_rt_result::FAL_RT_OK);
            if st.frames_sent == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the v1 connection never sent"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(st.inputs_dropped_client_only, 0);
        fal_rt_realtime_free(conn);
        // One byte short of the first version is refused.
        o1.struct_size = v1 as u32 - 1;
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            fal_rt_realtime_connect(client, app.as_ptr(), &o1, &h, &mut conn, std::ptr::null_mut()),
            fal_rt_result::FAL_RT_BAD_STRUCT_SIZE
        );
        fal_rt_client_free(client);

        // An old `fal_rt_client_options` (before `server_side`): its size is
        // the offset of `reserved` + 4 rounded up, garbage after it is not read.
        let v2 = std::mem::offset_of!(fal_rt_client_options, server_side);
        let mut cbuf = vec![0xffu8; std::mem::size_of::<fal_rt_client_options>()];
        let mut co2 = co;
        co2.struct_size = v2 as u32;
        std::ptr::copy_nonoverlapping(&co2 as *const _ as *const u8, cbuf.as_mut_ptr(), v2);
        let mut client = std::ptr::null_mut();
        assert_eq!(
            fal_rt_client_new(
                cbuf.as_ptr() as *const fal_rt_client_options,
                &mut client,
                std::ptr::null_mut()
            ),
            fal_rt_result::FAL_RT_OK
        );
        let mut conn = std::ptr::null_mut();
        assert_eq!(
            fal_rt_realtime_connect(client, app.as_ptr(), &o, &h, &mut conn, std::ptr::null_mut()),
            fal_rt_result::FAL_RT_OK
        );
        assert_eq!(
            fal_rt_realtime_send_json(conn, json.as_ptr(), std::ptr::null_mut()),
            fal_rt_result::FAL_RT_OK
        );
        assert_eq!(fal_rt_realtime_stats(conn, &mut st), fal_rt_result::FAL_RT_OK);
        assert_eq!(
            st.inputs_dropped_client_only, 0,
            "not server-side: client_only has no effect"
        );
        fal_rt_realtime_free(conn);
        fal_rt_client_free(client);
    }
    drop(emu);
}
