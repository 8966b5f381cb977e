//! Solo mining against a node's JSON-RPC: one connection manager (failover, reconnect with
//! backoff, long polling, submit queue) shared by getwork and getblocktemplate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::failover::{Failover, PRIMARY_RETRY};
use super::job::{Job, Solution};
use super::longpoll::{self, LongPollParams, LongPoller};
use super::rpc::{RpcClient, RpcError};
use super::source::{SourceError, SourceEvent, WorkSource};

/// Every ordinary call gets this long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Without long polling, ask for fresh work this often.
const REFRESH: Duration = Duration::from_secs(5);
/// With long polling, still refresh this often (new transactions, a newer time).
const REFRESH_LONGPOLL: Duration = Duration::from_secs(30);
/// bcoin wakes long polls only while a work attempt exists, and a block clears it: a block
/// that lands between one long-poll answer and the next request would go unnoticed. Plain
/// work asked for shortly after each answer (once the next long poll is waiting) re-arms the
/// node, and shows the new tip at once if a block slipped through.
const REARM_DELAY: Duration = Duration::from_millis(50);

/// Work from a node that cannot be used, or a failed call.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// An answer with a missing or malformed field.
    #[error("the {method} answer's {field} {problem}")]
    BadAnswer {
        method: &'static str,
        field: &'static str,
        problem: String,
    },
    #[error("--address {address} is not an address of the node's network ({chain})")]
    AddressWrongNetwork { address: String, chain: String },
    #[error("the node says --address {address} is not valid on its network")]
    AddressRefused { address: String },
    /// A solution that this protocol cannot submit (it came from other work).
    #[error("a {protocol} solution needs {what}")]
    WrongSolution {
        protocol: &'static str,
        what: &'static str,
    },
    /// The block built from a solution does not check out (a bug, never sent).
    #[error("the assembled block {problem}")]
    BadBlock { problem: String },
}

impl WorkError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Rpc(e) if e.is_transient())
    }

    /// A malformed field in `method`'s answer.
    pub(crate) fn bad(
        method: &'static str,
        field: &'static str,
        problem: impl Into<String>,
    ) -> Self {
        Self::BadAnswer {
            method,
            field,
            problem: problem.into(),
        }
    }
}

/// Why a node refused a block, as far as the answer says (BIP 22 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRejection {
    /// Built on a block that is no longer the tip.
    Stale,
    /// Already known.
    Duplicate,
    /// Anything else (bad proof of work, a bad merkle root, no reason given).
    Other,
}

impl BlockRejection {
    /// The kind of a `submitblock` reason: a BIP 22 code, which bcoin prefixes with `rejected: `.
    #[must_use]
    pub fn from_bip22(reason: &str) -> Self {
        match reason.strip_prefix("rejected: ").unwrap_or(reason) {
            "bad-prevblk" | "stale-prevblk" | "stale-work" | "prev-blk-not-found" => Self::Stale,
            "duplicate" | "duplicate-invalid" | "duplicate-inconclusive" => Self::Duplicate,
            _ => Self::Other,
        }
    }
}

/// What the node said about a submitted block.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted,
    /// `reason` is for people; `kind` is what the miner acts on.
    Rejected {
        reason: String,
        kind: BlockRejection,
    },
}

/// The protocol-specific half of solo mining.
pub trait SoloProtocol {
    /// Fetches fresh work, and the long-poll path if the node offers one.
    ///
    /// # Errors
    /// A failed call or work that cannot be used.
    fn fetch(&mut self, client: &RpcClient) -> Result<(Arc<Job>, Option<String>), WorkError>;
    fn longpoll_method(&self) -> &'static str;
    /// Builds each long poll's params from the previous answer.
    fn longpoll_params(&self) -> LongPollParams;
    /// # Errors
    /// Work that cannot be used.
    fn job_from_longpoll(&mut self, result: &Value) -> Result<Arc<Job>, WorkError>;
    /// # Errors
    /// A failed call.
    fn submit(
        &mut self,
        client: &RpcClient,
        solution: &Solution,
    ) -> Result<SubmitOutcome, WorkError>;
}

