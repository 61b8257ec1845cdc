//! `fal-realtime`: run the local fal realtime emulator, generate test certificates, run a
//! TCP fault proxy, and talk to realtime endpoints from the command line.
//!
//! Exit status: 0 on success, 1 when a command ran and failed (connect failed, server error,
//! no result), 2 on a usage error (unknown option, missing or bad value, missing credentials);
//! only usage errors print the `--help` hint.

mod client_cmds;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fal_realtime_emulator::proxy::FaultProxy;
use fal_realtime_emulator::{certs, Emulator, EmulatorConfig, TlsConfig};

use client_cmds::ClientOpts;

const OVERVIEW: &str = "\
fal-realtime: local emulator and command-line client for fal.ai realtime endpoints

USAGE:
    fal-realtime [-v...] <COMMAND> [OPTIONS]
    fal-realtime <COMMAND> --help          Options of one command
    fal-realtime help [COMMAND]

COMMANDS:
    serve       Run the emulator (token endpoint + realtime apps) on one port
    gen-certs   Write a test CA and a server certificate for localhost / 127.0.0.1
    demo        Connect to a realtime app and report round-trip statistics
    send        Send one JSON input to a realtime app and print the results
    proxy       Run a TCP fault proxy (latency, bandwidth, stalls, cuts) driven from stdin
    help        Print this help, or the help of a command

OPTIONS (before or after the command):
    -v, --verbose            Log what the client and the emulator do on stderr; repeat for
                             more: -v info, -vv debug, -vvv trace (default: warnings only)
    --verbose=LEVEL          Set the level: warn, info, debug, trace (or 0..=3)
    -h, --help               Print help
    -V, --version            Print the version

ENVIRONMENT:
    RUST_LOG                 Log filter (env_logger syntax, e.g. `fal_realtime=debug`),
                             applied over the -v level
    FAL_KEY                  fal API key for demo/send (or FAL_KEY_ID and FAL_KEY_SECRET);
                             serve accepts it as a key too
    FAL_RUN_HOST, FAL_REST_URL
                             Override fal.ai's run host and REST URL (demo, send)

EXIT STATUS:
    0 success; 1 the command failed (connect failed, server error, no result);
    2 usage error (unknown option, missing or bad value, missing credentials)
";

const SERVE_USAGE: &str = "\
fal-realtime serve: run the emulator (token endpoint + realtime apps) on one port

USAGE:
    fal-realtime serve [OPTIONS]

OPTIONS:
    --port N                 Port to listen on (default 0: a free port)
    --host IP                Address to bind (default 127.0.0.1; 0.0.0.0: every interface)
    --key KEY                Accepted FAL key; repeatable (default test-key; env FAL_KEY adds one)
    --tls-cert FILE          Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key)
    --tls-key FILE           PEM private key of --tls-cert
    --timings                Send x-fal-message timings after each output
    --session-timeout SECS   Close sessions idle for SECS seconds (TIMEOUT x-fal-error)
    --buffering N            Unary input queue length (default 4)
    -v, --verbose            Log every session (app, path, peer, how it ended) and token request
    -h, --help               Print this help

Prints `fal-realtime emulator listening on http://ADDR:PORT (ws host HOST:PORT)`: ADDR is
the address bound (`https://localhost:PORT` with TLS), HOST:PORT the run host of a client on
this machine (127.0.0.1:PORT, or localhost:PORT with TLS). Serves until SIGINT or SIGTERM.

APPS (any owner; path /{owner}/{app}/realtime):
    echo, slow (200 ms per input), stream, fail, control (test hooks selected by the input's
    `do`: garbage, close, drop, error_bin, unauthorized, timings, text, silent, pause, reset,
    cut, oversized), stall (the handshake is never answered); any other app name behaves like
    echo.
";

const GEN_CERTS_USAGE: &str = "\
fal-realtime gen-certs: write a test CA and a server certificate

USAGE:
    fal-realtime gen-certs --out DIR

OPTIONS:
    --out DIR                Writes DIR/ca.pem, DIR/cert.pem and DIR/key.pem (names localhost,
                             127.0.0.1); use with `serve --tls-cert --tls-key` and `--ca-file`
    -h, --help               Print this help
";

const DEMO_USAGE: &str = "\
fal-realtime demo: connect to a realtime app, send a burst of frames then sequential round
trips, and report results, latency (p50/p99) and the connection's counters

USAGE:
    fal-realtime demo [OPTIONS]

