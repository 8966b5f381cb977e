//! The Stratum v1 client: connect, subscribe, authorize, turn notifies into jobs, submit
//! shares, and survive the pool going away (reconnect with backoff, failover, a submit queue
//! that keeps shares whose job can still be valid).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::messages::{self, Message, MessageError, Notify};
use crate::mining::endpoint::{self, Endpoint};
use crate::mining::failover::{Failover, PRIMARY_RETRY};
use crate::mining::job::{CoinbaseWork, Job, JobExtra, JobWork, Solution};
use crate::mining::source::{SourceError, SourceEvent, WorkSource};
use crate::mining::test_hook_duration;

/// Lines longer than this end the connection: no Stratum message comes near it.
const MAX_LINE: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long subscribe, authorize and each share may go unanswered.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a pool may send nothing at all (pools send a job at least every minute or two).
const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// The version bits BIP 320 leaves to miners.
const VERSION_MASK: u32 = 0x1fff_e000;

/// Why a pool session failed or could not start.
#[derive(Debug, thiserror::Error)]
pub enum StratumError {
    #[error("cannot resolve the host: {0}")]
    Resolve(std::io::Error),
    #[error("the host has no address")]
    NoAddress,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("setting up the socket: {0}")]
    Socket(std::io::Error),
    #[error("sending {method}: {error}")]
    Write {
        method: &'static str,
        error: std::io::Error,
    },
    #[error("reading: {0}")]
    Read(std::io::Error),
    #[error("the pool closed the connection")]
    Closed,
    #[error("the pool sent nothing for {seconds} s")]
    Idle { seconds: f64 },
    #[error("the pool sent a line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("no answer to subscribe/authorize within {seconds} s")]
    HandshakeTimeout { seconds: f64 },
    #[error("no answer to a share within {seconds} s")]
    ShareTimeout { seconds: f64 },
    #[error("the pool refused mining.subscribe: {message} ({code})")]
    SubscribeRefused { code: i64, message: String },
    #[error("the pool's answer to mining.subscribe: {0}")]
    BadSubscribe(MessageError),
    #[error("the pool's difficulty: {0}")]
    BadDifficulty(MessageError),
    #[error("the pool refused worker {user:?}{}", refusal(.code, .message))]
    Unauthorized {
        user: String,
        code: Option<i64>,
        message: Option<String>,
    },
    #[error("the pool asked to reconnect (after {wait_seconds} s)")]
    Reconnect { wait_seconds: u64 },
    #[error("the connection's reader stopped")]
    ReaderStopped,
    #[error("not connected")]
    NotConnected,
}

fn refusal(code: &Option<i64>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!(": {message} ({code})"),
        _ => String::new(),
    }
}

impl StratumError {
    /// Errors retrying cannot fix: the user must change the login.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }
}

/// Why a pool refused a share, from its error code (the codes most pools share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRejection {
    /// 21: the job is unknown to the pool, which is what it says of jobs a block ended.
    JobNotFound,
    /// 22
    Duplicate,
    /// 23
    LowDifficulty,
    /// 24, 25: the session is not logged in.
    Unauthorized,
    Other,
}

impl ShareRejection {
    #[must_use]
    pub fn from_code(code: i64) -> Self {
        match code {
            21 => Self::JobNotFound,
            22 => Self::Duplicate,
            23 => Self::LowDifficulty,
            24 | 25 => Self::Unauthorized,
            _ => Self::Other,
        }
    }
}

/// A pool address from a `stratum+tcp://[USER[:PASS]@]HOST:PORT` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StratumEndpoint(Endpoint);

/// A pool with the worker name and password to log in with.
#[derive(Clone)]
pub struct PoolLogin {
    pub endpoint: StratumEndpoint,
    pub user: String,
    pub pass: String,
}

