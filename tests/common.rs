//! Shared helpers for the integration tests: an emulator per test and a
//! handler that records what it receives.
#![allow(dead_code)]

use fal_realtime::{Client, ClientConfig, ConnectionState, Error, Message, RealtimeHandler, RealtimeOptions};
use fal_realtime_emulator::{AppSettings, Emulator, EmulatorConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const KEY: &str = "test-key";

pub async fn emulator() -> Emulator {
    emulator_with(HashMap::new()).await
}

pub async fn emulator_with(apps: HashMap<String, AppSettings>) -> Emulator {
    Emulator::start(EmulatorConfig {
        apps,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

pub fn client(emu: &Emulator) -> Client {
    Client::new(ClientConfig::local(&emu.ws_host(), KEY)).expect("client")
}

/// Poll `f` every 5 ms until it holds; panics after 10 s (a bound, not a timing assertion).
pub async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(Default)]
pub struct Record {
    pub results: Vec<Message>,
    pub errors: Vec<Error>,
    pub states: Vec<ConnectionState>,
}

/// A handler that records everything.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Record>>);

impl Recorder {
    pub fn results(&self) -> Vec<Message> {
        self.0.lock().unwrap().results.clone()
    }
    pub fn errors(&self) -> Vec<Error> {
        self.0.lock().unwrap().errors.clone()
    }
    pub fn states(&self) -> Vec<ConnectionState> {
        self.0.lock().unwrap().states.clone()
    }
    pub fn n_results(&self) -> usize {
        self.0.lock().unwrap().results.len()
    }
    pub fn n_errors(&self) -> usize {
        self.0.lock().unwrap().errors.len()
    }
    /// The `i` field of every result.
    pub fn ids(&self) -> Vec<i64> {
        self.results()
            .iter()
            .map(|m| m.to_value().unwrap()["i"].as_i64().unwrap())
            .collect()
    }
}

impl RealtimeHandler for Recorder {
    fn on_result(&self, message: Message) {
        self.0.lock().unwrap().results.push(message);
    }
    fn on_error(&self, error: Error) {
        self.0.lock().unwrap().errors.push(error);
    }
    fn on_state(&self, state: ConnectionState) {
        self.0.lock().unwrap().states.push(state);
    }
}

/// Fetch a token for `alias` from the emulator at `addr` over raw HTTP (for custom token providers).
pub async fn raw_token(addr: &str, alias: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(r#"{{"allowed_apps":["{alias}"],"token_expiration":120}}"#);
    let req = format!(
        "POST /tokens/ HTTP/1.1\r\nHost: x\r\nAuthorization: Key {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str::<String>(body.trim()).unwrap()
}

/// Options for a test server of the test's own: a constant token (no token
/// endpoint there) and no throttle.
pub fn static_token() -> RealtimeOptions {
    RealtimeOptions {
        token_provider: Some(Arc::new(|_app: String| async {
            Ok::<_, fal_realtime::Error>("token".to_string())
        })),
        throttle_interval: Duration::ZERO,
        ..Default::default()
    }
}
