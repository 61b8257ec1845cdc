//! Shared pieces of the benchmark harness: the one command line every client
//! speaks, the payloads, latency summaries, resource readings and the JSON
//! line every client prints.
//!
//! Every client binary (and the Python and JS clients, which mirror this)
//! takes the same options and prints exactly one JSON object on stdout:
//!
//! ```text
//! --host 127.0.0.1:PORT   server (ws host)          --scheme ws|wss     --ca FILE
//! --app me/echo           app id                    --key test-key      --auth jwt|header
//! --payload small|large   --n N --warmup W          --workload seq|pipe|cold
//! --window 32             pipelined window          --label TEXT        free text echoed back
//! ```

#![warn(missing_docs)]

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub mod http;
pub mod runner;
pub mod tls;

/// Size of the small payload's string.
pub const SMALL_LEN: usize = 64;
/// Size of the large payload's bytes (256 KiB).
pub const LARGE_LEN: usize = 256 * 1024;

/// Which payload each input carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// `{"request_id": str, "data": <64-byte str>}`
    Small,
    /// `{"request_id": str, "data": <256 KiB bytes>}`
    Large,
}

/// What the client measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Sequential round trips: send, wait for the result, repeat.
    Seq,
    /// Pipelined: keep `window` inputs in flight on one connection.
    Pipe,
    /// Cold start: a fresh client and connection per iteration; first send to
    /// first result, including the token fetch (JWT auth) and the handshake.
    Cold,
    /// Many connections through one process (the `fanout` binary).
    Fanout,
}

impl Workload {
    /// The name used on the command line and in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Seq => "seq",
            Workload::Pipe => "pipe",
            Workload::Cold => "cold",
            Workload::Fanout => "fanout",
        }
    }
}

impl PayloadKind {
    /// The name used on the command line and in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Small => "small",
            PayloadKind::Large => "large",
        }
    }
}

/// The common command line.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `host:port` of the server.
    pub host: String,
    /// `wss` (TLS) or `ws`.
    pub tls: bool,
    /// Extra CA file to trust (the test CA).
    pub ca: Option<PathBuf>,
    /// App id.
    pub app: String,
    /// API key.
    pub key: String,
    /// JWT from the token endpoint (`true`) or `Authorization: Key` header.
    pub jwt: bool,
    /// Payload kind.
    pub payload: PayloadKind,
    /// Measured iterations.
    pub n: usize,
    /// Warm-up iterations (not measured).
    pub warmup: usize,
    /// Workload.
    pub workload: Workload,
    /// Pipelined window.
    pub window: usize,
    /// Client style (binary specific).
    pub style: String,
    /// Free text echoed in the output.
    pub label: String,
    /// Fan-out: connections.
    pub conns: usize,
    /// Fan-out: sends per second per connection.
    pub rate: f64,
    /// Fan-out: seconds of load.
    pub duration: f64,
    /// Remaining arguments this parser does not know (binary specific).
    pub extra: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            host: "127.0.0.1:8080".into(),
            tls: false,
            ca: None,
            app: "me/echo".into(),
            key: "test-key".into(),
            jwt: false,
            payload: PayloadKind::Small,
            n: 2000,
            warmup: 3000,
            workload: Workload::Seq,
            window: 32,
            style: String::new(),
            label: String::new(),
            conns: 1000,
            rate: 10.0,
            duration: 30.0,
            extra: Vec::new(),
        }
    }
}

