//! `fal-realtime demo` and `fal-realtime send`: command-line clients built on
//! the `fal_realtime` crate.
//!
//! What they do is logged under the target [`LOG`] (info: the target, connects, token
//! fetches, closes; debug: inputs and results), beside the core's own `fal_realtime::*` logs.
//! Nothing logged or printed carries a key or a token: keys are never formatted, and URLs
//! and messages pass through [`redact`].

use crate::{CliError, CliResult};
use fal_realtime::{
    Client, ClientConfig, ConnectionState, Credentials, ErrorKind, FnHandler, RealtimeOptions,
};
use fal_realtime_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The log target of the command-line client (and of `serve`'s own lines).
pub const LOG: &str = "fal_realtime::cli";

/// How long the demo waits for a result before it gives up on a phase.
const RESULT_WAIT: Duration = Duration::from_secs(60);
/// How long `send` waits for its first result.
const FIRST_RESULT_WAIT: Duration = Duration::from_secs(120);
/// After the first result, `send` stops after this long without another.
const QUIET_END: Duration = Duration::from_millis(500);
/// How often the progress line is redrawn at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The options `demo` and `send` share.
#[derive(Debug, Default)]
pub struct ClientOpts {
    /// `--key`: the fal key (never logged).
    pub key: Option<String>,
    /// `--emulator HOST:PORT` (or an `http(s)://` / `ws(s)://` URL).
    pub emulator: Option<String>,
    /// `--ca-file`: extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// `--timeout`: the open timeout.
    pub timeout: Option<Duration>,
}

/// Arguments of `fal-realtime demo`.
#[derive(Debug)]
pub struct DemoArgs {
    /// `OWNER/APP`; `None` means the echo app of an emulator (in-process without `--emulator`).
    pub app: Option<String>,
    /// Number of frames of each phase (at least 1).
    pub frames: u64,
    /// Extra JSON fields merged into every input.
    pub input: Option<String>,
    /// Show the live progress line (when stdout and stderr are terminals).
    pub progress: bool,
    /// Where to connect and how.
    pub client: ClientOpts,
}

/// Arguments of `fal-realtime send`.
#[derive(Debug)]
pub struct SendArgs {
    /// The app id (`owner/app`).
    pub app: String,
    /// The input, as JSON.
    pub json: String,
    /// Realtime path (`--path`).
    pub path: Option<String>,
    /// `--max-buffering` (1..=60).
    pub max_buffering: Option<u32>,
    /// Where to connect and how.
    pub client: ClientOpts,
}

/// `s` with the value of every `fal_jwt_token=` query parameter replaced by `***`.
pub fn redact(s: &str) -> String {
    const PARAM: &str = "fal_jwt_token=";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(PARAM) {
        let start = i + PARAM.len();
        out.push_str(&rest[..start]);
        out.push_str("***");
        let end = rest[start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '"' || c == '\'')
            .map_or(rest.len(), |j| start + j);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Where a command talks to: fal.ai or an emulator.
struct Target {
    client: Client,
    /// Keeps an in-process emulator alive.
    _emulator: Option<Emulator>,
    description: String,
}

/// `--emulator`: `HOST:PORT`, or a URL whose scheme tells whether the emulator serves TLS
/// (`https`/`wss`); a bare `HOST:PORT` is TLS when a CA file is given.
fn emulator_endpoint(value: &str, has_ca_file: bool) -> CliResult<(String, bool)> {
    let (tls, host) = match value.split_once("://") {
        Some(("http" | "ws", h)) => (false, h),
        Some(("https" | "wss", h)) => (true, h),
        Some((other, _)) => {
            return Err(CliError::usage(format!(
                "--emulator {value}: unsupported scheme {other}:// (http, https, ws or wss)"
            )))
        }
        None => (has_ca_file, value),
    };
    let host = host.strip_suffix('/').unwrap_or(host);
    if host.is_empty() || host.contains('/') {
        return Err(CliError::usage(format!("--emulator {value}: expected HOST:PORT")));
    }
    Ok((host.to_owned(), tls))
}

fn env_key() -> Option<String> {
    std::env::var("FAL_KEY").ok().filter(|k| !k.is_empty())
}

/// The client of `command`. `app` is `None` for the demo without `--app`, which falls back
/// to an in-process emulator; with an app, either `--emulator` or credentials are needed.
async fn target(command: &str, app: Option<&str>, opts: &ClientOpts) -> CliResult<Target> {
    let (mut config, description, emulator) = if let Some(value) = &opts.emulator {
        let (host, tls) = emulator_endpoint(value, opts.ca_file.is_some())?;
        let (key, source) = match (&opts.key, env_key()) {
            (Some(k), _) => (k.clone(), "the key given with --key"),
            (None, Some(k)) => (k, "the key in FAL_KEY"),
            (None, None) => ("test-key".to_owned(), "the emulator's default key"),
        };
        let config = if tls {
            ClientConfig {
                credentials: Some(Credentials::key(key)),
                run_host: format!("wss://{host}"),
                rest_url: format!("https://{host}"),
                ..Default::default()
            }
        } else {
            ClientConfig::local(&host, &key)
        };
        let what = if tls { "TLS " } else { "" };
        log::info!(target: LOG, "credentials: {source}");
        let description = format!("the {what}emulator at {host}");
        (config, description, None)
    } else if let Some(app) = app {
        let (credentials, source) = match &opts.key {
            Some(k) => (Some(Credentials::key(k.clone())), "the key given with --key"),
            None => (
                Credentials::from_env(),
                "the environment (FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET)",
            ),
        };
        let Some(credentials) = credentials else {
            let without_app = if command == "demo" {
                ", or leave out --app for the demo against an in-process emulator"
            } else {
                ""
            };
            return Err(CliError::usage(format!(
                "{app} on fal.ai needs credentials: set FAL_KEY (or FAL_KEY_ID and \
                 FAL_KEY_SECRET) or pass --key KEY; for a local emulator pass --emulator \
                 HOST:PORT (see `fal-realtime serve`){without_app}"
            )));
        };
        let mut config = ClientConfig::from_env();
        config.credentials = Some(credentials);
        log::info!(target: LOG, "credentials: {source}");
        let description = redact(&config.run_host);
        (config, description, None)
    } else {
        if opts.key.is_some() {
            log::warn!(target: LOG, "--key is not used by the in-process demo (add --app or --emulator)");
        }
        let emu = Emulator::start(EmulatorConfig::default())
            .await
            .map_err(|e| CliError::failed(format!("could not start the in-process emulator: {e}")))?;
        log::info!(target: LOG, "in-process emulator on {}", emu.ws_host());
        let config = ClientConfig::local(&emu.ws_host(), "test-key");
        let description = format!("an in-process emulator on {}", emu.ws_host());
        (config, description, Some(emu))
    };
    if let Some(t) = opts.timeout {
        config.open_timeout = t;
    }
    if let Some(ca) = &opts.ca_file {
        config.extra_ca_file = Some(ca.clone());
    }
    log::info!(
        target: LOG,
        "client: run host {}, token endpoint {}/tokens/, open timeout {:.1} s{}",
        redact(&config.run_host),
        redact(config.rest_url.trim_end_matches('/')),
        config.open_timeout.as_secs_f64(),
        match &config.extra_ca_file {
            Some(p) => format!(", extra CA file {}", p.display()),
            None => String::new(),
        }
    );
    let client = Client::new(config)
        .map_err(|e| CliError::usage(format!("invalid client settings: {}", redact(&e.to_string()))))?;
    Ok(Target {
        client,
        _emulator: emulator,
        description,
    })
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("could not start a runtime: {e}")))
}

/// A failed open as a command error: invalid arguments are usage errors, the rest failures.
fn open_error(app: &str, target: &Target, e: fal_realtime::Error) -> CliError {
    let msg = redact(&e.to_string());
    log::info!(target: LOG, "open failed ({}): {msg}", e.kind());
    match e.kind() {
        ErrorKind::InvalidArgument => CliError::usage(msg),
        kind => CliError::failed(format!(
            "could not connect to {app} on {} ({kind}): {msg}",
            target.description
        )),
    }
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

/// A live progress line on stderr, redrawn in place at most every [`PROGRESS_EVERY`]; off
/// unless asked for and both stdout and stderr are terminals.
struct Progress {
    on: bool,
    shown: bool,
    drawn_at: Option<Instant>,
}

impl Progress {
    fn new(wanted: bool) -> Self {
        Progress {
            // Log lines would break into the line: it is off when the client logs.
            on: wanted
                && std::io::stdout().is_terminal()
                && std::io::stderr().is_terminal()
                && !log::log_enabled!(target: LOG, log::Level::Info),
            shown: false,
            drawn_at: None,
        }
    }

    /// Redraws the line with `text()`, unless it was drawn less than [`PROGRESS_EVERY`] ago.
    fn update(&mut self, text: impl FnOnce() -> String) {
        if !self.on || self.drawn_at.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", text());
        let _ = err.flush();
        self.shown = true;
        self.drawn_at = Some(Instant::now());
    }

    /// Erases the line (before other output, and at the end); the next update draws at once.
    fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
        }
        self.drawn_at = None;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

fn state_words(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Idle => "idle",
        ConnectionState::Authenticating => "fetching a token",
        ConnectionState::Connecting => "opening the WebSocket",
        ConnectionState::Open => "open",
        ConnectionState::Closed => "closed",
    }
}

/// `fal-realtime demo`: a burst of frames, then sequential round trips, with
/// results and a latency summary.
pub fn demo(args: DemoArgs) -> CliResult<ExitCode> {
    let extra: Value = match &args.input {
        Some(s) => {
            serde_json::from_str(s).map_err(|e| CliError::usage(format!("--input is not valid JSON: {e}")))?
        }
        None => json!({}),
    };
    if !extra.is_object() {
        return Err(CliError::usage("--input must be a JSON object"));
    }
    let frames = args.frames.max(1);
    runtime()?.block_on(async move {
        let t = target("demo", args.app.as_deref(), &args.client).await?;
        let app = args.app.clone().unwrap_or_else(|| "demo/echo".to_string());
        println!("fal-realtime demo: {app} on {}, {frames} frames", t.description);
        let mut progress = Progress::new(args.progress);

        // The handler runs on a runtime thread; it stamps the arrival time there.
        let (tx, mut rx) = mpsc::unbounded_channel::<(Option<String>, Instant, String)>();
        let (etx, mut erx) = mpsc::unbounded_channel::<fal_realtime::Error>();
        let handler = FnHandler::new(move |m| {
            let at = Instant::now();
            let json = m.to_json().unwrap_or_else(|e| format!("<{e}>"));
            let _ = tx.send((m.request_id().map(str::to_string), at, json));
        })
        .on_error(move |e| {
            log::info!(target: LOG, "connection error ({}): {}", e.kind(), redact(&e.to_string()));
            let _ = etx.send(e);
        })
        .on_state(|s| log::info!(target: LOG, "connection: {}", state_words(s)));
        let opts = RealtimeOptions { throttle_interval: Duration::ZERO, ..Default::default() };
        let conn = t.client.realtime(&app, opts, handler).map_err(|e| open_error(&app, &t, e))?;
        let input = |phase: &str, i: u64| {
            let mut v = extra.clone();
            v["request_id"] = json!(format!("{phase}-{i}"));
            v["prompt"] = json!(format!("frame {i}"));
            v
        };
        let send_error = |e: fal_realtime::Error| CliError::failed(format!("could not send: {}", redact(&e.to_string())));

        // Connect (lazily, on the first send). Inputs sent while connecting
        // collapse to the latest one, so the burst waits for the first result.
        let started = Instant::now();
        log::info!(target: LOG, "connecting to {app} on {}", t.description);
        conn.send(&input("connect", 0)).map_err(send_error)?;
        let connect_wait = t.client.config().open_timeout + RESULT_WAIT;
        let give_up = tokio::time::sleep(connect_wait);
        tokio::pin!(give_up);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + 2 * PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                r = rx.recv() => {
                    if r.is_none() {
                        return Err(CliError::failed("the connection ended"));
                    }
                    break;
                }
                Some(e) = erx.recv() => {
                    progress.clear();
                    return Err(open_error(&app, &t, e));
                }
                _ = &mut give_up => {
                    return Err(CliError::failed(format!(
                        "no result from {app} within {:.0} s",
                        connect_wait.as_secs_f64()
                    )));
                }
                _ = tick.tick() => progress.update(|| format!("connecting to {app}: {:.1} s", started.elapsed().as_secs_f64())),
            }
        }
        progress.clear();
        let s = conn.stats();
        log::info!(
            target: LOG,
            "connected: first result after {:.1} ms, {} connect(s), {} token fetch(es)",
            started.elapsed().as_secs_f64() * 1e3,
            s.connects,
            s.token_fetches
        );
        println!("connected: first result after {:.1} ms (token fetch, handshake, round trip)", started.elapsed().as_secs_f64() * 1e3);

        // Phase 1: a burst, sent back to back.
        let started = Instant::now();
        for i in 0..frames {
            conn.send(&input("burst", i)).map_err(send_error)?;
        }
        log::debug!(target: LOG, "burst: {frames} inputs sent");
        let mut got = 0u64;
        let mut errors = 0u64;
        while got < frames {
            tokio::select! {
                r = rx.recv() => {
                    let Some((rid, _, json)) = r else { break };
                    if got < 3 || got + 1 == frames {
                        progress.clear();
                        println!("result {}: {}", rid.as_deref().unwrap_or("-"), preview(&json));
                    } else if got == 3 {
                        progress.clear();
                        println!("...");
                    }
                    got += 1;
                    progress.update(|| format!("burst: {got}/{frames} results"));
                }
                Some(e) = erx.recv() => {
                    progress.clear();
                    eprintln!("error: {}", redact(&e.to_string()));
                    errors += 1;
                    if e.kind() != ErrorKind::Server && e.kind() != ErrorKind::Decode { break; }
                }
                _ = tokio::time::sleep(RESULT_WAIT) => {
                    progress.clear();
                    log::warn!(target: LOG, "burst: no result within {} s, giving up", RESULT_WAIT.as_secs());
                    break;
                }
            }
        }
        progress.clear();
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
            conn.send(&input("seq", i)).map_err(send_error)?;
            tokio::select! {
                r = rx.recv() => match r {
                    Some((_, at, _)) => lat.push(at.duration_since(sent)),
                    None => break,
                },
                Some(e) = erx.recv() => {
                    progress.clear();
                    eprintln!("error: {}", redact(&e.to_string()));
                    errors += 1;
                    break;
                }
                _ = tokio::time::sleep(RESULT_WAIT) => {
                    progress.clear();
                    log::warn!(target: LOG, "round trips: no result within {} s, giving up", RESULT_WAIT.as_secs());
                    break;
                }
            }
            progress.update(|| format!("round trips: {}/{frames}", i + 1));
        }
        progress.clear();
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
        log::info!(target: LOG, "closing the connection");
        conn.shutdown().await;
        log::info!(target: LOG, "closed");
        if got == frames && lat.len() as u64 == frames && errors == 0 {
            Ok(ExitCode::SUCCESS)
        } else {
            Err(CliError::failed(format!(
                "{got}/{frames} burst results, {}/{frames} round trips, {errors} error(s)",
                lat.len()
            )))
        }
    })
}

