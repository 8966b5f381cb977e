//! Several devices at once (`--backend all` or a list such as `gpu:0,cpu`): a nonce range is
//! shared out slice by slice from one cursor, so each device takes work at its own pace, and a
//! device that fails drops out while the others finish its slice.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::bulk::{self, BulkItem, BulkJob, BulkReport, BulkResult};
use super::{
    Algo, Backend, BackendKind, BulkHasher, Device, HashError, NonceSearcher, ScanJob, ScanOutcome,
    Sha1Digest, Sha256Digest,
};

/// What one device has done so far.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceStats {
    pub name: String,
    /// Nonces searched.
    pub hashes: u64,
    /// Seconds spent searching.
    pub seconds: f64,
    pub hw_errors: u64,
    /// Dropped after a device error.
    pub failed: bool,
}

#[derive(Default)]
struct Counters {
    hashes: AtomicU64,
    busy_nanos: AtomicU64,
    hw_errors: AtomicU64,
    failed: AtomicBool,
}

/// Devices working together.
pub struct MultiBackend {
    devices: Vec<(Arc<dyn Backend>, Counters)>,
}

impl MultiBackend {
    /// # Panics
    /// With no devices: a caller bug, since every choice opens at least one.
    #[must_use]
    pub fn new(devices: Vec<Arc<dyn Backend>>) -> Self {
        assert!(!devices.is_empty(), "MultiBackend needs a device");
        Self {
            devices: devices
                .into_iter()
                .map(|d| (d, Counters::default()))
                .collect(),
        }
    }

    fn live(&self) -> impl Iterator<Item = &(Arc<dyn Backend>, Counters)> {
        self.devices
            .iter()
            .filter(|(_, c)| !c.failed.load(Ordering::Relaxed))
    }

    fn fail(&self, counters: &Counters, device: &dyn Backend, error: &HashError) {
        if !counters.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!("{}: {error}; the other devices go on", device.name());
        }
    }

    /// Bulk work goes to the first device that is still working.
    fn first_live<T>(
        &self,
        work: impl Fn(&dyn Backend) -> Result<T, HashError>,
    ) -> Result<T, HashError> {
        let mut last = None;
        for (device, counters) in self.live() {
            match work(&**device) {
                Err(e) if e.is_device_failure() => {
                    self.fail(counters, &**device, &e);
                    last = Some(e);
                }
                result => return result,
            }
        }
        Err(last.unwrap_or_else(|| self.all_failed()))
    }

    fn all_failed(&self) -> HashError {
        HashError::Gpu {
            adapter: self.name(),
            message: "every device has failed".to_owned(),
        }
    }

    /// Searches slices taken from `cursor` on one device until the range is done.
    fn drain(
        &self,
        (device, counters): &(Arc<dyn Backend>, Counters),
        job: &ScanJob,
        cursor: &AtomicU64,
        orphans: &Mutex<Vec<(u64, u64)>>,
        total: &Mutex<ScanOutcome>,
    ) {
        let end = u64::from(job.start) + job.count;
        loop {
            let slice = device.scan_slice().max(1);
            let first = cursor.fetch_add(slice, Ordering::Relaxed);
            if first >= end {
                return;
            }
            let count = slice.min(end - first);
            let part = job.sub_range(u32::try_from(first).expect("below 2^32"), count);
            let started = Instant::now();
            match device.scan(&part) {
                Ok(outcome) => {
                    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    counters.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
                    counters.hashes.fetch_add(outcome.hashes, Ordering::Relaxed);
                    counters
                        .hw_errors
                        .fetch_add(outcome.hw_errors, Ordering::Relaxed);
                    let mut total = total.lock().unwrap_or_else(PoisonError::into_inner);
                    total.found.extend(outcome.found);
                    total.hw_errors += outcome.hw_errors;
                }
                Err(e) => {
                    self.fail(counters, &**device, &e);
                    orphans
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((first, count));
                    return;
                }
            }
        }
    }
}

impl Device for MultiBackend {
    fn name(&self) -> String {
        let names: Vec<String> = self.live().map(|(d, _)| d.name()).collect();
        format!("{} devices: {}", names.len(), names.join(" + "))
    }

    fn kind(&self) -> BackendKind {
        if self.live().any(|(d, _)| d.kind() == BackendKind::Gpu) {
            BackendKind::Gpu
        } else {
            BackendKind::Cpu
        }
    }

