//! `fanout --style bare|pull|callback --conns 1000 --rate 10 --duration 30`:
//! many concurrent connections through one client process, each sending one
//! small input `rate` times a second.
//!
//! Reports round-trip latency (send → its result), CPU seconds per 1,000
//! messages over the load phase, and RSS per idle connection: (RSS with all
//! connections open and idle − RSS with one open) / (conns − 1).
//! `--rate 0` only opens the connections and measures the idle memory (the
//! 10,000-connection run); the soft fd limit is raised to the hard one.
//!
//! * `bare`: one tokio-tungstenite task per connection (tokio multi-thread
//!   runtime, one worker per CPU the process may use).
//! * `pull`: one task per `RealtimeSession` on the same kind of runtime.
//! * `callback`: `RealtimeConnection`s on the library's shared runtime, driven
//!   by one application thread that sends on a 1 ms tick; results are timed
//!   in the callback from the send time carried in the `request_id`.

use fal_realtime::{Client, ClientConfig, Credentials, Message, RealtimeConnection, RealtimeOptions};
use fal_realtime_bench::runner::AsyncConn;
use fal_realtime_bench::{
    cpu_seconds, echo_id, fail, http, rss_kib, tls, Input, Opts, Payload, PayloadKind, Report, Samples,
};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How many connections open at once.
const OPEN_BATCH: usize = 100;

fn client(o: &Opts) -> Result<Client, String> {
    let cfg = if o.tls {
        ClientConfig {
            credentials: Some(Credentials::key(&o.key)),
            run_host: o.host.clone(),
            rest_url: format!("https://{}", o.host),
            extra_ca_file: o.ca.clone(),
            ..Default::default()
        }
    } else {
        ClientConfig::local(&o.host, &o.key)
    };
    let cfg = ClientConfig {
        read_buffer_size: o.read_buffer_size(),
        ..cfg
    };
    Client::new(cfg).map_err(|e| e.to_string())
}

fn options(o: &Opts) -> RealtimeOptions {
    RealtimeOptions {
        throttle_interval: Duration::ZERO,
        use_jwt: o.jwt,
        ..Default::default()
    }
}

// ------------------------------------------------------------------ async styles

struct Bare {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AsyncConn for Bare {
    async fn send(&mut self, input: &Input<'_>) -> Result<(), String> {
        let bytes = rmp_serde::to_vec_named(input).map_err(|e| e.to_string())?;
        self.ws
            .send(WsMessage::Binary(bytes.into()))
            .await
            .map_err(|e| e.to_string())
    }

