//! `rust-client --style pull|callback|callback-thread`: our Rust API doing the
//! bare client's work.
//!
//! * `pull`: `Client::connect` → `RealtimeSession::send` / `recv` on the
//!   caller's current-thread runtime (no background task).
//! * `callback`: `Client::realtime` (throttle off); the result callback checks
//!   the result and sends the next input from inside the callback, the
//!   zero-hop way the callback API is meant to be driven.
//! * `callback-thread`: the same connection, but a plain thread sends and
//!   waits for each result from the callback (two thread hops per round
//!   trip: what an application thread that is not the runtime's pays).

use fal_realtime::{
    Client, ClientConfig, Credentials, Message, RealtimeHandler, RealtimeOptions, RealtimeSession,
};
use fal_realtime_bench::runner::{self, AsyncConn};
use fal_realtime_bench::{fail, Ids, Input, Opts, Payload, Phase, Report, Samples, Workload};
use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

fn check(m: &Message, expect: &str) -> Result<(), String> {
    match m.request_id() {
        Some(id) if id == expect => Ok(()),
        other => Err(format!("expected {expect}, got {other:?}")),
    }
}

// ---------------------------------------------------------------- pull

struct Pull {
    s: RealtimeSession,
}

impl AsyncConn for Pull {
    async fn send(&mut self, input: &Input<'_>) -> Result<(), String> {
        self.s.send(input).await.map_err(|e| e.to_string())
    }

    async fn recv(&mut self, expect: &str) -> Result<(), String> {
        match self.s.recv().await {
            Some(Ok(m)) => check(&m, expect),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the session ended".into()),
        }
    }
}