    fn device_stats(&self) -> Vec<DeviceStats> {
        self.devices
            .iter()
            .map(|(device, c)| {
                #[allow(clippy::cast_precision_loss)]
                let seconds = c.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                DeviceStats {
                    name: device.name(),
                    hashes: c.hashes.load(Ordering::Relaxed),
                    seconds,
                    hw_errors: c.hw_errors.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

impl BulkHasher for MultiBackend {
    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError> {
        self.first_live(|b| b.sha1_pieces(data, piece_len))
    }

    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError> {
        self.first_live(|b| b.sha256_pieces(data, piece_len))
    }

    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        self.first_live(|b| b.sha256_pairs(nodes))
    }

    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        self.first_live(|b| b.digest_messages(algo, messages))
    }

    /// On the first live device; if it fails, the next one finishes the work.
    fn hash_items(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        let mut live = self.live();
        let Some((first, counters)) = live.next() else {
            return Err(self.all_failed());
        };
        match live.next() {
            Some((second, _)) => bulk::hash_with_fallback(
                &**first,
                &**second,
                |e| self.fail(counters, &**first, e),
                job,
                items,
                sink,
            ),
            None => first.hash_items(job, items, sink),
        }
    }

    fn bulk_shape(&self, piece_len: u64, memory: u64) -> Option<super::gpu::BulkShape> {
        self.live().next()?.0.bulk_shape(piece_len, memory)
    }
}

impl NonceSearcher for MultiBackend {
    fn scan_slice(&self) -> u64 {
        self.live().map(|(d, _)| d.scan_slice()).sum::<u64>().max(1)
    }

    fn tune(&self, target: std::time::Duration) -> Result<Option<u32>, HashError> {
        let mut first = None;
        for (device, counters) in self.live() {
            match device.tune(target) {
                Ok(batch) => first = first.or(batch),
                Err(e) => self.fail(counters, &**device, &e),
            }
        }
        Ok(first)
    }

    fn set_intensity(&self, intensity: u8) {
        for (device, _) in self.live() {
            device.set_intensity(intensity);
        }
    }

    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
        let total = Mutex::new(ScanOutcome::default());
        let mut pending = vec![(u64::from(job.start), job.count)];
        // Slices a failed device was holding go round again on the devices still working.
        while let Some((start, count)) = pending.pop() {
            let job = job.sub_range(u32::try_from(start).expect("below 2^32"), count);
            let cursor = AtomicU64::new(start);
            let orphans = Mutex::new(Vec::new());
            let live: Vec<_> = self.live().collect();
            if live.is_empty() {
                return Err(self.all_failed());
            }
            std::thread::scope(|scope| {
                for device in live {
                    let (job, cursor, orphans, total) = (&job, &cursor, &orphans, &total);
                    scope.spawn(move || self.drain(device, job, cursor, orphans, total));
                }
            });
            pending.extend(orphans.into_inner().unwrap_or_else(PoisonError::into_inner));
        }
        let mut total = total.into_inner().unwrap_or_else(PoisonError::into_inner);
        total.found.sort_unstable();
        total.hashes = job.count;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::hash::cpu::CpuBackend;

    /// A device that fails every scan, and tells when it has tried.
    struct Broken(Arc<AtomicBool>);

    /// The CPU, holding back until the broken device has tried, so the test never depends on
    /// which thread the scheduler runs first.
    struct Patient(CpuBackend, Arc<AtomicBool>);

    fn unused<T>() -> Result<T, HashError> {
        Err(HashError::ZeroPieceLength)
    }

    impl Device for Broken {
        fn name(&self) -> String {
            "broken".to_owned()
        }

        fn kind(&self) -> BackendKind {
            BackendKind::Gpu
        }
    }

    impl BulkHasher for Broken {
        fn sha1_pieces(&self, _: &[u8], _: usize) -> Result<Vec<Sha1Digest>, HashError> {
            unused()
        }

        fn sha256_pieces(&self, _: &[u8], _: usize) -> Result<Vec<Sha256Digest>, HashError> {
            unused()
        }

        fn sha256_pairs(&self, _: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
            unused()
        }

        fn digest_messages(&self, _: Algo, _: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
            Err(HashError::Gpu {
                adapter: self.name(),
                message: "lost".to_owned(),
            })
        }
    }

    impl NonceSearcher for Broken {
        fn scan_slice(&self) -> u64 {
            1 << 14
        }

        fn scan(&self, _: &ScanJob) -> Result<ScanOutcome, HashError> {
            self.0.store(true, Ordering::SeqCst);
            Err(HashError::Gpu {
                adapter: self.name(),
                message: "lost".to_owned(),
            })
        }
    }

    impl Device for Patient {
        fn name(&self) -> String {
            self.0.name()
        }

        fn kind(&self) -> BackendKind {
            BackendKind::Cpu
        }
    }

    impl BulkHasher for Patient {
        fn sha1_pieces(&self, d: &[u8], n: usize) -> Result<Vec<Sha1Digest>, HashError> {
            self.0.sha1_pieces(d, n)
        }

        fn sha256_pieces(&self, d: &[u8], n: usize) -> Result<Vec<Sha256Digest>, HashError> {
            self.0.sha256_pieces(d, n)
        }

        fn sha256_pairs(&self, n: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
            self.0.sha256_pairs(n)
        }

        fn digest_messages(&self, a: Algo, m: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
            self.0.digest_messages(a, m)
        }
    }

    impl NonceSearcher for Patient {
        fn scan_slice(&self) -> u64 {
            1 << 14
        }

        fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.1.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.0.scan(job)
        }
    }

    fn pair() -> MultiBackend {
        let tried = Arc::new(AtomicBool::new(false));
        let cpu = CpuBackend::new(Some(1)).unwrap();
        MultiBackend::new(vec![
            Arc::new(Broken(tried.clone())),
            Arc::new(Patient(cpu, tried)),
        ])
    }

    #[test]
    fn a_failed_device_drops_out_and_its_slice_is_searched_again() {
        let multi = pair();
        let target = crate::selftest::target_with_top_word(0x00ff_ffff);
        let job = ScanJob::new(&[9u8; 80], 1000, 1 << 17, target).unwrap();
        let want = CpuBackend::new(Some(1)).unwrap().scan(&job).unwrap();
        assert!(!want.found.is_empty());
        assert_eq!(multi.scan(&job).unwrap(), want);
        let stats = multi.device_stats();
        assert!(stats[0].failed && stats[0].hashes == 0, "{stats:?}");
        assert!(!stats[1].failed && stats[1].hashes == 1 << 17, "{stats:?}");
        assert_eq!(multi.name(), format!("1 devices: {}", stats[1].name));
    }

    #[test]
    fn bulk_work_moves_past_a_failed_device() {
        let multi = pair();
        let want = CpuBackend::new(Some(1))
            .unwrap()
            .digest_messages(Algo::Sha1, &[b"abc"])
            .unwrap();
        assert_eq!(multi.digest_messages(Algo::Sha1, &[b"abc"]).unwrap(), want);
        assert!(multi.device_stats()[0].failed);
    }
}
