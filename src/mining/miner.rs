//! The miner loop: work source -> current job -> nonce ranges split over the backends (found nonces
//! are already re-checked on the CPU) -> submit queue, abandoning work as soon as new work
//! arrives. One hashing thread per device; the calling thread drives the work source.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::health::{DeviceEvent, DeviceHealth};
use super::job::{Job, Solution};
use super::source::{SourceError, SourceEvent, WorkSource};
use super::status::{
    DeviceStatus, PoolRecord, PoolStatus, Snapshot, StatusBoard, RATE_WINDOW_SECONDS,
};
use super::target;
use crate::hash::{BackendKind, HashError, KernelTarget, NonceSearcher, ScanJob, DEFAULT_DISPATCH};

/// A pool share target at a silly difficulty could make every nonce a winner: report at most
/// this many per scan.
const MAX_FOUND_PER_SCAN: usize = 64;
/// The smallest scan an easy target shrinks scans to.
const MIN_EASY_SCAN: u64 = 256;
const POLL_STEP: Duration = Duration::from_millis(20);
/// Found solutions waiting for a submit slot (only while a --shares/--blocks limit is close).
const MAX_HELD: usize = 256;
/// Jobs kept valid without a clean_jobs (a pool rebroadcasting every minute keeps them all).
const MAX_LIVE_JOBS: usize = 32;

/// After a stop, how long answers to submitted solutions are awaited.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How often the status board is refreshed.
const BOARD_EVERY: Duration = Duration::from_secs(1);

/// When to stop, how to size the work, where to publish status and which test hooks to run.
#[derive(Clone, Debug)]
pub struct MinerConfig {
    pub blocks: Option<u64>,
    pub shares: Option<u64>,
    pub duration: Option<Duration>,
    pub status_every: Option<Duration>,
    /// Nonces per GPU dispatch as a power of two, instead of tuning (CPUs are always tuned).
    pub intensity: Option<u8>,
    /// The time a tuned dispatch or scan call should take.
    pub dispatch: Duration,
    /// Refreshed about once a second for the status API.
    pub board: Option<Arc<StatusBoard>>,
    /// Test hook: submit one solution that does not meet the target, to see it rejected.
    pub submit_bad_share: bool,
    /// Temperatures, temperature limits and the watchdog's reports, per device.
    pub health: Option<Arc<DeviceHealth>>,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            blocks: None,
            shares: None,
            duration: None,
            status_every: None,
            intensity: None,
            dispatch: DEFAULT_DISPATCH,
            board: None,
            submit_bad_share: false,
            health: None,
        }
    }
}

pub use super::stats::{Outcome, Stats};

/// One thing worth telling a user or a script about; `--json` prints each as one line.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MinerEvent {
    Connected {
        url: String,
    },
    Disconnected {
        url: String,
        reason: String,
    },
    /// A node or pool could not be reached (once per new reason); retried in the background.
    Unreachable {
        url: String,
        reason: String,
    },
    NewJob {
        job: String,
        clean: bool,
        height: Option<u64>,
        /// The target solutions must meet, 64 hex digits, most significant first.
        target: String,
    },
    /// A device's work size was chosen: `nonces` per scan call (per dispatch on a GPU).
    Tuned {
        device: String,
        nonces: u64,
        /// `auto` (measured to take `dispatch_ms`) or `intensity`.
        tuning: String,
        dispatch_ms: Option<f64>,
    },
    /// The status API is listening.
    Api {
        url: String,
    },
    /// The cgminer API is listening on `addr` (`HOST:PORT`).
    CgminerApi {
        addr: String,
    },
    /// The hashing thread started on a job (measures the reaction time to new work).
    Hashing {
        job: String,
    },
    Difficulty {
        difficulty: f64,
    },
    Found {
        job: String,
        nonce: u32,
        hash: String,
        forced_bad: bool,
    },
    Accepted {
        job: String,
        nonce: u32,
        hash: String,
        block: bool,
    },
    Rejected {
        job: String,
        nonce: u32,
        hash: String,
        reason: String,
        stale: bool,
    },
    Status {
        url: String,
        device: String,
        /// Hashes per second since the previous status line, all devices together.
        hashrate: f64,
        devices: Vec<DeviceRate>,
        difficulty: Option<f64>,
        /// Whether the node or pool is reachable now (hashing pauses while it is not).
        connected: bool,
        #[serde(flatten)]
        stats: Stats,
    },
    Summary {
        url: String,
        device: String,
        seconds: f64,
        /// Average hashes per second over the whole run.
        hashrate: f64,
        #[serde(flatten)]
        stats: Stats,
    },
    Error {
        message: String,
    },
    /// A device paused, resumed, restarted or dropped (`device_paused`, ...).
    #[serde(untagged)]
    Device(DeviceEvent),
}