async fn pull(o: Opts) -> Result<Report, String> {
    let payload = Payload::new(o.payload);
    let mut report = Report::new("rust-pull", &o);
    let app = o.app.clone();
    match o.workload {
        Workload::Fanout => return Err("the fan-out workload is the `fanout` binary".into()),
        Workload::Seq | Workload::Pipe => {
            let c = client(&o)?;
            let s = c.connect(&app, options(&o)).await.map_err(|e| e.to_string())?;
            let mut p = Pull { s };
            if o.workload == Workload::Seq {
                runner::seq(&mut p, &o, &payload, &mut report).await?;
            } else {
                runner::pipe(&mut p, &o, &payload, &mut report).await?;
            }
            let _ = p.s.close().await;
        }
        Workload::Cold => {
            runner::cold(&o, &mut report, |i| {
                let (o, payload, app) = (&o, &payload, &app);
                async move {
                    let id = format!("cold{i}");
                    let c = client(o)?;
                    let t = Instant::now();
                    let s = c.connect(app, options(o)).await.map_err(|e| e.to_string())?;
                    let mut p = Pull { s };
                    p.send(&payload.input(&id)).await?;
                    p.recv(&id).await?;
                    let d = t.elapsed();
                    let _ = p.s.close().await;
                    Ok(d)
                }
            })
            .await?;
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------- callback

/// State of a callback-driven run, shared by the handler and the main thread.
struct Run {
    /// The connection opened (the `open` input came back); until then the
    /// callback API keeps only the latest input, so nothing is pipelined.
    opened: bool,
    window: usize,
    payload: Payload,
    ids: Ids,
    expect: Ids,
    warmup: usize,
    total: usize,
    next: usize,
    received: usize,
    sent_at: VecDeque<Instant>,
    samples: Samples,
    phase: Option<Phase>,
    error: Option<String>,
}

struct Driver {
    run: Mutex<Run>,
    conn: OnceLock<fal_realtime::RealtimeConnection>,
    done: Mutex<Option<mpsc::Sender<()>>>,
}

impl Driver {
    /// Send the next input (with the lock held, so `sent_at` stays in order).
    fn send_next(&self, r: &mut Run) -> Result<(), String> {
        let conn = self.conn.get().ok_or("no connection")?;
        let Run {
            payload,
            ids,
            next,
            sent_at,
            ..
        } = r;
        sent_at.push_back(Instant::now());
        conn.send(&payload.input(ids.get(*next)))
            .map_err(|e| e.to_string())?;
        *next += 1;
        Ok(())
    }

    fn finish(&self) {
        if let Some(tx) = self.done.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl RealtimeHandler for Driver {
    fn on_result(&self, m: Message) {
        let mut r = self.run.lock().unwrap();
        let now = Instant::now();
        let r = &mut *r;
        if !r.opened {
            r.opened = true;
            let res = check(&m, "open").and_then(|()| {
                while r.next < r.total && r.next < r.window {
                    self.send_next(r)?;
                }
                Ok(())
            });
            if let Err(e) = res {
                r.error = Some(e);
                self.finish();
            }
            return;
        }
        if let Err(e) = check(&m, r.expect.get(r.received)) {
            r.error = Some(e);
            drop(m);
            self.finish();
            return;
        }
        let t = r.sent_at.pop_front().unwrap_or(now);
        if r.received >= r.warmup {
            r.samples.push(now - t);
        }
        r.received += 1;
        if r.received == r.warmup {
            r.phase = Some(Phase::start());
        }
        if r.received == r.total {
            self.finish();
            return;
        }
        if r.next < r.total {
            if let Err(e) = self.send_next(r) {
                r.error = Some(e);
                self.finish();
            }
        }
    }

    fn on_error(&self, e: fal_realtime::Error) {
        self.run.lock().unwrap().error = Some(e.to_string());
        self.finish();
    }
}

fn callback(o: Opts) -> Result<Report, String> {
    let mut report = Report::new("rust-callback", &o);
    if o.workload == Workload::Cold {
        return cold_callback(o, report);
    }
    if o.workload == Workload::Fanout {
        return Err("the fan-out workload is the `fanout` binary".into());
    }
    let window = if o.workload == Workload::Pipe { o.window } else { 1 };
    let total = o.warmup + o.n;
    let (tx, rx) = mpsc::channel();
    let driver = Arc::new(Driver {
        run: Mutex::new(Run {
            opened: false,
            window,
            payload: Payload::new(o.payload),
            ids: Ids::default(),
            expect: Ids::default(),
            warmup: o.warmup,
            total,
            next: 0,
            received: 0,
            sent_at: VecDeque::with_capacity(window),
            samples: Samples::with_capacity(o.n),
            phase: (o.warmup == 0).then(Phase::start),
            error: None,
        }),
        conn: OnceLock::new(),
        done: Mutex::new(Some(tx)),
    });
    let c = client(&o)?;
    let conn = c
        .realtime_dyn(&o.app, options(&o), driver.clone())
        .map_err(|e| e.to_string())?;
    let _ = driver.conn.set(conn.clone());
    {
        // Open the connection with one round trip; the callback then sends the window.
        let r = driver.run.lock().unwrap();
        conn.send(&r.payload.input("open")).map_err(|e| e.to_string())?;
    }
    rx.recv_timeout(Duration::from_secs(600))
        .map_err(|_| "timed out waiting for the results")?;
    let mut r = driver.run.lock().unwrap();
    let (wall, cpu) = r.phase.take().map(|p| p.end()).unwrap_or((0.0, 0.0));
    let samples = std::mem::take(&mut r.samples);
    let error = r.error.take();
    drop(r);
    fal_realtime::runtime::shared().block_on(conn.shutdown());
    if let Some(e) = error {
        return Err(e);
    }
    report.measured(&samples, wall, cpu);
    Ok(report)
}

/// Cold start, callback style: a fresh client and connection per iteration.
fn cold_callback(o: Opts, mut report: Report) -> Result<Report, String> {
    let payload = Payload::new(o.payload);
    let mut samples = Samples::with_capacity(o.n);
    let phase = Phase::start();
    for i in 0..o.n {
        let id = format!("cold{i}");
        let (tx, rx) = mpsc::sync_channel::<Result<Message, String>>(4);
        let tx2 = tx.clone();
        let handler = fal_realtime::FnHandler::new(move |m| {
            let _ = tx.try_send(Ok(m));
        })
        .on_error(move |e| {
            let _ = tx2.try_send(Err(e.to_string()));
        });
        let c = client(&o)?;
        let t = Instant::now();
        let conn = c
            .realtime(&o.app, options(&o), handler)
            .map_err(|e| e.to_string())?;
        conn.send(&payload.input(&id)).map_err(|e| e.to_string())?;
        let m = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "no result within 30 s")??;
        let d = t.elapsed();
        check(&m, &id)?;
        if i == 0 {
            report.first_us = Some(d.as_nanos() as f64 / 1000.0);
        }
        samples.push(d);
        fal_realtime::runtime::shared().block_on(conn.shutdown());
    }
    let (wall, cpu) = phase.end();
    report.measured(&samples, wall, cpu);
    Ok(report)
}

/// Callback results consumed by a plain thread: two hops per round trip.
fn callback_thread(o: Opts) -> Result<Report, String> {
    let mut report = Report::new("rust-callback-thread", &o);
    if o.workload != Workload::Seq {
        return Err("callback-thread runs the seq workload only".into());
    }
    let payload = Payload::new(o.payload);
    let (tx, rx) = mpsc::channel::<Result<Message, String>>();
    let tx2 = tx.clone();
    let handler = fal_realtime::FnHandler::new(move |m| {
        let _ = tx.send(Ok(m));
    })
    .on_error(move |e| {
        let _ = tx2.send(Err(e.to_string()));
    });
    let c = client(&o)?;
    let conn = c
        .realtime(&o.app, options(&o), handler)
        .map_err(|e| e.to_string())?;
    let mut ids = Ids::default();
    let mut samples = Samples::with_capacity(o.n);
    let mut phase = Phase::start();
    for i in 0..o.warmup + o.n {
        if i == o.warmup {
            phase = Phase::start();
        }
        let id = ids.get(i);
        let t = Instant::now();
        conn.send(&payload.input(id)).map_err(|e| e.to_string())?;
        let m = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "no result within 30 s")??;
        check(&m, id)?;
        if i >= o.warmup {
            samples.push(t.elapsed());
        }
    }
    let (wall, cpu) = phase.end();
    report.measured(&samples, wall, cpu);
    fal_realtime::runtime::shared().block_on(conn.shutdown());
    Ok(report)
}

fn main() {
    let o = Opts::from_args();
    let style = if o.style.is_empty() {
        "pull".to_string()
    } else {
        o.style.clone()
    };
    let name = format!("rust-{style}");
    let res = match style.as_str() {
        "pull" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(pull(o))),
        "callback" => callback(o),
        "callback-thread" => callback_thread(o),
        other => Err(format!(
            "unknown --style {other}: pull, callback or callback-thread"
        )),
    };
    match res {
        Ok(r) => r.print(),
        Err(e) => fail(&name, e),
    }
}
