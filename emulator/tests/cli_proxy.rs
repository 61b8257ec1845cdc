//! `fal-realtime proxy`, driven through stdin as a test harness in another language would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(5);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fal-realtime"))
}

/// An echo server for `n` connections, each echoed until its end (or 10 s of silence).
fn echo_server(n: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut tcp, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(k) = tcp.read(&mut buf) {
                    if k == 0 || tcp.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

struct ProxyProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl ProxyProcess {
    fn start(args: &[&str]) -> ProxyProcess {
        let mut child = bin()
            .arg("proxy")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fal-realtime proxy");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ProxyProcess { child, stdin, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(STEP)
            .expect("a line from the proxy in time")
    }

    fn command(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // Only if the test failed before `quit`.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: &str) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(STEP)).unwrap();
    tcp
}

fn round_trip(tcp: &mut TcpStream, msg: &[u8]) {
    tcp.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(buf, msg);
}

#[test]
fn proxy_command_drives_the_proxy_from_stdin() {
    let upstream = echo_server(2);
    let mut proxy = ProxyProcess::start(&["--upstream", &upstream.to_string(), "--latency-ms", "5"]);
    let first = proxy.line();
    let addr = first
        .strip_prefix("proxy listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let mut tcp = connect(&addr);
    round_trip(&mut tcp, b"abc");

    assert_eq!(proxy.command("stall"), "ok");
    tcp.write_all(b"held").unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 4];
    match tcp.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected nothing during the stall, got {other:?}"),
    }
    tcp.set_read_timeout(Some(STEP)).unwrap();
    assert_eq!(proxy.command("resume"), "ok");
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held");

    assert_eq!(proxy.command("latency 10 2"), "ok");
    assert_eq!(proxy.command("bandwidth 100000"), "ok");
    round_trip(&mut tcp, b"shaped");
    assert_eq!(proxy.command("bandwidth off"), "ok");
    assert_eq!(proxy.command("latency 0"), "ok");
    assert_eq!(proxy.command("connections"), "ok 1 1");
    assert!(proxy.command("nonsense").starts_with("error: "));
    assert!(proxy.command("cut-after x").starts_with("error: "));
    assert!(proxy.command("stall now").starts_with("error: "));

    assert_eq!(proxy.command("cut-after 3"), "ok");
    tcp.write_all(b"abcdef").unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"abc");

    let mut tcp = connect(&addr);
    round_trip(&mut tcp, b"again");
    assert_eq!(proxy.command("cut"), "ok");
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(rest.is_empty());

    assert_eq!(proxy.command("quit"), "ok");
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

#[test]
fn proxy_help_and_argument_errors() {
    let out = bin().args(["proxy", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("proxy --upstream HOST:PORT"), "{help}");
    assert!(help.contains("cut-after N"), "{help}");

    let out = bin().arg("proxy").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream"));

    let out = bin()
        .args(["proxy", "--upstream", "127.0.0.1:1", "--bandwidth", "fast"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // The end of stdin stops the proxy.
    let out = bin()
        .args(["proxy", "--upstream", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("proxy listening on 127.0.0.1:"));
}
