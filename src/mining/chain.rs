//! Failover across pools that speak different protocols (Stratum V2 and v1 in one list): one
//! single-pool source at a time, a fresh one for each attempt, the next URL after a failure,
//! and the first URL tried again now and then while a fallback works.

use std::thread;
use std::time::{Duration, Instant};

use super::failover::{Failover, PRIMARY_RETRY};
use super::job::Solution;
use super::source::{SourceError, SourceEvent, WorkSource};
use super::test_hook_duration;

/// Builds a fresh single-pool source (it connects on its first poll).
pub type MakePool = Box<dyn Fn() -> Box<dyn WorkSource + Send> + Send>;

/// A list of pools, each behind its own [`WorkSource`], used in failover order.
pub struct PoolChain {
    /// Each pool's URL (without credentials) and how to build its source.
    pools: Vec<(String, MakePool)>,
    failover: Failover,
    active: Option<Box<dyn WorkSource + Send>>,
    last_error: Option<String>,
    /// Events of the chain's own (shares found while no pool was connected).
    events: Vec<SourceEvent>,
    /// Per pool, the last reason it could not be reached: each new reason is said once, as a
    /// single source does (every attempt here is a fresh source that would say it again).
    said: Vec<Option<String>>,
}

fn ends_session(event: &SourceEvent) -> bool {
    matches!(
        event,
        SourceEvent::Disconnected { .. } | SourceEvent::Unreachable { .. }
    )
}

impl PoolChain {
    /// # Panics
    /// With no pools.
    #[must_use]
    pub fn new(pools: Vec<(String, MakePool)>) -> Self {
        assert!(!pools.is_empty(), "at least one pool URL");
        let said = vec![None; pools.len()];
        Self {
            failover: Failover::new(
                pools.len(),
                test_hook_duration("PEERHASH_PRIMARY_RETRY_MS", PRIMARY_RETRY),
                Instant::now(),
            ),
            pools,
            active: None,
            last_error: None,
            events: Vec::new(),
            said,
        }
    }

    /// Tries the first pool beside the working fallback; switches when it connects.
    fn try_primary(&mut self) -> Option<Vec<SourceEvent>> {
        let mut probe = (self.pools[0].1)();
        let events = probe.poll(Duration::ZERO).ok()?;
        let up = events
            .iter()
            .any(|e| matches!(e, SourceEvent::Connected { .. }))
            && !events.iter().any(ends_session);
        if !up {
            return None;
        }
        self.active = Some(probe);
        self.failover.back_to_primary();
        Some(events)
    }
}

impl WorkSource for PoolChain {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError> {
        let now = Instant::now();
        if !self.events.is_empty() {
            return Ok(std::mem::take(&mut self.events));
        }
        if self.active.is_none() {
            if !self.failover.may_attempt(now) {
                thread::sleep(timeout.min(self.failover.wait(now)));
                return Ok(Vec::new());
            }
            self.active = Some((self.pools[self.failover.current()].1)());
        } else if self.failover.primary_due(now) {
            if let Some(events) = self.try_primary() {
                return Ok(events);
            }
        }
        let Some(source) = self.active.as_mut() else {
            return Ok(Vec::new());
        };
        let mut events = source.poll(timeout)?;
        let current = self.failover.current();
        let ended = events.iter().any(ends_session);
        events.retain(|event| match event {
            SourceEvent::Connected { .. } => {
                self.failover.succeeded();
                self.last_error = None;
                self.said[current] = None;
                true
            }
            SourceEvent::Disconnected { url, reason } => {
                self.last_error = Some(format!("{url}: {reason}"));
                true
            }
            SourceEvent::Unreachable { url, reason } => {
                let message = format!("{url}: {reason}");
                self.last_error = Some(message.clone());
                let new = self.said[current].as_ref() != Some(&message);
                self.said[current] = Some(message);
                new
            }
            _ => true,
        });
        if ended {
            self.active = None;
            self.failover.failed(Instant::now());
        }
        Ok(events)
    }

    fn submit(&mut self, solution: Solution) {
        match self.active.as_mut() {
            Some(source) => source.submit(solution),
            // Its session is gone, and with it the job: the next pool would not know it.
            None => self.events.push(SourceEvent::Rejected {
                solution,
                reason: "the connection was lost and the job with it".into(),
                stale: true,
            }),
        }
    }

    fn url(&self) -> String {
        match &self.active {
            Some(source) => source.url(),
            None => self.pools[self.failover.current()].0.clone(),
        }
    }

    fn difficulty(&self) -> Option<f64> {
        self.active.as_ref().and_then(|s| s.difficulty())
    }

    fn last_error(&self) -> Option<String> {
        self.active
            .as_ref()
            .and_then(|s| s.last_error())
            .or_else(|| self.last_error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool that is down (every poll: unreachable) or up (connects on the first poll).
    struct Fake {
        url: &'static str,
        up: bool,
        polls: u32,
    }

    impl WorkSource for Fake {
        fn poll(&mut self, _: Duration) -> Result<Vec<SourceEvent>, SourceError> {
            self.polls += 1;
            let url = self.url.to_owned();
            Ok(match (self.up, self.polls) {
                (true, 1) => vec![SourceEvent::Connected { url }],
                (true, _) => Vec::new(),
                (false, _) => vec![SourceEvent::Unreachable {
                    url,
                    reason: "refused".into(),
                }],
            })
        }

        fn submit(&mut self, _: Solution) {}

        fn url(&self) -> String {
            self.url.to_owned()
        }
    }

    fn pool(url: &'static str, up: bool) -> (String, MakePool) {
        (
            url.to_owned(),
            Box::new(move || Box::new(Fake { url, up, polls: 0 })),
        )
    }

    #[test]
    fn a_dead_first_pool_is_named_once_and_the_next_one_is_used() {
        let mut chain = PoolChain::new(vec![pool("a", false), pool("b", true)]);
        let first = chain.poll(Duration::ZERO).expect("polls");
        assert!(matches!(&first[..], [SourceEvent::Unreachable { url, .. }] if url == "a"));
        assert_eq!(chain.url(), "b");
        let mut connected = Vec::new();
        for _ in 0..200 {
            connected.extend(chain.poll(Duration::from_millis(5)).expect("polls"));
            if !connected.is_empty() {
                break;
            }
        }
        assert!(matches!(&connected[..], [SourceEvent::Connected { url }] if url == "b"));
        assert!(chain.last_error().is_none());
    }

    #[test]
    fn a_pool_that_stays_down_is_named_once_per_reason() {
        let mut chain = PoolChain::new(vec![pool("a", false)]);
        let mut said = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1200) {
            said += chain
                .poll(Duration::from_millis(10))
                .expect("polls")
                .iter()
                .filter(|e| matches!(e, SourceEvent::Unreachable { .. }))
                .count();
        }
        assert_eq!(said, 1);
        assert_eq!(chain.last_error().as_deref(), Some("a: refused"));
    }
}