    async fn recv(&mut self, expect: &str) -> Result<(), String> {
        loop {
            match self.ws.next().await {
                Some(Ok(WsMessage::Binary(b))) => {
                    return match echo_id(&b) {
                        Some(id) if id == expect => Ok(()),
                        other => Err(format!("expected {expect}, got {other:?}")),
                    }
                }
                Some(Ok(WsMessage::Close(c))) => return Err(format!("closed: {c:?}")),
                Some(Ok(WsMessage::Text(t))) if !t.contains("x-fal-message") => {
                    return Err(format!("server said {t}"))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection lost".into()),
            }
        }
    }
}

async fn open_bare(o: &Opts, tls_cfg: Option<Arc<rustls::ClientConfig>>) -> Result<Bare, String> {
    let alias = o.app.split('/').nth(1).unwrap_or(&o.app);
    let url = if o.jwt {
        let token = http::fetch_token(&o.host, tls_cfg.clone(), &o.key, alias).await?;
        format!("{}?fal_jwt_token={token}", o.realtime_url())
    } else {
        o.realtime_url()
    };
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if !o.jwt {
        let v = format!("Key {}", o.key).parse().map_err(|_| "bad key")?;
        req.headers_mut().insert("authorization", v);
    }
    let connector = match tls_cfg {
        Some(c) => tokio_tungstenite::Connector::Rustls(c),
        None => tokio_tungstenite::Connector::Plain,
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, o.ws_config(), true, Some(connector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Bare { ws })
}

struct Pull {
    s: fal_realtime::RealtimeSession,
}

impl AsyncConn for Pull {
    async fn send(&mut self, input: &Input<'_>) -> Result<(), String> {
        self.s.send(input).await.map_err(|e| e.to_string())
    }

    async fn recv(&mut self, expect: &str) -> Result<(), String> {
        match self.s.recv().await {
            Some(Ok(m)) => match m.request_id() {
                Some(id) if id == expect => Ok(()),
                other => Err(format!("expected {expect}, got {other:?}")),
            },
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the session ended".into()),
        }
    }
}

/// One connection's load loop: a send every `period`, starting at `start`
/// (staggered per connection), until `end`.
async fn load<C: AsyncConn>(
    mut c: C,
    idx: usize,
    payload: Arc<Payload>,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    period: Duration,
) -> Result<Samples, String> {
    let mut iv = tokio::time::interval_at(start, period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples =
        Samples::with_capacity(((end - start).as_secs_f64() / period.as_secs_f64()) as usize + 2);
    let mut k = 0u64;
    loop {
        let tick = iv.tick().await;
        if tick >= end {
            break;
        }
        let id = format!("c{idx}-{k}");
        k += 1;
        let t = Instant::now();
        c.send(&payload.input(&id)).await?;
        c.recv(&id).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

async fn warm<C: AsyncConn>(c: &mut C, idx: usize, payload: &Payload) -> Result<(), String> {
    let id = format!("c{idx}-open");
    c.send(&payload.input(&id)).await?;
    c.recv(&id).await
}

async fn run_async(o: Opts, style: &str) -> Result<Report, String> {
    let mut report = Report::new(&format!("fanout-{style}"), &o);
    report.workload = "fanout".into();
    let payload = Arc::new(Payload::new(PayloadKind::Small));
    let tls_cfg = if o.tls {
        Some(tls::client_config(o.ca.as_deref().ok_or("wss needs --ca")?)?)
    } else {
        None
    };
    let lib_client = client(&o)?;
    let o = Arc::new(o);
    // Open: the first connection alone (baseline), then the rest in batches.
    enum Conn {
        Bare(Box<Bare>),
        Pull(Pull),
    }
    let open_one = {
        let (o, payload, tls_cfg, lib_client) =
            (o.clone(), payload.clone(), tls_cfg.clone(), lib_client.clone());
        let style = style.to_string();
        move |idx: usize| {
            let (o, payload, tls_cfg, lib_client, style) = (
                o.clone(),
                payload.clone(),
                tls_cfg.clone(),
                lib_client.clone(),
                style.clone(),
            );
            async move {
                if style == "bare" {
                    let mut c = open_bare(&o, tls_cfg).await?;
                    warm(&mut c, idx, &payload).await?;
                    Ok::<Conn, String>(Conn::Bare(Box::new(c)))
                } else {
                    let s = lib_client
                        .connect(&o.app, options(&o))
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut c = Pull { s };
                    warm(&mut c, idx, &payload).await?;
                    Ok(Conn::Pull(c))
                }
            }
        }
    };
    let opened_at = Instant::now();
    let mut conns = vec![open_one(0).await?];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_one = rss_kib();
    let mut idx = 1;
    while idx < o.conns {
        let hi = (idx + OPEN_BATCH).min(o.conns);
        let handles: Vec<_> = (idx..hi).map(|i| tokio::spawn(open_one(i))).collect();
        for h in handles {
            conns.push(h.await.map_err(|e| e.to_string())??);
        }
        idx = hi;
    }
    let open_s = opened_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib();

    if idle_only(&o) {
        fanout_report(
            &mut report,
            &o,
            &Samples::default(),
            0.0,
            0.0,
            rss_one,
            rss_idle,
            open_s,
            0,
        );
        return Ok(report);
    }
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = t0 + Duration::from_secs_f64(o.duration);
    let n = conns.len();
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let start = t0 + period.mul_f64(i as f64 / n as f64);
            let payload = payload.clone();
            match c {
                Conn::Bare(c) => tokio::spawn(load(*c, i, payload, start, end, period)),
                Conn::Pull(c) => tokio::spawn(load(c, i, payload, start, end, period)),
            }
        })
        .collect();
    let mut all = Samples::default();
    let mut errors = 0u64;
    for h in handles {
        match h.await {
            Ok(Ok(s)) => all.extend(&s),
            _ => errors += 1,
        }
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    fanout_report(
        &mut report,
        &o,
        &all,
        wall,
        cpu,
        rss_one,
        rss_idle,
        open_s,
        errors,
    );
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn fanout_report(
    report: &mut Report,
    o: &Opts,
    all: &Samples,
    wall: f64,
    cpu: f64,
    rss_one: u64,
    rss_idle: u64,
    open_s: f64,
    errors: u64,
) {
    report.measured(all, wall, cpu);
    let msgs = all.len() as f64;
    let expected = o.conns as f64 * o.rate * o.duration;
    let per_conn = (rss_idle.saturating_sub(rss_one)) as f64 / (o.conns.saturating_sub(1).max(1)) as f64;
    let x = &mut report.extra;
    x.insert("conns".into(), o.conns.into());
    x.insert("rate_hz".into(), o.rate.into());
    x.insert("duration_s".into(), o.duration.into());
    x.insert("messages".into(), (msgs as u64).into());
    x.insert("expected_messages".into(), (expected as u64).into());
    x.insert("errors".into(), errors.into());
    x.insert(
        "cpu_s_per_1000_msgs".into(),
        (cpu * 1000.0 / msgs.max(1.0)).into(),
    );
    x.insert("rss_one_conn_kib".into(), rss_one.into());
    x.insert("rss_idle_kib".into(), rss_idle.into());
    x.insert("rss_per_idle_conn_kib".into(), per_conn.into());
    x.insert("open_s".into(), open_s.into());
}

// ------------------------------------------------------------------ callback style

struct Recorder {
    base: Instant,
    samples: Mutex<Vec<u64>>,
    opened: AtomicU64,
    errors: AtomicU64,
}

impl Recorder {
    fn on_result(&self, m: &Message) {
        let now = self.base.elapsed().as_nanos() as u64;
        // request_id = "c{idx}-{sent ns since base}" or "c{idx}-open"
        let sent = m
            .request_id()
            .and_then(|id| id.rsplit_once('-'))
            .map(|(_, t)| t.parse::<u64>().ok());
        match sent {
            Some(Some(t)) => self.samples.lock().unwrap().push(now.saturating_sub(t)),
            Some(None) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn run_callback(o: Opts) -> Result<Report, String> {
    let mut report = Report::new("fanout-callback", &o);
    report.workload = "fanout".into();
    let payload = Payload::new(PayloadKind::Small);
    let rec = Arc::new(Recorder {
        base: Instant::now(),
        samples: Mutex::new(Vec::with_capacity(
            (o.conns as f64 * o.rate * o.duration) as usize + 16,
        )),
        opened: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let c = client(&o)?;
    let mk = |i: usize| -> Result<RealtimeConnection, String> {
        let (r1, r2) = (rec.clone(), rec.clone());
        let h = fal_realtime::FnHandler::new(move |m| r1.on_result(&m)).on_error(move |e| {
            eprintln!("fanout-callback: {e}");
            r2.errors.fetch_add(1, Ordering::Relaxed);
        });
        let conn = c.realtime(&o.app, options(&o), h).map_err(|e| e.to_string())?;
        conn.send(&payload.input(&format!("c{i}-open")))
            .map_err(|e| e.to_string())?;
        Ok(conn)
    };
    let wait_opened = |n: u64| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while rec.opened.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} connections opened",
                    rec.opened.load(Ordering::Relaxed)
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    };
    let opened_at = Instant::now();
    let mut conns = vec![mk(0)?];
    wait_opened(1)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_one = rss_kib();
    let mut idx = 1;
    while idx < o.conns {
        let hi = (idx + OPEN_BATCH).min(o.conns);
        for i in idx..hi {
            conns.push(mk(i)?);
        }
        wait_opened(hi as u64)?;
        idx = hi;
    }
    let open_s = opened_at.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = rss_kib();

    if idle_only(&o) {
        fal_realtime::runtime::shared().block_on(async {
            for c in &conns {
                c.shutdown_nowait();
            }
        });
        fanout_report(
            &mut report,
            &o,
            &Samples::default(),
            0.0,
            0.0,
            rss_one,
            rss_idle,
            open_s,
            0,
        );
        return Ok(report);
    }
    // Load: one application thread, 1 ms ticks; connection i sends in the
    // ticks where (tick % ticks_per_period) == i % ticks_per_period.
    let tick = Duration::from_millis(1);
    let ticks_per_period = ((1000.0 / o.rate).round() as usize).max(1);
    let total_ticks = (o.duration * 1000.0).round() as usize;
    let mut id = String::with_capacity(32);
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let t0 = Instant::now() + Duration::from_millis(50);
    for k in 0..total_ticks {
        let at = t0 + tick * k as u32;
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let slot = k % ticks_per_period;
        let mut i = slot;
        while i < conns.len() {
            use std::fmt::Write;
            id.clear();
            let _ = write!(id, "c{i}-{}", rec.base.elapsed().as_nanos() as u64);
            if conns[i].send(&payload.input(&id)).is_err() {
                rec.errors.fetch_add(1, Ordering::Relaxed);
            }
            i += ticks_per_period;
        }
    }
    // Let the last results arrive.
    let expected = (total_ticks / ticks_per_period) * conns.len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while rec.samples.lock().unwrap().len() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let mut all = Samples::default();
    for &ns in rec.samples.lock().unwrap().iter() {
        all.push_ns(ns);
    }
    let errors = rec.errors.load(Ordering::Relaxed);
    fal_realtime::runtime::shared().block_on(async {
        for c in &conns {
            c.shutdown_nowait();
        }
    });
    let mut o2 = o.clone();
    o2.duration = (total_ticks / ticks_per_period) as f64 / o.rate;
    fanout_report(
        &mut report,
        &o2,
        &all,
        wall,
        cpu,
        rss_one,
        rss_idle,
        open_s,
        errors,
    );
    Ok(report)
}

/// `--rate 0` or `--duration 0`: open every connection, measure the idle
/// memory, and stop (the 10,000-connection run).
fn idle_only(o: &Opts) -> bool {
    o.rate <= 0.0 || o.duration <= 0.0
}

/// Thousands of sockets need more descriptors than the usual soft limit:
/// raise it to the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            // Root may raise the hard limit too (up to fs.nr_open).
            let want = libc::rlimit {
                rlim_cur: r.rlim_max.max(65536),
                rlim_max: r.rlim_max.max(65536),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 && r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
        }
    }
}

fn main() {
    raise_fd_limit();
    let o = Opts::from_args();
    let style = if o.style.is_empty() {
        "callback".to_string()
    } else {
        o.style.clone()
    };
    let name = format!("fanout-{style}");
    let res = match style.as_str() {
        "bare" | "pull" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(run_async(o, &style))),
        "callback" => run_callback(o),
        other => Err(format!("unknown --style {other}: bare, pull or callback")),
    };
    match res {
        Ok(r) => r.print(),
        Err(e) => fail(&name, e),
    }
}
