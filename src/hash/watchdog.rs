//! The device watchdog: a GPU whose scan call fails or does not return in time is reopened and
//! the call is searched again on the fresh device; after too many restarts in a while it is
//! dropped, and the caller's other devices (or the CPU behind a fallback) take its work.
//!
//! A stalled call cannot be interrupted (a hung driver call holds the thread), so every call
//! runs on a worker thread the watchdog owns, one per opened device: on a stall the worker is
//! abandoned with its device (it ends by itself if the call ever returns) and the caller waits
//! no longer than the stall limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::bulk::{BulkItem, BulkJob, BulkReport, BulkResult};
use super::{
    Algo, Backend, BackendKind, BulkHasher, Device, Hardware, HashError, NonceSearcher, ScanJob,
    ScanOutcome, Sha1Digest, Sha256Digest,
};

/// When the watchdog steps in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// A scan call running longer than this is a stall (the device hashes nothing meanwhile).
    pub stall: Duration,
    /// Restarts allowed within [`WatchdogConfig::window`]; one more failure drops the device.
    pub max_restarts: u32,
    pub window: Duration,
    /// Extra time for a device's first call and for tuning, which compile the kernel.
    pub warm_up: Duration,
}

impl WatchdogConfig {
    /// Stalls after `stall`; three restarts within ten minutes at most.
    #[must_use]
    pub fn new(stall: Duration) -> Self {
        Self {
            stall,
            max_restarts: 3,
            window: Duration::from_secs(600),
            warm_up: Duration::from_secs(60),
        }
    }
}

/// What the watchdog did, for the miner's events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WatchdogEvent {
    pub device: String,
    /// `restarted` or `dropped`.
    pub action: WatchdogAction,
    pub reason: String,
    /// Restarts within the window so far.
    pub restarts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchdogAction {
    Restarted,
    Dropped,
}

/// Watchdog settings and where its events go; [`Watchdog::watch`] wraps each GPU as it opens.
#[derive(Clone, Debug)]
pub struct Watchdog {
    pub config: WatchdogConfig,
    events: Arc<Mutex<VecDeque<WatchdogEvent>>>,
}

/// Events kept for [`Watchdog::take_events`] (a device restarts at most a few times).
const MAX_EVENTS: usize = 256;

impl Watchdog {
    #[must_use]
    pub fn new(config: WatchdogConfig) -> Self {
        Self {
            config,
            events: Arc::default(),
        }
    }

    /// `device` under the watchdog when it is a GPU that can be reopened; the CPU as it is.
    #[must_use]
    pub fn watch(&self, device: Arc<dyn Backend>) -> Arc<dyn Backend> {
        if device.kind() != BackendKind::Gpu {
            return device;
        }
        Arc::new(Watched::new(device, self.clone()))
    }

    /// The events since the last call, oldest first.
    #[must_use]
    pub fn take_events(&self) -> Vec<WatchdogEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }

    fn tell(&self, event: WatchdogEvent) {
        match event.action {
            WatchdogAction::Restarted => tracing::warn!(
                "{}: {}; restarting it (restart {} of {} allowed in {:?})",
                event.device,
                event.reason,
                event.restarts,
                self.config.max_restarts,
                self.config.window
            ),
            WatchdogAction::Dropped => tracing::warn!(
                "{}: {}; dropped after {} restarts, the other devices go on",
                event.device,
                event.reason,
                event.restarts
            ),
        }
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }
}

type Call = Box<dyn FnOnce(&dyn Backend) + Send>;
/// A call the watchdog may run more than once, on each reopened device.
type Work<T> = Arc<dyn Fn(&dyn Backend) -> Result<T, HashError> + Send + Sync>;

