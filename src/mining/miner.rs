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

use super::job::{Job, Solution};
use super::source::{SourceError, SourceEvent, WorkSource};
use super::target;
use crate::hash::{Backend, ScanJob};

/// Nonces per scan adapt so that one scan takes about this long: short enough to drop stale
/// work quickly, long enough to keep a GPU busy.
const SCAN_GOAL: Duration = Duration::from_millis(25);
const FIRST_SCAN: u64 = 1 << 14;
const MIN_SCAN: u64 = 1 << 10;
/// A pool share target at a silly difficulty could make every nonce a winner: report at most
/// this many per scan.
const MAX_FOUND_PER_SCAN: usize = 64;
const POLL_STEP: Duration = Duration::from_millis(20);
/// Found solutions waiting for a submit slot (only while a --shares/--blocks limit is close).
const MAX_HELD: usize = 256;
/// Jobs kept valid without a clean_jobs (a pool rebroadcasting every minute keeps them all).
const MAX_LIVE_JOBS: usize = 32;

/// When to stop and which test hooks to run.
#[derive(Clone, Debug, Default)]
pub struct MinerConfig {
    pub blocks: Option<u64>,
    pub shares: Option<u64>,
    pub duration: Option<Duration>,
    pub status_every: Option<Duration>,
    /// Test hook: submit one solution that does not meet the target, to see it rejected.
    pub submit_bad_share: bool,
}

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
    NewJob {
        job: String,
        clean: bool,
        height: Option<u64>,
        /// The target solutions must meet, 64 hex digits, most significant first.
        target: String,
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
}

/// One device's share of the hash rate.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRate {
    pub name: String,
    /// Hashes per second.
    pub hashrate: f64,
}

