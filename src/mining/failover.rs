//! Which of several nodes or pools to use next, and when: the first one is preferred, a failed
//! attempt moves on to the next after a growing pause, and while on a fallback the first one
//! is tried again now and then. Both the node and the pool sources use it.

use std::time::{Duration, Instant};

/// The pause after the first failure; it doubles with each failure in a row.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// The longest pause between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// While on a fallback, try the first one again this often.
pub const PRIMARY_RETRY: Duration = Duration::from_secs(30);

/// Failover order over `count` endpoints with backoff; times are passed in so tests can drive it.
#[derive(Debug, Clone)]
pub struct Failover {
    count: usize,
    current: usize,
    backoff: Duration,
    next_attempt: Instant,
    /// When the first endpoint was last left or last retried.
    since_primary: Instant,
    primary_retry: Duration,
}

impl Failover {
    /// # Panics
    /// With no endpoints.
    #[must_use]
    pub fn new(count: usize, primary_retry: Duration, now: Instant) -> Self {
        assert!(count > 0, "at least one endpoint");
        Self {
            count,
            current: 0,
            backoff: BACKOFF_START,
            next_attempt: now,
            since_primary: now,
            primary_retry,
        }
    }

    /// The endpoint to use (or to try next).
    #[must_use]
    pub fn current(&self) -> usize {
        self.current
    }

    /// Whether an attempt to connect may be made now.
    #[must_use]
    pub fn may_attempt(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    /// How long until the next attempt may be made.
    #[must_use]
    pub fn wait(&self, now: Instant) -> Duration {
        self.next_attempt.saturating_duration_since(now)
    }

    /// The current endpoint works: the next failure starts the backoff afresh.
    pub fn succeeded(&mut self) {
        self.backoff = BACKOFF_START;
    }

    /// The current endpoint failed: move to the next one, after a pause that doubles each time.
    pub fn failed(&mut self, now: Instant) {
        self.current = (self.current + 1) % self.count;
        if self.current != 0 {
            self.since_primary = now;
        }
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// The server asked to be reconnected to after `wait`: same endpoint, no backoff step.
    pub fn retry_same_after(&mut self, wait: Duration, now: Instant) {
        self.next_attempt = now + wait;
    }

    /// Whether it is time to try the first endpoint again while a fallback works; when it is,
    /// the clock restarts, so a first endpoint that is still down is tried once per period.
    pub fn primary_due(&mut self, now: Instant) -> bool {
        if self.current == 0 || now.duration_since(self.since_primary) < self.primary_retry {
            return false;
        }
        self.since_primary = now;
        true
    }

    /// The first endpoint answered again: use it.
    pub fn back_to_primary(&mut self) {
        self.current = 0;
        self.backoff = BACKOFF_START;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_move_down_the_list_with_a_doubling_pause_capped_at_the_maximum() {
        let t0 = Instant::now();
        let mut failover = Failover::new(3, PRIMARY_RETRY, t0);
        assert!(failover.may_attempt(t0));
        let mut now = t0;
        let mut pauses = Vec::new();
        let mut order = Vec::new();
        for _ in 0..8 {
            failover.failed(now);
            order.push(failover.current());
            pauses.push(failover.wait(now));
            assert!(!failover.may_attempt(now));
            now += failover.wait(now);
            assert!(failover.may_attempt(now));
        }
        assert_eq!(order, [1, 2, 0, 1, 2, 0, 1, 2]);
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        failover.succeeded();
        failover.failed(now);
        assert_eq!(failover.wait(now), BACKOFF_START);
    }

    #[test]
    fn the_first_endpoint_is_retried_once_per_period_while_on_a_fallback() {
        let t0 = Instant::now();
        let retry = Duration::from_secs(30);
        let mut failover = Failover::new(2, retry, t0);
        assert!(
            !failover.primary_due(t0 + retry * 2),
            "already on the first"
        );
        failover.failed(t0);
        assert_eq!(failover.current(), 1);
        assert!(!failover.primary_due(t0 + retry / 2));
        assert!(failover.primary_due(t0 + retry));
        assert!(
            !failover.primary_due(t0 + retry + retry / 2),
            "clock restarted"
        );
        assert!(failover.primary_due(t0 + retry * 2));
        failover.back_to_primary();
        assert_eq!(failover.current(), 0);
        assert!(!failover.primary_due(t0 + retry * 10));
    }

    #[test]
    fn a_requested_reconnect_keeps_the_endpoint_and_the_backoff() {
        let t0 = Instant::now();
        let mut failover = Failover::new(2, PRIMARY_RETRY, t0);
        failover.retry_same_after(Duration::from_secs(3), t0);
        assert_eq!(failover.current(), 0);
        assert_eq!(failover.wait(t0), Duration::from_secs(3));
        failover.failed(t0);
        assert_eq!(failover.wait(t0), BACKOFF_START);
    }
}
