//! Bitcoin work: block headers, targets, jobs, work sources (getwork, getblocktemplate,
//! Stratum) and the miner loop.

pub mod api;
pub mod gbt;
pub mod getwork;
pub mod header;
pub mod health;
pub mod job;
pub mod longpoll;
pub mod miner;
pub mod node;
pub mod rpc;
pub mod source;
pub mod status;
pub mod stratum;
pub mod target;
pub mod temperature;

/// Milliseconds from the environment variable `name` (test hooks that shorten timeouts),
/// else `default`.
pub(crate) fn duration_from_env(name: &str, default: std::time::Duration) -> std::time::Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(default, std::time::Duration::from_millis)
}