/// One device's share of the hash rate.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRate {
    pub name: String,
    /// Hashes per second.
    pub hashrate: f64,
    /// Degrees Celsius, where the device has a sensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// An event with its wall-clock time (seconds since the Unix epoch).
#[derive(Clone, Debug, Serialize)]
pub struct Timed {
    pub time: f64,
    #[serde(flatten)]
    pub event: MinerEvent,
}

impl Timed {
    /// `event`, stamped with the current time.
    #[must_use]
    pub fn now(event: MinerEvent) -> Self {
        Self { time: now(), event }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The job being hashed, with a generation number that changes with every new job.
struct Current {
    generation: u64,
    job: Option<Arc<Job>>,
}

struct Shared {
    current: Mutex<Current>,
    changed: Condvar,
    generation: AtomicU64,
    /// The next unsearched position of the current job: `roll << 32 | nonce`. Every device
    /// takes its next range from here, so several devices split one job without overlap.
    cursor: AtomicU64,
    /// A solo job whose block was found: no device should go on with it.
    finished: AtomicU64,
    stop: AtomicBool,
    /// Ranges of the current job that a device took and could not search (it failed, or the
    /// watchdog dropped it): the next device to ask for work searches them first.
    orphans: Mutex<Vec<Orphan>>,
}

/// A range of a job left unsearched: `count` nonces from `position` (`roll << 32 | nonce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Orphan {
    generation: u64,
    position: u64,
    count: u64,
}

impl Shared {
    fn new() -> Self {
        Self {
            current: Mutex::new(Current {
                generation: 0,
                job: None,
            }),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            orphans: Mutex::new(Vec::new()),
        }
    }

    fn orphans(&self) -> std::sync::MutexGuard<'_, Vec<Orphan>> {
        self.orphans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next range of job `generation` to search: an orphaned one first, else `size` nonces
    /// from the cursor. Returns `(position, count)`.
    fn next_range(&self, generation: u64, size: u64) -> (u64, u64) {
        let orphan = {
            let mut orphans = self.orphans();
            orphans.retain(|o| o.generation == generation);
            orphans.pop()
        };
        match orphan {
            Some(orphan) => (orphan.position, orphan.count),
            None => (self.cursor.fetch_add(size, Ordering::Relaxed), size),
        }
    }

    /// Hands a range back for another device (or a later try) to search.
    fn orphan(&self, generation: u64, position: u64, count: u64) {
        if self.generation.load(Ordering::Relaxed) == generation {
            self.orphans().push(Orphan {
                generation,
                position,
                count,
            });
        }
    }