impl Opts {
    /// Parse `std::env::args()`; exits with a message on a bad argument.
    pub fn from_args() -> Opts {
        match Opts::parse(std::env::args().skip(1)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    }

    /// Parse a list of arguments (`--flag value` or `--flag=value`).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("--{flag} needs a value"))
            };
            fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
                v.parse()
                    .map_err(|_| format!("invalid value for --{flag}: {v:?}"))
            }
            match flag.as_str() {
                "host" => o.host = value()?,
                "url" => {
                    let v = value()?;
                    let (scheme, rest) = v
                        .split_once("://")
                        .ok_or_else(|| format!("--url needs a scheme: {v:?}"))?;
                    o.tls = scheme == "wss";
                    o.host = rest.trim_end_matches('/').to_string();
                }
                "scheme" => {
                    o.tls = match value()?.as_str() {
                        "ws" => false,
                        "wss" => true,
                        v => return Err(format!("--scheme is ws or wss, not {v:?}")),
                    }
                }
                "ca" => o.ca = Some(PathBuf::from(value()?)),
                "app" => o.app = value()?,
                "key" => o.key = value()?,
                "auth" => {
                    o.jwt = match value()?.as_str() {
                        "jwt" => true,
                        "header" => false,
                        v => return Err(format!("--auth is jwt or header, not {v:?}")),
                    }
                }
                "payload" => {
                    o.payload = match value()?.as_str() {
                        "small" => PayloadKind::Small,
                        "large" => PayloadKind::Large,
                        v => return Err(format!("--payload is small or large, not {v:?}")),
                    }
                }
                "workload" => {
                    o.workload = match value()?.as_str() {
                        "seq" => Workload::Seq,
                        "pipe" => Workload::Pipe,
                        "cold" => Workload::Cold,
                        "fanout" => Workload::Fanout,
                        v => return Err(format!("--workload is seq, pipe, cold or fanout, not {v:?}")),
                    }
                }
                "n" => o.n = num(&flag, value()?)?,
                "warmup" => o.warmup = num(&flag, value()?)?,
                "window" => o.window = num::<usize>(&flag, value()?)?.max(1),
                "style" => o.style = value()?,
                "label" => o.label = value()?,
                "conns" => o.conns = num(&flag, value()?)?,
                "rate" => o.rate = num(&flag, value()?)?,
                "duration" => o.duration = num(&flag, value()?)?,
                _ => {
                    let v = value()?;
                    o.extra.push((flag, v));
                }
            }
        }
        if o.n == 0 {
            return Err("--n must be at least 1".into());
        }
        Ok(o)
    }

    /// `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }

    /// `http` or `https`.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The realtime URL of the app, without a token: `ws://host/{app}/realtime`.
    pub fn realtime_url(&self) -> String {
        format!("{}://{}/{}/realtime", self.scheme(), self.host, self.app)
    }

    /// The WebSocket config of the bare clients: tungstenite's defaults, or
    /// `--ws-read-buffer BYTES` (to measure what the read buffer costs per connection).
    pub fn ws_config(&self) -> Option<tokio_tungstenite::tungstenite::protocol::WebSocketConfig> {
        let n = self.read_buffer_size()?;
        Some(tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(n))
    }

    /// `--ws-read-buffer BYTES`, for our clients too (`ClientConfig::read_buffer_size`).
    pub fn read_buffer_size(&self) -> Option<usize> {
        self.extra("ws-read-buffer")?.parse().ok()
    }

    /// A binary specific option.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The `data` field of an input: a string or bytes.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    /// A msgpack str.
    Str(&'a str),
    /// A msgpack bin.
    Bin(&'a [u8]),
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Str(v) => s.serialize_str(v),
            Data::Bin(v) => s.serialize_bytes(v),
        }
    }
}

/// One input: `{"request_id": ..., "data": ...}`, encoded as a msgpack map.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// Echoed back by the server; checked by every client.
    pub request_id: &'a str,
    /// The payload.
    pub data: Data<'a>,
}

impl Serialize for Input<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Input", 2)?;
        st.serialize_field("request_id", self.request_id)?;
        st.serialize_field("data", &self.data)?;
        st.end()
    }
}

/// The payload data, made once per process.
pub struct Payload {
    kind: PayloadKind,
    small: String,
    large: Vec<u8>,
}

impl Payload {
    /// Make the payload: 64 ASCII letters, or 256 KiB of pseudo-random bytes.
    pub fn new(kind: PayloadKind) -> Payload {
        let small: String = (0..SMALL_LEN).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let large = match kind {
            PayloadKind::Large => {
                let mut x: u32 = 0x9e37_79b9;
                (0..LARGE_LEN)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect()
            }
            PayloadKind::Small => Vec::new(),
        };
        Payload { kind, small, large }
    }