OPTIONS:
    --app OWNER/APP          App to talk to on fal.ai (needs FAL_KEY or --key), or on the
                             --emulator; default: an in-process emulator's echo app
    --frames N               Number of frames of each phase (default 200, at least 1)
    --input JSON             JSON object merged into every input (e.g. '{\"prompt\": \"x\"}')
    --key KEY                fal key (default: env FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET;
                             test-key for an --emulator)
    --emulator HOST:PORT     Talk to a running emulator (`fal-realtime serve`); https://HOST:PORT
                             or --ca-file for one serving TLS
    --ca-file PATH           Also trust the CA certificates of this PEM file (a TLS emulator)
    --timeout SECS           Time allowed to open the connection: token fetch + handshake
                             (default 90)
    --no-progress            No live progress line (it is shown only when stdout and stderr
                             are terminals)
    -v, --verbose            Log connects, token fetches, closes and errors on stderr
    -h, --help               Print this help

The last lines are `burst: N/N results ...`, `round trips: N sequential ...` and the counters.
Exit status 1 when a frame went unanswered or an error occurred.
";

const SEND_USAGE: &str = "\
fal-realtime send: send one JSON input to a realtime app and print each result as a JSON line

USAGE:
    fal-realtime send OWNER/APP JSON [OPTIONS]

OPTIONS:
    --path P                 Realtime path (default /realtime)
    --max-buffering N        max_buffering query parameter (1..=60)
    --key KEY                fal key (default: env FAL_KEY, or FAL_KEY_ID and FAL_KEY_SECRET;
                             test-key for an --emulator)
    --emulator HOST:PORT     Talk to a running emulator (`fal-realtime serve`); https://HOST:PORT
                             or --ca-file for one serving TLS
    --ca-file PATH           Also trust the CA certificates of this PEM file (a TLS emulator)
    --timeout SECS           Time allowed to open the connection: token fetch + handshake
                             (default 90)
    -v, --verbose            Log connects, token fetches, closes and errors on stderr
    -h, --help               Print this help

Without --emulator: fal.ai (FAL_RUN_HOST / FAL_REST_URL override its hosts). Waits up to
120 s for the first result, then prints results until 0.5 s pass without one.
Exit status 1 when the connection fails, the server reports an error or no result comes.
";

const PROXY_USAGE: &str = "\
fal-realtime proxy: a TCP fault proxy (latency, bandwidth, stalls, cuts) driven from stdin

USAGE:
    fal-realtime proxy --upstream HOST:PORT [OPTIONS]

OPTIONS:
    --upstream HOST:PORT     Server every connection is forwarded to (required)
    --port N                 Port to listen on, on 127.0.0.1 (default 0: a free port)
    --latency-ms N           Delay of every chunk, in each direction (default 0)
    --jitter-ms N            Uniform jitter (+/-) around the latency (default 0)
    --bandwidth BYTES_PER_SEC
                             Rate limit per direction and connection (default: none)
    -v, --verbose            Log upstream connection failures
    -h, --help               Print this help

Prints `proxy listening on 127.0.0.1:PORT`, then reads one command per line on stdin
and answers each with a line `ok` (or `error: MESSAGE`):
    stall                    hold every byte back, keep the connections open
    resume                   end the stall
    cut                      cut the open connections now
    cut-after N              cut the open connections after N more bytes server->client
    latency MS [JITTER_MS]
    bandwidth N|off
    connections              answers `ok ACCEPTED OPEN` (connection counts)
    quit                     stop (so does the end of stdin)
";

/// The commands and their help.
const COMMANDS: [(&str, &str); 5] = [
    ("serve", SERVE_USAGE),
    ("gen-certs", GEN_CERTS_USAGE),
    ("demo", DEMO_USAGE),
    ("send", SEND_USAGE),
    ("proxy", PROXY_USAGE),
];

fn usage_of(command: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|(c, _)| *c == command).map(|(_, u)| *u)
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line cannot be run as given: exit 2, with the `--help` hint.
    Usage(String),
    /// The command ran and failed: exit 1, no hint.
    Failed(String),
}

impl CliError {
    pub(crate) fn usage(msg: impl Into<String>) -> Self {
        CliError::Usage(msg.into())
    }

    pub(crate) fn failed(msg: impl Into<String>) -> Self {
        CliError::Failed(msg.into())
    }
}

type CliResult<T> = Result<T, CliError>;

/// How much the logger lets through for the project's crates: 0 warn (the default), 1 info,
/// 2 debug, 3 trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Verbosity(u8);

