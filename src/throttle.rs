//! Send throttling: the first input goes out at once, then at most one per
//! interval, and the latest input of a burst is always delivered (the trailing
//! send is never lost). Pure timing logic; the connection task owns the timer.

use std::time::Duration;
use tokio::time::Instant;

/// Throttle state for one connection.
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last_sent: Option<Instant>,
}

impl Throttle {
    /// A throttle with `interval` between sends; zero disables throttling.
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last_sent: None,
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// `None` if a frame may be sent at `now`, else the instant it may go out.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        if self.interval.is_zero() {
            return None;
        }
        match self.last_sent {
            Some(t) if now < t + self.interval => Some(t + self.interval),
            _ => None,
        }
    }

    /// Record that a frame was sent at `now`.
    pub fn record_send(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// Forget the last send (after a reconnect the first send is immediate).
    pub fn reset(&mut self) {
        self.last_sent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_send_immediate_then_one_per_interval() {
        let mut t = Throttle::new(Duration::from_millis(128));
        let t0 = Instant::now();
        assert_eq!(t.ready_at(t0), None);
        t.record_send(t0);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(t.ready_at(Instant::now()), Some(t0 + Duration::from_millis(128)));
        tokio::time::advance(Duration::from_millis(118)).await;
        assert_eq!(t.ready_at(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_interval_never_waits() {
        let mut t = Throttle::new(Duration::ZERO);
        t.record_send(Instant::now());
        assert_eq!(t.ready_at(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_makes_next_send_immediate() {
        let mut t = Throttle::new(Duration::from_secs(1));
        t.record_send(Instant::now());
        assert!(t.ready_at(Instant::now()).is_some());
        t.reset();
        assert_eq!(t.ready_at(Instant::now()), None);
    }
}
