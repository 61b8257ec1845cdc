//! The `fal-realtime` binary as a person uses it: help, exit codes, logging, the client
//! options of `send` and `demo`, and `serve`'s listening line. Every server is on this
//! machine, every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any one command of these tests may take.
const RUN_MAX: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(10);
const HINT: &str = "--help` for usage";

/// The binary, with none of the environment that would change what it does.
fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fal-realtime"));
    for var in [
        "FAL_KEY",
        "FAL_KEY_ID",
        "FAL_KEY_SECRET",
        "FAL_RUN_HOST",
        "FAL_REST_URL",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Drains `r` on a thread; the text arrives when `r` ends.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Runs `fal-realtime ARGS` to its end (killed, and the test failed, after [`RUN_MAX`]).
fn run(args: &[&str]) -> Output {
    run_cmd(bin().args(args))
}

fn run_cmd(cmd: &mut Command) -> Output {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fal-realtime");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {RUN_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    Output {
        status,
        stdout: stdout.recv_timeout(STEP).unwrap_or_default(),
        stderr: stderr.recv_timeout(STEP).unwrap_or_default(),
        elapsed,
    }
}

/// A `fal-realtime serve` of the test, killed on drop.
struct Serve {
    child: Child,
    /// The listening line.
    line: String,
    /// The port it listens on.
    port: u16,
    /// Its stderr, line by line.
    log: mpsc::Receiver<String>,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = bin()
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fal-realtime serve");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines.recv_timeout(STEP).expect("serve's listening line in time");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Serve {
            child,
            line,
            port,
            log,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Log lines until one contains `needle` (all of them, that one last).
    fn log_until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} in time; saw {seen:#?}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_command_has_its_own_help() {
    let commands = [
        ("serve", "fal-realtime serve [OPTIONS]", "--session-timeout SECS"),
        ("gen-certs", "fal-realtime gen-certs --out DIR", "--out DIR"),
        ("demo", "fal-realtime demo [OPTIONS]", "--timeout SECS"),
        (
            "send",
            "fal-realtime send OWNER/APP JSON [OPTIONS]",
            "--ca-file PATH",
        ),
        (
            "proxy",
            "fal-realtime proxy --upstream HOST:PORT [OPTIONS]",
            "cut-after N",
        ),
    ];
    for (command, usage, option) in commands {
        for args in [
            vec![command, "--help"],
            vec![command, "-h"],
            vec!["help", command],
        ] {
            let out = run(&args);
            assert!(out.status.success(), "{args:?}: {:?}", out.status);
            assert!(out.stdout.contains(usage), "{args:?}: {}", out.stdout);
            assert!(out.stdout.contains(option), "{args:?}: {}", out.stdout);
            if command != "gen-certs" {
                assert!(out.stdout.contains("-v, --verbose"), "{args:?}: {}", out.stdout);
            }
            assert!(out.stderr.is_empty(), "{args:?}: {}", out.stderr);
        }
    }
    // --help wins over the other arguments, good or bad.
    let out = run(&["send", "--bogus", "--help"]);
    assert!(out.status.success());
    assert!(out.stdout.contains("fal-realtime send OWNER/APP JSON"));

    for args in [&["--help"][..], &["-h"], &["help"]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        for command in ["serve", "gen-certs", "demo", "send", "proxy"] {
            assert!(out.stdout.contains(command), "{args:?}: {}", out.stdout);
        }
        assert!(out.stdout.contains("EXIT STATUS"), "{}", out.stdout);
    }
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("COMMANDS:"), "{}", out.stderr);

    let out = run(&["--version"]);
    assert!(out.status.success());
    assert!(out.stdout.starts_with("fal-realtime "), "{}", out.stdout);
}

