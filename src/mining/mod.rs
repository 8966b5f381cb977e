//! Bitcoin work: block headers, targets, jobs, work sources (getwork, getblocktemplate,
//! Stratum) and the miner loop.

pub mod api;
pub mod background;
pub mod cgminer_api;
pub mod chain;
pub mod endpoint;
pub mod failover;
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
pub mod stats;
pub mod status;
pub mod stratum;
pub mod stratum2;
pub mod target;
pub mod temperature;

/// With the `test-hooks` feature, milliseconds from the environment variable `name` (tests
/// shorten timeouts this way); otherwise, and when unset, `default`. Release builds never read
/// the environment here.
pub(crate) fn test_hook_duration(name: &str, default: std::time::Duration) -> std::time::Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()) {
        return std::time::Duration::from_millis(ms);
    }
    let _ = name;
    default
}