impl Verbosity {
    /// `-v` / `--verbose`, or `--verbose=LEVEL`.
    fn apply(&mut self, level: Option<&str>) -> CliResult<()> {
        match level {
            None => self.0 = self.0.saturating_add(1),
            Some(l) => {
                self.0 = match l.to_ascii_lowercase().as_str() {
                    "0" | "warn" => 0,
                    "1" | "info" => 1,
                    "2" | "debug" => 2,
                    "3" | "trace" => 3,
                    _ => {
                        return Err(CliError::usage(format!(
                            "invalid value for --verbose: {l:?} (warn, info, debug, trace or 0..=3)"
                        )))
                    }
                }
            }
        }
        Ok(())
    }

    /// The default filter: warnings from every crate, and the chosen level for the
    /// core (`fal_realtime`, also the target of this binary's own logs) and the emulator.
    fn filter(self) -> String {
        let level = match self.0 {
            0 => return "warn".into(),
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        format!("warn,fal_realtime={level},fal_realtime_emulator={level}")
    }
}

/// Installs the logger: stderr, `[SECONDS LEVEL TARGET] message`, the filter of `verbosity`
/// then `RUST_LOG` over it.
fn init_logging(verbosity: Verbosity) {
    let started = Instant::now();
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&verbosity.filter());
    if let Ok(spec) = std::env::var("RUST_LOG") {
        if !spec.trim().is_empty() {
            builder.parse_filters(&spec);
        }
    }
    builder.format(move |buf, record| {
        writeln!(
            buf,
            "[{:8.3}s {:<5} {}] {}",
            started.elapsed().as_secs_f64(),
            record.level(),
            record.target(),
            record.args()
        )
    });
    let _ = builder.try_init();
}

