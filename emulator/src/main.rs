//! `fal-realtime`: run the local fal realtime emulator, generate test certificates, and (soon)
//! talk to realtime endpoints from the command line.

mod client_cmds;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use fal_realtime_emulator::proxy::FaultProxy;
use fal_realtime_emulator::{certs, Emulator, EmulatorConfig, TlsConfig};

const USAGE: &str = "\
fal-realtime: local emulator and command-line client for fal.ai realtime endpoints

USAGE:
    fal-realtime <COMMAND> [OPTIONS]

COMMANDS:
    serve       Run the emulator (token endpoint + realtime apps) on one port
    gen-certs   Write a test CA and a server certificate for localhost / 127.0.0.1
    demo        Connect to a realtime app and report round-trip statistics
    send        Send one JSON input to a realtime app and print the results
    proxy       Run a TCP fault proxy (latency, bandwidth, stalls, cuts) driven from stdin
    help        Print this help

serve [OPTIONS]
    --port N                 Port to listen on (default 0: a free port)
    --host IP                Address to bind (default 127.0.0.1)
    --key KEY                Accepted FAL key; repeatable (default test-key; env FAL_KEY adds one)
    --tls-cert FILE          Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key)
    --tls-key FILE           PEM private key of --tls-cert
    --timings                Send x-fal-message timings after each output
    --session-timeout SECS   Close sessions idle for SECS seconds (TIMEOUT x-fal-error)
    --buffering N            Unary input queue length (default 4)

    Apps (any owner): echo, slow (200 ms per input), stream, fail, control (test hooks
    selected by the input's `do`: garbage, close, drop, error_bin, unauthorized, timings,
    text, silent, pause, reset, cut, oversized), stall (the handshake is never answered);
    any other app name behaves like echo. Path: /{owner}/{app}/realtime.

gen-certs --out DIR
    Writes DIR/ca.pem, DIR/cert.pem and DIR/key.pem (names localhost, 127.0.0.1).

demo [OPTIONS]
    --app OWNER/APP          App to talk to (default: an in-process emulator's echo)
    --frames N               Number of frames to send (default 200)
    --input JSON             Extra fields merged into every input (e.g. a prompt)
    With FAL_KEY set and --app, talks to fal.ai; otherwise to an in-process emulator.

send APP JSON [OPTIONS]
    --path P                 Realtime path (default /realtime)
    --max-buffering N        max_buffering query parameter (1..=60)
    --emulator HOST:PORT     Talk to a running emulator (key test-key, or FAL_KEY)
    Without --emulator: fal.ai with FAL_KEY (FAL_RUN_HOST / FAL_REST_URL override hosts).

proxy --upstream HOST:PORT [OPTIONS]
    --upstream HOST:PORT     Server every connection is forwarded to (required)
    --port N                 Port to listen on, on 127.0.0.1 (default 0: a free port)
    --latency-ms N           Delay of every chunk, in each direction (default 0)
    --jitter-ms N            Uniform jitter (+/-) around the latency (default 0)
    --bandwidth BYTES_PER_SEC
                             Rate limit per direction and connection (default: none)
    Prints `proxy listening on 127.0.0.1:PORT`, then reads one command per line on stdin
    and answers each with a line `ok` (or `error: MESSAGE`):
        stall                hold every byte back, keep the connections open
        resume               end the stall
        cut                  cut the open connections now
        cut-after N          cut the open connections after N more bytes server->client
        latency MS [JITTER_MS]
        bandwidth N|off
        connections          answers `ok ACCEPTED OPEN` (connection counts)
        quit                 stop (so does the end of stdin)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "-V" | "--version" => {
            println!("fal-realtime {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        "serve" => parse_serve(rest).and_then(serve),
        "gen-certs" => parse_gen_certs(rest).and_then(gen_certs),
        "demo" => parse_demo(rest).and_then(demo),
        "send" => parse_send(rest).and_then(send),
        "proxy" => parse_proxy(rest).and_then(proxy),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("fal-realtime: {msg}");
            eprintln!("run `fal-realtime --help` for usage");
            ExitCode::from(2)
        }
    }
}

