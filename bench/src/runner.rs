//! The workload loops shared by the async clients (bare and our pull API), so
//! both do exactly the same work around their sends and receives.

use crate::{Ids, Input, Opts, Payload, Phase, Report, Samples};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Instant;

/// One open connection of an async client.
pub trait AsyncConn: Send {
    /// Encode `input` as msgpack and send it as a binary frame.
    fn send(&mut self, input: &Input<'_>) -> impl Future<Output = Result<(), String>> + Send;
    /// Wait for the next result and check that its `request_id` is `expect`.
    fn recv(&mut self, expect: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Sequential round trips: `warmup` unmeasured, then `n` measured.
pub async fn seq<C: AsyncConn>(
    c: &mut C,
    o: &Opts,
    payload: &Payload,
    report: &mut Report,
) -> Result<(), String> {
    let mut ids = Ids::default();
    let mut samples = Samples::with_capacity(o.n);
    let total = o.warmup + o.n;
    let mut phase = Phase::start();
    for i in 0..total {
        if i == o.warmup {
            phase = Phase::start();
        }
        let id = ids.get(i);
        let t = Instant::now();
        c.send(&payload.input(id)).await?;
        c.recv(id).await?;
        if i >= o.warmup {
            samples.push(t.elapsed());
        }
    }
    let (wall, cpu) = phase.end();
    report.measured(&samples, wall, cpu);
    Ok(())
}

/// Pipelined: keep `window` inputs in flight; latency is send → its result.
/// Throughput is measured over the last `n` results.
pub async fn pipe<C: AsyncConn>(
    c: &mut C,
    o: &Opts,
    payload: &Payload,
    report: &mut Report,
) -> Result<(), String> {
    let mut ids = Ids::default();
    let mut expect = Ids::default();
    let mut samples = Samples::with_capacity(o.n);
    let total = o.warmup + o.n;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(o.window);
    let mut next = 0;
    while next < total && next < o.window {
        sent_at.push_back(Instant::now());
        c.send(&payload.input(ids.get(next))).await?;
        next += 1;
    }
    let mut phase = Phase::start();
    for received in 0..total {
        if received == o.warmup {
            phase = Phase::start();
        }
        c.recv(expect.get(received)).await?;
        let t = sent_at.pop_front().ok_or("more results than inputs")?;
        if received >= o.warmup {
            samples.push(t.elapsed());
        }
        if next < total {
            sent_at.push_back(Instant::now());
            c.send(&payload.input(ids.get(next))).await?;
            next += 1;
        }
    }
    let (wall, cpu) = phase.end();
    report.measured(&samples, wall, cpu);
    Ok(())
}

/// Cold start: `n` iterations of `once` (each a fresh client and connection,
/// timing first send to first result); the first one is reported apart.
pub async fn cold<F, Fut>(o: &Opts, report: &mut Report, mut once: F) -> Result<(), String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<std::time::Duration, String>>,
{
    let mut samples = Samples::with_capacity(o.n);
    let phase = Phase::start();
    for i in 0..o.n {
        let d = once(i).await?;
        if i == 0 {
            report.first_us = Some(d.as_nanos() as f64 / 1000.0);
        }
        samples.push(d);
    }
    let (wall, cpu) = phase.end();
    report.measured(&samples, wall, cpu);
    Ok(())
}
