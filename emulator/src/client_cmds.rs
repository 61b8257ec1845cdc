//! `fal-realtime demo` and `fal-realtime send`: command-line clients built on
//! the `fal_realtime` crate.

use fal_realtime::{Client, ClientConfig, Credentials, ErrorKind, FnHandler, RealtimeOptions};
use fal_realtime_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where a command talks to: fal.ai (with `FAL_KEY`) or an emulator.
struct Target {
    client: Client,
    /// Keeps an in-process emulator alive.
    _emulator: Option<Emulator>,
    description: String,
}

/// `embedded`: fall back to an in-process emulator (the demo) rather than failing (send).
async fn target(app: &Option<String>, emulator_host: Option<&str>, embedded: bool) -> Result<Target, String> {
    if let Some(host) = emulator_host {
        let key = std::env::var("FAL_KEY").unwrap_or_else(|_| "test-key".into());
        let client = Client::new(ClientConfig::local(host, &key)).map_err(|e| e.to_string())?;
        return Ok(Target {
            client,
            _emulator: None,
            description: format!("the emulator at {host}"),
        });
    }
    if app.is_some() && Credentials::from_env().is_some() {
        let client = Client::from_env().map_err(|e| e.to_string())?;
        let host = client.config().run_host.clone();
        return Ok(Target {
            client,
            _emulator: None,
            description: format!("{host} (FAL_KEY from the environment)"),
        });
    }
    if !embedded {
        return Err("no fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or pass --emulator HOST:PORT".into());
    }
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .map_err(|e| format!("could not start the emulator: {e}"))?;
    let client = Client::new(ClientConfig::local(&emu.ws_host(), "test-key")).map_err(|e| e.to_string())?;
    let description = format!("an in-process emulator on {}", emu.ws_host());
    Ok(Target {
        client,
        _emulator: Some(emu),
        description,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("could not start a runtime: {e}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn preview(json: &str) -> String {
    if json.len() <= 120 {
        json.to_string()
    } else {
        let cut = (0..=117).rev().find(|i| json.is_char_boundary(*i)).unwrap_or(0);
        format!("{}...", &json[..cut])
    }
}

/// `fal-realtime demo`: a burst of frames, then sequential round trips, with
/// results and a latency summary.
pub fn demo(app: Option<String>, frames: u64, input: Option<String>) -> Result<ExitCode, String> {
    let extra: Value = match &input {
        Some(s) => serde_json::from_str(s).map_err(|e| format!("--input is not valid JSON: {e}"))?,
        None => json!({}),
    };
    if !extra.is_object() {
        return Err("--input must be a JSON object".into());
    }
    let frames = frames.max(1);
    runtime()?.block_on(async move {
        let t = target(&app, None, true).await?;
        let app = app.unwrap_or_else(|| "demo/echo".to_string());
        println!("fal-realtime demo: {app} on {}, {frames} frames", t.description);

        // The handler runs on a runtime thread; it stamps the arrival time there.
        let (tx, mut rx) = mpsc::unbounded_channel::<(Option<String>, Instant, String)>();
        let (etx, mut erx) = mpsc::unbounded_channel::<fal_realtime::Error>();
        let handler = FnHandler::new(move |m| {
            let at = Instant::now();
            let json = m.to_json().unwrap_or_else(|e| format!("<{e}>"));
            let _ = tx.send((m.request_id().map(str::to_string), at, json));
        })
        .on_error(move |e| {
            let _ = etx.send(e);
        });
        let opts = RealtimeOptions { throttle_interval: Duration::ZERO, ..Default::default() };
        let conn = t.client.realtime(&app, opts, handler).map_err(|e| e.to_string())?;
        let input = |phase: &str, i: u64| {
            let mut v = extra.clone();
            v["request_id"] = json!(format!("{phase}-{i}"));
            v["prompt"] = json!(format!("frame {i}"));
            v
        };
        let wait = Duration::from_secs(60);

        // Connect (lazily, on the first send). Inputs sent while connecting
        // collapse to the latest one, so the burst waits for the first result.
        let started = Instant::now();
        conn.send(&input("connect", 0)).map_err(|e| e.to_string())?;
        tokio::select! {
            r = rx.recv() => if r.is_none() { return Err("the connection ended".into()) },
            Some(e) = erx.recv() => return Err(format!("could not connect: {e}")),
            _ = tokio::time::sleep(wait) => return Err("no result within 60 s".into()),
        }
        println!("connected: first result after {:.1} ms (token fetch, handshake, round trip)", started.elapsed().as_secs_f64() * 1e3);

        // Phase 1: a burst, sent back to back.
        let started = Instant::now();
        for i in 0..frames {
            conn.send(&input("burst", i)).map_err(|e| e.to_string())?;
        }
        let mut got = 0u64;
        let mut errors = 0u64;
        while got < frames {
            tokio::select! {
                r = rx.recv() => {
                    let Some((rid, _, json)) = r else { break };
                    if got < 3 || got + 1 == frames {
                        println!("result {}: {}", rid.as_deref().unwrap_or("-"), preview(&json));
                    } else if got == 3 {
                        println!("...");
                    }
                    got += 1;
                }
                Some(e) = erx.recv() => {
                    eprintln!("error: {e}");
                    errors += 1;
                    if e.kind() != ErrorKind::Server && e.kind() != ErrorKind::Decode { break; }
                }
                _ = tokio::time::sleep(wait) => break,
            }
        }
        let burst_time = started.elapsed();
        println!(
            "burst: {got}/{frames} results in {:.1} ms ({:.0} frames/s)",
            burst_time.as_secs_f64() * 1e3,
            got as f64 / burst_time.as_secs_f64().max(1e-9)
        );

        // Phase 2: sequential round trips (latency = send to the handler's arrival stamp).
        let mut lat = Vec::with_capacity(frames as usize);
        for i in 0..frames {
            let sent = Instant::now();
            conn.send(&input("seq", i)).map_err(|e| e.to_string())?;
            tokio::select! {
                r = rx.recv() => match r {
                    Some((_, at, _)) => lat.push(at.duration_since(sent)),
                    None => break,
                },
                Some(e) = erx.recv() => { eprintln!("error: {e}"); errors += 1; break; }
                _ = tokio::time::sleep(wait) => break,
            }
        }
        lat.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "round trips: {} sequential, latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            lat.len(),
            us(percentile(&lat, 0.5)),
            us(percentile(&lat, 0.99)),
            us(percentile(&lat, 1.0))
        );
        let s = conn.stats();
        println!(
            "connection: {} connect(s), {} frames / {} bytes sent, {} frames / {} bytes received, {} token fetch(es)",
            s.connects, s.frames_sent, s.bytes_sent, s.frames_received, s.bytes_received, s.token_fetches
        );
        conn.shutdown().await;
        let ok = got == frames && lat.len() as u64 == frames && errors == 0;
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// `fal-realtime send`: one input, results printed as JSON lines.
pub fn send(
    app: String,
    input: String,
    path: Option<String>,
    max_buffering: Option<u32>,
    emulator: Option<String>,
) -> Result<ExitCode, String> {
    runtime()?.block_on(async move {
        let t = target(&Some(app.clone()), emulator.as_deref(), false).await?;
        let opts = RealtimeOptions {
            path,
            max_buffering: max_buffering.map(i64::from),
            ..Default::default()
        };
        let mp = fal_realtime::codec::json_to_msgpack(&input).map_err(|e| e.to_string())?;
        let mut s = t.client.connect(&app, opts).await.map_err(|e| e.to_string())?;
        s.send_msgpack(mp).await.map_err(|e| e.to_string())?;
        // Wait for the first result, then print what follows until a short quiet spell.
        let mut first = true;
        let mut code = ExitCode::SUCCESS;
        loop {
            let wait = if first {
                Duration::from_secs(120)
            } else {
                Duration::from_millis(500)
            };
            match tokio::time::timeout(wait, s.recv()).await {
                Err(_) => {
                    if first {
                        eprintln!("no result within {} s", wait.as_secs());
                        code = ExitCode::from(1);
                    }
                    break;
                }
                Ok(None) => break,
                Ok(Some(Ok(m))) => {
                    println!("{}", m.to_json().map_err(|e| e.to_string())?);
                    first = false;
                }
                Ok(Some(Err(e))) => {
                    eprintln!("error: {e}");
                    if let Some(b) = e.body() {
                        eprintln!("server said: {b}");
                    }
                    code = ExitCode::from(1);
                    break;
                }
            }
        }
        let _ = s.close().await;
        Ok(code)
    })
}