/// Splits `--flag=value` / `--flag value` arguments; positional arguments are returned as
/// `(None, value)`.
struct ArgIter<'a> {
    args: std::slice::Iter<'a, String>,
}

impl<'a> ArgIter<'a> {
    fn new(args: &'a [String]) -> Self {
        ArgIter { args: args.iter() }
    }

    /// The next argument: `Some((flag, inline value))` for options, or a positional one.
    fn next_arg(&mut self) -> Option<(Option<&'a str>, Option<&'a str>)> {
        let arg = self.args.next()?.as_str();
        if let Some(flag) = arg.strip_prefix("--").filter(|f| !f.is_empty()) {
            match flag.split_once('=') {
                Some((f, v)) => Some((Some(f), Some(v))),
                None => Some((Some(flag), None)),
            }
        } else {
            Some((None, Some(arg)))
        }
    }

    /// The value of `--flag` (inline or the next argument).
    fn value(&mut self, flag: &str, inline: Option<&'a str>) -> Result<&'a str, String> {
        match inline {
            Some(v) => Ok(v),
            None => self
                .args
                .next()
                .map(String::as_str)
                .ok_or_else(|| format!("--{flag} needs a value")),
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, flag: &str, inline: Option<&'a str>) -> Result<T, String> {
        let v = self.value(flag, inline)?;
        v.parse()
            .map_err(|_| format!("invalid value for --{flag}: {v:?}"))
    }
}

fn no_value(flag: &str, inline: Option<&str>) -> Result<(), String> {
    match inline {
        Some(_) => Err(format!("--{flag} takes no value")),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// serve

struct ServeArgs {
    host: IpAddr,
    port: u16,
    keys: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    timings: bool,
    session_timeout: Option<Duration>,
    buffering: Option<usize>,
}

fn parse_serve(args: &[String]) -> Result<ServeArgs, String> {
    let mut out = ServeArgs {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        keys: Vec::new(),
        tls_cert: None,
        tls_key: None,
        timings: false,
        session_timeout: None,
        buffering: None,
    };
    let mut it = ArgIter::new(args);
    while let Some((flag, inline)) = it.next_arg() {
        match flag {
            Some("port") => out.port = it.parsed("port", inline)?,
            Some("host") => out.host = it.parsed("host", inline)?,
            Some("key") => out.keys.push(it.value("key", inline)?.to_owned()),
            Some("tls-cert") => out.tls_cert = Some(it.value("tls-cert", inline)?.into()),
            Some("tls-key") => out.tls_key = Some(it.value("tls-key", inline)?.into()),
            Some("timings") => {
                no_value("timings", inline)?;
                out.timings = true;
            }
            Some("session-timeout") => {
                let secs: f64 = it.parsed("session-timeout", inline)?;
                let timeout = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("invalid value for --session-timeout: {secs}"))?;
                out.session_timeout = Some(timeout);
            }
            Some("buffering") => {
                let n: usize = it.parsed("buffering", inline)?;
                if n == 0 {
                    return Err("--buffering must be at least 1".into());
                }
                out.buffering = Some(n);
            }
            Some("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            Some(f) => return Err(format!("serve: unknown option --{f}")),
            None => return Err(format!("serve: unexpected argument {:?}", inline.unwrap_or(""))),
        }
    }
    if out.tls_cert.is_some() != out.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(out)
}

fn serve(args: ServeArgs) -> Result<ExitCode, String> {
    let mut config = EmulatorConfig {
        bind: SocketAddr::new(args.host, args.port),
        ..EmulatorConfig::default()
    };
    if !args.keys.is_empty() {
        config.keys = args.keys;
    }
    if let Ok(key) = std::env::var("FAL_KEY") {
        if !key.is_empty() && !config.keys.contains(&key) {
            config.keys.push(key);
        }
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        config.tls = Some(TlsConfig {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        });
    }
    config.default_app.timings = args.timings;
    config.default_app.session_timeout = args.session_timeout;
    if let Some(n) = args.buffering {
        config.default_app.buffering = n;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let emu = Emulator::start(config)
            .await
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "fal-realtime emulator listening on {} (ws host {})",
                emu.http_base(),
                emu.ws_host()
            );
            let _ = stdout.flush();
        }
        wait_for_signal().await;
        emu.shutdown();
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT (ctrl-c) or, on Unix, SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

// ---------------------------------------------------------------------------------------
// gen-certs

fn parse_gen_certs(args: &[String]) -> Result<PathBuf, String> {
    let mut out_dir = None;
    let mut it = ArgIter::new(args);
    while let Some((flag, inline)) = it.next_arg() {
        match flag {
            Some("out") => out_dir = Some(PathBuf::from(it.value("out", inline)?)),
            Some(f) => return Err(format!("gen-certs: unknown option --{f}")),
            None => {
                return Err(format!(
                    "gen-certs: unexpected argument {:?}",
                    inline.unwrap_or("")
                ))
            }
        }
    }
    out_dir.ok_or_else(|| "gen-certs: --out DIR is required".into())
}

fn gen_certs(dir: PathBuf) -> Result<ExitCode, String> {
    let generated = certs::generate(&["localhost", "127.0.0.1"]);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, pem) in [
        ("ca.pem", &generated.ca_pem),
        ("cert.pem", &generated.cert_pem),
        ("key.pem", &generated.key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// demo / send: command-line clients built on the `fal_realtime` crate.

/// Arguments of `fal-realtime demo`.
struct DemoArgs {
    /// `OWNER/APP`; `None` means an in-process emulator's echo app.
    app: Option<String>,
    /// Number of frames to send.
    frames: Option<u64>,
    /// Extra JSON fields merged into every input.
    input: Option<String>,
}

fn parse_demo(args: &[String]) -> Result<DemoArgs, String> {
    let mut out = DemoArgs {
        app: None,
        frames: None,
        input: None,
    };
    let mut it = ArgIter::new(args);
    while let Some((flag, inline)) = it.next_arg() {
        match flag {
            Some("app") => out.app = Some(it.value("app", inline)?.to_owned()),
            Some("frames") => out.frames = Some(it.parsed("frames", inline)?),
            Some("input") => out.input = Some(it.value("input", inline)?.to_owned()),
            Some(f) => return Err(format!("demo: unknown option --{f}")),
            None => return Err(format!("demo: unexpected argument {:?}", inline.unwrap_or(""))),
        }
    }
    Ok(out)
}

fn demo(args: DemoArgs) -> Result<ExitCode, String> {
    client_cmds::demo(args.app, args.frames.unwrap_or(200), args.input)
}

/// Arguments of `fal-realtime send`.
struct SendArgs {
    /// The app id (`owner/app`).
    app: String,
    /// The input, as JSON.
    json: String,
    /// Realtime path (`--path`).
    path: Option<String>,
    /// `--max-buffering` (1..=60).
    max_buffering: Option<u32>,
    /// `--emulator HOST:PORT`: talk to a running emulator.
    emulator: Option<String>,
}

fn parse_send(args: &[String]) -> Result<SendArgs, String> {
    let mut positional = Vec::new();
    let mut path = None;
    let mut max_buffering = None;
    let mut emulator = None;
    let mut it = ArgIter::new(args);
    while let Some((flag, inline)) = it.next_arg() {
        match flag {
            Some("path") => path = Some(it.value("path", inline)?.to_owned()),
            Some("max-buffering") => max_buffering = Some(it.parsed("max-buffering", inline)?),
            Some("emulator") => emulator = Some(it.value("emulator", inline)?.to_owned()),
            Some(f) => return Err(format!("send: unknown option --{f}")),
            None => positional.push(inline.unwrap_or("").to_owned()),
        }
    }
    let mut positional = positional.into_iter();
    match (positional.next(), positional.next(), positional.next()) {
        (Some(app), Some(json), None) => Ok(SendArgs {
            app,
            json,
            path,
            max_buffering,
            emulator,
        }),
        _ => Err("send: expected APP JSON".into()),
    }
}

fn send(args: SendArgs) -> Result<ExitCode, String> {
    client_cmds::send(args.app, args.json, args.path, args.max_buffering, args.emulator)
}

// ---------------------------------------------------------------------------------------
// proxy

/// Arguments of `fal-realtime proxy`.
struct ProxyArgs {
    upstream: SocketAddr,
    port: u16,
    latency: Duration,
    jitter: Duration,
    bandwidth: Option<u64>,
}

fn parse_proxy(args: &[String]) -> Result<ProxyArgs, String> {
    let mut upstream = None;
    let mut out = ProxyArgs {
        upstream: SocketAddr::from(([127, 0, 0, 1], 0)),
        port: 0,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        bandwidth: None,
    };
    let mut it = ArgIter::new(args);
    while let Some((flag, inline)) = it.next_arg() {
        match flag {
            Some("upstream") => {
                let v = it.value("upstream", inline)?;
                upstream = Some(resolve(v).map_err(|e| format!("--upstream {v}: {e}"))?);
            }
            Some("port") => out.port = it.parsed("port", inline)?,
            Some("latency-ms") => out.latency = Duration::from_millis(it.parsed("latency-ms", inline)?),
            Some("jitter-ms") => out.jitter = Duration::from_millis(it.parsed("jitter-ms", inline)?),
            Some("bandwidth") => out.bandwidth = Some(it.parsed("bandwidth", inline)?),
            Some("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            Some(f) => return Err(format!("proxy: unknown option --{f}")),
            None => return Err(format!("proxy: unexpected argument {:?}", inline.unwrap_or(""))),
        }
    }
    out.upstream = upstream.ok_or("proxy: --upstream HOST:PORT is required")?;
    Ok(out)
}

/// The first address of `HOST:PORT`.
fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| "no address".to_string())
}

fn proxy(args: ProxyArgs) -> Result<ExitCode, String> {
    use std::io::{BufRead, Write};
    let listen = SocketAddr::from(([127, 0, 0, 1], args.port));
    let proxy = FaultProxy::start_on_detached(listen, args.upstream)
        .map_err(|e| format!("cannot start the proxy on {listen}: {e}"))?;
    proxy.set_latency(args.latency, args.jitter);
    proxy.set_bandwidth(args.bandwidth);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "proxy listening on {}", proxy.addr());
    let _ = stdout.flush();
    // One command per line, until `quit` or the end of stdin.
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let reply = match proxy_command(&proxy, line) {
            Ok(Some(reply)) => reply,
            Ok(None) => {
                let _ = writeln!(stdout, "ok");
                let _ = stdout.flush();
                break;
            }
            Err(msg) => format!("error: {msg}"),
        };
        if writeln!(stdout, "{reply}").and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    proxy.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// Runs one stdin command of `fal-realtime proxy`: the reply, or `None` for `quit`.
fn proxy_command(proxy: &FaultProxy, line: &str) -> Result<Option<String>, String> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let number = |i: usize, what: &str| -> Result<u64, String> {
        let v = args
            .get(i)
            .ok_or_else(|| format!("{command}: {what} is required"))?;
        v.parse().map_err(|_| format!("{command}: invalid {what} {v:?}"))
    };
    let arity = |max: usize| -> Result<(), String> {
        if args.len() > max {
            return Err(format!("{command}: too many arguments"));
        }
        Ok(())
    };
    match command {
        "stall" => {
            arity(0)?;
            proxy.set_stall(true);
        }
        "resume" => {
            arity(0)?;
            proxy.set_stall(false);
        }
        "cut" => {
            arity(0)?;
            proxy.cut_now();
        }
        "cut-after" => {
            arity(1)?;
            proxy.cut_after(number(0, "N")?);
        }
        "latency" => {
            arity(2)?;
            let base = number(0, "MS")?;
            let jitter = if args.len() > 1 {
                number(1, "JITTER_MS")?
            } else {
                0
            };
            proxy.set_latency(Duration::from_millis(base), Duration::from_millis(jitter));
        }
        "bandwidth" => {
            arity(1)?;
            match args.first() {
                Some(&"off") => proxy.set_bandwidth(None),
                _ => proxy.set_bandwidth(Some(number(0, "N")?)),
            }
        }
        "connections" => {
            arity(0)?;
            return Ok(Some(format!(
                "ok {} {}",
                proxy.connections(),
                proxy.open_connections()
            )));
        }
        "quit" | "exit" => return Ok(None),
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(Some("ok".into()))
}
