//! Keepalive timing: a WebSocket ping every `interval`, and a dead peer when
//! nothing at all (no pong, no data) arrives within `timeout` of the first
//! unanswered ping. Pure logic on explicit instants; the socket layer
//! (`link`) owns the timer and the I/O.
//!
//! Hot path: a received frame costs one store ([`KeepAlive::heard`]); the
//! timer is only re-armed when it fires.

use std::time::Duration;
use tokio::time::Instant;

/// Keepalive settings (see [`ClientConfig::ping_interval`](crate::ClientConfig::ping_interval)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveConfig {
    /// Time between pings; `None` disables keepalive.
    pub interval: Option<Duration>,
    /// Time to wait for any frame after a ping; `None` never gives up.
    pub timeout: Option<Duration>,
}

/// What to do when the keepalive deadline is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing yet: re-arm the timer at [`KeepAlive::deadline`].
    Wait,
    /// Send a ping now.
    Ping,
    /// The peer did not answer within the timeout: close with 1011.
    Dead,
}

/// Keepalive state of one socket.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    config: KeepAliveConfig,
    next_ping: Option<Instant>,
    /// When the first unanswered ping was sent.
    unanswered_since: Option<Instant>,
}

impl KeepAlive {
    /// Keepalive for a socket opened at `now`.
    pub fn new(config: KeepAliveConfig, now: Instant) -> Self {
        let config = KeepAliveConfig {
            interval: config.interval.filter(|d| !d.is_zero()),
            timeout: config.timeout.filter(|d| !d.is_zero()),
        };
        KeepAlive {
            config,
            next_ping: config.interval.map(|i| now + i),
            unanswered_since: None,
        }
    }

    /// Whether keepalive is on (a timer is needed).
    pub fn enabled(&self) -> bool {
        self.next_ping.is_some()
    }

    /// A frame (data, ping, pong or close) arrived: the peer is alive.
    #[inline]
    pub fn heard(&mut self) {
        self.unanswered_since = None;
    }

    /// The next instant [`on_deadline`](Self::on_deadline) must run; `None` when disabled.
    pub fn deadline(&self) -> Option<Instant> {
        let next = self.next_ping?;
        Some(match (self.unanswered_since, self.config.timeout) {
            (Some(t), Some(to)) => next.min(t + to),
            _ => next,
        })
    }

    /// The timer fired at `now`.
    pub fn on_deadline(&mut self, now: Instant) -> Action {
        let Some(next) = self.next_ping else {
            return Action::Wait;
        };
        if let (Some(t), Some(to)) = (self.unanswered_since, self.config.timeout) {
            if now >= t + to {
                return Action::Dead;
            }
        }
        if now >= next {
            let interval = self.config.interval.unwrap_or(Duration::MAX);
            self.next_ping = Some(now + interval);
            self.unanswered_since.get_or_insert(now);
            return Action::Ping;
        }
        Action::Wait
    }

    /// The configured timeout (for error messages).
    pub fn timeout(&self) -> Option<Duration> {
        self.config.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(i: u64, t: Option<u64>) -> KeepAliveConfig {
        KeepAliveConfig {
            interval: Some(Duration::from_secs(i)),
            timeout: t.map(Duration::from_secs),
        }
    }

    #[test]
    fn pings_every_interval_and_detects_silence() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut k = KeepAlive::new(cfg(20, Some(20)), t0);
        assert_eq!(k.deadline(), Some(t0 + s(20)));
        assert_eq!(k.on_deadline(t0 + s(10)), Action::Wait);
        assert_eq!(k.on_deadline(t0 + s(20)), Action::Ping);
        // Next: the earlier of the next ping and the timeout.
        assert_eq!(k.deadline(), Some(t0 + s(40)));
        assert_eq!(k.on_deadline(t0 + s(40)), Action::Dead);
    }

    #[test]
    fn any_frame_answers_a_ping() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut k = KeepAlive::new(cfg(20, Some(5)), t0);
        assert_eq!(k.on_deadline(t0 + s(20)), Action::Ping);
        assert_eq!(k.deadline(), Some(t0 + s(25)));
        k.heard();
        assert_eq!(k.deadline(), Some(t0 + s(40)));
        assert_eq!(k.on_deadline(t0 + s(25)), Action::Wait);
        assert_eq!(k.on_deadline(t0 + s(40)), Action::Ping);
        assert_eq!(k.on_deadline(t0 + s(45)), Action::Dead);
    }

    #[test]
    fn timeout_counts_from_the_first_unanswered_ping() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut k = KeepAlive::new(cfg(1, Some(3)), t0);
        assert_eq!(k.on_deadline(t0 + s(1)), Action::Ping);
        assert_eq!(k.on_deadline(t0 + s(2)), Action::Ping);
        assert_eq!(k.on_deadline(t0 + s(3)), Action::Ping);
        assert_eq!(k.deadline(), Some(t0 + s(4)));
        assert_eq!(k.on_deadline(t0 + s(4)), Action::Dead);
    }

    #[test]
    fn disabled_and_no_timeout() {
        let t0 = Instant::now();
        let k = KeepAlive::new(
            KeepAliveConfig {
                interval: None,
                timeout: Some(Duration::from_secs(1)),
            },
            t0,
        );
        assert!(!k.enabled());
        assert_eq!(k.deadline(), None);
        let mut k = KeepAlive::new(cfg(1, None), t0);
        for n in 1..5 {
            assert_eq!(k.on_deadline(t0 + Duration::from_secs(n)), Action::Ping);
        }
        let zero = KeepAlive::new(
            KeepAliveConfig {
                interval: Some(Duration::ZERO),
                timeout: None,
            },
            t0,
        );
        assert!(!zero.enabled());
    }
}