impl std::fmt::Debug for PoolLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolLogin")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A URL that is not `stratum+tcp://HOST:PORT` (shown with its password masked).
#[derive(Debug, thiserror::Error)]
#[error("bad pool URL {0:?}: expected stratum+tcp://[USER:PASS@]HOST:PORT (IPv6 as [ADDR])")]
pub struct BadPoolUrl(String);

impl StratumEndpoint {
    /// # Errors
    /// A URL that is not `stratum+tcp://[USER[:PASS]@]HOST:PORT`.
    pub fn parse(url: &str) -> Result<Self, BadPoolUrl> {
        Endpoint::parse(url.trim_end_matches('/'), "stratum+tcp")
            .filter(|e| e.path() == "/")
            .map(Self)
            .ok_or_else(|| BadPoolUrl(endpoint::mask(url)))
    }

    /// The URL without credentials.
    #[must_use]
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// The user and password written in the URL, if any.
    #[must_use]
    pub fn login(&self) -> (Option<&str>, Option<&str>) {
        (self.0.user.as_deref(), self.0.pass.as_deref())
    }
}

/// What an outstanding request was.
enum Request {
    Configure,
    Subscribe,
    Authorize,
    ExtranonceSubscribe,
    Submit(Box<Solution>, Instant),
}

/// One live connection.
struct Session {
    endpoint: usize,
    writer: TcpStream,
    lines: Receiver<FromReader>,
    stop_reader: Arc<AtomicBool>,
    extranonce1: Option<Vec<u8>>,
    extranonce2_size: usize,
    /// Version bits the pool granted for rolling (BIP 310); 0 when not granted.
    version_mask: u32,
    authorized: bool,
    /// A notify that came before the subscribe answer (no extranonce1 yet).
    early_notify: Option<Notify>,
    requests: HashMap<u64, Request>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_reader.store(true, Ordering::Relaxed);
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// What the reader thread hands over.
enum FromReader {
    Message(Message),
    /// A line that does not parse: counted and skipped, the session goes on.
    Malformed(MessageError),
    /// The session is over.
    End(StratumError),
}

/// Reads newline-delimited messages with a bounded line length and an idle limit.
fn read_lines(
    mut stream: TcpStream,
    stop: &AtomicBool,
    idle_limit: Duration,
    out: &mpsc::Sender<FromReader>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last_data = Instant::now();
    if let Err(e) = stream.set_read_timeout(Some(Duration::from_millis(100))) {
        let _ = out.send(FromReader::End(StratumError::Socket(e)));
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => {
                let _ = out.send(FromReader::End(StratumError::Closed));
                return;
            }
            Ok(n) => {
                last_data = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let item = match messages::parse_line(text) {
                        Ok(message) => FromReader::Message(message),
                        Err(e) => FromReader::Malformed(e),
                    };
                    if out.send(item).is_err() {
                        return;
                    }
                }
                if buf.len() > MAX_LINE {
                    let _ = out.send(FromReader::End(StratumError::LineTooLong(MAX_LINE)));
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if last_data.elapsed() >= idle_limit {
                    let _ = out.send(FromReader::End(StratumError::Idle {
                        seconds: idle_limit.as_secs_f64(),
                    }));
                    return;
                }
            }
            Err(e) => {
                let _ = out.send(FromReader::End(StratumError::Read(e)));
                return;
            }
        }
    }
}

/// A pool (or several, in failover order) as a [`crate::mining::source::WorkSource`].
pub struct StratumSource {
    /// Failover order; each pool with its own login.
    pools: Vec<PoolLogin>,
    failover: Failover,
    session: Option<Session>,
    /// Shares found while no session could take them.
    queue: VecDeque<Solution>,
    events: Vec<SourceEvent>,
    next_id: u64,
    difficulty: f64,
    response_timeout: Duration,
    idle_limit: Duration,
    malformed: u64,
    /// Set by `client.reconnect`: come back to the same pool after this long.
    reconnect_after: Option<Duration>,
    last_error: Option<String>,
    /// Ids of the jobs the pool still considers valid (since the last clean notify): a share
    /// refused for another job is known to be stale.
    live_jobs: HashSet<String>,
}