/// What the arguments ask for.
enum Run {
    /// Print this help: on stdout with exit 0 when asked for (`true`), else on stderr with
    /// exit 2 (no command given).
    Help(&'static str, bool),
    Version,
    /// Run the named command.
    Command(&'static str, Box<dyn FnOnce() -> CliResult<ExitCode>>),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut verbosity = Verbosity::default();
    let mut command = None;
    let run = parse(&args, &mut verbosity, &mut command);
    let hint = |command: Option<&str>| match command {
        Some(c) => eprintln!("run `fal-realtime {c} --help` for usage"),
        None => eprintln!("run `fal-realtime --help` for usage"),
    };
    let run = match run {
        Ok(run) => run,
        Err(CliError::Usage(msg)) | Err(CliError::Failed(msg)) => {
            match command {
                Some(c) => eprintln!("fal-realtime: {c}: {msg}"),
                None => eprintln!("fal-realtime: {msg}"),
            }
            hint(command);
            return ExitCode::from(2);
        }
    };
    match run {
        Run::Help(text, true) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Run::Help(text, false) => {
            eprint!("{text}");
            ExitCode::from(2)
        }
        Run::Version => {
            println!("fal-realtime {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Run::Command(name, f) => {
            init_logging(verbosity);
            match f() {
                Ok(code) => code,
                Err(CliError::Usage(msg)) => {
                    eprintln!("fal-realtime: {name}: {msg}");
                    hint(Some(name));
                    ExitCode::from(2)
                }
                Err(CliError::Failed(msg)) => {
                    log::debug!(target: client_cmds::LOG, "{name} failed: {msg}");
                    eprintln!("fal-realtime: {name}: {msg}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Parses the whole command line; `command` is set as soon as it is known (for the hint).
fn parse(args: &[String], verbosity: &mut Verbosity, command: &mut Option<&'static str>) -> CliResult<Run> {
    // Options before the command.
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Run::Help(OVERVIEW, true)),
            "-V" | "--version" => return Ok(Run::Version),
            a if is_verbose_flag(a) => apply_verbose(a, verbosity)?,
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(CliError::usage(format!("unknown option {a}")))
            }
            _ => break,
        }
        i += 1;
    }
    let Some(name) = args.get(i) else {
        return Ok(Run::Help(OVERVIEW, false));
    };
    let rest = &args[i + 1..];
    if name == "help" {
        return match rest.first() {
            None => Ok(Run::Help(OVERVIEW, true)),
            Some(c) => usage_of(c)
                .map(|u| Run::Help(u, true))
                .ok_or_else(|| CliError::usage(format!("help: unknown command {c:?}"))),
        };
    }
    let (name, usage) = COMMANDS
        .iter()
        .find(|(c, _)| c == name)
        .copied()
        .ok_or_else(|| CliError::usage(format!("unknown command {name:?}")))?;
    *command = Some(name);
    // `-h` / `--help` anywhere among the options wins over everything else.
    if rest
        .iter()
        .take_while(|a| a.as_str() != "--")
        .any(|a| a == "-h" || a == "--help")
    {
        return Ok(Run::Help(usage, true));
    }
    let mut it = ArgIter::new(rest, *verbosity);
    let run: Box<dyn FnOnce() -> CliResult<ExitCode>> = match name {
        "serve" => {
            let a = parse_serve(&mut it)?;
            Box::new(move || serve(a))
        }
        "gen-certs" => {
            let a = parse_gen_certs(&mut it)?;
            Box::new(move || gen_certs(a))
        }
        "demo" => {
            let a = parse_demo(&mut it)?;
            Box::new(move || client_cmds::demo(a))
        }
        "send" => {
            let a = parse_send(&mut it)?;
            Box::new(move || client_cmds::send(a))
        }
        _ => {
            let a = parse_proxy(&mut it)?;
            Box::new(move || proxy(a))
        }
    };
    *verbosity = it.verbosity;
    Ok(Run::Command(name, run))
}

/// `-v`, `-vv`, ..., `--verbose`, `--verbose=LEVEL`.
fn is_verbose_flag(arg: &str) -> bool {
    arg == "--verbose"
        || arg.starts_with("--verbose=")
        || arg
            .strip_prefix('-')
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b == b'v'))
}

fn apply_verbose(arg: &str, verbosity: &mut Verbosity) -> CliResult<()> {
    if let Some(level) = arg.strip_prefix("--verbose=") {
        return verbosity.apply(Some(level));
    }
    if arg == "--verbose" {
        return verbosity.apply(None);
    }
    for _ in 1..arg.len() {
        verbosity.apply(None)?;
    }
    Ok(())
}

/// One command-line argument of a command.
enum Arg<'a> {
    /// `--flag` or `--flag=value` (the inline value).
    Opt(&'a str, Option<&'a str>),
    /// A positional argument (anything after `--` is one).
    Pos(&'a str),
}

/// Splits `--flag=value` / `--flag value` arguments, and takes the verbosity flags (`-v`,
/// `--verbose[=LEVEL]`) out of the way wherever they are.
struct ArgIter<'a> {
    args: std::slice::Iter<'a, String>,
    verbosity: Verbosity,
    positional_only: bool,
}

impl<'a> ArgIter<'a> {
    fn new(args: &'a [String], verbosity: Verbosity) -> Self {
        ArgIter {
            args: args.iter(),
            verbosity,
            positional_only: false,
        }
    }

    /// The next argument that is not a verbosity flag.
    fn next_arg(&mut self) -> CliResult<Option<Arg<'a>>> {
        loop {
            let Some(arg) = self.args.next() else {
                return Ok(None);
            };
            let arg = arg.as_str();
            if self.positional_only {
                return Ok(Some(Arg::Pos(arg)));
            }
            if arg == "--" {
                self.positional_only = true;
                continue;
            }
            if is_verbose_flag(arg) {
                apply_verbose(arg, &mut self.verbosity)?;
                continue;
            }
            if let Some(flag) = arg.strip_prefix("--") {
                return Ok(Some(match flag.split_once('=') {
                    Some((f, v)) => Arg::Opt(f, Some(v)),
                    None => Arg::Opt(flag, None),
                }));
            }
            // `-x` is an (unknown) short option; `-1` and `-` are positional.
            if arg.len() > 1
                && arg.starts_with('-')
                && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic())
            {
                return Err(CliError::usage(format!("unknown option {arg}")));
            }
            return Ok(Some(Arg::Pos(arg)));
        }
    }

    /// The value of `--flag` (inline or the next argument).
    fn value(&mut self, flag: &str, inline: Option<&'a str>) -> CliResult<&'a str> {
        match inline {
            Some(v) => Ok(v),
            None => self
                .args
                .next()
                .map(String::as_str)
                .ok_or_else(|| CliError::usage(format!("--{flag} needs a value"))),
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, flag: &str, inline: Option<&'a str>) -> CliResult<T> {
        let v = self.value(flag, inline)?;
        v.parse()
            .map_err(|_| CliError::usage(format!("invalid value for --{flag}: {v:?}")))
    }

    /// A positive number of seconds.
    fn seconds(&mut self, flag: &str, inline: Option<&'a str>) -> CliResult<Duration> {
        let v = self.value(flag, inline)?;
        v.parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "invalid value for --{flag}: {v:?} (a positive number of seconds)"
                ))
            })
    }
}