/// A node (or several, in failover order) as a [`WorkSource`].
pub struct NodeSource<P> {
    protocol: P,
    nodes: Vec<RpcClient>,
    failover: Failover,
    connected: bool,
    longpoll: Option<LongPoller>,
    /// Why the last attempt to reach a node failed, so the same reason is reported once.
    last_failure: Option<String>,
    last_fetch: Instant,
    queue: VecDeque<Solution>,
    events: Vec<SourceEvent>,
    /// The previous block hash of the newest work, to tell a new block from a refresh.
    prev: Option<[u8; 32]>,
    /// When to ask for plain work after a long-poll answer (see `REARM_DELAY`).
    rearm_at: Option<Instant>,
}

fn prev_hash(job: &Job) -> Option<[u8; 32]> {
    job.header(0)
        .map(|h| h[4..36].try_into().expect("32 bytes"))
}

impl<P: SoloProtocol> NodeSource<P> {
    #[must_use]
    pub fn new(protocol: P, nodes: Vec<RpcClient>) -> Self {
        assert!(!nodes.is_empty(), "at least one node URL");
        let now = Instant::now();
        Self {
            protocol,
            failover: Failover::new(
                nodes.len(),
                super::test_hook_duration("PEERHASH_PRIMARY_RETRY_MS", PRIMARY_RETRY),
                now,
            ),
            nodes,
            connected: false,
            longpoll: None,
            last_failure: None,
            last_fetch: now,
            queue: VecDeque::new(),
            events: Vec::new(),
            prev: None,
            rearm_at: None,
        }
    }

    fn client(&self) -> &RpcClient {
        &self.nodes[self.failover.current()]
    }

    /// Fetches work from the current node; on success starts the long poll.
    fn connect(&mut self) -> Result<(), SourceError> {
        let client = self.client().clone();
        match self.protocol.fetch(&client) {
            Ok((job, longpoll_header)) => {
                self.connected = true;
                self.last_failure = None;
                self.failover.succeeded();
                self.last_fetch = Instant::now();
                self.prev = prev_hash(&job);
                self.events
                    .push(SourceEvent::Connected { url: client.url() });
                self.events.push(SourceEvent::NewJob { job, clean: true });
                self.longpoll = longpoll_header.map(|header| {
                    LongPoller::spawn(
                        client,
                        longpoll::path_from_header(&header),
                        self.protocol.longpoll_method(),
                        self.protocol.longpoll_params(),
                    )
                });
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.lost(e.to_string());
                Ok(())
            }
            Err(e) => Err(self.fatal(e)),
        }
    }

    fn fatal(&self, error: WorkError) -> SourceError {
        SourceError::Node {
            url: self.client().url(),
            error,
        }
    }

    /// Marks the node down and moves to the next one, retrying after a growing pause.
    fn lost(&mut self, reason: String) {
        let url = self.client().url();
        if self.connected {
            self.events.push(SourceEvent::Disconnected {
                url,
                reason: reason.clone(),
            });
        } else if self.last_failure.as_deref() != Some(reason.as_str()) {
            // Said once per new reason: a node that never answers is named, not retried silently.
            self.events.push(SourceEvent::Unreachable {
                url,
                reason: reason.clone(),
            });
        }
        self.last_failure = Some(reason);
        self.connected = false;
        self.longpoll = None;
        self.failover.failed(Instant::now());
    }

    fn refetch(&mut self, clean: bool) -> Result<(), SourceError> {
        let client = self.client().clone();
        match self.protocol.fetch(&client) {
            Ok((job, _)) => {
                self.last_fetch = Instant::now();
                let clean = clean || prev_hash(&job) != self.prev;
                self.prev = prev_hash(&job);
                self.events.push(SourceEvent::NewJob { job, clean });
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.lost(e.to_string());
                Ok(())
            }
            Err(e) => Err(self.fatal(e)),
        }
    }