impl StratumSource {
    #[must_use]
    pub fn new(pools: Vec<PoolLogin>) -> Self {
        assert!(!pools.is_empty(), "at least one pool URL");
        Self {
            failover: Failover::new(
                pools.len(),
                test_hook_duration("PEERHASH_PRIMARY_RETRY_MS", PRIMARY_RETRY),
                Instant::now(),
            ),
            pools,
            session: None,
            queue: VecDeque::new(),
            events: Vec::new(),
            next_id: 1,
            difficulty: 1.0,
            // Tests shorten the waits for answers and for any line at all.
            response_timeout: test_hook_duration("PEERHASH_STRATUM_TIMEOUT_MS", RESPONSE_TIMEOUT),
            idle_limit: test_hook_duration("PEERHASH_STRATUM_IDLE_MS", IDLE_LIMIT),
            malformed: 0,
            reconnect_after: None,
            last_error: None,
            live_jobs: HashSet::new(),
        }
    }

    fn current(&self) -> usize {
        self.failover.current()
    }

    fn send(
        &mut self,
        method: &'static str,
        params: &Value,
        request: Request,
    ) -> Result<(), StratumError> {
        let id = self.next_id;
        self.next_id += 1;
        let session = self.session.as_mut().ok_or(StratumError::NotConnected)?;
        let line = messages::request(id, method, params);
        session
            .writer
            .write_all(line.as_bytes())
            .map_err(|error| StratumError::Write { method, error })?;
        session.requests.insert(id, request);
        Ok(())
    }

