//! The Stratum v1 client: connect, subscribe, authorize, turn notifies into jobs, submit
//! shares, and survive the pool going away (reconnect with backoff, failover, a submit queue
//! that keeps shares whose job can still be valid).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::messages::{self, Message, Notify};
use crate::mining::duration_from_env;
use crate::mining::job::{CoinbaseWork, Job, JobExtra, JobWork, Solution};
use crate::mining::source::{SourceError, SourceEvent, WorkSource};

/// Lines longer than this end the connection: no Stratum message comes near it.
const MAX_LINE: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PRIMARY_RETRY: Duration = Duration::from_secs(30);
/// The version bits BIP 320 leaves to miners.
const VERSION_MASK: u32 = 0x1fff_e000;

/// A pool address from a `stratum+tcp://HOST:PORT` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StratumEndpoint {
    host: String,
    port: u16,
}

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

/// A URL that is not `stratum+tcp://HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("bad pool URL {0:?}: expected stratum+tcp://HOST:PORT")]
pub struct BadPoolUrl(String);

impl StratumEndpoint {
    /// # Errors
    /// A URL that is not `stratum+tcp://HOST:PORT`.
    pub fn parse(url: &str) -> Result<Self, BadPoolUrl> {
        let bad = || BadPoolUrl(url.to_owned());
        let rest = url.strip_prefix("stratum+tcp://").ok_or_else(bad)?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || host.contains(['/', '@']) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port: port.parse().map_err(|_| bad())?,
        })
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("stratum+tcp://{}:{}", self.host, self.port)
    }
}

/// What an outstanding request was.
enum Request {
    Configure,
    Subscribe,
    Authorize,
    ExtranonceSubscribe,
    Submit(Solution, Instant),
}

/// One live connection.
struct Session {
    endpoint: usize,
    writer: TcpStream,
    lines: Receiver<Result<Message, String>>,
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

/// Reads newline-delimited messages with a bounded line length and an idle limit.
fn read_lines(
    mut stream: TcpStream,
    stop: &AtomicBool,
    idle_limit: Duration,
    out: &mpsc::Sender<Result<Message, String>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last_data = Instant::now();
    if stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .is_err()
    {
        let _ = out.send(Err("cannot set a read timeout".into()));
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => {
                let _ = out.send(Err("the pool closed the connection".into()));
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
                    let message =
                        messages::parse_line(text).map_err(|e| format!("malformed line: {e}"));
                    let malformed = message.is_err();
                    if out.send(message.map_err(|e| format!("!{e}"))).is_err() {
                        return;
                    }
                    if malformed {
                        tracing::warn!("ignoring a malformed line from the pool");
                    }
                }
                if buf.len() > MAX_LINE {
                    let _ = out.send(Err(format!("a line longer than {MAX_LINE} bytes")));
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
                    let _ = out.send(Err(format!("no data for {} s", idle_limit.as_secs_f64())));
                    return;
                }
            }
            Err(e) => {
                let _ = out.send(Err(format!("reading: {e}")));
                return;
            }
        }
    }
}

/// A pool (or several, in failover order) as a [`crate::mining::source::WorkSource`].
pub struct StratumSource {
    /// Failover order; each pool with its own login.
    pools: Vec<PoolLogin>,
    current: usize,
    session: Option<Session>,
    next_attempt: Instant,
    backoff: Duration,
    since_failover: Instant,
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
    /// How long to stay on a failover pool before trying the first one again.
    primary_retry: Duration,
}

impl StratumSource {
    #[must_use]
    pub fn new(pools: Vec<PoolLogin>) -> Self {
        assert!(!pools.is_empty(), "at least one pool URL");
        Self {
            pools,
            current: 0,
            session: None,
            next_attempt: Instant::now(),
            backoff: BACKOFF_START,
            since_failover: Instant::now(),
            queue: VecDeque::new(),
            events: Vec::new(),
            next_id: 1,
            difficulty: 1.0,
            // Tests shorten the waits for answers and for any line at all.
            response_timeout: duration_from_env(
                "PEERHASH_STRATUM_TIMEOUT_MS",
                Duration::from_secs(30),
            ),
            idle_limit: duration_from_env("PEERHASH_STRATUM_IDLE_MS", Duration::from_secs(300)),
            malformed: 0,
            reconnect_after: None,
            last_error: None,
            primary_retry: duration_from_env("PEERHASH_PRIMARY_RETRY_MS", PRIMARY_RETRY),
        }
    }