    /// Hands every device `job`, or with `None` makes them stop and wait for the next one.
    fn set_job(&self, job: Option<Arc<Job>>) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.generation += 1;
        current.job = job;
        self.cursor.store(0, Ordering::Relaxed);
        self.orphans().clear();
        self.generation.store(current.generation, Ordering::Relaxed);
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// What one device's hashing thread has done.
#[derive(Default)]
struct DeviceCounters {
    hashes: AtomicU64,
    hw_errors: AtomicU64,
    errors: AtomicU64,
    /// Too hot: take no new range until it clears.
    paused: AtomicBool,
}

enum FromHasher {
    /// A job id and when hashing it began (seconds since the Unix epoch).
    Started(String, f64),
    Found(Solution),
    Failed(String),
}

/// One device's hashing thread: takes nonce ranges of the current job from the shared cursor
/// until a new job arrives or the job is used up.
fn hash_loop(
    index: usize,
    shared: &Shared,
    backend: &dyn NonceSearcher,
    counters: &DeviceCounters,
    announce: bool,
    out: &Sender<FromHasher>,
) {
    let mut done_generation = 0;
    // A very easy target (regtest, a tiny pool difficulty) makes many nonces winners, and each
    // winner is re-checked on the CPU: a scan then takes far longer than tuned. Scans shrink
    // until a few winners come per scan, and grow back when none do.
    let mut easy_limit = u64::MAX;
    while !shared.stop.load(Ordering::Relaxed) {
        let (generation, job) = {
            let mut current = shared
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while (current.job.is_none() || current.generation == done_generation)
                && !shared.stop.load(Ordering::Relaxed)
            {
                current = shared
                    .changed
                    .wait_timeout(current, Duration::from_millis(100))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            match &current.job {
                Some(job) => (current.generation, Arc::clone(job)),
                None => return,
            }
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        done_generation = generation;
        if announce {
            let _ = out.send(FromHasher::Started(job.id.clone(), now()));
        }
        let kernel_target = KernelTarget::from(job.target);
        let stale = || {
            shared.generation.load(Ordering::Relaxed) != generation
                || shared.finished.load(Ordering::Relaxed) == generation
                || shared.stop.load(Ordering::Relaxed)
        };
        let mut cached: Option<(u64, [u8; 80])> = None;
        while !stale() {
            if counters.paused.load(Ordering::Relaxed) {
                thread::sleep(POLL_STEP);
                continue;
            }
            // Sized by `tune`; read each time since a GPU that fails over changes it.
            let scan_size = backend.scan_slice().min(easy_limit).clamp(1, 1 << 32);
            let (position, scan_size) = shared.next_range(generation, scan_size);
            let (roll, first) = (position >> 32, position & 0xffff_ffff);
            let header = match cached {
                Some((r, header)) if r == roll => header,
                _ => match job.header(roll) {
                    Some(header) => {
                        cached = Some((roll, header));
                        header
                    }
                    None => break,
                },
            };
            // A range never crosses into the next roll: the rest of it is skipped.
            let count = scan_size.min((1 << 32) - first);
            let scan =
                ScanJob::new(&header, first, count, kernel_target).expect("range inside 2^32");
            let outcome = match backend.scan(&scan) {
                Ok(outcome) => outcome,
                // The watchdog has given up on it and said so; the other devices go on, and
                // search its range.
                Err(HashError::Dropped { .. }) => {
                    shared.orphan(generation, position, count);
                    return;
                }
                Err(e) => {
                    shared.orphan(generation, position, count);
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = out.send(FromHasher::Failed(format!("{}: {e}", backend.name())));
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            counters.hashes.fetch_add(outcome.hashes, Ordering::Relaxed);
            counters
                .hw_errors
                .fetch_add(outcome.hw_errors, Ordering::Relaxed);
            let winners = outcome.found.len() as u64 + outcome.hw_errors;
            // A solo job ends at its first block; a pool job is worth a few shares per scan.
            let wanted = if job.solo {
                1
            } else {
                MAX_FOUND_PER_SCAN as u64
            };
            if winners > wanted {
                easy_limit = (count * wanted / winners).max(MIN_EASY_SCAN);
            } else if winners == 0 {
                easy_limit = easy_limit.saturating_mul(2);
            }
            if job.solo && !outcome.found.is_empty() {
                // The block ends this job for every device; only one solution goes out.
                if shared.finished.swap(generation, Ordering::Relaxed) != generation {
                    let _ = out.send(FromHasher::Found(
                        Solution::new(Arc::clone(&job), roll, header, outcome.found[0])
                            .from_device(index),
                    ));
                }
                break;
            }
            for &nonce in outcome.found.iter().take(MAX_FOUND_PER_SCAN) {
                let _ = out.send(FromHasher::Found(
                    Solution::new(Arc::clone(&job), roll, header, nonce).from_device(index),
                ));
            }
        }
    }
}

/// A solution for `job` that meets neither its target nor the block target (the
/// forced-bad-share test hook; some pools accept anything under the block target).
fn bad_solution(job: &Arc<Job>) -> Option<Solution> {
    let header = job.header(0)?;
    let block_target =
        target::from_bits(u32::from_le_bytes(header[72..76].try_into().ok()?)).ok()?;
    (0..10_000u32)
        .map(|nonce| Solution::new(Arc::clone(job), 0, header, nonce))
        .find(|s| !s.meets_target() && !block_target.is_met_by(s.header.block_hash()))
}

/// Sizes one device's work as `config` asks; returns how (`auto` or `intensity`).
fn tune_device(backend: &dyn NonceSearcher, config: &MinerConfig) -> Result<&'static str, String> {
    match config.intensity {
        Some(intensity) if backend.kind() == BackendKind::Gpu => {
            backend.set_intensity(intensity);
            Ok("intensity")
        }
        _ => backend
            .tune(config.dispatch)
            .map(|_| "auto")
            .map_err(|e| format!("{}: tuning: {e}", backend.name())),
    }
}

/// Per-device hash counts over the last [`RATE_WINDOW_SECONDS`], for windowed rates.
struct RateWindow {
    samples: VecDeque<(Instant, Vec<u64>)>,
}

impl RateWindow {
    /// Adds a sample and returns hashes per second per device over the window.
    #[allow(clippy::cast_precision_loss)]
    fn push(&mut self, counts: Vec<u64>) -> Vec<f64> {
        let now = Instant::now();
        while self.samples.len() > 1
            && now.duration_since(self.samples[0].0).as_secs() > RATE_WINDOW_SECONDS
        {
            self.samples.pop_front();
        }
        let rates = match self.samples.front() {
            Some((then, old)) => {
                let seconds = now.duration_since(*then).as_secs_f64().max(1e-9);
                counts
                    .iter()
                    .zip(old)
                    .map(|(new, old)| new.saturating_sub(*old) as f64 / seconds)
                    .collect()
            }
            None => vec![0.0; counts.len()],
        };
        self.samples.push_back((now, counts));
        rates
    }
}

/// The miner loop's own state: jobs, solutions on their way, counters, what to report.
struct Driver<'a, E: FnMut(Timed)> {
    source: &'a mut dyn WorkSource,
    shared: &'a Shared,
    config: &'a MinerConfig,
    emit: E,
    stats: Stats,
    /// Jobs a solution may still be submitted for, by identity: a reconnected pool reuses ids.
    live_jobs: VecDeque<Arc<Job>>,
    bad_share_sent: bool,
    /// Solutions submitted and not yet answered, and found ones held back so that a --blocks
    /// or --shares limit is met exactly rather than overshot by shares in flight.
    in_flight: u64,
    held: VecDeque<Solution>,
    pool: PoolStatus,
    job_since: Option<Instant>,
    /// Share counts per device index and per pool used, for the status APIs.
    device_shares: Vec<Stats>,
    pools: Vec<PoolRecord>,
}

impl<'a, E: FnMut(Timed)> Driver<'a, E> {
    fn new(
        source: &'a mut dyn WorkSource,
        shared: &'a Shared,
        config: &'a MinerConfig,
        emit: E,
    ) -> Self {
        let pool = PoolStatus {
            url: source.url(),
            ..PoolStatus::default()
        };
        Self {
            source,
            shared,
            config,
            emit,
            stats: Stats::default(),
            live_jobs: VecDeque::new(),
            bad_share_sent: !config.submit_bad_share,
            in_flight: 0,
            held: VecDeque::new(),
            pool,
            job_since: None,
            device_shares: Vec::new(),
            pools: Vec::new(),
        }
    }

    /// The record of the pool at `url` (the one in use when `None`), made on first use.
    fn pool_record(&mut self, url: Option<&str>) -> &mut PoolRecord {
        let url = url.unwrap_or(&self.pool.url);
        let index = match self.pools.iter().position(|p| p.url == url) {
            Some(index) => index,
            None => {
                self.pools.push(PoolRecord {
                    url: url.to_owned(),
                    ..PoolRecord::default()
                });
                self.pools.len() - 1
            }
        };
        &mut self.pools[index]
    }

    /// Counts an answer to `solution` for the miner, its device and the pool in use.
    fn answered(&mut self, solution: &Solution, outcome: Outcome) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let at = now() as u64;
        let difficulty = solution.share_difficulty();
        self.stats.answered(outcome, difficulty, at);
        self.pool_record(None)
            .shares
            .answered(outcome, difficulty, at);
        if let Some(device) = solution.device {
            self.device(device).answered(outcome, difficulty, at);
        }
    }

    fn device(&mut self, index: usize) -> &mut Stats {
        if self.device_shares.len() <= index {
            self.device_shares.resize(index + 1, Stats::default());
        }
        &mut self.device_shares[index]
    }

    fn emit(&mut self, event: MinerEvent) {
        self.emit_at(now(), event);
    }

    fn emit_at(&mut self, time: f64, event: MinerEvent) {
        (self.emit)(Timed { time, event });
    }

    fn limit_reached(&self) -> bool {
        self.config.blocks.is_some_and(|n| self.stats.blocks >= n)
            || self
                .config
                .shares
                .is_some_and(|n| self.stats.accepted - self.stats.blocks >= n)
    }

    fn on_source(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::NewJob { job, clean } => {
                if clean {
                    self.live_jobs.clear();
                }
                if self.live_jobs.len() >= MAX_LIVE_JOBS {
                    self.live_jobs.pop_front();
                }
                self.live_jobs.push_back(Arc::clone(&job));
                let record = self.pool_record(None);
                record.jobs += 1;
                record.clean_jobs += u64::from(clean);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    record.last_job_time = Some(now() as u64);
                }
                self.pool.job = Some(job.id.clone());
                self.pool.height = job.height;
                self.job_since = Some(Instant::now());
                self.emit(MinerEvent::NewJob {
                    job: job.id.clone(),
                    clean,
                    height: job.height,
                    target: target::display(job.target),
                });
                if !self.bad_share_sent {
                    if let Some(solution) = bad_solution(&job) {
                        self.bad_share_sent = true;
                        self.emit(found_event(&solution, true));
                        self.in_flight += 1;
                        self.source.submit(solution);
                    }
                }
                self.shared.set_job(Some(job));
            }
            SourceEvent::Accepted { solution } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.answered(
                    &solution,
                    Outcome::Accepted {
                        block: solution.job.solo,
                    },
                );
                self.emit(MinerEvent::Accepted {
                    job: solution.job.id.clone(),
                    nonce: solution.nonce(),
                    hash: solution.header.block_hash().to_string(),
                    block: solution.job.solo,
                });
            }
            SourceEvent::Rejected {
                solution,
                reason,
                stale,
            } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let outcome = if stale {
                    Outcome::Stale
                } else {
                    Outcome::Rejected
                };
                self.answered(&solution, outcome);
                self.emit(rejected_event(&solution, reason, stale));
            }
            SourceEvent::Connected { url } => {
                self.live_jobs.clear();
                self.pool.connected = true;
                self.pool.url.clone_from(&url);
                self.emit(MinerEvent::Connected { url });
            }
            SourceEvent::Disconnected { url, reason } => {
                self.pool_record(Some(&url)).failures += 1;
                self.pool.connected = false;
                self.pool.last_error = Some(reason.clone());
                // Shares of a dead session cannot be submitted, and a node that went away may
                // come back on another chain: the devices wait for fresh work instead.
                self.shared.set_job(None);
                self.pool.job = None;
                self.job_since = None;
                tracing::warn!("lost {url}: {reason}; hashing paused until it is back");
                self.emit(MinerEvent::Disconnected { url, reason });
            }
            SourceEvent::Unreachable { url, reason } => {
                self.pool_record(Some(&url)).failures += 1;
                self.pool.connected = false;
                self.pool.last_error = Some(reason.clone());
                tracing::warn!("cannot use {url}: {reason}; retrying");
                self.emit(MinerEvent::Unreachable { url, reason });
            }
            SourceEvent::Difficulty { difficulty } => {
                self.emit(MinerEvent::Difficulty { difficulty });
            }
        }
    }

    fn on_hasher(&mut self, message: FromHasher) {
        match message {
            FromHasher::Started(job, at) => self.emit_at(at, MinerEvent::Hashing { job }),
            FromHasher::Failed(message) => {
                self.pool.last_error = Some(message.clone());
                self.emit(MinerEvent::Error { message });
            }
            FromHasher::Found(solution) => {
                let difficulty = solution.hash_difficulty();
                self.stats.found(difficulty);
                if let Some(device) = solution.device {
                    self.device(device).found(difficulty);
                }
                self.emit(found_event(&solution, false));
                if self.held.len() < MAX_HELD {
                    self.held.push_back(solution);
                }
            }
        }
    }

    /// Submits held solutions whose job is still live, up to the --blocks/--shares limits.
    fn submit_held(&mut self) {
        while let Some(solution) = self.held.front() {
            if !self.live_jobs.iter().any(|j| Arc::ptr_eq(j, &solution.job)) {
                let solution = self.held.pop_front().expect("front exists");
                self.answered(&solution, Outcome::Stale);
                self.emit(rejected_event(
                    &solution,
                    "job replaced before submit".into(),
                    true,
                ));
                continue;
            }
            let (stats, in_flight) = (&self.stats, self.in_flight);
            let enough = if solution.job.solo {
                self.config
                    .blocks
                    .is_some_and(|n| stats.blocks + in_flight >= n)
            } else {
                self.config
                    .shares
                    .is_some_and(|n| stats.accepted - stats.blocks + in_flight >= n)
            };
            if enough {
                break;
            }
            let solution = self.held.pop_front().expect("front exists");
            self.in_flight += 1;
            self.source.submit(solution);
        }
    }

    /// Polls the source once and handles what it and the hashers have to say.
    fn step(&mut self, hashers: &Receiver<FromHasher>) -> Result<(), SourceError> {
        for event in self.source.poll(POLL_STEP)? {
            self.on_source(event);
        }
        while let Ok(message) = hashers.try_recv() {
            self.on_hasher(message);
        }
        self.submit_held();
        Ok(())
    }

    /// After the hashers stopped: submits what they found while the job is still valid and
    /// waits (bounded) for the answers, so a stop loses no share that could still count.
    fn drain(&mut self, hashers: &Receiver<FromHasher>) -> Result<(), SourceError> {
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            self.step(hashers)?;
            if self.in_flight == 0 || self.limit_reached() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let message = format!(
                    "stopping with {} submitted solution(s) unanswered after {DRAIN_LIMIT:?}",
                    self.in_flight
                );
                self.emit(MinerEvent::Error { message });
                return Ok(());
            }
        }
    }
}