    /// Opens a session to endpoint `index` and sends subscribe and authorize.
    fn open(&mut self, index: usize) -> Result<(), StratumError> {
        let addr = self.pools[index]
            .endpoint
            .0
            .host_port()
            .to_socket_addrs()
            .map_err(StratumError::Resolve)?
            .next()
            .ok_or(StratumError::NoAddress)?;
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(StratumError::Connect)?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(StratumError::Socket)?;
        let reader = stream.try_clone().map_err(StratumError::Socket)?;
        let (tx, lines) = mpsc::channel();
        let stop_reader = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stop_reader);
        let idle = self.idle_limit;
        thread::Builder::new()
            .name("peerhash-stratum".into())
            .spawn(move || read_lines(reader, &stop, idle, &tx))
            .map_err(StratumError::Socket)?;
        self.session = Some(Session {
            endpoint: index,
            writer: stream,
            lines,
            stop_reader,
            extranonce1: None,
            extranonce2_size: 0,
            version_mask: 0,
            authorized: false,
            early_notify: None,
            requests: HashMap::new(),
        });
        // BIP 310: offer version rolling; pools that do not know it answer with an error or {}.
        self.send(
            "mining.configure",
            &json!([["version-rolling"], {
                "version-rolling.mask": format!("{VERSION_MASK:08x}"),
                "version-rolling.min-bit-count": 2,
            }]),
            Request::Configure,
        )?;
        self.send(
            "mining.subscribe",
            &json!([concat!("peerhash/", env!("CARGO_PKG_VERSION"))]),
            Request::Subscribe,
        )?;
        let (user, pass) = (
            self.pools[index].user.clone(),
            self.pools[index].pass.clone(),
        );
        self.send("mining.authorize", &json!([user, pass]), Request::Authorize)?;
        // Handshake: wait for both answers, handling whatever else arrives meanwhile.
        let deadline = Instant::now() + self.response_timeout;
        loop {
            let ready = self
                .session
                .as_ref()
                .is_some_and(|s| s.extranonce1.is_some() && s.authorized);
            if ready {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StratumError::HandshakeTimeout {
                    seconds: self.response_timeout.as_secs_f64(),
                });
            }
            self.receive(left.min(Duration::from_millis(100)))?;
        }
        self.send(
            "mining.extranonce.subscribe",
            &json!([]),
            Request::ExtranonceSubscribe,
        )?;
        Ok(())
    }

    /// Handles lines that arrive within `timeout` (the first one waited for, the rest taken as
    /// they are). Errors mean the session is dead.
    fn receive(&mut self, timeout: Duration) -> Result<(), StratumError> {
        let mut wait = timeout;
        loop {
            let item = {
                let session = self.session.as_ref().ok_or(StratumError::NotConnected)?;
                match session.lines.recv_timeout(wait) {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => return Ok(()),
                    Err(RecvTimeoutError::Disconnected) => return Err(StratumError::ReaderStopped),
                }
            };
            wait = Duration::ZERO;
            match item {
                FromReader::Message(message) => self.handle(message)?,
                FromReader::Malformed(e) => {
                    self.malformed += 1;
                    tracing::warn!(
                        "{}: ignoring a malformed line: {e} ({} so far)",
                        self.url(),
                        self.malformed
                    );
                }
                FromReader::End(e) => return Err(e),
            }
        }
    }

    fn job_from_notify(&mut self, notify: Notify) -> Result<Arc<Job>, StratumError> {
        let session = self.session.as_ref().ok_or(StratumError::NotConnected)?;
        let extranonce1 = session
            .extranonce1
            .clone()
            .ok_or(StratumError::NotConnected)?;
        let target =
            messages::share_target(self.difficulty).map_err(StratumError::BadDifficulty)?;
        if notify.clean {
            self.live_jobs.clear();
        }
        self.live_jobs.insert(notify.job_id.clone());
        Ok(Arc::new(Job {
            id: notify.job_id,
            work: JobWork::Coinbase(CoinbaseWork {
                version: notify.version,
                prev_hash: notify.prev_hash,
                time: notify.time,
                bits: notify.bits,
                coinb1: notify.coinb1,
                extranonce1,
                extranonce2_size: session.extranonce2_size,
                coinb2: notify.coinb2,
                branch: notify.branch,
                version_mask: session.version_mask,
            }),
            target,
            solo: false,
            height: None,
            extra: JobExtra::None,
        }))
    }

    fn handle(&mut self, message: Message) -> Result<(), StratumError> {
        match message {
            Message::Notify(notify) => {
                let session = self.session.as_mut().ok_or(StratumError::NotConnected)?;
                if session.extranonce1.is_none() {
                    session.early_notify = Some(notify);
                    return Ok(());
                }
                let clean = notify.clean;
                let job = self.job_from_notify(notify)?;
                self.events.push(SourceEvent::NewJob { job, clean });
            }
            Message::SetDifficulty(difficulty) => {
                self.difficulty = difficulty;
                self.events.push(SourceEvent::Difficulty { difficulty });
            }
            Message::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                let session = self.session.as_mut().ok_or(StratumError::NotConnected)?;
                session.extranonce1 = Some(extranonce1);
                session.extranonce2_size = extranonce2_size;
            }
            Message::Reconnect { wait_seconds } => {
                // Same pool only: a redirect elsewhere could send shares to anyone.
                self.reconnect_after = Some(Duration::from_secs(wait_seconds));
                return Err(StratumError::Reconnect { wait_seconds });
            }
            Message::SetVersionMask(mask) => {
                let session = self.session.as_mut().ok_or(StratumError::NotConnected)?;
                if session.version_mask != 0 {
                    session.version_mask = mask & VERSION_MASK;
                }
            }
            Message::Other(method) => tracing::debug!("ignoring {method}"),
            Message::Response { id, result, error } => {
                let session = self.session.as_mut().ok_or(StratumError::NotConnected)?;
                match session.requests.remove(&id) {
                    Some(Request::Configure) => {
                        let granted = error.is_none()
                            && result.get("version-rolling").and_then(Value::as_bool) == Some(true);
                        let mask = result
                            .get("version-rolling.mask")
                            .and_then(Value::as_str)
                            .and_then(|m| u32::from_str_radix(m, 16).ok())
                            .unwrap_or(0);
                        session.version_mask = if granted { mask & VERSION_MASK } else { 0 };
                    }
                    Some(Request::Subscribe) => {
                        if let Some((code, message)) = error {
                            return Err(StratumError::SubscribeRefused { code, message });
                        }
                        let (extranonce1, size) = messages::parse_subscribe(&result)
                            .map_err(StratumError::BadSubscribe)?;
                        session.extranonce1 = Some(extranonce1);
                        session.extranonce2_size = size;
                        if let Some(notify) = session.early_notify.take() {
                            let clean = notify.clean;
                            let job = self.job_from_notify(notify)?;
                            self.events.push(SourceEvent::NewJob { job, clean });
                        }
                    }
                    Some(Request::Authorize) => {
                        if result.as_bool() != Some(true) {
                            let (code, message) = error.unzip();
                            return Err(StratumError::Unauthorized {
                                user: self.pools[session.endpoint].user.clone(),
                                code,
                                message,
                            });
                        }
                        session.authorized = true;
                    }
                    Some(Request::ExtranonceSubscribe) | None => {}
                    Some(Request::Submit(solution, _)) => match (result.as_bool(), error) {
                        (Some(true), _) => self.events.push(SourceEvent::Accepted {
                            solution: *solution,
                        }),
                        (_, Some((code, reason))) => {
                            let stale = ShareRejection::from_code(code)
                                == ShareRejection::JobNotFound
                                || !self.live_jobs.contains(&solution.job.id);
                            self.events.push(SourceEvent::Rejected {
                                solution: *solution,
                                reason: format!("{reason} ({code})"),
                                stale,
                            });
                        }
                        (_, None) => self.events.push(SourceEvent::Rejected {
                            solution: *solution,
                            reason: format!("the pool answered {result}"),
                            stale: false,
                        }),
                    },
                }
            }
        }
        Ok(())
    }

    /// Sends a share; when that fails the share goes back to the queue.
    fn submit_now(&mut self, solution: Solution) -> Result<(), StratumError> {
        let JobWork::Coinbase(work) = &solution.job.work else {
            self.events.push(SourceEvent::Rejected {
                solution,
                reason: "not a pool job".into(),
                stale: false,
            });
            return Ok(());
        };
        let mut params = vec![
            json!(self.pools[self.current()].user),
            json!(solution.job.id),
            json!(hex::encode(work.extranonce2(solution.roll))),
            json!(format!("{:08x}", work.time)),
            json!(format!("{:08x}", solution.nonce())),
        ];
        if work.version_mask != 0 {
            let version = u32::from_ne_bytes(work.version(solution.roll).to_ne_bytes());
            params.push(json!(format!("{:08x}", version & work.version_mask)));
        }
        let params = Value::Array(params);
        let copy = solution.clone();
        self.send(
            "mining.submit",
            &params,
            Request::Submit(Box::new(solution), Instant::now()),
        )
        .inspect_err(|_| self.queue.push_back(copy))
    }

    /// Ends the session; unanswered shares go back to the queue.
    fn lost(&mut self, error: &StratumError) {
        let url = self.url();
        let reason = error.to_string();
        let mut was_up = false;
        if let Some(mut session) = self.session.take() {
            for (_, request) in session.requests.drain() {
                if let Request::Submit(solution, _) = request {
                    self.queue.push_back(*solution);
                }
            }
            was_up = session.extranonce1.is_some();
        }
        let message = format!("{url}: {reason}");
        if was_up {
            self.events.push(SourceEvent::Disconnected {
                url: url.clone(),
                reason,
            });
        } else if self.last_error.as_deref() != Some(message.as_str()) {
            // Said once per new reason: a pool that never answers is named, not retried silently.
            self.events.push(SourceEvent::Unreachable { url, reason });
        }
        self.last_error = Some(message);
        self.live_jobs.clear();
        if let Some(wait) = self.reconnect_after.take() {
            self.failover.retry_same_after(wait, Instant::now());
            return;
        }
        self.failover.failed(Instant::now());
    }

    fn connected(&mut self) {
        self.failover.succeeded();
        self.last_error = None;
        let url = self.url();
        self.events.insert(0, SourceEvent::Connected { url });
        let extranonce1 = self.session.as_ref().and_then(|s| s.extranonce1.clone());
        // A share is still worth sending only to a session with the same extranonce1.
        let mut pending = std::mem::take(&mut self.queue).into_iter();
        while let Some(solution) = pending.next() {
            let same = matches!(&solution.job.work, JobWork::Coinbase(w) if Some(&w.extranonce1) == extranonce1.as_ref());
            if same {
                if let Err(error) = self.submit_now(solution) {
                    self.queue.extend(pending);
                    self.lost(&error);
                    return;
                }
            } else {
                self.events.push(SourceEvent::Rejected {
                    solution,
                    reason: "the connection was lost and the job with it".into(),
                    stale: true,
                });
            }
        }
    }
}