/// One opened device and the worker thread its calls run on.
struct Instance {
    device: Arc<dyn Backend>,
    /// `None` only while the instance is dropped.
    calls: Option<Sender<Call>>,
    worker: Option<JoinHandle<()>>,
    /// Has answered a call: its kernel is compiled, so no warm-up time any more.
    warm: AtomicBool,
    /// A call of its stalled: its worker may never return, so nobody waits for it.
    abandoned: AtomicBool,
}

/// An instance that is not abandoned waits for its worker to end, so that the device is
/// released before the caller goes on. Without it the worker may still be destroying its
/// device while the process exits and the driver's exit handlers run, which crashed lavapipe.
impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.calls.take());
        if let Some(worker) = self.worker.take() {
            if !self.abandoned.load(Ordering::Relaxed) {
                let _ = worker.join();
            }
        }
    }
}

impl Instance {
    fn start(device: Arc<dyn Backend>) -> Result<Arc<Self>, HashError> {
        let (calls, inbox) = mpsc::channel::<Call>();
        let worker = Arc::clone(&device);
        let worker = thread::Builder::new()
            .name("peerhash-watchdog".into())
            .spawn(move || {
                // Ends when the watchdog drops the sender: replaced, or the device is gone.
                for call in inbox {
                    call(&*worker);
                }
            })
            .map_err(HashError::Io)?;
        Ok(Arc::new(Self {
            device,
            calls: Some(calls),
            worker: Some(worker),
            warm: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        }))
    }
}

struct State {
    instance: Arc<Instance>,
    /// Changes with every restart, so that two callers seeing one failure restart once.
    generation: u64,
    recent: VecDeque<Instant>,
    dropped: Option<HashError>,
}

/// A GPU under the watchdog.
pub struct Watched {
    watchdog: Watchdog,
    state: Mutex<State>,
    /// The name at opening, for events after the device is gone.
    name: String,
}

impl Watched {
    /// # Panics
    /// When no thread can be spawned for the device's calls.
    fn new(device: Arc<dyn Backend>, watchdog: Watchdog) -> Self {
        let name = device.name();
        let instance = Instance::start(device).expect("spawning the device's worker thread");
        Self {
            watchdog,
            state: Mutex::new(State {
                instance,
                generation: 0,
                recent: VecDeque::new(),
                dropped: None,
            }),
            name,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn device(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.state().instance.device)
    }

    /// Runs `work` on the device's worker, restarting the device and running it again while
    /// it fails or stalls, until it answers or is dropped.
    fn call<T: Send + 'static>(
        &self,
        what: &str,
        slow: bool,
        work: Work<T>,
    ) -> Result<T, HashError> {
        loop {
            let (instance, generation) = {
                let state = self.state();
                if let Some(dropped) = &state.dropped {
                    return Err(clone_dropped(dropped));
                }
                (Arc::clone(&state.instance), state.generation)
            };
            let config = &self.watchdog.config;
            let limit = if slow || !instance.warm.load(Ordering::Relaxed) {
                config.stall + config.warm_up
            } else {
                config.stall
            };
            let (answer, answered) = mpsc::sync_channel(1);
            let job = Arc::clone(&work);
            let calls = instance.calls.as_ref().expect("set until dropped");
            let sent = calls.send(Box::new(move |device: &dyn Backend| {
                let _ = answer.send(job(device));
            }));
            let reason = match sent.map(|()| answered.recv_timeout(limit)) {
                Ok(Ok(Ok(value))) => {
                    instance.warm.store(true, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Ok(Err(e))) if !e.is_device_failure() => return Err(e),
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(RecvTimeoutError::Timeout)) => {
                    instance.abandoned.store(true, Ordering::Relaxed);
                    format!("a {what} call did not return within {limit:?}")
                }
                Ok(Err(RecvTimeoutError::Disconnected)) | Err(_) => {
                    format!("its {what} call ended without an answer")
                }
            };
            self.restart(generation, reason)?;
        }
    }