/// The devices and their hashing threads, one per device.
struct Devices<'a> {
    backends: &'a [Arc<dyn NonceSearcher>],
    counters: Vec<Arc<DeviceCounters>>,
    /// How each device was sized: `auto`, `intensity` or `default` (tuning failed).
    tunings: Vec<&'static str>,
    threads: Vec<thread::JoinHandle<()>>,
    found: Receiver<FromHasher>,
}

impl<'a> Devices<'a> {
    /// Starts one hashing thread per device; they wait for the first job.
    fn start(
        backends: &'a [Arc<dyn NonceSearcher>],
        tunings: Vec<&'static str>,
        shared: &Arc<Shared>,
    ) -> Self {
        let counters: Vec<Arc<DeviceCounters>> = backends
            .iter()
            .map(|_| Arc::new(DeviceCounters::default()))
            .collect();
        let (tx, found) = mpsc::channel();
        let threads = backends
            .iter()
            .zip(&counters)
            .enumerate()
            .map(|(i, (backend, counters))| {
                let (shared, backend, counters, tx) = (
                    Arc::clone(shared),
                    Arc::clone(backend),
                    Arc::clone(counters),
                    tx.clone(),
                );
                thread::Builder::new()
                    .name(format!("peerhash-miner-{i}"))
                    .spawn(move || {
                        hash_loop(i, &shared, backend.as_ref(), &counters, i == 0, &tx);
                    })
                    .expect("spawning a thread")
            })
            .collect();
        Self {
            backends,
            counters,
            tunings,
            threads,
            found,
        }
    }

