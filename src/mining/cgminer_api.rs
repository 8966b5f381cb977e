//! A cgminer-compatible API: the JSON-over-TCP protocol that mining dashboards and fleet tools
//! (Awesome Miner, Hive OS, minerstat, the `pyasic` library) poll on port 4028.
//!
//! It follows cgminer 4.11's `api.c` (API version 3.7):
//! - a request is JSON, `{"command":"summary","parameter":""}`, or plain text,
//!   `summary` or `command|parameter`; commands joined with `+` (`summary+devs`) answer each
//!   part under its own name, `{"summary":[{...}],"devs":[{...}],"id":1}`;
//! - the server answers once, with a NUL byte after the reply, and closes the connection;
//! - every reply starts with a `STATUS` block: `S` (success) or `E` (error), the time, a code
//!   and a message. Codes: pools 7, devs 9, summary 11, invalid command 14, version 22,
//!   invalid JSON 23, missing command 24, config 33, access denied 45, stats 70, check 72.
//!
//! It is read-only: `version`, `config`, `summary`, `devs`/`edevs`, `pools`, `stats`/`estats`
//! and `check` are served; every cgminer command that would change the rig (`quit`,
//! `addpool`, `switchpool`, ...) is refused with code 45 and does nothing. No answer holds a
//! credential: pool URLs are the credential-free ones and `User` is always empty.
//!
//! Devices are listed sgminer-style, `"GPU": n` for a graphics card and `"CPU": n` for the CPU
//! backend. `MHS 5s` carries the miner's rate over its last 10 seconds (the window of the status
//! API). Counters peerhash has no notion of (`Discarded`, `Remote Failures`, proxies, version
//! masks) are 0 or empty.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use super::api::{ServerThread, STOP_CHECK};
use super::stats::Stats;
use super::status::{DeviceStatus, PoolRecord, Snapshot, StatusBoard};

/// The port cgminer documents, and dashboards try first.
pub const DEFAULT_PORT: u16 = 4028;
/// The cgminer release whose API this one follows, and that API's version.
const CGMINER_VERSION: &str = "4.11.1";
const API_VERSION: &str = "3.7";
/// cgminer reads at most this much of a request; so do we.
const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request, and to take the reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Commands that would change the rig in cgminer: always refused here.
const PRIVILEGED: &[&str] = &[
    "pgaenable",
    "pgadisable",
    "pgaidentify",
    "switchpool",
    "addpool",
    "poolpriority",
    "poolquota",
    "enablepool",
    "disablepool",
    "removepool",
    "save",
    "quit",
    "privileged",
    "restart",
    "failover-only",
    "debug",
    "setconfig",
    "zero",
    "hotplug",
    "lockstats",
    "ascset",
    "pgaset",
    "ascenable",
    "ascdisable",
    "ascidentify",
];

/// The read-only commands served.
const SERVED: &[&str] = &[
    "version", "config", "summary", "devs", "edevs", "pools", "stats", "estats", "check",
];

/// The API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cgminer API: cannot listen on {addr}: {source}")]
pub struct CgminerApiError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// What the API says about the rig beyond the miner's snapshot: fixed at start.
#[derive(Debug, Clone, Default)]
pub struct RigInfo {
    /// The pools (or nodes) in failover order, without credentials.
    pub pools: Vec<String>,
    /// Seconds between status lines (cgminer's "Log Interval").
    pub log_interval: u64,
}

/// A running cgminer API; dropping it stops the server.
pub struct CgminerApi {
    addr: SocketAddr,
    _thread: ServerThread,
}

impl CgminerApi {
    /// Listens on `addr` (port 0 picks a free one) and answers from `board` until dropped.
    ///
    /// # Errors
    /// The address is in use or cannot be bound.
    pub fn start(
        addr: SocketAddr,
        board: Arc<StatusBoard>,
        rig: RigInfo,
    ) -> Result<Self, CgminerApiError> {
        let error = |source| CgminerApiError { addr, source };
        let listener = TcpListener::bind(addr).map_err(error)?;
        let bound = listener.local_addr().map_err(error)?;
        listener.set_nonblocking(true).map_err(error)?;
        let thread = ServerThread::spawn("peerhash-cgminer-api", move |stop| {
            serve(&listener, &board, &rig, stop);
        })
        .map_err(error)?;
        Ok(Self {
            addr: bound,
            _thread: thread,
        })
    }