#[test]
fn usage_errors_exit_2_with_the_hint() {
    let cases: [(&[&str], &str); 14] = [
        (&["send", "--bogus"], "unknown option --bogus"),
        (&["send", "owner/echo", "{}", "-x"], "unknown option -x"),
        (&["send", "owner/echo"], "expected OWNER/APP JSON"),
        (&["send", "owner/echo", "{}", "extra"], "unexpected argument"),
        (
            &["send", "owner/echo", "{}", "--timeout", "0"],
            "invalid value for --timeout",
        ),
        (
            &["send", "owner/echo", "{}", "--timeout", "soon"],
            "invalid value for --timeout",
        ),
        (
            &["send", "owner/echo", "{}", "--max-buffering", "61"],
            "--max-buffering",
        ),
        (
            &["send", "owner/echo", "not json", "--emulator", "127.0.0.1:1"],
            "not valid JSON",
        ),
        (&["demo", "--frames", "x"], "invalid value for --frames"),
        (&["demo", "--frames"], "--frames needs a value"),
        (&["demo", "--input", "[1]"], "--input must be a JSON object"),
        (&["serve", "--port", "99999"], "invalid value for --port"),
        (&["-v", "nope"], "unknown command"),
        (&["--verbose=loud", "demo"], "invalid value for --verbose"),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(HINT), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    // The hint names the command.
    let out = run(&["demo", "--bogus"]);
    assert!(out.stderr.contains("fal-realtime demo --help"), "{}", out.stderr);
}

#[test]
fn send_to_a_closed_port_fails_with_1_and_no_hint() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let host = format!("127.0.0.1:{port}");
    let out = run(&["send", "owner/echo", "{}", "--emulator", &host, "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("could not connect to owner/echo"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(HINT), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn demo_with_an_app_and_no_credentials_says_so() {
    let out = run(&["demo", "--app", "owner/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("owner/x on fal.ai needs credentials"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("FAL_KEY"), "{}", out.stderr);
    assert!(out.stderr.contains("--key"), "{}", out.stderr);
    // It did not run the demo against anything.
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn serve_on_every_interface_prints_the_address_it_bound() {
    let serve = Serve::start(&["--host", "0.0.0.0", "--port", "0"]);
    let port = serve.port;
    assert_eq!(
        serve.line,
        format!("fal-realtime emulator listening on http://0.0.0.0:{port} (ws host 127.0.0.1:{port})")
    );
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), STEP)
        .expect("connect to the emulator at 127.0.0.1");
    let out = run(&["send", "owner/echo", r#"{"n":1}"#, "--emulator", &serve.host()]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), r#"{"n":1}"#);

    // The default address is unchanged.
    let serve = Serve::start(&[]);
    let port = serve.port;
    assert_eq!(
        serve.line,
        format!("fal-realtime emulator listening on http://127.0.0.1:{port} (ws host 127.0.0.1:{port})")
    );
}

#[test]
fn verbose_logs_what_the_client_and_the_emulator_do() {
    let serve = Serve::start(&["-v"]);
    let host = serve.host();

    // Quiet by default: results on stdout, nothing on stderr.
    let out = run(&["send", "owner/echo", r#"{"a":1}"#, "--emulator", &host]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), r#"{"a":1}"#);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    serve.log_until("ended after");

    let out = run(&["send", "-v", "owner/echo", r#"{"a":2}"#, "--emulator", &host]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), r#"{"a":2}"#);
    for needle in [
        "INFO  fal_realtime::cli] connecting to owner/echo",
        "connected in",
        "1 token fetch(es)",
        "closing the session",
        "closed after 1 result(s)",
    ] {
        assert!(out.stderr.contains(needle), "{needle:?} in {}", out.stderr);
    }
    assert!(!out.stderr.contains("DEBUG"), "{}", out.stderr);

    let accepted = serve.log_until("accepted");
    assert!(
        accepted.iter().any(|l| l.contains("token issued to 127.0.0.1:")),
        "{accepted:#?}"
    );
    let line = accepted.last().unwrap();
    assert!(line.contains("INFO  fal_realtime_emulator::server]"), "{line}");
    assert!(
        line.contains("(app echo, path /owner/echo/realtime, peer 127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("auth token"), "{line}");
    let ended = serve.log_until("ended after");
    let line = ended.last().unwrap();
    assert!(
        line.contains("(app echo, path /owner/echo/realtime, peer 127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.contains("closed by the client (code 1000), 1 input(s)"),
        "{line}"
    );

    // -vv (before the command) adds the core's debug lines; tokens and keys never show.
    let out = run(&[
        "-vv",
        "send",
        "owner/echo",
        "{}",
        "--emulator",
        &host,
        "--key",
        "test-key",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("DEBUG fal_realtime::open] opening ws://"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fal_jwt_token=***"), "{}", out.stderr);
    assert!(!out.stderr.contains("emu."), "a token in {}", out.stderr);
    assert!(!out.stderr.contains("test-key"), "the key in {}", out.stderr);

    // RUST_LOG alone works too.
    let out = run_cmd(bin().env("RUST_LOG", "fal_realtime::cli=info").args([
        "send",
        "owner/echo",
        "{}",
        "--emulator",
        &host,
    ]));
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("connecting to owner/echo"), "{}", out.stderr);
}

#[test]
fn timeout_bounds_the_open_of_a_send() {
    let serve = Serve::start(&["-v"]);
    let out = run(&[
        "send",
        "owner/stall",
        "{}",
        "--emulator",
        &serve.host(),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(8), "{:?}", out.elapsed);
    assert!(out.stderr.contains("(timeout)"), "{}", out.stderr);
    assert!(out.stderr.contains("did not open within 1.0 s"), "{}", out.stderr);
    assert!(!out.stderr.contains(HINT), "{}", out.stderr);
    serve.log_until("stall: holding /owner/stall/realtime");
}

#[test]
fn timeout_bounds_the_open_of_a_demo() {
    let serve = Serve::start(&[]);
    let out = run(&[
        "demo",
        "--app",
        "owner/stall",
        "--emulator",
        &serve.host(),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(8), "{:?}", out.elapsed);
    assert!(out.stderr.contains("did not open within 1.0 s"), "{}", out.stderr);
}

#[test]
fn demo_output_through_pipes_has_no_progress_line() {
    let out = run(&["demo", "--frames", "20"]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("burst: 20/20 results")),
        "{}",
        out.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("round trips: 20 sequential")),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('\r') && !out.stdout.contains('\x1b'),
        "{:?}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
}

#[test]
fn ca_file_reaches_a_tls_emulator() {
    let dir = std::env::temp_dir().join(format!("fal-realtime-cli-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let out = run(&["gen-certs", "--out", d]);
    assert!(out.status.success(), "{}", out.stderr);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let serve = Serve::start(&["--tls-cert", &file("cert.pem"), "--tls-key", &file("key.pem")]);
    let port = serve.port;
    assert_eq!(
        serve.line,
        format!("fal-realtime emulator listening on https://localhost:{port} (ws host localhost:{port})")
    );
    let host = format!("localhost:{port}");
    let ca = file("ca.pem");

    let out = run(&[
        "send",
        "owner/echo",
        r#"{"tls":true}"#,
        "--emulator",
        &host,
        "--ca-file",
        &ca,
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), r#"{"tls":true}"#);

    let out = run(&["demo", "--frames", "5", "--emulator", &host, "--ca-file", &ca]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("burst: 5/5 results"), "{}", out.stdout);

    // Without the CA the certificate is not trusted: a failure, not a usage error.
    let url = format!("https://{host}");
    let out = run(&["send", "owner/echo", "{}", "--emulator", &url, "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("(tls)"), "{}", out.stderr);

    // A CA file that does not exist is a usage error.
    let missing = file("missing.pem");
    let out = run(&[
        "send",
        "owner/echo",
        "{}",
        "--emulator",
        &host,
        "--ca-file",
        &missing,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
