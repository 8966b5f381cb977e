//! The short measurement behind `--backend auto`: each candidate device hashes a little of each
//! kind of work, and the rates are cached so later runs decide at once.

mod cache;
mod decide;
mod rates;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use cache::{cache_dir, cache_file, CacheEntry, CacheKey, RateCache};
pub use decide::{choose, Candidate, DeviceId};
pub use rates::Rates;

use super::bulk::{BlockAlgo, BulkItem, BulkJob, Extent, MemorySource};
use super::cpu::CpuBackend;
use super::gpu::{self, GpuBackend};
use super::{Backend, BackendKind, HashError, KernelTarget, ScanJob, WorkKind};

/// Measuring time for every device and kind of work together (pipeline compiles and device
/// opening come on top): short enough that a command does not feel slower for it.
pub const PROBE_BUDGET: Duration = Duration::from_millis(450);

/// The bulk probes' pieces: a typical v1 piece for SHA-1; for SHA-256 the same pieces hashed
/// as v2 16 KiB blocks.
const PIECE: u64 = 256 << 10;
/// The most data one bulk round hashes: on a GPU enough pieces to fill every lane of its bulk
/// shape many times over (8,192 lanes of 256 KiB are 2 GiB), cycling over `GPU_BULK_DATA` of
/// host memory; the CPU's pieces cycle over a cache-sized buffer per core, as `verify`'s chunks
/// are, in rounds long enough that starting its workers does not count.
const GPU_BULK_CAP: u64 = 8 << 30;
const GPU_BULK_DATA: u64 = 64 << 20;
const CPU_BULK_CAP: u64 = 1 << 30;
const CPU_BULK_PER_CORE: u64 = 2 << 20;
/// The first round of each probe, doubled until a round takes long enough to time.
const FIRST_NONCES: u64 = 1 << 16;
const FIRST_BYTES: u64 = 1 << 20;
const NONCE_CAP: u64 = 1 << 30;

/// Where a candidate's rates came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// Measured by this run.
    Measured,
    /// Read from the cache file.
    Cached,
    /// Neither: nothing is known of it.
    Unmeasured,
}

/// One device as the survey found it.
pub struct Surveyed {
    pub candidate: Candidate,
    pub source: RateSource,
    /// Why opening or measuring it failed, if it did.
    pub error: Option<String>,
}

/// Every adapter (in `devices` order) and then the CPU, with what is known of their speed, and
/// the backends the measurement opened (so the chosen one is not opened twice).
pub struct Survey {
    pub devices: Vec<Surveyed>,
    /// The cache file read and written, if there is one.
    pub cache_file: Option<PathBuf>,
    /// Workers of the CPU backend measured (every core).
    pub cpu_threads: usize,
    opened: Vec<(usize, GpuBackend)>,
    cpu: Option<CpuBackend>,
}

impl Survey {
    /// The candidates for [`choose`].
    #[must_use]
    pub fn candidates(&self) -> Vec<Candidate> {
        self.devices.iter().map(|d| d.candidate.clone()).collect()
    }

    /// The backend the survey opened for `id`, if it opened one.
    #[must_use]
    pub fn take(&mut self, id: DeviceId) -> Option<Arc<dyn Backend>> {
        match id {
            DeviceId::Cpu => self.cpu.take().map(|cpu| Arc::new(cpu) as Arc<dyn Backend>),
            DeviceId::Gpu(index) => {
                let at = self.opened.iter().position(|(i, _)| *i == index)?;
                Some(Arc::new(self.opened.swap_remove(at).1))
            }
        }
    }
}

/// Whether the survey measures a device now: always under `devices --probe` (software adapters
/// included, so the probe itself can be tested on lavapipe); otherwise only an `auto` candidate
/// missing from the cache, and only when a real GPU makes the choice a question at all.
#[must_use]
pub fn needs_measuring(refresh: bool, any_real_gpu: bool, eligible: bool, cached: bool) -> bool {
    refresh || (any_real_gpu && eligible && !cached)
}