/// `fal-realtime send`: one input, results printed as JSON lines.
pub fn send(args: SendArgs) -> CliResult<ExitCode> {
    let mp = fal_realtime::codec::json_to_msgpack(&args.json)
        .map_err(|e| CliError::usage(format!("the input is not valid JSON: {e}")))?;
    let input_len = mp.len();
    let app = args.app;
    runtime()?.block_on(async move {
        let t = target("send", Some(&app), &args.client).await?;
        let opts = RealtimeOptions {
            path: args.path,
            max_buffering: args.max_buffering.map(i64::from),
            ..Default::default()
        };
        log::info!(
            target: LOG,
            "connecting to {app} on {} (token fetch and handshake, at most {:.1} s)",
            t.description,
            t.client.config().open_timeout.as_secs_f64()
        );
        let started = Instant::now();
        let mut s = t
            .client
            .connect(&app, opts)
            .await
            .map_err(|e| open_error(&app, &t, e))?;
        let stats = s.stats();
        log::info!(
            target: LOG,
            "connected in {:.1} ms ({} token fetch(es))",
            started.elapsed().as_secs_f64() * 1e3,
            stats.token_fetches
        );
        s.send_msgpack(mp)
            .await
            .map_err(|e| CliError::failed(format!("could not send the input: {}", redact(&e.to_string()))))?;
        log::debug!(target: LOG, "input sent ({input_len} bytes of msgpack)");
        // Wait for the first result, then print what follows until a short quiet spell.
        let mut results = 0u64;
        let mut outcome = Ok(ExitCode::SUCCESS);
        loop {
            let wait = if results == 0 {
                FIRST_RESULT_WAIT
            } else {
                QUIET_END
            };
            match tokio::time::timeout(wait, s.recv()).await {
                Err(_) => {
                    if results == 0 {
                        outcome = Err(CliError::failed(format!(
                            "no result from {app} within {} s",
                            wait.as_secs()
                        )));
                    }
                    break;
                }
                Ok(None) => {
                    log::info!(target: LOG, "the server ended the session");
                    if results == 0 {
                        outcome = Err(CliError::failed(format!(
                            "{app} ended the session without a result"
                        )));
                    }
                    break;
                }
                Ok(Some(Ok(m))) => {
                    let json = m.to_json().map_err(|e| CliError::failed(e.to_string()))?;
                    results += 1;
                    log::debug!(target: LOG, "result {results}: {} bytes of JSON", json.len());
                    println!("{json}");
                }
                Ok(Some(Err(e))) => {
                    log::info!(target: LOG, "error ({}): {}", e.kind(), redact(&e.to_string()));
                    let body = e
                        .body()
                        .map(|b| format!("\nserver said: {}", redact(b)))
                        .unwrap_or_default();
                    outcome = Err(CliError::failed(format!(
                        "{} error from {app}: {}{body}",
                        e.kind(),
                        redact(&e.to_string())
                    )));
                    break;
                }
            }
        }
        log::info!(target: LOG, "closing the session");
        match s.close().await {
            Ok(()) => log::info!(target: LOG, "closed after {results} result(s)"),
            Err(e) => log::info!(target: LOG, "close: {}", redact(&e.to_string())),
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_token() {
        assert_eq!(redact("wss://h/a/realtime"), "wss://h/a/realtime");
        assert_eq!(
            redact("wss://h/a?fal_jwt_token=SECRET&max_buffering=3"),
            "wss://h/a?fal_jwt_token=***&max_buffering=3"
        );
        assert_eq!(
            redact("a fal_jwt_token=one b fal_jwt_token=two"),
            "a fal_jwt_token=*** b fal_jwt_token=***"
        );
        assert_eq!(redact("x?fal_jwt_token="), "x?fal_jwt_token=***");
    }

    #[test]
    fn emulator_endpoints() {
        let ok = |v: &str, ca: bool| emulator_endpoint(v, ca).unwrap();
        assert_eq!(ok("127.0.0.1:80", false), ("127.0.0.1:80".into(), false));
        assert_eq!(ok("127.0.0.1:80", true), ("127.0.0.1:80".into(), true));
        assert_eq!(ok("http://127.0.0.1:80/", true), ("127.0.0.1:80".into(), false));
        assert_eq!(ok("https://localhost:443", false), ("localhost:443".into(), true));
        assert_eq!(ok("wss://localhost:443", false), ("localhost:443".into(), true));
        assert!(emulator_endpoint("ftp://x:1", false).is_err());
        assert!(emulator_endpoint("http://", false).is_err());
        assert!(emulator_endpoint("h:1/path", false).is_err());
    }
}