    /// Replaces the device that failed in `generation` with a fresh one, or drops it.
    fn restart(&self, generation: u64, reason: String) -> Result<(), HashError> {
        let mut state = self.state();
        if let Some(dropped) = &state.dropped {
            return Err(clone_dropped(dropped));
        }
        if state.generation != generation {
            return Ok(()); // another caller restarted it already
        }
        let config = &self.watchdog.config;
        let now = Instant::now();
        while state
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > config.window)
        {
            state.recent.pop_front();
        }
        let restarts = u32::try_from(state.recent.len()).unwrap_or(u32::MAX);
        let reopened = if restarts >= config.max_restarts {
            Err(reason.clone())
        } else {
            match state.instance.device.reopen() {
                Some(Ok(device)) => Instance::start(device).map_err(|e| format!("{reason}; {e}")),
                Some(Err(e)) => Err(format!("{reason}; reopening it failed: {e}")),
                None => Err(format!("{reason}; it cannot be reopened")),
            }
        };
        match reopened {
            Ok(instance) => {
                // The old worker ends once its call returns, if it ever does.
                state.instance = instance;
                state.generation += 1;
                state.recent.push_back(now);
                self.watchdog.tell(WatchdogEvent {
                    device: self.name.clone(),
                    action: WatchdogAction::Restarted,
                    reason,
                    restarts: restarts + 1,
                });
                Ok(())
            }
            Err(reason) => {
                let dropped = HashError::Dropped {
                    device: self.name.clone(),
                    restarts,
                    reason: reason.clone(),
                };
                state.dropped = Some(clone_dropped(&dropped));
                self.watchdog.tell(WatchdogEvent {
                    device: self.name.clone(),
                    action: WatchdogAction::Dropped,
                    reason,
                    restarts,
                });
                Err(dropped)
            }
        }
    }
}

fn clone_dropped(error: &HashError) -> HashError {
    match error {
        HashError::Dropped {
            device,
            restarts,
            reason,
        } => HashError::Dropped {
            device: device.clone(),
            restarts: *restarts,
            reason: reason.clone(),
        },
        other => HashError::Gpu {
            adapter: String::new(),
            message: other.to_string(),
        },
    }
}

impl Device for Watched {
    fn name(&self) -> String {
        let state = self.state();
        if state.dropped.is_some() {
            format!("{} (dropped)", self.name)
        } else {
            state.instance.device.name()
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn hardware(&self) -> Hardware {
        self.device().hardware()
    }
}

/// Bulk work is not watched: it goes straight to the current device.
impl BulkHasher for Watched {
    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError> {
        self.device().sha1_pieces(data, piece_len)
    }

    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError> {
        self.device().sha256_pieces(data, piece_len)
    }

    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        self.device().sha256_pairs(nodes)
    }

    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        self.device().digest_messages(algo, messages)
    }

    fn hash_items(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        self.device().hash_items(job, items, sink)
    }

    fn bulk_shape(&self, piece_len: u64, memory: u64) -> Option<super::gpu::BulkShape> {
        self.device().bulk_shape(piece_len, memory)
    }
}

impl NonceSearcher for Watched {
    fn scan_slice(&self) -> u64 {
        self.device().scan_slice()
    }

    fn tune(&self, target: Duration) -> Result<Option<u32>, HashError> {
        self.call("tuning", true, Arc::new(move |d| d.tune(target)))
    }

    fn set_intensity(&self, intensity: u8) {
        self.device().set_intensity(intensity);
    }

    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
        let job = job.clone();
        self.call("scan", false, Arc::new(move |d| d.scan(&job)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::hash::cpu::CpuBackend;

    /// The CPU posing as a GPU that fails its first `failures` scans (counted over every
    /// reopened instance), to drive the watchdog without a GPU.
    struct Flaky {
        cpu: Arc<CpuBackend>,
        failures: Arc<AtomicU32>,
        reopens: Arc<AtomicU32>,
    }

    impl Device for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }

        fn kind(&self) -> BackendKind {
            BackendKind::Gpu
        }

        fn reopen(&self) -> Option<Result<Arc<dyn Backend>, HashError>> {
            self.reopens.fetch_add(1, Ordering::SeqCst);
            Some(Ok(Arc::new(Flaky {
                cpu: Arc::clone(&self.cpu),
                failures: Arc::clone(&self.failures),
                reopens: Arc::clone(&self.reopens),
            })))
        }
    }