    fn send_queue(&mut self) -> Result<(), SourceError> {
        while self.connected {
            let Some(solution) = self.queue.pop_front() else {
                break;
            };
            let client = self.client().clone();
            match self.protocol.submit(&client, &solution) {
                Ok(SubmitOutcome::Accepted) => {
                    self.events.push(SourceEvent::Accepted { solution });
                    // The block moved the tip: fresh work now, before the long poll says so.
                    self.refetch(true)?;
                }
                Ok(SubmitOutcome::Rejected { reason, kind }) => {
                    // Stale when the node says so, or when the tip has moved since the job.
                    let stale =
                        kind != BlockRejection::Other || prev_hash(&solution.job) != self.prev;
                    self.events.push(SourceEvent::Rejected {
                        solution,
                        reason,
                        stale,
                    });
                    // A solo job ends with its solution: without fresh work the devices idle
                    // until the next block.
                    self.refetch(false)?;
                }
                Err(e) if e.is_transient() => {
                    self.queue.push_front(solution);
                    self.lost(e.to_string());
                }
                Err(e) => {
                    self.events.push(SourceEvent::Rejected {
                        solution,
                        reason: e.to_string(),
                        stale: false,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<P: SoloProtocol> WorkSource for NodeSource<P> {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError> {
        let deadline = Instant::now() + timeout;
        if !self.connected && self.failover.may_attempt(Instant::now()) {
            self.connect()?;
        } else if self.connected && self.failover.primary_due(Instant::now()) {
            // Back to the first node as soon as it answers again.
            let client = self.nodes[0].clone();
            if let Ok((job, header)) = self.protocol.fetch(&client) {
                self.failover.back_to_primary();
                self.longpoll = header.map(|h| {
                    LongPoller::spawn(
                        client.clone(),
                        longpoll::path_from_header(&h),
                        self.protocol.longpoll_method(),
                        self.protocol.longpoll_params(),
                    )
                });
                self.events
                    .push(SourceEvent::Connected { url: client.url() });
                self.events.push(SourceEvent::NewJob { job, clean: true });
            }
        }
        self.send_queue()?;
        if self.connected && self.rearm_at.is_some_and(|at| Instant::now() >= at) {
            self.rearm_at = None;
            self.refetch(false)?;
        }
        if self.connected
            && self.longpoll.is_some()
            && self.last_fetch.elapsed() >= REFRESH_LONGPOLL
        {
            self.refetch(false)?;
        }
        if self.connected && self.events.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let answer = match &self.longpoll {
                Some(poller) => poller.next(wait),
                None => {
                    if self.last_fetch.elapsed() >= REFRESH {
                        self.refetch(false)?;
                    } else {
                        std::thread::sleep(wait.min(Duration::from_millis(50)));
                    }
                    None
                }
            };
            match answer {
                Some(Ok(result)) => match self.protocol.job_from_longpoll(&result) {
                    Ok(job) => {
                        self.last_fetch = Instant::now();
                        self.prev = prev_hash(&job);
                        self.rearm_at = Some(Instant::now() + REARM_DELAY);
                        self.events.push(SourceEvent::NewJob { job, clean: true });
                    }
                    Err(e) if e.is_transient() => self.lost(e.to_string()),
                    Err(e) => return Err(self.fatal(e)),
                },
                Some(Err(e)) => {
                    if e.is_transient() {
                        self.lost(e.to_string());
                    } else {
                        return Err(self.fatal(e.into()));
                    }
                }
                None => {}
            }
        } else if !self.connected && self.events.is_empty() {
            let now = Instant::now();
            std::thread::sleep(
                deadline
                    .saturating_duration_since(now)
                    .min(self.failover.wait(now)),
            );
        }
        Ok(std::mem::take(&mut self.events))
    }

    fn submit(&mut self, solution: Solution) {
        self.queue.push_back(solution);
    }

    fn url(&self) -> String {
        self.client().url()
    }

    fn last_error(&self) -> Option<String> {
        self.last_failure.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bip22_reasons_are_read_exactly_with_or_without_bcoins_prefix() {
        for (reason, kind) in [
            ("rejected: bad-prevblk", BlockRejection::Stale),
            ("stale-prevblk", BlockRejection::Stale),
            ("rejected: duplicate", BlockRejection::Duplicate),
            ("duplicate-inconclusive", BlockRejection::Duplicate),
            ("rejected: high-hash", BlockRejection::Other),
            ("rejected: bad-txnmrklroot", BlockRejection::Other),
            // Free text that merely mentions a code is not that code.
            ("the prevblock was bad-prevblk", BlockRejection::Other),
            ("", BlockRejection::Other),
        ] {
            assert_eq!(BlockRejection::from_bip22(reason), kind, "{reason}");
        }
    }
}