    /// The input with `request_id`.
    pub fn input<'a>(&'a self, request_id: &'a str) -> Input<'a> {
        Input {
            request_id,
            data: match self.kind {
                PayloadKind::Small => Data::Str(&self.small),
                PayloadKind::Large => Data::Bin(&self.large),
            },
        }
    }

    /// The kind.
    pub fn kind(&self) -> PayloadKind {
        self.kind
    }
}

/// Request ids `r0`, `r1`, … without allocating in the loop.
pub struct Ids {
    buf: String,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            buf: String::with_capacity(24),
        }
    }
}

impl Ids {
    /// The id of iteration `i` (valid until the next call).
    pub fn get(&mut self, i: usize) -> &str {
        use std::fmt::Write;
        self.buf.clear();
        let _ = write!(self.buf, "r{i}");
        &self.buf
    }
}

/// Borrowed view of an echoed result: only `request_id` is read; the rest is skipped.
#[derive(serde::Deserialize)]
pub struct Echo<'a> {
    /// The echoed id.
    #[serde(borrow)]
    pub request_id: &'a str,
}

/// The request id of an echoed msgpack result (what the bare client does).
pub fn echo_id(bytes: &[u8]) -> Option<&str> {
    rmp_serde::from_slice::<Echo<'_>>(bytes)
        .ok()
        .map(|e| e.request_id)
}

/// Latency samples in nanoseconds.
#[derive(Default, Clone)]
pub struct Samples {
    ns: Vec<u64>,
}

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            ns: Vec::with_capacity(n),
        }
    }

    /// Record one duration.
    #[inline]
    pub fn push(&mut self, d: Duration) {
        self.ns.push(d.as_nanos() as u64);
    }

    /// Record nanoseconds.
    #[inline]
    pub fn push_ns(&mut self, ns: u64) {
        self.ns.push(ns);
    }

    /// Append others.
    pub fn extend(&mut self, other: &Samples) {
        self.ns.extend_from_slice(&other.ns);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.ns.len()
    }

    /// None yet.
    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    /// The summary (µs).
    pub fn summary(&self) -> Summary {
        Summary::of_ns(&self.ns)
    }
}

/// A latency summary in microseconds.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summarise nanosecond samples (nearest-rank percentiles).
    pub fn of_ns(ns: &[u64]) -> Summary {
        if ns.is_empty() {
            return Summary::default();
        }
        let mut v = ns.to_vec();
        v.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0
        };
        let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
        Summary {
            n: v.len(),
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            p999: pct(99.9),
            mean: (sum as f64 / v.len() as f64) / 1000.0,
            min: v[0] as f64 / 1000.0,
            max: v[v.len() - 1] as f64 / 1000.0,
        }
    }
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Peak resident set size of this process, KiB.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM").unwrap_or(0)
}

/// Current resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS").unwrap_or(0)
}

/// User + system CPU seconds used by this process so far (all threads).
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU time of a measured phase.
pub struct Phase {
    wall: Instant,
    cpu: f64,
}

impl Phase {
    /// Start measuring.
    pub fn start() -> Phase {
        Phase {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// (wall seconds, CPU seconds) since the start.
    pub fn end(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), cpu_seconds() - self.cpu)
    }
}