    /// Where it listens (with the port chosen when asked for port 0).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// One client at a time, as cgminer does: each is bounded by [`CLIENT_TIMEOUT`].
fn serve(listener: &TcpListener, board: &StatusBoard, rig: &RigInfo, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer_client(stream, board, rig) {
                    tracing::debug!("cgminer API: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(STOP_CHECK),
            Err(e) => {
                tracing::warn!("cgminer API: {e}");
                thread::sleep(STOP_CHECK);
            }
        }
    }
}

fn answer_client(mut stream: TcpStream, board: &StatusBoard, rig: &RigInfo) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let request = read_request(&mut stream)?;
    let mut reply = respond(&request, &board.snapshot(), rig, unix_now()).into_bytes();
    reply.push(0);
    stream.write_all(&reply)?;
    stream.flush()
}

/// Reads until the client stops sending, the request is complete or [`MAX_REQUEST`] bytes.
///
/// Clients do not close their side before reading (pyasic does not): a request is complete
/// when it parses as JSON, or at a newline or NUL for plain text, or when the client pauses.
fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while request.len() < MAX_REQUEST {
        let n = match stream.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
        if is_complete(&request) || Instant::now() >= deadline {
            break;
        }
        // More may follow: wait briefly for it.
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    }
    request.truncate(MAX_REQUEST);
    Ok(request)
}

fn is_complete(request: &[u8]) -> bool {
    match request.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Value>(request).is_ok(),
        Some(_) => request.iter().any(|&b| b == b'\n' || b == 0),
        None => false,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// One command, or several joined with `+`.
    pub command: String,
    pub parameter: Option<String>,
    /// JSON in, JSON out; plain text otherwise.
    pub json: bool,
}

/// A request that cannot be read, with cgminer's code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Missing JSON 'command'")]
    MissingCommand,
    #[error("Invalid command")]
    CommandNotText,
}

impl RequestError {
    fn code(self) -> u32 {
        match self {
            Self::InvalidJson => 23,
            Self::MissingCommand => 24,
            Self::CommandNotText => 14,
        }
    }
}

/// Reads a request: JSON when it starts with `{`, else `command[|parameter]`.
///
/// # Errors
/// JSON that is not an object, has no `command`, or whose command is not a string.
pub fn parse_request(bytes: &[u8]) -> Result<Request, RequestError> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if !text.starts_with('{') {
        let (command, parameter) = match text.split_once('|') {
            Some((command, parameter)) => (command, Some(parameter.to_owned())),
            None => (text, None),
        };
        return Ok(Request {
            command: command.to_owned(),
            parameter,
            json: false,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|_| RequestError::InvalidJson)?;
    let object = value.as_object().ok_or(RequestError::InvalidJson)?;
    let command = match object.get("command") {
        None => return Err(RequestError::MissingCommand),
        Some(Value::String(command)) => command.clone(),
        Some(_) => return Err(RequestError::CommandNotText),
    };
    let parameter = match object.get("parameter") {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::Bool(flag)) => Some(flag.to_string()),
        _ => None,
    };
    Ok(Request {
        command,
        parameter,
        json: true,
    })
}

/// The whole reply to the raw request `bytes` (without the trailing NUL), at unix time `when`.
#[must_use]
pub fn respond(bytes: &[u8], snapshot: &Snapshot, rig: &RigInfo, when: u64) -> String {
    let json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    let request = match parse_request(bytes) {
        Ok(request) => request,
        Err(error) => {
            return Reply::error(error.code(), error.to_string()).render(json, when);
        }
    };
    let view = View { snapshot, rig };
    if !request.command.contains('+') {
        return view
            .reply(&request.command, request.parameter.as_deref(), false)
            .render(request.json, when);
    }
    // Joined: each command once, in order; parameters do not apply.
    let mut seen: Vec<&str> = Vec::new();
    let mut parts = Vec::new();
    for command in request.command.split('+').filter(|c| !c.is_empty()) {
        if seen.contains(&command) {
            continue;
        }
        seen.push(command);
        parts.push((
            command,
            view.reply(command, None, true).render(request.json, when),
        ));
    }
    if request.json {
        let mut out = String::from("{");
        for (i, (command, reply)) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json!(command).to_string());
            out.push_str(":[");
            out.push_str(reply);
            out.push(']');
        }
        out.push_str(",\"id\":1}");
        out
    } else {
        parts
            .iter()
            .map(|(command, reply)| format!("CMD={}|{reply}", escape_text(command)))
            .collect()
    }
}