/// Finds what is known of each device's speed, measuring what [`needs_measuring`] says and
/// writing those measurements to the cache. Never fails: a device that cannot be opened or
/// measured has no rates and its error, and cache trouble is logged at debug.
///
/// # Errors
/// Only when the CPU thread pool cannot be created.
pub fn survey(adapters: &[wgpu::Adapter], refresh: bool) -> Result<Survey, HashError> {
    let cache_file = cache_file();
    let mut cache = cache_file
        .as_deref()
        .map(RateCache::load)
        .unwrap_or_default();
    let cpu = CpuBackend::new(None)?;
    let infos: Vec<_> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| gpu::summarize(i, a))
        .collect();
    let any_real_gpu = infos.iter().any(|a| a.is_real_gpu);
    let mut keys: Vec<(DeviceId, bool, CacheKey)> = infos
        .iter()
        .map(|a| {
            let key = CacheKey::gpu(&a.name, &a.backend, &a.driver);
            (DeviceId::Gpu(a.index), a.is_real_gpu, key)
        })
        .collect();
    keys.push((DeviceId::Cpu, true, CacheKey::cpu(cpu.threads())));
    let to_measure = keys
        .iter()
        .filter(|(_, eligible, key)| {
            needs_measuring(refresh, any_real_gpu, *eligible, cache.get(key).is_some())
        })
        .count();
    let each = PROBE_BUDGET / u32::try_from(to_measure.max(1) * WorkKind::ALL.len()).unwrap_or(1);
    let mut survey = Survey {
        devices: Vec::new(),
        cache_file: cache_file.clone(),
        cpu_threads: cpu.threads(),
        opened: Vec::new(),
        cpu: None,
    };
    let mut measured_any = false;
    for (id, eligible, key) in keys {
        let cached = cache.get(&key).cloned();
        let (rates, source, error) =
            if needs_measuring(refresh, any_real_gpu, eligible, cached.is_some()) {
                let started = Instant::now();
                let (rates, error) = match id {
                    DeviceId::Cpu => measure(&cpu, each),
                    DeviceId::Gpu(index) => match GpuBackend::open(index, &adapters[index]) {
                        Ok(gpu) => {
                            let measured = measure(&gpu, each);
                            survey.opened.push((index, gpu));
                            measured
                        }
                        Err(e) => (Rates::default(), Some(e.to_string())),
                    },
                };
                tracing::debug!(
                    "probe of {id} in {:?} (opening and compiling included): {rates:?} {error:?}",
                    started.elapsed()
                );
                cache.insert(CacheEntry {
                    key,
                    rates,
                    error: error.clone(),
                });
                measured_any = true;
                (rates, RateSource::Measured, error)
            } else if let Some(entry) = cached {
                (entry.rates, RateSource::Cached, entry.error)
            } else {
                (Rates::default(), RateSource::Unmeasured, None)
            };
        survey.devices.push(Surveyed {
            candidate: Candidate {
                id,
                eligible,
                rates,
            },
            source,
            error,
        });
    }
    survey.cpu = Some(cpu);
    if let (true, Some(path)) = (measured_any, &cache_file) {
        if let Err(e) = cache.save(path) {
            tracing::debug!("cannot write the rate cache {}: {e}", path.display());
        }
    }
    Ok(survey)
}