/// An event with its wall-clock time (seconds since the Unix epoch).
#[derive(Clone, Debug, Serialize)]
pub struct Timed {
    pub time: f64,
    #[serde(flatten)]
    pub event: MinerEvent,
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
    hw_errors: AtomicU64,
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
    shared: &Shared,
    backend: &dyn Backend,
    hashes: &AtomicU64,
    announce: bool,
    out: &Sender<FromHasher>,
) {
    let mut scan_size = FIRST_SCAN;
    let mut done_generation = 0;
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
        let words = target::words(job.target);
        let stale = || {
            shared.generation.load(Ordering::Relaxed) != generation
                || shared.finished.load(Ordering::Relaxed) == generation
                || shared.stop.load(Ordering::Relaxed)
        };
        let mut cached: Option<(u64, [u8; 80])> = None;
        while !stale() {
            let position = shared.cursor.fetch_add(scan_size, Ordering::Relaxed);
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
            let scan = ScanJob::new(&header, first, count, words).expect("range inside 2^32");
            let started = Instant::now();
            let outcome = match backend.scan(&scan) {
                Ok(outcome) => outcome,
                Err(e) => {
                    let _ = out.send(FromHasher::Failed(format!("{}: {e}", backend.name())));
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let took = started.elapsed();
            // Grow until a scan takes SCAN_GOAL; shrink only well past it, so the size
            // settles instead of swinging (and splits evenly over the CPU's workers).
            if took < SCAN_GOAL {
                scan_size = (scan_size * 2).min(1 << 32);
            } else if took > SCAN_GOAL * 4 {
                scan_size = (scan_size / 2).max(MIN_SCAN);
            }
            hashes.fetch_add(outcome.hashes, Ordering::Relaxed);
            shared
                .hw_errors
                .fetch_add(outcome.hw_errors, Ordering::Relaxed);
            if job.solo && !outcome.found.is_empty() {
                // The block ends this job for every device; only one solution goes out.
                if shared.finished.swap(generation, Ordering::Relaxed) != generation {
                    let _ = out.send(FromHasher::Found(Solution::new(
                        Arc::clone(&job),
                        roll,
                        header,
                        outcome.found[0],
                    )));
                }
                break;
            }
            for &nonce in outcome.found.iter().take(MAX_FOUND_PER_SCAN) {
                let _ = out.send(FromHasher::Found(Solution::new(
                    Arc::clone(&job),
                    roll,
                    header,
                    nonce,
                )));
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

/// Runs until a limit in `config` is reached or `interrupt` is set; `emit` sees every event.
///
/// # Errors
/// A fatal work source problem (bad credentials, an address the node refuses, bad work).
pub fn run(
    source: &mut dyn WorkSource,
    backends: &[Arc<dyn Backend>],
    config: &MinerConfig,
    interrupt: &AtomicBool,
    emit: impl FnMut(Timed),
) -> Result<Stats, SourceError> {
    let shared = Arc::new(Shared {
        current: Mutex::new(Current {
            generation: 0,
            job: None,
        }),
        changed: Condvar::new(),
        generation: AtomicU64::new(0),
        cursor: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        hw_errors: AtomicU64::new(0),
    });
    let device_hashes: Vec<Arc<AtomicU64>> = backends
        .iter()
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let (tx, rx): (Sender<FromHasher>, Receiver<FromHasher>) = mpsc::channel();
    let hashers: Vec<_> = backends
        .iter()
        .zip(&device_hashes)
        .enumerate()
        .map(|(i, (backend, hashes))| {
            let (shared, backend, hashes, tx) = (
                Arc::clone(&shared),
                Arc::clone(backend),
                Arc::clone(hashes),
                tx.clone(),
            );
            thread::Builder::new()
                .name(format!("peerhash-miner-{i}"))
                .spawn(move || hash_loop(&shared, backend.as_ref(), &hashes, i == 0, &tx))
                .expect("spawning a thread")
        })
        .collect();
    drop(tx);
    let total_hashes = || {
        device_hashes
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut last_device_hashes: Vec<u64> = vec![0; backends.len()];
    let sink = std::cell::RefCell::new(emit);
    let emit_at = |time: f64, event: MinerEvent| (sink.borrow_mut())(Timed { time, event });
    let emit = |event: MinerEvent| emit_at(now(), event);
    // Named at each report: a GPU that failed over to the CPU says so.
    let device = || {
        backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let started = Instant::now();
    let mut stats = Stats::default();
    // Jobs a solution may still be submitted for, by identity: a reconnected pool reuses ids.
    let mut live_jobs: VecDeque<Arc<Job>> = VecDeque::new();
    let mut bad_share_sent = !config.submit_bad_share;
    // Solutions submitted and not yet answered, and found ones held back so that a --blocks or
    // --shares limit is met exactly rather than overshot by shares in flight.
    let mut in_flight: u64 = 0;
    let mut held: VecDeque<Solution> = VecDeque::new();
    let mut last_status = (Instant::now(), 0u64);
    let result = loop {
        if interrupt.load(Ordering::Relaxed)
            || config.blocks.is_some_and(|n| stats.blocks >= n)
            || config
                .shares
                .is_some_and(|n| stats.accepted - stats.blocks >= n)
            || config.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break Ok(());
        }
        let events = match source.poll(POLL_STEP) {
            Ok(events) => events,
            Err(e) => break Err(e),
        };
        for event in events {
            match event {
                SourceEvent::NewJob { job, clean } => {
                    if clean {
                        live_jobs.clear();
                    }
                    if live_jobs.len() >= MAX_LIVE_JOBS {
                        live_jobs.pop_front();
                    }
                    live_jobs.push_back(Arc::clone(&job));
                    emit(MinerEvent::NewJob {
                        job: job.id.clone(),
                        clean,
                        height: job.height,
                        target: target::display(job.target),
                    });
                    if !bad_share_sent {
                        if let Some(solution) = bad_solution(&job) {
                            bad_share_sent = true;
                            emit(found_event(&solution, true));
                            in_flight += 1;
                            source.submit(solution);
                        }
                    }
                    let mut current = shared
                        .current
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    current.generation += 1;
                    current.job = Some(job);
                    shared.cursor.store(0, Ordering::Relaxed);
                    shared
                        .generation
                        .store(current.generation, Ordering::Relaxed);
                    shared.changed.notify_all();
                }
                SourceEvent::Accepted { solution } => {
                    in_flight = in_flight.saturating_sub(1);
                    stats.accepted += 1;
                    if solution.job.solo {
                        stats.blocks += 1;
                    }
                    emit(MinerEvent::Accepted {
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
                    in_flight = in_flight.saturating_sub(1);
                    if stale {
                        stats.stale += 1;
                    } else {
                        stats.rejected += 1;
                    }
                    emit(rejected_event(&solution, reason, stale));
                }
                SourceEvent::Connected { url } => {
                    live_jobs.clear();
                    emit(MinerEvent::Connected { url });
                }
                SourceEvent::Disconnected { url, reason } => {
                    emit(MinerEvent::Disconnected { url, reason })
                }
                SourceEvent::Difficulty { difficulty } => {
                    emit(MinerEvent::Difficulty { difficulty })
                }
            }
        }
        while let Ok(message) = rx.try_recv() {
            match message {
                FromHasher::Started(job, at) => emit_at(at, MinerEvent::Hashing { job }),
                FromHasher::Failed(message) => emit(MinerEvent::Error { message }),
                FromHasher::Found(solution) => {
                    stats.found += 1;
                    emit(found_event(&solution, false));
                    if held.len() < MAX_HELD {
                        held.push_back(solution);
                    }
                }
            }
        }
        while let Some(solution) = held.front() {
            if !live_jobs.iter().any(|j| Arc::ptr_eq(j, &solution.job)) {
                let solution = held.pop_front().expect("front exists");
                stats.stale += 1;
                emit(rejected_event(
                    &solution,
                    "job replaced before submit".into(),
                    true,
                ));
                continue;
            }
            let enough = if solution.job.solo {
                config.blocks.is_some_and(|n| stats.blocks + in_flight >= n)
            } else {
                config
                    .shares
                    .is_some_and(|n| stats.accepted - stats.blocks + in_flight >= n)
            };
            if enough {
                break;
            }
            let solution = held.pop_front().expect("front exists");
            in_flight += 1;
            source.submit(solution);
        }
        if let Some(every) = config.status_every {
            if last_status.0.elapsed() >= every {
                let hashes = total_hashes();
                let seconds = last_status.0.elapsed().as_secs_f64();
                #[allow(clippy::cast_precision_loss)]
                let hashrate = (hashes - last_status.1) as f64 / seconds;
                #[allow(clippy::cast_precision_loss)]
                let devices = backends
                    .iter()
                    .zip(&device_hashes)
                    .zip(last_device_hashes.iter_mut())
                    .map(|((backend, now), last)| {
                        let now = now.load(Ordering::Relaxed);
                        let rate = (now - *last) as f64 / seconds;
                        *last = now;
                        DeviceRate {
                            name: backend.name(),
                            hashrate: rate,
                        }
                    })
                    .collect();
                last_status = (Instant::now(), hashes);
                stats.hashes = hashes;
                stats.hw_errors = shared.hw_errors.load(Ordering::Relaxed);
                emit(MinerEvent::Status {
                    url: source.url(),
                    device: device(),
                    hashrate,
                    devices,
                    difficulty: source.difficulty(),
                    stats: stats.clone(),
                });
            }
        }
    };
    shared.stop.store(true, Ordering::Relaxed);
    shared.changed.notify_all();
    for hasher in hashers {
        let _ = hasher.join();
    }
    stats.hashes = total_hashes();
    stats.hw_errors = shared.hw_errors.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let hashrate = stats.hashes as f64 / seconds.max(1e-9);
    emit(MinerEvent::Summary {
        url: source.url(),
        device: device(),
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
