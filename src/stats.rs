//! Connection statistics: frames and bytes each way, reconnects, token
//! fetches, and the last server timing from `x-fal-message`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of a connection's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Data frames written to the socket.
    pub frames_sent: u64,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Data frames read from the socket (results, control and error frames).
    pub frames_received: u64,
    /// Payload bytes read.
    pub bytes_received: u64,
    /// Results delivered to the caller.
    pub results: u64,
    /// Errors reported to the caller.
    pub errors: u64,
    /// Successful connection opens.
    pub connects: u64,
    /// Opens after the first one.
    pub reconnects: u64,
    /// Tokens fetched (initial and refreshes).
    pub token_fetches: u64,
    /// Inputs replaced by a newer one before they were sent (latest-wins while connecting or throttled).
    pub inputs_replaced: u64,
    /// The last processing time the server reported in an `x-fal-message` timings message.
    pub last_server_timing: Option<Duration>,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Pongs received (answers to keepalive pings).
    pub pongs_received: u64,
    /// Inputs dropped because the connection is `client_only` on a host
    /// marked `server_side` (see [`RealtimeOptions::client_only`](crate::RealtimeOptions::client_only)).
    pub inputs_dropped_client_only: u64,
}

/// Shared, lock-free counters.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub results: AtomicU64,
    pub errors: AtomicU64,
    pub connects: AtomicU64,
    pub token_fetches: AtomicU64,
    pub inputs_replaced: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs_received: AtomicU64,
    pub inputs_dropped_client_only: AtomicU64,
    /// f64 seconds as bits; u64::MAX = none.
    last_timing: AtomicU64,
}

impl StatsCell {
    pub fn new() -> Self {
        let s = StatsCell::default();
        s.last_timing.store(u64::MAX, Relaxed);
        s
    }

    pub fn sent(&self, bytes: usize) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    pub fn received(&self, bytes: usize) {
        self.frames_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn set_timing(&self, secs: f64) {
        if secs.is_finite() && secs >= 0.0 {
            self.last_timing.store(secs.to_bits(), Relaxed);
        }
    }

    pub fn snapshot(&self) -> Stats {
        let connects = self.connects.load(Relaxed);
        let t = self.last_timing.load(Relaxed);
        Stats {
            frames_sent: self.frames_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            results: self.results.load(Relaxed),
            errors: self.errors.load(Relaxed),
            connects,
            reconnects: connects.saturating_sub(1),
            token_fetches: self.token_fetches.load(Relaxed),
            inputs_replaced: self.inputs_replaced.load(Relaxed),
            last_server_timing: (t != u64::MAX).then(|| Duration::from_secs_f64(f64::from_bits(t))),
            pings_sent: self.pings_sent.load(Relaxed),
            pongs_received: self.pongs_received.load(Relaxed),
            inputs_dropped_client_only: self.inputs_dropped_client_only.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_derives_reconnects_and_timing() {
        let s = StatsCell::new();
        assert_eq!(s.snapshot().last_server_timing, None);
        StatsCell::inc(&s.connects);
        StatsCell::inc(&s.connects);
        s.sent(10);
        s.set_timing(0.25);
        s.set_timing(f64::NAN);
        let snap = s.snapshot();
        assert_eq!((snap.connects, snap.reconnects, snap.bytes_sent), (2, 1, 10));
        assert_eq!(snap.last_server_timing, Some(Duration::from_millis(250)));
    }
}
