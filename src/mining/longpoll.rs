//! A long poll on its own thread: the node holds the request until the chain tip moves, then
//! the answer (fresh work) is handed to the miner loop through a channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::rpc::{RpcClient, RpcError};

/// The node has no timeout of its own: re-ask after this long without an answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds each long poll's params from the previous answer (if any).
pub type LongPollParams = Box<dyn FnMut(Option<&Value>) -> Value + Send>;

/// A running long poll. Dropping it stops the thread after the call in progress returns (at
/// the latest after [`POLL_TIMEOUT`]); its answer is then thrown away.
pub struct LongPoller {
    answers: Receiver<Result<Value, RpcError>>,
    cancel: Arc<AtomicBool>,
}

impl LongPoller {
    /// Starts polling `path`; `params` turns the previous answer (if any) into the next request's
    /// params. The thread stops after the first error, which it reports.
    pub fn spawn(
        client: RpcClient,
        path: String,
        method: &'static str,
        mut params: impl FnMut(Option<&Value>) -> Value + Send + 'static,
    ) -> Self {
        let (tx, answers) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        thread::Builder::new()
            .name("peerhash-longpoll".into())
            .spawn(move || {
                let mut last: Option<Value> = None;
                while !stop.load(Ordering::Relaxed) {
                    let request = params(last.as_ref());
                    match client.call_at(&path, method, request, POLL_TIMEOUT) {
                        Ok(reply) => {
                            if tx.send(Ok(reply.result.clone())).is_err() {
                                return;
                            }
                            last = Some(reply.result);
                        }
                        Err(RpcError::Timeout { .. }) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .expect("spawning a thread");
        Self { answers, cancel }
    }

    /// The next answer, waiting at most `timeout`; `None` if there is none yet.
    pub fn next(&self, timeout: Duration) -> Option<Result<Value, RpcError>> {
        self.answers.recv_timeout(timeout).ok()
    }
}

impl Drop for LongPoller {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The path to long-poll, from an `X-Long-Polling` header (a path or a full URL).
#[must_use]
pub fn path_from_header(header: &str) -> String {
    match header.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None if header.starts_with('/') => header.to_owned(),
        None => format!("/{header}"),
    }
}