/// The JSON line every client prints.
#[derive(Serialize, Debug, Default)]
pub struct Report {
    /// Client name (`bare`, `rust-pull`, …).
    pub client: String,
    /// Free text from `--label`.
    pub label: String,
    /// `seq`, `pipe`, `cold`, `fanout`.
    pub workload: String,
    /// `small` / `large`.
    pub payload: String,
    /// `ws` / `wss`.
    pub scheme: String,
    /// Latency summary in µs.
    pub latency_us: Summary,
    /// Measured messages per second (wall).
    pub throughput_msgs_s: f64,
    /// Wall seconds of the measured phase.
    pub wall_s: f64,
    /// CPU seconds (user + system, whole process) of the measured phase.
    pub cpu_s: f64,
    /// CPU µs per measured message.
    pub cpu_us_per_msg: f64,
    /// Peak RSS of the process at exit, KiB.
    pub peak_rss_kib: u64,
    /// Cold start: the very first iteration of the process, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_us: Option<f64>,
    /// Anything else (fan-out numbers, notes).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// A report for `client` from the options.
    pub fn new(client: &str, o: &Opts) -> Report {
        Report {
            client: client.to_string(),
            label: o.label.clone(),
            workload: o.workload.as_str().to_string(),
            payload: o.payload.as_str().to_string(),
            scheme: o.scheme().to_string(),
            ..Default::default()
        }
    }

    /// Fill latency, wall and CPU numbers.
    pub fn measured(&mut self, samples: &Samples, wall_s: f64, cpu_s: f64) {
        self.latency_us = samples.summary();
        self.wall_s = wall_s;
        self.cpu_s = cpu_s;
        let n = samples.len().max(1) as f64;
        self.throughput_msgs_s = if wall_s > 0.0 { n / wall_s } else { 0.0 };
        self.cpu_us_per_msg = cpu_s * 1e6 / n;
    }

    /// Set the peak RSS and print the line.
    pub fn print(mut self) {
        self.peak_rss_kib = peak_rss_kib();
        println!("{}", serde_json::to_string(&self).unwrap_or_else(|_| "{}".into()));
    }
}

/// Print an error as a JSON line and exit non-zero.
pub fn fail(client: &str, msg: impl std::fmt::Display) -> ! {
    let line = serde_json::json!({"client": client, "error": msg.to_string()});
    println!("{line}");
    eprintln!("{client}: {msg}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_common_options() {
        let o = Opts::parse(
            "--url wss://127.0.0.1:9/ --payload large --n 5 --warmup=1 --workload pipe --window 8 --style pull --extra x"
                .split(' ')
                .map(String::from),
        )
        .unwrap();
        assert!(o.tls);
        assert_eq!(o.host, "127.0.0.1:9");
        assert_eq!((o.n, o.warmup, o.window), (5, 1, 8));
        assert_eq!(o.payload, PayloadKind::Large);
        assert_eq!(o.workload, Workload::Pipe);
        assert_eq!(o.extra("extra"), Some("x"));
        assert_eq!(o.realtime_url(), "wss://127.0.0.1:9/me/echo/realtime");
        assert!(Opts::parse(["--n".to_string(), "0".to_string()]).is_err());
        assert!(Opts::parse(["--payload".to_string(), "huge".to_string()]).is_err());
    }

    #[test]
    fn inputs_round_trip_and_ids_are_read() {
        for kind in [PayloadKind::Small, PayloadKind::Large] {
            let p = Payload::new(kind);
            let mut ids = Ids::default();
            let bytes = rmp_serde::to_vec_named(&p.input(ids.get(42))).unwrap();
            assert_eq!(echo_id(&bytes), Some("r42"));
            let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
            let data = &v.as_map().unwrap()[1].1;
            match kind {
                PayloadKind::Small => assert_eq!(data.as_str().unwrap().len(), SMALL_LEN),
                PayloadKind::Large => assert_eq!(data.as_slice().unwrap().len(), LARGE_LEN),
            }
        }
    }

    #[test]
    fn summary_percentiles() {
        let ns: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let s = Summary::of_ns(&ns);
        assert_eq!((s.n, s.p50, s.p99, s.min, s.max), (100, 50.0, 99.0, 1.0, 100.0));
        assert_eq!(s.mean, 50.5);
        assert_eq!(Summary::of_ns(&[]).n, 0);
    }

    #[test]
    fn resource_readings() {
        assert!(peak_rss_kib() > 0);
        assert!(rss_kib() > 0);
        assert!(cpu_seconds() >= 0.0);
    }
}