fn no_value(flag: &str, inline: Option<&str>) -> CliResult<()> {
    match inline {
        Some(_) => Err(CliError::usage(format!("--{flag} takes no value"))),
        None => Ok(()),
    }
}

fn unknown(flag: &str) -> CliError {
    CliError::usage(format!("unknown option --{flag}"))
}

fn unexpected(arg: &str) -> CliError {
    CliError::usage(format!("unexpected argument {arg:?}"))
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

fn parse_serve(it: &mut ArgIter) -> CliResult<ServeArgs> {
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
    while let Some(arg) = it.next_arg()? {
        let (flag, inline) = match arg {
            Arg::Opt(f, v) => (f, v),
            Arg::Pos(p) => return Err(unexpected(p)),
        };
        match flag {
            "port" => out.port = it.parsed("port", inline)?,
            "host" => out.host = it.parsed("host", inline)?,
            "key" => out.keys.push(it.value("key", inline)?.to_owned()),
            "tls-cert" => out.tls_cert = Some(it.value("tls-cert", inline)?.into()),
            "tls-key" => out.tls_key = Some(it.value("tls-key", inline)?.into()),
            "timings" => {
                no_value("timings", inline)?;
                out.timings = true;
            }
            "session-timeout" => out.session_timeout = Some(it.seconds("session-timeout", inline)?),
            "buffering" => {
                let n: usize = it.parsed("buffering", inline)?;
                if n == 0 {
                    return Err(CliError::usage("--buffering must be at least 1"));
                }
                out.buffering = Some(n);
            }
            f => return Err(unknown(f)),
        }
    }
    if out.tls_cert.is_some() != out.tls_key.is_some() {
        return Err(CliError::usage("--tls-cert and --tls-key go together"));
    }
    Ok(out)
}

fn serve(args: ServeArgs) -> CliResult<ExitCode> {
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
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| CliError::failed(format!("{}: {e}", p.display())));
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

    let bind = config.bind;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let emu = Emulator::start(config)
            .await
            .map_err(|e| CliError::failed(format!("cannot listen on {bind}: {e}")))?;
        let line = listening_line(&emu);
        {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
        log::info!(target: client_cmds::LOG, "serving on {} until SIGINT or SIGTERM", emu.addr());
        wait_for_signal().await;
        log::info!(target: client_cmds::LOG, "shutting down");
        emu.shutdown();
        Ok(ExitCode::SUCCESS)
    })
}

/// `fal-realtime emulator listening on URL (ws host HOST:PORT)`. The URL names the address
/// really bound (`0.0.0.0:PORT` for every interface); with TLS on a loopback address it is
/// `https://localhost:PORT`, the name of the test certificate. The ws host is the run host a
/// client on this machine uses.
fn listening_line(emu: &Emulator) -> String {
    let addr = emu.addr();
    let url = if addr.ip().is_unspecified() {
        let scheme = if emu.http_base().starts_with("https:") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}")
    } else {
        emu.http_base()
    };
    format!(
        "fal-realtime emulator listening on {url} (ws host {})",
        emu.ws_host()
    )
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

fn parse_gen_certs(it: &mut ArgIter) -> CliResult<PathBuf> {
    let mut out_dir = None;
    while let Some(arg) = it.next_arg()? {
        match arg {
            Arg::Opt("out", inline) => out_dir = Some(PathBuf::from(it.value("out", inline)?)),
            Arg::Opt(f, _) => return Err(unknown(f)),
            Arg::Pos(p) => return Err(unexpected(p)),
        }
    }
    out_dir.ok_or_else(|| CliError::usage("--out DIR is required"))
}

