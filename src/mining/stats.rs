//! The miner's counters, shared by the miner loop, its events and the status API.

use serde::Serialize;

/// Counters reported in status lines and at the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub hashes: u64,
    pub found: u64,
    pub accepted: u64,
    pub blocks: u64,
    pub rejected: u64,
    pub stale: u64,
    pub hw_errors: u64,
}