    /// Per-device hash counts, with the totals brought up to date in `stats` on the way.
    fn refresh(&self, stats: &mut Stats) -> Vec<u64> {
        let counts: Vec<u64> = self
            .counters
            .iter()
            .map(|c| c.hashes.load(Ordering::Relaxed))
            .collect();
        stats.hashes = counts.iter().sum();
        stats.hw_errors = self
            .counters
            .iter()
            .map(|c| c.hw_errors.load(Ordering::Relaxed))
            .sum();
        counts
    }

    /// Named at each report: a GPU that failed over to the CPU says so.
    fn names(&self) -> String {
        self.backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Polls temperatures and the watchdog's reports, and pauses or resumes devices.
    fn watch_health<E: FnMut(Timed)>(&self, driver: &mut Driver<'_, E>) {
        let Some(health) = &driver.config.health else {
            return;
        };
        for event in health.poll(self.backends) {
            driver.emit(MinerEvent::Device(event));
        }
        for (index, c) in self.counters.iter().enumerate() {
            c.paused.store(health.is_paused(index), Ordering::Relaxed);
        }
    }

    fn temperature(&self, config: &MinerConfig, index: usize) -> Option<f64> {
        config.health.as_ref().and_then(|h| h.temperature(index))
    }

    fn statuses(&self, config: &MinerConfig, rates: &[f64], shares: &[Stats]) -> Vec<DeviceStatus> {
        self.backends
            .iter()
            .zip(&self.counters)
            .zip(rates.iter().zip(&self.tunings))
            .enumerate()
            .map(|(index, ((backend, c), (rate, tuning)))| DeviceStatus {
                index,
                name: backend.name(),
                kind: match backend.kind() {
                    BackendKind::Cpu => "cpu".into(),
                    BackendKind::Gpu => "gpu".into(),
                },
                hashrate: *rate,
                hashes: c.hashes.load(Ordering::Relaxed),
                hw_errors: c.hw_errors.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                scan_nonces: backend.scan_slice(),
                tuning: (*tuning).into(),
                temperature_c: self.temperature(config, index),
                paused: c.paused.load(Ordering::Relaxed),
                shares: Stats {
                    hashes: c.hashes.load(Ordering::Relaxed),
                    hw_errors: c.hw_errors.load(Ordering::Relaxed),
                    ..shares.get(index).cloned().unwrap_or_default()
                },
            })
            .collect()
    }

    /// Stops the hashing threads and waits for them (each finishes its scan in progress).
    fn stop(&mut self, shared: &Shared) {
        shared.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Sizes every device as `config` asks, one after another: devices measured side by side
/// would slow each other down.
fn tune_all<E: FnMut(Timed)>(
    backends: &[Arc<dyn NonceSearcher>],
    driver: &mut Driver<'_, E>,
) -> Vec<&'static str> {
    let config = driver.config;
    backends
        .iter()
        .map(|backend| match tune_device(backend.as_ref(), config) {
            Ok(tuning) => {
                driver.emit(MinerEvent::Tuned {
                    device: backend.name(),
                    nonces: backend.scan_slice(),
                    tuning: tuning.into(),
                    dispatch_ms: (tuning == "auto").then_some(config.dispatch.as_secs_f64() * 1e3),
                });
                tuning
            }
            Err(message) => {
                driver.emit(MinerEvent::Error { message });
                "default"
            }
        })
        .collect()
}

/// The periodic reports: the status board (about once a second) and status lines.
struct Reports {
    started: Instant,
    window: RateWindow,
    last_board: Option<Instant>,
    last_status: (Instant, Vec<u64>),
}

impl Reports {
    fn new(started: Instant, devices: usize) -> Self {
        Self {
            started,
            window: RateWindow {
                samples: VecDeque::new(),
            },
            last_board: None,
            last_status: (Instant::now(), vec![0; devices]),
        }
    }

    fn publish_board<E: FnMut(Timed)>(&mut self, driver: &mut Driver<'_, E>, devices: &Devices) {
        let Some(board) = &driver.config.board else {
            return;
        };
        if self.last_board.is_some_and(|t| t.elapsed() < BOARD_EVERY) {
            return;
        }
        self.last_board = Some(Instant::now());
        let rates = self.window.push(devices.refresh(&mut driver.stats));
        driver.pool.difficulty = driver.source.difficulty();
        if let Some(error) = driver.source.last_error() {
            driver.pool.last_error = Some(error);
        }
        driver.pool.job_age_seconds = driver.job_since.map(|t| t.elapsed().as_secs_f64());
        let seconds = self.started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        board.publish(Snapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: seconds,
            hashrate: rates.iter().sum(),
            hashrate_average: driver.stats.hashes as f64 / seconds.max(1e-9),
            pool: driver.pool.clone(),
            shares: driver.stats.clone(),
            devices: devices.statuses(driver.config, &rates, &driver.device_shares),
            pools: driver.pools.clone(),
        });
    }

    fn status_line<E: FnMut(Timed)>(&mut self, driver: &mut Driver<'_, E>, devices: &Devices) {
        let Some(every) = driver.config.status_every else {
            return;
        };
        if self.last_status.0.elapsed() < every {
            return;
        }
        let counts = devices.refresh(&mut driver.stats);
        let seconds = self.last_status.0.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rates: Vec<DeviceRate> = devices
            .backends
            .iter()
            .zip(counts.iter().zip(&self.last_status.1))
            .enumerate()
            .map(|(index, (backend, (now, last)))| DeviceRate {
                name: backend.name(),
                hashrate: (now - last) as f64 / seconds,
                temperature_c: devices.temperature(driver.config, index),
                paused: devices.counters[index].paused.load(Ordering::Relaxed),
            })
            .collect();
        self.last_status = (Instant::now(), counts);
        driver.emit(MinerEvent::Status {
            url: driver.source.url(),
            device: devices.names(),
            hashrate: rates.iter().map(|d| d.hashrate).sum(),
            devices: rates,
            difficulty: driver.source.difficulty(),
            connected: driver.pool.connected,
            stats: driver.stats.clone(),
        });
    }
}

/// Runs until a limit in `config` is reached or `interrupt` is set; `emit` sees every event.
/// On a stop, solutions already found are still submitted and their answers awaited (briefly).
///
/// # Errors
/// A fatal work source problem (bad credentials, an address the node refuses, bad work).
pub fn run(
    source: &mut dyn WorkSource,
    backends: &[Arc<dyn NonceSearcher>],
    config: &MinerConfig,
    interrupt: &AtomicBool,
    emit: impl FnMut(Timed),
) -> Result<Stats, SourceError> {
    let started = Instant::now();
    let shared = Arc::new(Shared::new());
    let mut driver = Driver::new(source, &shared, config, emit);
    let tunings = tune_all(backends, &mut driver);
    let mut devices = Devices::start(backends, tunings, &shared);
    let mut reports = Reports::new(started, backends.len());
    let result = loop {
        if interrupt.load(Ordering::Relaxed)
            || driver.limit_reached()
            || config.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break Ok(());
        }
        if let Err(e) = driver.step(&devices.found) {
            break Err(e);
        }
        devices.watch_health(&mut driver);
        reports.publish_board(&mut driver, &devices);
        reports.status_line(&mut driver, &devices);
    };
    devices.stop(&shared);
    let result = result.and_then(|()| driver.drain(&devices.found));
    devices.refresh(&mut driver.stats);
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let hashrate = driver.stats.hashes as f64 / seconds.max(1e-9);
    let stats = driver.stats.clone();
    driver.emit(MinerEvent::Summary {
        url: driver.source.url(),
        device: devices.names(),
        seconds,
        hashrate,
        stats: stats.clone(),
    });
    result.map(|()| stats)
}

