//! The miner's counters, shared by the miner loop, its events and the status APIs.

use serde::Serialize;

/// Counters reported in status lines and at the end: for the whole miner, and per device and
/// per pool in the status APIs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub hashes: u64,
    pub found: u64,
    pub accepted: u64,
    pub blocks: u64,
    pub rejected: u64,
    pub stale: u64,
    pub hw_errors: u64,
    /// Share difficulty summed over accepted shares (cgminer's "Difficulty Accepted": the
    /// difficulty-1 work they prove).
    pub difficulty_accepted: f64,
    pub difficulty_rejected: f64,
    pub difficulty_stale: f64,
    /// The difficulty of the last share answered.
    pub last_share_difficulty: f64,
    /// Unix time of the last share answered (accepted, rejected or stale).
    pub last_share_time: Option<u64>,
    /// The highest difficulty any found hash reached.
    pub best_share: f64,
}

/// What became of a submitted solution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken; `block` when it was a block the node accepted.
    Accepted {
        block: bool,
    },
    Rejected,
    /// Refused, or never sent, because its job had moved on.
    Stale,
}

impl Stats {
    /// Counts a found solution whose hash reached `hash_difficulty`.
    pub fn found(&mut self, hash_difficulty: f64) {
        self.found += 1;
        if hash_difficulty > self.best_share {
            self.best_share = hash_difficulty;
        }
    }

    /// Counts an answered share of difficulty `difficulty`, answered at unix time `at`.
    pub fn answered(&mut self, outcome: Outcome, difficulty: f64, at: u64) {
        match outcome {
            Outcome::Accepted { block } => {
                self.accepted += 1;
                self.blocks += u64::from(block);
                self.difficulty_accepted += difficulty;
            }
            Outcome::Rejected => {
                self.rejected += 1;
                self.difficulty_rejected += difficulty;
            }
            Outcome::Stale => {
                self.stale += 1;
                self.difficulty_stale += difficulty;
            }
        }
        self.last_share_difficulty = difficulty;
        self.last_share_time = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_add_up_by_outcome_and_difficulty() {
        let mut stats = Stats::default();
        stats.found(3.5);
        stats.found(1.25);
        stats.answered(Outcome::Accepted { block: false }, 2.0, 100);
        stats.answered(Outcome::Accepted { block: true }, 8.0, 101);
        stats.answered(Outcome::Rejected, 2.0, 102);
        stats.answered(Outcome::Stale, 4.0, 103);
        assert_eq!((stats.found, stats.best_share), (2, 3.5));
        assert_eq!((stats.accepted, stats.blocks), (2, 1));
        assert_eq!((stats.rejected, stats.stale), (1, 1));
        assert_eq!(stats.difficulty_accepted, 10.0);
        assert_eq!(stats.difficulty_rejected, 2.0);
        assert_eq!(stats.difficulty_stale, 4.0);
        assert_eq!(stats.last_share_difficulty, 4.0);
        assert_eq!(stats.last_share_time, Some(103));
    }
}