/// Measures `backend` at every kind of work, about `each` per kind. A kind that fails has no
/// rate; the first error is returned beside the rates.
pub fn measure(backend: &dyn Backend, each: Duration) -> (Rates, Option<String>) {
    let mut rates = Rates::default();
    let mut error = None;
    for work in WorkKind::ALL {
        match measure_work(backend, work, each) {
            Ok(rate) => rates.set(work, Some(rate)),
            Err(e) => {
                tracing::debug!("{}: measuring {work}: {e}", backend.name());
                error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (rates, error)
}

/// One kind of work on `backend` for about `each`, in base units per second.
///
/// # Errors
/// A device failure.
pub fn measure_work(
    backend: &dyn Backend,
    work: WorkKind,
    each: Duration,
) -> Result<f64, HashError> {
    let header = [0x5a; 80];
    let (algo, block_bytes) = match work {
        WorkKind::NonceSearch => {
            // The first call compiles the kernel: it is not timed.
            backend.scan(&ScanJob::new(&header, 0, 256, KernelTarget::ZERO).expect("in range"))?;
            return sample(FIRST_NONCES, NONCE_CAP, each, |count| {
                let job = ScanJob::new(&header, 0, count, KernelTarget::ZERO).expect("below 2^32");
                backend.scan(&job).map(drop)
            });
        }
        WorkKind::BulkSha1 => (Some(BlockAlgo::Sha1), 0),
        WorkKind::BulkSha256 => (None, PIECE),
    };
    let (cap, data_bytes) = match backend.kind() {
        BackendKind::Gpu => (GPU_BULK_CAP, GPU_BULK_DATA),
        BackendKind::Cpu => (
            CPU_BULK_CAP,
            CPU_BULK_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        ),
    };
    // Zeroed memory costs nothing until read, and hashing speed does not depend on content.
    let data = vec![0u8; usize::try_from(data_bytes).unwrap_or(usize::MAX)];
    let sources = [data.as_slice()];
    let source = MemorySource(&sources);
    let pieces_in_data = (data_bytes / PIECE).max(1);
    // As verify feeds it: many pieces in flight (on a GPU, as many lanes as its shape takes),
    // read from host memory into the device's buffers; offsets cycle over `data`.
    let round = |bytes: u64| {
        let mut items = (0..(bytes / PIECE).max(1)).map(|i| BulkItem {
            id: i,
            extents: vec![Extent {
                source: Some(0),
                offset: (i % pieces_in_data) * PIECE,
                length: PIECE,
            }],
            block_bytes,
        });
        let job = BulkJob {
            algo,
            source: &source,
            memory: gpu::DEFAULT_GPU_MEMORY,
        };
        backend.hash_items(&job, &mut items, &mut |_| {}).map(drop)
    };
    // The first call compiles the kernel and makes the buffers: it is not timed.
    round(PIECE)?;
    sample(FIRST_BYTES, cap, each, round)
}

/// Runs `round(size)` with `size` doubling from `first` to `cap` until one round takes a quarter
/// of `each`, or the next round would end past `each`; the rate is that of the last round, or
/// of every round at `cap` when rounds that big are still quick.
fn sample(
    first: u64,
    cap: u64,
    each: Duration,
    mut round: impl FnMut(u64) -> Result<(), HashError>,
) -> Result<f64, HashError> {
    let begun = Instant::now();
    let mut size = first.min(cap);
    let (mut work_at_cap, mut time_at_cap) = (0u64, Duration::ZERO);
    loop {
        let started = Instant::now();
        round(size)?;
        let elapsed = started.elapsed();
        if size == cap {
            work_at_cap += size;
            time_at_cap += elapsed;
        }
        let (work, time) = if size == cap {
            (work_at_cap, time_at_cap)
        } else {
            (size, elapsed)
        };
        // The next round takes about twice this one: stop before it would overrun `each`.
        let next = if size == cap { elapsed } else { elapsed * 2 };
        if elapsed >= each / 4 || begun.elapsed() + next > each {
            tracing::debug!("sampled up to {size} in {:?}", begun.elapsed());
            #[allow(clippy::cast_precision_loss)]
            return Ok(work as f64 / time.as_secs_f64().max(1e-9));
        }
        size = size.saturating_mul(2).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_measures_only_when_a_real_gpu_makes_it_a_question() {
        // No real GPU: nothing is measured, whatever the cache holds.
        for eligible in [true, false] {
            for cached in [true, false] {
                assert!(!needs_measuring(false, false, eligible, cached));
            }
        }
        // A real GPU: each auto candidate missing from the cache (a key mismatch included).
        assert!(needs_measuring(false, true, true, false));
        assert!(!needs_measuring(false, true, true, true));
        assert!(
            !needs_measuring(false, true, false, false),
            "never lavapipe"
        );
        // `devices --probe` measures everything again.
        for any_real in [true, false] {
            for eligible in [true, false] {
                assert!(needs_measuring(true, any_real, eligible, true));
            }
        }
    }

    #[test]
    fn the_cpu_probe_rates_every_kind_of_work() {
        let cpu = CpuBackend::new(Some(1)).unwrap();
        let (rates, error) = measure(&cpu, Duration::from_millis(20));
        assert_eq!(error, None);
        for work in WorkKind::ALL {
            assert!(rates.get(work).is_some(), "{work}: {rates:?}");
        }
    }

    #[test]
    fn sampling_doubles_up_to_the_cap_and_stays_there() {
        let mut sizes = Vec::new();
        let rate = sample(1, 8, Duration::from_millis(5), |size| {
            sizes.push(size);
            std::thread::sleep(Duration::from_micros(200));
            Ok(())
        })
        .unwrap();
        let expected = [1, 2, 4, 8].iter().chain(std::iter::repeat(&8));
        assert!(sizes.iter().zip(expected).all(|(a, b)| a == b), "{sizes:?}");
        assert!(rate > 0.0);
    }

    #[test]
    fn a_failing_round_is_an_error_not_a_rate() {
        let failed = sample(1, 8, Duration::from_millis(5), |_| {
            Err(HashError::ZeroPieceLength)
        });
        assert!(failed.is_err());
    }
}