impl WorkSource for StratumSource {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError> {
        if self.session.is_none() {
            let now = Instant::now();
            if self.failover.may_attempt(now) {
                let index = self.current();
                match self.open(index) {
                    Ok(()) => self.connected(),
                    Err(error) if error.is_fatal() => {
                        return Err(SourceError::Pool {
                            url: self.url(),
                            error,
                        })
                    }
                    Err(error) => {
                        // Events from a half-open session are not worth keeping.
                        self.events
                            .retain(|e| !matches!(e, SourceEvent::NewJob { .. }));
                        self.lost(&error);
                    }
                }
            } else {
                thread::sleep(timeout.min(self.failover.wait(now)));
            }
        } else if self.failover.primary_due(Instant::now()) {
            let fallback = self.session.take();
            let events = std::mem::take(&mut self.events);
            let jobs = std::mem::take(&mut self.live_jobs);
            if self.open(0).is_ok() {
                self.failover.back_to_primary();
                drop(fallback);
                self.events.splice(0..0, events);
                self.connected();
            } else {
                self.session = fallback;
                self.events = events;
                self.live_jobs = jobs;
            }
        }
        if self.session.is_some() {
            let stalled = self.session.as_ref().is_some_and(|s| {
                s.requests.values().any(|r| matches!(r, Request::Submit(_, at) if at.elapsed() >= self.response_timeout))
            });
            if stalled {
                self.lost(&StratumError::ShareTimeout {
                    seconds: self.response_timeout.as_secs_f64(),
                });
            } else if let Err(e) = self.receive(timeout) {
                self.lost(&e);
            }
        }
        Ok(std::mem::take(&mut self.events))
    }

    fn submit(&mut self, solution: Solution) {
        if self.session.is_none() {
            self.queue.push_back(solution);
            return;
        }
        let session_extranonce = self
            .session
            .as_ref()
            .map(|s| (s.extranonce1.clone(), s.extranonce2_size));
        let fits = matches!(
            (&solution.job.work, &session_extranonce),
            (JobWork::Coinbase(w), Some((Some(e1), size))) if &w.extranonce1 == e1 && w.extranonce2_size == *size
        );
        if !fits {
            // Built with another session's extranonce: the pool would not recognise it.
            self.events.push(SourceEvent::Rejected {
                solution,
                reason: "the job belongs to an earlier connection".into(),
                stale: true,
            });
            return;
        }
        if let Err(error) = self.submit_now(solution) {
            self.lost(&error);
        }
    }

    fn url(&self) -> String {
        self.pools[self.current()].endpoint.url()
    }

    fn difficulty(&self) -> Option<f64> {
        // Before a pool has said anything, there is no difficulty to show.
        self.session
            .as_ref()
            .is_some_and(|s| s.extranonce1.is_some())
            .then_some(self.difficulty)
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }
}
