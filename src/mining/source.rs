//! Where work comes from and where solutions go: a node (getwork, getblocktemplate) or a pool
//! (Stratum). The miner loop only sees this trait.

use std::sync::Arc;
use std::time::Duration;

use super::job::{Job, Solution};

/// Something that happened at a work source, reported to the miner loop in order.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// New work; `clean` means older jobs can no longer produce anything useful.
    NewJob { job: Arc<Job>, clean: bool },
    /// A solution the source took (a share, or a block that landed).
    Accepted { solution: Solution },
    /// A solution the source refused; `stale` when it was for work that had moved on.
    Rejected {
        solution: Solution,
        reason: String,
        stale: bool,
    },
    /// Connected (again) to a URL (never with credentials).
    Connected { url: String },
    /// Lost the connection; the source retries by itself.
    Disconnected { url: String, reason: String },
    /// An attempt to connect failed (said once per new reason); the source retries by itself.
    Unreachable { url: String, reason: String },
    /// The pool changed the share difficulty.
    Difficulty { difficulty: f64 },
}

/// A fatal problem: bad configuration the user must fix (retrying cannot help).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A node refused the login or the address, or sent work that cannot be used.
    #[error("{url}: {error}")]
    Node {
        url: String,
        error: super::node::WorkError,
    },
    /// A pool refused the login or the session.
    #[error("{url}: {error}")]
    Pool {
        url: String,
        error: super::stratum::StratumError,
    },
    /// A Stratum V2 pool failed its authority check or refused the user.
    #[error("{url}: {error}")]
    Sv2 {
        url: String,
        error: super::stratum2::Sv2Error,
    },
    /// getblocktemplate was chosen (by the node's answers) but no payout address was given.
    #[error("the node only offers getblocktemplate, which needs --address (where the block reward goes)")]
    NeedsAddress,
    /// The thread that talked to the network ended without saying why (a bug).
    #[error("the network thread stopped")]
    ThreadGone,
}

/// A work source driven by the miner loop from one thread.
pub trait WorkSource {
    /// Waits up to `timeout` for events (new work, submit results, connection changes).
    ///
    /// # Errors
    /// Only fatal problems; network trouble is reported as events and retried.
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError>;

    /// Hands a solution over; its outcome arrives later through [`WorkSource::poll`].
    fn submit(&mut self, solution: Solution);

    /// The URL in use, without credentials.
    fn url(&self) -> String;

    /// Current share difficulty (pools) or `None` (solo).
    fn difficulty(&self) -> Option<f64> {
        None
    }

    /// Why the last connection attempt or session failed, if one did (for the status API).
    fn last_error(&self) -> Option<String> {
        None
    }
}