fn gen_certs(dir: PathBuf) -> CliResult<ExitCode> {
    let generated = certs::generate(&["localhost", "127.0.0.1"]);
    let io_error = |p: &std::path::Path, e: std::io::Error| CliError::failed(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    for (name, pem) in [
        ("ca.pem", &generated.ca_pem),
        ("cert.pem", &generated.cert_pem),
        ("key.pem", &generated.key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| io_error(&path, e))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// demo / send: command-line clients built on the `fal_realtime` crate.

/// The options `demo` and `send` share (`--key`, `--emulator`, `--ca-file`, `--timeout`);
/// `Ok(false)` when `flag` is none of them.
fn client_option<'a>(
    it: &mut ArgIter<'a>,
    opts: &mut ClientOpts,
    flag: &str,
    inline: Option<&'a str>,
) -> CliResult<bool> {
    match flag {
        "key" => opts.key = Some(it.value("key", inline)?.to_owned()),
        "emulator" => opts.emulator = Some(it.value("emulator", inline)?.to_owned()),
        "ca-file" => opts.ca_file = Some(PathBuf::from(it.value("ca-file", inline)?)),
        "timeout" => opts.timeout = Some(it.seconds("timeout", inline)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_demo(it: &mut ArgIter) -> CliResult<client_cmds::DemoArgs> {
    let mut out = client_cmds::DemoArgs {
        app: None,
        frames: 200,
        input: None,
        progress: true,
        client: ClientOpts::default(),
    };
    while let Some(arg) = it.next_arg()? {
        let (flag, inline) = match arg {
            Arg::Opt(f, v) => (f, v),
            Arg::Pos(p) => return Err(unexpected(p)),
        };
        match flag {
            "app" => out.app = Some(it.value("app", inline)?.to_owned()),
            "frames" => {
                out.frames = it.parsed("frames", inline)?;
                if out.frames == 0 {
                    return Err(CliError::usage("--frames must be at least 1"));
                }
            }
            "input" => out.input = Some(it.value("input", inline)?.to_owned()),
            "no-progress" => {
                no_value("no-progress", inline)?;
                out.progress = false;
            }
            f => {
                if !client_option(it, &mut out.client, f, inline)? {
                    return Err(unknown(f));
                }
            }
        }
    }
    Ok(out)
}

fn parse_send(it: &mut ArgIter) -> CliResult<client_cmds::SendArgs> {
    let mut positional = Vec::new();
    let mut path = None;
    let mut max_buffering = None;
    let mut client = ClientOpts::default();
    while let Some(arg) = it.next_arg()? {
        let (flag, inline) = match arg {
            Arg::Opt(f, v) => (f, v),
            Arg::Pos(p) => {
                positional.push(p.to_owned());
                continue;
            }
        };
        match flag {
            "path" => path = Some(it.value("path", inline)?.to_owned()),
            "max-buffering" => {
                let n: u32 = it.parsed("max-buffering", inline)?;
                if !(1..=60).contains(&n) {
                    return Err(CliError::usage(format!(
                        "--max-buffering must be between 1 and 60, not {n}"
                    )));
                }
                max_buffering = Some(n);
            }
            f => {
                if !client_option(it, &mut client, f, inline)? {
                    return Err(unknown(f));
                }
            }
        }
    }
    let mut positional = positional.into_iter();
    match (positional.next(), positional.next(), positional.next()) {
        (Some(app), Some(json), None) => Ok(client_cmds::SendArgs {
            app,
            json,
            path,
            max_buffering,
            client,
        }),
        (_, _, Some(extra)) => Err(unexpected(&extra)),
        _ => Err(CliError::usage("expected OWNER/APP JSON")),
    }
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

fn parse_proxy(it: &mut ArgIter) -> CliResult<ProxyArgs> {
    let mut upstream = None;
    let mut out = ProxyArgs {
        upstream: SocketAddr::from(([127, 0, 0, 1], 0)),
        port: 0,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        bandwidth: None,
    };
    while let Some(arg) = it.next_arg()? {
        let (flag, inline) = match arg {
            Arg::Opt(f, v) => (f, v),
            Arg::Pos(p) => return Err(unexpected(p)),
        };
        match flag {
            "upstream" => {
                let v = it.value("upstream", inline)?;
                upstream = Some(resolve(v).map_err(|e| CliError::usage(format!("--upstream {v}: {e}")))?);
            }
            "port" => out.port = it.parsed("port", inline)?,
            "latency-ms" => out.latency = Duration::from_millis(it.parsed("latency-ms", inline)?),
            "jitter-ms" => out.jitter = Duration::from_millis(it.parsed("jitter-ms", inline)?),
            "bandwidth" => out.bandwidth = Some(it.parsed("bandwidth", inline)?),
            f => return Err(unknown(f)),
        }
    }
    out.upstream = upstream.ok_or_else(|| CliError::usage("--upstream HOST:PORT is required"))?;
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

fn proxy(args: ProxyArgs) -> CliResult<ExitCode> {
    use std::io::BufRead;
    let listen = SocketAddr::from(([127, 0, 0, 1], args.port));
    let proxy = FaultProxy::start_on_detached(listen, args.upstream)
        .map_err(|e| CliError::failed(format!("cannot start the proxy on {listen}: {e}")))?;
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