fn found_event(solution: &Solution, forced_bad: bool) -> MinerEvent {
    MinerEvent::Found {
        job: solution.job.id.clone(),
        nonce: solution.nonce(),
        hash: solution.header.block_hash().to_string(),
        forced_bad,
    }
}

fn rejected_event(solution: &Solution, reason: String, stale: bool) -> MinerEvent {
    MinerEvent::Rejected {
        job: solution.job.id.clone(),
        nonce: solution.nonce(),
        hash: solution.header.block_hash().to_string(),
        reason,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{BackendKind, Device, ScanOutcome};
    use crate::mining::job::{JobExtra, JobWork};
    use bitcoin::Target;

    /// Records every range it is given; fails them all (`Dropped` or a plain error) when told.
    struct Recorder {
        ranges: Mutex<Vec<(u32, u64)>>,
        fail: Option<fn() -> HashError>,
    }

    impl Device for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn kind(&self) -> BackendKind {
            BackendKind::Cpu
        }
    }

    impl NonceSearcher for Recorder {
        fn scan_slice(&self) -> u64 {
            1 << 28
        }
        fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
            self.ranges
                .lock()
                .expect("ranges")
                .push((job.start, job.count));
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            thread::sleep(Duration::from_millis(2));
            Ok(ScanOutcome {
                found: Vec::new(),
                hashes: job.count,
                hw_errors: 0,
            })
        }
    }

    fn searches_what_a_failing_device_left(fail: fn() -> HashError) {
        let shared = Arc::new(Shared::new());
        let job = Arc::new(Job {
            id: "header".into(),
            work: JobWork::Header([0; 80]),
            target: Target::ZERO,
            solo: false,
            height: None,
            extra: JobExtra::None,
        });
        let failing = Arc::new(Recorder {
            ranges: Mutex::new(Vec::new()),
            fail: Some(fail),
        });
        let good = Arc::new(Recorder {
            ranges: Mutex::new(Vec::new()),
            fail: None,
        });
        let (tx, _rx) = mpsc::channel();
        shared.set_job(Some(job));
        let threads: Vec<_> = [Arc::clone(&failing), Arc::clone(&good)]
            .into_iter()
            .enumerate()
            .map(|(i, backend)| {
                let (shared, tx) = (Arc::clone(&shared), tx.clone());
                thread::spawn(move || {
                    hash_loop(
                        i,
                        &shared,
                        backend.as_ref(),
                        &DeviceCounters::default(),
                        false,
                        &tx,
                    );
                })
            })
            .collect();
        // The job is 2^32 nonces, 16 ranges of 2^28: wait (bounded) until all are searched.
        let all: Vec<(u32, u64)> = (0..16).map(|i| (i << 28, 1 << 28)).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let searched = || {
            let mut ranges = good.ranges.lock().expect("ranges").clone();
            ranges.sort_unstable();
            ranges.dedup();
            ranges
        };
        while searched() != all && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        shared.stop();
        for thread in threads {
            thread.join().expect("hash loop");
        }
        assert!(!failing.ranges.lock().expect("ranges").is_empty());
        assert_eq!(searched(), all, "the good device searched every range");
    }

    #[test]
    fn a_dropped_devices_range_is_searched_by_another() {
        searches_what_a_failing_device_left(|| HashError::Dropped {
            device: "gpu:9".into(),
            restarts: 3,
            reason: "test".into(),
        });
    }

    #[test]
    fn a_failed_scans_range_is_searched_again() {
        searches_what_a_failing_device_left(|| HashError::ZeroPieceLength);
    }
}