    fn send(&mut self, method: &str, params: &Value, request: Request) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let session = self.session.as_mut().ok_or("not connected")?;
        let line = messages::request(id, method, params);
        session
            .writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("writing {method}: {e}"))?;
        session.requests.insert(id, request);
        Ok(())
    }

    /// Opens a session to endpoint `index` and sends subscribe and authorize.
    fn open(&mut self, index: usize) -> Result<(), String> {
        let endpoint = &self.pools[index].endpoint;
        let addr = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", endpoint.url()))?
            .next()
            .ok_or_else(|| format!("{} has no address", endpoint.url()))?;
        let stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let (tx, lines) = mpsc::channel();
        let stop_reader = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stop_reader);
        let idle = self.idle_limit;
        thread::Builder::new()
            .name("peerhash-stratum".into())
            .spawn(move || read_lines(reader, &stop, idle, &tx))
            .map_err(|e| e.to_string())?;
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
                return Err("no answer to subscribe/authorize in time".into());
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
    fn receive(&mut self, timeout: Duration) -> Result<(), String> {
        let mut wait = timeout;
        loop {
            let message = {
                let session = self.session.as_ref().ok_or("not connected")?;
                match session.lines.recv_timeout(wait) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => return Ok(()),
                    Err(RecvTimeoutError::Disconnected) => return Err("reader stopped".into()),
                }
            };
            wait = Duration::ZERO;
            match message {
                Ok(message) => self.handle(message)?,
                Err(e) if e.starts_with('!') => {
                    self.malformed += 1;
                    tracing::warn!("{}: {} ({} so far)", self.url(), &e[1..], self.malformed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn job_from_notify(&self, notify: Notify) -> Result<Arc<Job>, String> {
        let session = self.session.as_ref().ok_or("not connected")?;
        let extranonce1 = session.extranonce1.clone().ok_or("no extranonce1 yet")?;
        let target = messages::share_target(self.difficulty).map_err(|e| e.to_string())?;
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

    fn handle(&mut self, message: Message) -> Result<(), String> {
        match message {
            Message::Notify(notify) => {
                let session = self.session.as_mut().ok_or("not connected")?;
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
                let session = self.session.as_mut().ok_or("not connected")?;
                session.extranonce1 = Some(extranonce1);
                session.extranonce2_size = extranonce2_size;
            }
            Message::Reconnect { wait_seconds } => {
                // Same pool only: a redirect elsewhere could send shares to anyone.
                self.reconnect_after = Some(Duration::from_secs(wait_seconds));
                return Err(format!(
                    "the pool asked to reconnect (after {wait_seconds} s)"
                ));
            }
            Message::SetVersionMask(mask) => {
                let session = self.session.as_mut().ok_or("not connected")?;
                if session.version_mask != 0 {
                    session.version_mask = mask & VERSION_MASK;
                }
            }
            Message::Other(method) => tracing::debug!("ignoring {method}"),
            Message::Response { id, result, error } => {
                let session = self.session.as_mut().ok_or("not connected")?;
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
                        if let Some((code, text)) = error {
                            return Err(format!("subscribe refused: {text} ({code})"));
                        }
                        let (extranonce1, size) =
                            messages::parse_subscribe(&result).map_err(|e| e.to_string())?;
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
                            return Err(format!(
                                "the pool refused worker {:?}{}",
                                self.pools[session.endpoint].user,
                                error
                                    .map(|(c, t)| format!(": {t} ({c})"))
                                    .unwrap_or_default()
                            ));
                        }
                        session.authorized = true;
                    }
                    Some(Request::ExtranonceSubscribe) | None => {}
                    Some(Request::Submit(solution, _)) => match (result.as_bool(), error) {
                        (Some(true), _) => self.events.push(SourceEvent::Accepted { solution }),
                        (_, Some((code, reason))) => {
                            let stale = code == 21
                                || reason.contains("stale")
                                || reason.contains("not found");
                            self.events.push(SourceEvent::Rejected {
                                solution,
                                reason: format!("{reason} ({code})"),
                                stale,
                            });
                        }
                        (_, None) => self.events.push(SourceEvent::Rejected {
                            solution,
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
    fn submit_now(&mut self, solution: Solution) -> Result<(), String> {
        let JobWork::Coinbase(work) = &solution.job.work else {
            self.events.push(SourceEvent::Rejected {
                solution,
                reason: "not a pool job".into(),
                stale: false,
            });
            return Ok(());
        };
        let mut params = vec![
            json!(self.pools[self.current].user),
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
            Request::Submit(solution, Instant::now()),
        )
        .inspect_err(|_| self.queue.push_back(copy))
    }

    /// Ends the session; unanswered shares go back to the queue.
    fn lost(&mut self, reason: &str) {
        if let Some(mut session) = self.session.take() {
            for (_, request) in session.requests.drain() {
                if let Request::Submit(solution, _) = request {
                    self.queue.push_back(solution);
                }
            }
            if session.extranonce1.is_some() {
                self.events.push(SourceEvent::Disconnected {
                    url: self.pools[session.endpoint].endpoint.url(),
                    reason: reason.to_owned(),
                });
            }
        }
        tracing::debug!("{}: {reason}", self.pools[self.current].endpoint.url());
        self.last_error = Some(format!(
            "{}: {reason}",
            self.pools[self.current].endpoint.url()
        ));
        if let Some(wait) = self.reconnect_after.take() {
            self.next_attempt = Instant::now() + wait;
            return;
        }
        self.current = (self.current + 1) % self.pools.len();
        if self.current != 0 {
            self.since_failover = Instant::now();
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn connected(&mut self) {
        self.backoff = BACKOFF_START;
        let url = self.url();
        self.events.insert(0, SourceEvent::Connected { url });
        let extranonce1 = self.session.as_ref().and_then(|s| s.extranonce1.clone());
        // A share is still worth sending only to a session with the same extranonce1.
        let mut pending = std::mem::take(&mut self.queue).into_iter();
        while let Some(solution) = pending.next() {
            let same = matches!(&solution.job.work, JobWork::Coinbase(w) if Some(&w.extranonce1) == extranonce1.as_ref());
            if same {
                if let Err(reason) = self.submit_now(solution) {
                    self.queue.extend(pending);
                    self.lost(&reason);
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
            if Instant::now() >= self.next_attempt {
                let index = self.current;
                match self.open(index) {
                    Ok(()) => self.connected(),
                    Err(e) if e.starts_with("the pool refused worker") => {
                        return Err(SourceError(e))
                    }
                    Err(e) => {
                        // Events from a half-open session are not worth keeping.
                        self.events
                            .retain(|e| !matches!(e, SourceEvent::NewJob { .. }));
                        self.lost(&e);
                    }
                }
            } else {
                thread::sleep(
                    timeout.min(self.next_attempt.saturating_duration_since(Instant::now())),
                );
            }
        } else if self.current != 0 && self.since_failover.elapsed() >= self.primary_retry {
            self.since_failover = Instant::now();
            let fallback = self.session.take();
            let events = std::mem::take(&mut self.events);
            if self.open(0).is_ok() {
                self.current = 0;
                drop(fallback);
                self.events.splice(0..0, events);
                self.connected();
            } else {
                self.session = fallback;
                self.events = events;
            }
        }
        if self.session.is_some() {
            let stalled = self.session.as_ref().is_some_and(|s| {
                s.requests.values().any(|r| matches!(r, Request::Submit(_, at) if at.elapsed() >= self.response_timeout))
            });
            if stalled {
                self.lost("no answer to a share in time");
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
        if let Err(reason) = self.submit_now(solution) {
            self.lost(&reason);
        }
    }

    fn url(&self) -> String {
        self.pools[self.current].endpoint.url()
    }

    fn difficulty(&self) -> Option<f64> {
        Some(self.difficulty)
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }
}