/// Fields in cgminer's order (a JSON object, or `key=value,...` in plain text).
#[derive(Debug, Clone, Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn with(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.0.push((name, value.into()));
        self
    }

    fn text(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => format!("{name}={}", escape_text(text)),
                other => format!("{name}={other}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Plain text replies separate with `,`, `=` and `|`: cgminer escapes them with a backslash.
/// Control characters (a NUL would end the reply) become `?`.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, ',' | '=' | '|' | '\\') {
            out.push('\\');
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// One command's reply: its STATUS block and the section it returns.
#[derive(Debug)]
struct Reply {
    success: bool,
    code: u32,
    message: String,
    section: Option<Section>,
}

#[derive(Debug)]
struct Section {
    name: &'static str,
    items: Vec<Fields>,
    /// Plain text names single-item sections (`SUMMARY,Elapsed=...`), not lists.
    named_in_text: bool,
}

impl Reply {
    fn error(code: u32, message: impl Into<String>) -> Self {
        Self {
            success: false,
            code,
            message: message.into(),
            section: None,
        }
    }

    fn success(code: u32, message: impl Into<String>, section: Section) -> Self {
        Self {
            success: true,
            code,
            message: message.into(),
            section: Some(section),
        }
    }

    fn status(&self, when: u64) -> Fields {
        Fields::default()
            .with("STATUS", if self.success { "S" } else { "E" })
            .with("When", when)
            .with("Code", self.code)
            .with("Msg", self.message.as_str())
            .with(
                "Description",
                concat!("peerhash ", env!("CARGO_PKG_VERSION")),
            )
    }

    fn render(&self, json: bool, when: u64) -> String {
        let status = self.status(when);
        if json {
            let mut out = String::from("{\"STATUS\":");
            out.push_str(&serde_json::to_string(&[status]).unwrap_or_default());
            if let Some(section) = &self.section {
                out.push(',');
                out.push_str(&json!(section.name).to_string());
                out.push(':');
                out.push_str(&serde_json::to_string(&section.items).unwrap_or_default());
            }
            out.push_str(",\"id\":1}");
            out
        } else {
            let mut out = format!("{}|", status.text());
            if let Some(section) = &self.section {
                for item in &section.items {
                    if section.named_in_text {
                        out.push_str(section.name);
                        out.push(',');
                    }
                    out.push_str(&item.text());
                    out.push('|');
                }
            }
            out
        }
    }
}

/// The miner as the commands see it.
struct View<'a> {
    snapshot: &'a Snapshot,
    rig: &'a RigInfo,
}

impl View<'_> {
    fn reply(&self, command: &str, parameter: Option<&str>, joined: bool) -> Reply {
        match command {
            _ if PRIVILEGED.contains(&command) || (joined && command == "check") => {
                Reply::error(45, format!("Access denied to '{command}' command"))
            }
            "version" => Reply::success(22, "CGMiner versions", single("VERSION", self.version())),
            "config" => Reply::success(33, "CGMiner config", single("CONFIG", self.config())),
            "summary" => Reply::success(11, "Summary", single("SUMMARY", self.summary())),
            "devs" | "edevs" => self.devs(),
            "pools" => self.pools(),
            "stats" | "estats" => Reply::success(
                70,
                "CGMiner stats",
                Section {
                    name: "STATS",
                    items: self.stats(),
                    named_in_text: false,
                },
            ),
            "check" => match parameter.filter(|p| !p.is_empty()) {
                None => Reply::error(71, "Missing check cmd"),
                Some(asked) => {
                    let exists = SERVED.contains(&asked) || PRIVILEGED.contains(&asked);
                    let access = SERVED.contains(&asked);
                    Reply::success(
                        72,
                        "Check command",
                        single(
                            "CHECK",
                            Fields::default()
                                .with("Exists", if exists { "Y" } else { "N" })
                                .with("Access", if access { "Y" } else { "N" }),
                        ),
                    )
                }
            },
            _ => Reply::error(14, "Invalid command"),
        }
    }

    fn version(&self) -> Fields {
        Fields::default()
            .with("CGMiner", CGMINER_VERSION)
            .with("API", API_VERSION)
            .with("Miner", "peerhash")
            .with("peerhash", env!("CARGO_PKG_VERSION"))
    }

    fn count(&self, kind: &str) -> usize {
        self.snapshot
            .devices
            .iter()
            .filter(|d| d.kind == kind)
            .count()
    }

    fn config(&self) -> Fields {
        Fields::default()
            .with("GPU Count", self.count("gpu"))
            .with("CPU Count", self.count("cpu"))
            .with("ASC Count", 0)
            .with("PGA Count", 0)
            .with("Pool Count", self.rig.pools.len())
            .with("Strategy", "Failover")
            .with("Log Interval", self.rig.log_interval)
            .with("Device Code", "GPU CPU")
            .with("OS", std::env::consts::OS)
            .with("Hotplug", "None")
    }

    fn summary(&self) -> Fields {
        let s = self.snapshot;
        let shares = &s.shares;
        let elapsed = s.uptime_seconds;
        let minutes = elapsed / 60.0;
        let jobs: u64 = s.pools.iter().map(|p| p.jobs).sum();
        let failures: u64 = s.pools.iter().map(|p| p.failures).sum();
        let clean: u64 = s.pools.iter().map(|p| p.clean_jobs).sum();
        let last_job = s.pools.iter().filter_map(|p| p.last_job_time).max();
        #[allow(clippy::cast_precision_loss)]
        Fields::default()
            .with("Elapsed", whole(elapsed))
            .with("MHS av", mhs(s.hashrate_average))
            .with("MHS 5s", mhs(s.hashrate))
            .with("Found Blocks", shares.blocks)
            .with("Getworks", jobs)
            .with("Accepted", shares.accepted)
            .with("Rejected", shares.rejected)
            .with("Hardware Errors", shares.hw_errors)
            .with("Utility", per_minute(shares.accepted as f64, minutes))
            .with("Discarded", 0)
            .with("Stale", shares.stale)
            .with("Get Failures", failures)
            .with("Local Work", shares.found)
            .with("Remote Failures", 0)
            .with("Network Blocks", clean)
            .with("Total MH", round(shares.hashes as f64 / 1e6, 4))
            .with(
                "Work Utility",
                per_minute(shares.difficulty_accepted, minutes),
            )
            .with("Difficulty Accepted", round(shares.difficulty_accepted, 8))
            .with("Difficulty Rejected", round(shares.difficulty_rejected, 8))
            .with("Difficulty Stale", round(shares.difficulty_stale, 8))
            .with("Best Share", whole(shares.best_share))
            .with("Device Hardware%", hardware_percent(shares))
            .with("Device Rejected%", rejected_percent(shares))
            .with("Pool Rejected%", rejected_percent(shares))
            .with("Pool Stale%", stale_percent(shares))
            .with("Last getwork", last_job.unwrap_or(0))
    }

    fn devs(&self) -> Reply {
        let devices = &self.snapshot.devices;
        if devices.is_empty() {
            return Reply::error(10, "No GPUs/CPUs");
        }
        let message = format!(
            "{} GPU(s) - {} CPU(s)",
            self.count("gpu"),
            self.count("cpu")
        );
        Reply::success(
            9,
            message,
            Section {
                name: "DEVS",
                items: devices.iter().map(|d| self.device(d)).collect(),
                named_in_text: false,
            },
        )
    }

    fn device(&self, d: &DeviceStatus) -> Fields {
        let elapsed = self.snapshot.uptime_seconds;
        let shares = &d.shares;
        let last_pool = self
            .rig
            .pools
            .iter()
            .position(|url| *url == self.snapshot.pool.url);
        #[allow(clippy::cast_precision_loss)]
        let average = d.hashes as f64 / elapsed.max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        Fields::default()
            .with(device_key(d), d.index)
            .with("Name", d.kind.to_uppercase())
            .with("ID", d.index)
            .with("Device", d.name.as_str())
            .with("Enabled", if d.paused { "N" } else { "Y" })
            .with("Status", if d.paused { "Sick" } else { "Alive" })
            .with("Temperature", round(d.temperature_c.unwrap_or(0.0), 2))
            .with("MHS av", mhs(average))
            .with("MHS 5s", mhs(d.hashrate))
            .with("Accepted", shares.accepted)
            .with("Rejected", shares.rejected)
            .with("Stale", shares.stale)
            .with("Hardware Errors", d.hw_errors)
            .with(
                "Utility",
                per_minute(shares.accepted as f64, elapsed / 60.0),
            )
            .with(
                "Last Share Pool",
                match (shares.last_share_time, last_pool) {
                    (Some(_), Some(index)) => i64::try_from(index).unwrap_or(-1),
                    _ => -1,
                },
            )
            .with("Last Share Time", shares.last_share_time.unwrap_or(0))
            .with("Total MH", round(d.hashes as f64 / 1e6, 4))
            .with("Diff1 Work", whole(shares.difficulty_accepted))
            .with("Difficulty Accepted", round(shares.difficulty_accepted, 8))
            .with("Difficulty Rejected", round(shares.difficulty_rejected, 8))
            .with(
                "Last Share Difficulty",
                round(shares.last_share_difficulty, 8),
            )
            .with("Last Valid Work", shares.last_share_time.unwrap_or(0))
            .with("Device Hardware%", hardware_percent(shares))
            .with("Device Rejected%", rejected_percent(shares))
            .with("Device Elapsed", whole(elapsed))
    }

    fn pools(&self) -> Reply {
        let mut urls = self.rig.pools.clone();
        // A URL the miner used that was not configured (none today) is still listed.
        for record in &self.snapshot.pools {
            if !urls.contains(&record.url) {
                urls.push(record.url.clone());
            }
        }
        if urls.is_empty() {
            return Reply::error(8, "No pools");
        }
        let items = urls
            .iter()
            .enumerate()
            .map(|(index, url)| self.pool(index, url))
            .collect::<Vec<_>>();
        Reply::success(
            7,
            format!("{} Pool(s)", items.len()),
            Section {
                name: "POOLS",
                items,
                named_in_text: false,
            },
        )
    }

    fn pool(&self, index: usize, url: &str) -> Fields {
        let snapshot = self.snapshot;
        let empty = PoolRecord::default();
        let record = snapshot
            .pools
            .iter()
            .find(|p| p.url == url)
            .unwrap_or(&empty);
        let active = snapshot.pool.url == url;
        let alive = active && snapshot.pool.connected;
        let status = match (active, record.jobs, record.failures) {
            _ if alive => "Alive",
            (true, _, _) | (false, _, 1..) => "Dead",
            (false, 1.., 0) => "Alive",
            (false, 0, 0) => "Unknown",
        };
        let stratum = url.starts_with("stratum");
        let difficulty = if active {
            snapshot.pool.difficulty.unwrap_or(0.0)
        } else {
            0.0
        };
        let shares = &record.shares;
        Fields::default()
            .with("POOL", index)
            .with("URL", url)
            .with("Status", status)
            .with("Priority", index)
            .with("Quota", 1)
            .with("Long Poll", if url.starts_with("http") { "Y" } else { "N" })
            .with("Getworks", record.jobs)
            .with("Accepted", shares.accepted)
            .with("Rejected", shares.rejected)
            .with("Works", record.jobs)
            .with("Discarded", 0)
            .with("Stale", shares.stale)
            .with("Get Failures", record.failures)
            .with("Remote Failures", 0)
            .with("User", "")
            .with("Last Share Time", shares.last_share_time.unwrap_or(0))
            .with("Diff1 Shares", whole(shares.difficulty_accepted))
            .with("Proxy Type", "")
            .with("Proxy", "")
            .with("Difficulty Accepted", round(shares.difficulty_accepted, 8))
            .with("Difficulty Rejected", round(shares.difficulty_rejected, 8))
            .with("Difficulty Stale", round(shares.difficulty_stale, 8))
            .with(
                "Last Share Difficulty",
                round(shares.last_share_difficulty, 8),
            )
            .with("Work Difficulty", round(difficulty, 8))
            .with("Has Stratum", stratum)
            .with("Stratum Active", stratum && alive)
            .with(
                "Stratum URL",
                if stratum && alive {
                    url.split_once("://").map_or(url, |(_, rest)| rest)
                } else {
                    ""
                },
            )
            .with("Stratum Difficulty", round(difficulty, 8))
            .with("Has Vmask", false)
            .with("Has GBT", false)
            .with("Best Share", whole(shares.best_share))
            .with("Pool Rejected%", rejected_percent(shares))
            .with("Pool Stale%", stale_percent(shares))
            .with("Bad Work", 0)
            .with(
                "Current Block Height",
                if active {
                    snapshot.pool.height.unwrap_or(0)
                } else {
                    0
                },
            )
            .with("Current Block Version", 0)
    }

    fn stats(&self) -> Vec<Fields> {
        let elapsed = whole(self.snapshot.uptime_seconds);
        self.snapshot
            .devices
            .iter()
            .map(|d| {
                Fields::default()
                    .with("STATS", d.index)
                    .with("ID", format!("{}{}", d.kind.to_uppercase(), d.index))
                    .with("Elapsed", elapsed)
                    .with("Calls", 0)
                    .with("Wait", 0.0)
                    .with("Max", 0.0)
                    .with("Min", 0.0)
                    .with("Device", d.name.as_str())
                    .with("Scan Nonces", d.scan_nonces)
                    .with("Tuning", d.tuning.as_str())
                    .with("Device Errors", d.errors)
                    .with("Paused", d.paused)
            })
            .collect()
    }
}