    impl BulkHasher for Flaky {
        fn sha1_pieces(&self, d: &[u8], n: usize) -> Result<Vec<Sha1Digest>, HashError> {
            self.cpu.sha1_pieces(d, n)
        }

        fn sha256_pieces(&self, d: &[u8], n: usize) -> Result<Vec<Sha256Digest>, HashError> {
            self.cpu.sha256_pieces(d, n)
        }

        fn sha256_pairs(&self, n: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
            self.cpu.sha256_pairs(n)
        }

        fn digest_messages(&self, a: Algo, m: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
            self.cpu.digest_messages(a, m)
        }
    }

    impl NonceSearcher for Flaky {
        fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(HashError::Gpu {
                    adapter: "flaky".into(),
                    message: "lost".into(),
                });
            }
            self.cpu.scan(job)
        }
    }

    fn flaky(failures: u32) -> (Arc<dyn Backend>, Watchdog, Arc<AtomicU32>) {
        let reopens = Arc::new(AtomicU32::new(0));
        let device = Arc::new(Flaky {
            cpu: Arc::new(CpuBackend::new(Some(1)).unwrap()),
            failures: Arc::new(AtomicU32::new(failures)),
            reopens: Arc::clone(&reopens),
        });
        let watchdog = Watchdog::new(WatchdogConfig::new(Duration::from_secs(60)));
        (watchdog.watch(device), watchdog, reopens)
    }

    fn job() -> (ScanJob, ScanOutcome) {
        let target = crate::selftest::target_with_top_word(0x00ff_ffff);
        let job = ScanJob::new(&[7u8; 80], 0, 1 << 16, target).unwrap();
        let want = CpuBackend::new(Some(1)).unwrap().scan(&job).unwrap();
        assert!(!want.found.is_empty());
        (job, want)
    }

    #[test]
    fn a_failing_device_is_reopened_and_the_same_range_searched_again() {
        let (device, watchdog, reopens) = flaky(2);
        let (job, want) = job();
        assert_eq!(device.scan(&job).unwrap(), want);
        assert_eq!(reopens.load(Ordering::SeqCst), 2);
        let events = watchdog.take_events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().all(|e| e.action == WatchdogAction::Restarted));
        assert_eq!(events[1].restarts, 2);
        assert_eq!(device.name(), "flaky");
    }

    #[test]
    fn a_device_that_keeps_failing_is_dropped_after_three_restarts() {
        let (device, watchdog, reopens) = flaky(u32::MAX);
        let (job, _) = job();
        let error = device.scan(&job).unwrap_err();
        assert!(
            matches!(error, HashError::Dropped { restarts: 3, .. }),
            "{error}"
        );
        assert!(error.is_device_failure());
        assert_eq!(reopens.load(Ordering::SeqCst), 3);
        let events = watchdog.take_events();
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[3].action, WatchdogAction::Dropped);
        assert_eq!(device.name(), "flaky (dropped)");
        // Dropped for good: no more reopening.
        assert!(matches!(device.scan(&job), Err(HashError::Dropped { .. })));
        assert_eq!(reopens.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_cpu_is_not_watched() {
        let watchdog = Watchdog::new(WatchdogConfig::new(Duration::from_secs(1)));
        let cpu: Arc<dyn Backend> = Arc::new(CpuBackend::new(Some(1)).unwrap());
        assert!(Arc::ptr_eq(&watchdog.watch(Arc::clone(&cpu)), &cpu));
    }
}
