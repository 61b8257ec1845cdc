//! Result batches (`RealtimeHandler::on_results`): every result that is
//! readable when the connection wakes reaches the handler in one call, in
//! order; a close from inside the batch stops it; a panicking callback loses
//! only its own result.
//!
//! The server writes its whole burst with one `flush` (one write on
//! loopback) only after the client's input arrived, so the burst is readable
//! at once when the client wakes.

mod common;

use common::{static_token, KEY};
use fal_realtime::{Client, ClientConfig, Message, RealtimeConnection, RealtimeHandler};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const BOUND: Duration = Duration::from_secs(10);
const BURST: usize = 20;

/// Answers each binary input with `BURST` results `{"i": 0..BURST}`, fed and
/// then flushed once; serves connections until the test ends.
async fn burst_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if !m.is_binary() {
                        continue;
                    }
                    for i in 0..BURST {
                        let body = rmp_serde::to_vec_named(&json!({ "i": i })).unwrap();
                        if ws.feed(WsMessage::Binary(body.into())).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn index(m: &Message) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&m.to_json().unwrap()).unwrap();
    v["i"].as_i64().unwrap()
}

#[derive(Default)]
struct Log {
    /// The `i` of every result, per `on_results` call.
    batches: Vec<Vec<i64>>,
    singles: Vec<i64>,
}

/// Records batches; closes its connection after result `close_at`, panics on `panic_at`.
struct Batcher {
    log: Arc<Mutex<Log>>,
    conn: Arc<OnceLock<RealtimeConnection>>,
    close_at: Option<i64>,
    panic_at: Option<i64>,
}

impl Batcher {
    fn take(&self, m: &Message) -> i64 {
        let i = index(m);
        if Some(i) == self.panic_at {
            panic!("a callback panics on result {i}");
        }
        if Some(i) == self.close_at {
            self.conn.get().unwrap().close();
        }
        i
    }
}

impl RealtimeHandler for Batcher {
    fn on_result(&self, m: Message) {
        let i = self.take(&m);
        self.log.lock().unwrap().singles.push(i);
    }

    fn on_results(&self, messages: &mut dyn Iterator<Item = Message>) {
        self.log.lock().unwrap().batches.push(Vec::new());
        for m in messages {
            let i = self.take(&m);
            self.log.lock().unwrap().batches.last_mut().unwrap().push(i);
        }
    }
}

fn setup(addr: &str, close_at: Option<i64>, panic_at: Option<i64>) -> (RealtimeConnection, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let slot = Arc::new(OnceLock::new());
    let h = Batcher {
        log: log.clone(),
        conn: slot.clone(),
        close_at,
        panic_at,
    };
    let conn = Client::new(ClientConfig::local(addr, KEY))
        .unwrap()
        .realtime("me/app", static_token(), h)
        .unwrap();
    let _ = slot.set(conn.clone());
    (conn, log)
}

fn delivered(log: &Mutex<Log>) -> Vec<i64> {
    let g = log.lock().unwrap();
    let mut all: Vec<i64> = g.batches.iter().flatten().copied().collect();
    all.extend(&g.singles);
    all
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    timeout(BOUND, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_arrives_in_batches_in_order() {
    let addr = burst_server().await;
    let (conn, log) = setup(&addr, None, None);
    conn.send(&json!({"go": 1})).unwrap();
    wait_for("the whole burst", || delivered(&log).len() == BURST).await;
    assert_eq!(
        delivered(&log),
        (0..BURST as i64).collect::<Vec<_>>(),
        "every result once, in order"
    );
    let g = log.lock().unwrap();
    assert!(
        g.batches.iter().any(|b| b.len() > 1),
        "results readable together come in one batch: {:?} (singles {:?})",
        g.batches,
        g.singles
    );
    assert!(g.batches.iter().all(|b| b.len() <= fal_realtime::RESULT_BATCH));
    drop(g);
    assert_eq!(conn.stats().results, BURST as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_inside_a_batch_ends_it_and_the_next_send_reconnects() {
    let addr = burst_server().await;
    let (conn, log) = setup(&addr, Some(3), None);
    conn.send(&json!({"go": 1})).unwrap();
    wait_for("the close", || {
        conn.state() == fal_realtime::ConnectionState::Closed
    })
    .await;
    // Nothing after result 3 of that burst is delivered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(delivered(&log), vec![0, 1, 2, 3]);
    assert_eq!(conn.stats().results, 4, "only delivered results are counted");
    // The next send reconnects, and its burst is delivered (closing again at 3).
    conn.send(&json!({"go": 2})).unwrap();
    wait_for("the second burst", || delivered(&log).len() == 8).await;
    assert_eq!(conn.stats().connects, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_loses_only_its_own_result() {
    let addr = burst_server().await;
    let (conn, log) = setup(&addr, None, Some(5));
    conn.send(&json!({"go": 1})).unwrap();
    wait_for("the rest of the burst", || delivered(&log).len() == BURST - 1).await;
    let want: Vec<i64> = (0..BURST as i64).filter(|&i| i != 5).collect();
    assert_eq!(delivered(&log), want);
    conn.send(&json!({"go": 2})).unwrap();
    wait_for("a second burst on the same socket", || {
        delivered(&log).len() == 2 * (BURST - 1)
    })
    .await;
    assert_eq!(conn.stats().connects, 1, "the connection kept going");
}