fn single(name: &'static str, fields: Fields) -> Section {
    Section {
        name,
        items: vec![fields],
        named_in_text: true,
    }
}

fn device_key(d: &DeviceStatus) -> &'static str {
    if d.kind == "gpu" {
        "GPU"
    } else {
        "CPU"
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let rounded = (value * scale).round() / scale;
    if rounded.is_finite() {
        rounded
    } else {
        0.0
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

fn mhs(hashes_per_second: f64) -> f64 {
    round(hashes_per_second / 1e6, 2)
}

fn per_minute(count: f64, minutes: f64) -> f64 {
    if minutes > 0.0 {
        round(count / minutes, 2)
    } else {
        0.0
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        round(part * 100.0 / whole, 4)
    } else {
        0.0
    }
}

/// Share difficulty answered, whatever the answer.
fn answered(s: &Stats) -> f64 {
    s.difficulty_accepted + s.difficulty_rejected + s.difficulty_stale
}

#[allow(clippy::cast_precision_loss)]
fn hardware_percent(s: &Stats) -> f64 {
    percent(
        s.hw_errors as f64,
        s.hw_errors as f64 + s.difficulty_accepted,
    )
}

fn rejected_percent(s: &Stats) -> f64 {
    percent(s.difficulty_rejected, answered(s))
}

fn stale_percent(s: &Stats) -> f64 {
    percent(s.difficulty_stale, answered(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mining::status::PoolStatus;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            uptime_seconds: 120.0,
            hashrate: 2.5e6,
            hashrate_average: 2.0e6,
            pool: PoolStatus {
                url: "stratum+tcp://127.0.0.1:3333".into(),
                connected: true,
                difficulty: Some(0.5),
                height: Some(101),
                ..PoolStatus::default()
            },
            shares: Stats {
                hashes: 240_000_000,
                found: 4,
                accepted: 3,
                rejected: 1,
                difficulty_accepted: 1.5,
                difficulty_rejected: 0.5,
                last_share_time: Some(1_700_000_000),
                best_share: 12.7,
                ..Stats::default()
            },
            devices: vec![
                DeviceStatus {
                    index: 0,
                    name: "gpu:0 llvmpipe".into(),
                    kind: "gpu".into(),
                    hashrate: 2.0e6,
                    hashes: 200_000_000,
                    temperature_c: Some(64.25),
                    shares: Stats {
                        accepted: 2,
                        last_share_time: Some(1_700_000_000),
                        ..Stats::default()
                    },
                    ..DeviceStatus::default()
                },
                DeviceStatus {
                    index: 1,
                    name: "cpu (2 threads)".into(),
                    kind: "cpu".into(),
                    hashrate: 0.5e6,
                    hashes: 40_000_000,
                    ..DeviceStatus::default()
                },
            ],
            pools: vec![PoolRecord {
                url: "stratum+tcp://127.0.0.1:3333".into(),
                jobs: 5,
                clean_jobs: 2,
                last_job_time: Some(1_699_999_990),
                shares: Stats {
                    accepted: 3,
                    rejected: 1,
                    ..Stats::default()
                },
                ..PoolRecord::default()
            }],
        }
    }

    fn rig() -> RigInfo {
        RigInfo {
            pools: vec![
                "stratum+tcp://127.0.0.1:3333".into(),
                "stratum+tcp://127.0.0.1:4444".into(),
            ],
            log_interval: 10,
        }
    }

    fn ask(request: &str) -> Value {
        let reply = respond(request.as_bytes(), &snapshot(), &rig(), 1_700_000_100);
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"))
    }

    #[test]
    fn requests_parse_as_json_or_plain_text() {
        assert_eq!(
            parse_request(br#"{"command":"summary","parameter":""}"#),
            Ok(Request {
                command: "summary".into(),
                parameter: Some(String::new()),
                json: true
            })
        );
        assert_eq!(
            parse_request(b"check|devs\n"),
            Ok(Request {
                command: "check".into(),
                parameter: Some("devs".into()),
                json: false
            })
        );
        assert_eq!(
            parse_request(br#"{"command":"pga","parameter":3}"#).map(|r| r.parameter),
            Ok(Some("3".into()))
        );
        assert_eq!(parse_request(b"{nope"), Err(RequestError::InvalidJson));
        assert_eq!(
            parse_request(b"[1]"),
            Ok(Request {
                command: "[1]".into(),
                parameter: None,
                json: false
            })
        );
        assert_eq!(
            parse_request(b"{\"cmd\":1}"),
            Err(RequestError::MissingCommand)
        );
        assert_eq!(
            parse_request(b"{\"command\":7}"),
            Err(RequestError::CommandNotText)
        );
    }

    #[test]
    fn summary_has_cgminer_fields_and_status() {
        let reply = ask(r#"{"command":"summary"}"#);
        let status = &reply["STATUS"][0];
        assert_eq!(status["STATUS"], "S");
        assert_eq!(status["Code"], 11);
        assert_eq!(status["When"], 1_700_000_100);
        assert_eq!(reply["id"], 1);
        let summary = &reply["SUMMARY"][0];
        assert_eq!(summary["Elapsed"], 120);
        assert_eq!(summary["MHS av"], 2.0);
        assert_eq!(summary["MHS 5s"], 2.5);
        assert_eq!(summary["Accepted"], 3);
        assert_eq!(summary["Rejected"], 1);
        assert_eq!(summary["Getworks"], 5);
        assert_eq!(summary["Network Blocks"], 2);
        assert_eq!(summary["Total MH"], 240.0);
        assert_eq!(summary["Utility"], 1.5);
        assert_eq!(summary["Difficulty Accepted"], 1.5);
        assert_eq!(summary["Best Share"], 12);
        assert_eq!(summary["Pool Rejected%"], 25.0);
        assert_eq!(summary["Last getwork"], 1_699_999_990);
    }

    #[test]
    fn devs_list_each_device_with_its_shares_and_temperature() {
        let reply = ask(r#"{"command":"devs"}"#);
        assert_eq!(reply["STATUS"][0]["Code"], 9);
        assert_eq!(reply["STATUS"][0]["Msg"], "1 GPU(s) - 1 CPU(s)");
        let devs = reply["DEVS"].as_array().expect("a list");
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0]["GPU"], 0);
        assert_eq!(devs[0]["Temperature"], 64.25);
        assert_eq!(devs[0]["Accepted"], 2);
        assert_eq!(devs[0]["MHS 5s"], 2.0);
        assert_eq!(devs[0]["Last Share Time"], 1_700_000_000);
        assert_eq!(devs[0]["Last Share Pool"], 0);
        assert_eq!(devs[1]["CPU"], 1);
        assert_eq!(devs[1]["Temperature"], 0.0);
        assert_eq!(devs[1]["Last Share Pool"], -1);
    }

    #[test]
    fn pools_list_every_configured_pool_without_credentials() {
        let reply = ask(r#"{"command":"pools"}"#);
        assert_eq!(reply["STATUS"][0]["Code"], 7);
        let pools = reply["POOLS"].as_array().expect("a list");
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0]["URL"], "stratum+tcp://127.0.0.1:3333");
        assert_eq!(pools[0]["Status"], "Alive");
        assert_eq!(pools[0]["Stratum Active"], true);
        assert_eq!(pools[0]["Stratum URL"], "127.0.0.1:3333");
        assert_eq!(pools[0]["Accepted"], 3);
        assert_eq!(pools[0]["Current Block Height"], 101);
        assert_eq!(pools[0]["User"], "");
        assert_eq!(pools[1]["Status"], "Unknown");
        assert_eq!(pools[1]["Priority"], 1);
    }

    #[test]
    fn joined_commands_answer_each_part_under_its_name() {
        let reply = ask(r#"{"command":"summary+devs+summary+quit"}"#);
        let keys: Vec<&String> = reply.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), 4, "{reply}");
        assert_eq!(reply["summary"][0]["STATUS"][0]["Code"], 11);
        assert_eq!(reply["devs"][0]["STATUS"][0]["Code"], 9);
        assert_eq!(reply["quit"][0]["STATUS"][0]["STATUS"], "E");
        assert_eq!(reply["quit"][0]["STATUS"][0]["Code"], 45);
        assert_eq!(reply["id"], 1);
    }

    #[test]
    fn privileged_and_unknown_commands_are_refused() {
        for command in ["quit", "restart", "addpool", "switchpool", "privileged"] {
            let reply = ask(&format!(r#"{{"command":"{command}","parameter":"0"}}"#));
            assert_eq!(reply["STATUS"][0]["STATUS"], "E", "{command}");
            assert_eq!(reply["STATUS"][0]["Code"], 45, "{command}");
        }
        let reply = ask(r#"{"command":"fly"}"#);
        assert_eq!(reply["STATUS"][0]["Code"], 14);
        assert_eq!(ask("{oops")["STATUS"][0]["Code"], 23);
        assert_eq!(ask(r#"{"x":1}"#)["STATUS"][0]["Code"], 24);
        let check = ask(r#"{"command":"check","parameter":"quit"}"#);
        assert_eq!(check["CHECK"][0]["Exists"], "Y");
        assert_eq!(check["CHECK"][0]["Access"], "N");
    }

    #[test]
    fn version_config_and_stats_answer() {
        let version = ask(r#"{"command":"version"}"#);
        assert_eq!(version["STATUS"][0]["Code"], 22);
        assert_eq!(version["VERSION"][0]["API"], "3.7");
        let config = ask(r#"{"command":"config"}"#);
        assert_eq!(config["STATUS"][0]["Code"], 33);
        assert_eq!(config["CONFIG"][0]["Pool Count"], 2);
        assert_eq!(config["CONFIG"][0]["GPU Count"], 1);
        let stats = ask(r#"{"command":"stats"}"#);
        assert_eq!(stats["STATUS"][0]["Code"], 70);
        assert_eq!(stats["STATS"][1]["ID"], "CPU1");
    }

    #[test]
    fn plain_text_replies_use_cgminer_separators() {
        let reply = respond(b"summary", &snapshot(), &rig(), 5);
        assert!(
            reply.starts_with("STATUS=S,When=5,Code=11,Msg=Summary,Description=peerhash "),
            "{reply}"
        );
        assert!(
            reply.contains("|SUMMARY,Elapsed=120,MHS av=2.0,"),
            "{reply}"
        );
        assert!(reply.ends_with('|'), "{reply}");
        let joined = respond(b"version+quit\n", &snapshot(), &rig(), 5);
        assert!(joined.starts_with("CMD=version|STATUS=S,"), "{joined}");
        assert!(
            joined.contains("CMD=quit|STATUS=E,When=5,Code=45,"),
            "{joined}"
        );
        let devs = respond(b"devs", &snapshot(), &rig(), 5);
        assert!(
            devs.contains("|GPU=0,Name=GPU,ID=0,Device=gpu:0 llvmpipe,"),
            "{devs}"
        );
    }

    #[test]
    fn a_miner_without_devices_or_pools_says_so() {
        let empty = Snapshot::default();
        let reply = respond(b"{\"command\":\"devs\"}", &empty, &RigInfo::default(), 1);
        let reply: Value = serde_json::from_str(&reply).expect("JSON");
        assert_eq!(reply["STATUS"][0]["Code"], 10);
        let reply = respond(b"{\"command\":\"pools\"}", &empty, &RigInfo::default(), 1);
        let reply: Value = serde_json::from_str(&reply).expect("JSON");
        assert_eq!(reply["STATUS"][0]["Code"], 8);
    }

    #[test]
    fn the_server_answers_once_with_a_nul_and_closes() {
        let board = Arc::new(StatusBoard::new());
        board.publish(snapshot());
        let api = CgminerApi::start("127.0.0.1:0".parse().expect("addr"), board, rig())
            .expect("listening");
        for request in [&br#"{"command":"summary"}"#[..], b"summary"] {
            let mut stream = TcpStream::connect(api.addr()).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            stream.write_all(request).expect("send");
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).expect("the server closes");
            assert_eq!(
                reply.last(),
                Some(&0),
                "{}",
                String::from_utf8_lossy(&reply)
            );
            assert_eq!(reply.iter().filter(|&&b| b == 0).count(), 1);
        }
    }
}
