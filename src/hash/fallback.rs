//! Survives device loss: a GPU backend that fails (a lost device, a dispatch error or time-out)
//! is logged and replaced by the CPU backend for the rest of the run, so results stay correct.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::bulk::{self, BulkItem, BulkJob, BulkReport, BulkResult};
use super::cpu::CpuBackend;
use super::{
    Algo, Backend, BackendKind, BulkHasher, Device, HashError, NonceSearcher, ScanJob, ScanOutcome,
    Sha1Digest, Sha256Digest,
};

/// A primary backend with the CPU behind it.
pub struct FallbackBackend {
    primary: Arc<dyn Backend>,
    cpu: CpuBackend,
    failed: AtomicBool,
}

impl FallbackBackend {
    /// Wraps `primary`; `cpu` takes over after its first device failure.
    #[must_use]
    pub fn new(primary: Arc<dyn Backend>, cpu: CpuBackend) -> Self {
        Self {
            primary,
            cpu,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether the primary has failed and the CPU is doing the work.
    #[must_use]
    pub fn has_failed_over(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Runs `work` on the primary until it fails with a device error, then on the CPU.
    fn run<T>(&self, work: impl Fn(&dyn Backend) -> Result<T, HashError>) -> Result<T, HashError> {
        if !self.has_failed_over() {
            match work(&*self.primary) {
                Err(e) if e.is_device_failure() => {
                    if !self.failed.swap(true, Ordering::Relaxed) {
                        tracing::warn!("{e}; continuing on {}", self.cpu.name());
                    }
                }
                result => return result,
            }
        }
        work(&self.cpu)
    }
}

impl Device for FallbackBackend {
    fn name(&self) -> String {
        if self.has_failed_over() {
            format!("{} (after {} failed)", self.cpu.name(), self.primary.name())
        } else {
            self.primary.name()
        }
    }

    fn kind(&self) -> BackendKind {
        if self.has_failed_over() {
            BackendKind::Cpu
        } else {
            self.primary.kind()
        }
    }

    fn device_stats(&self) -> Vec<super::DeviceStats> {
        self.primary.device_stats()
    }

    fn hardware(&self) -> super::Hardware {
        if self.has_failed_over() {
            super::Hardware::Cpu
        } else {
            self.primary.hardware()
        }
    }
}

impl BulkHasher for FallbackBackend {
    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError> {
        self.run(|b| b.sha1_pieces(data, piece_len))
    }

    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError> {
        self.run(|b| b.sha256_pieces(data, piece_len))
    }

    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        self.run(|b| b.sha256_pairs(nodes))
    }

    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        self.run(|b| b.digest_messages(algo, messages))
    }

    fn hash_items(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        if self.has_failed_over() {
            return self.cpu.hash_items(job, items, sink);
        }
        let on_failure = |e: &HashError| {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!("{e}; continuing on {}", self.cpu.name());
            }
        };
        bulk::hash_with_fallback(&*self.primary, &self.cpu, on_failure, job, items, sink)
    }

    fn bulk_shape(&self, piece_len: u64, memory: u64) -> Option<super::gpu::BulkShape> {
        if self.has_failed_over() {
            None
        } else {
            self.primary.bulk_shape(piece_len, memory)
        }
    }
}

impl NonceSearcher for FallbackBackend {
    fn scan_slice(&self) -> u64 {
        if self.has_failed_over() {
            self.cpu.scan_slice()
        } else {
            self.primary.scan_slice()
        }
    }

    /// Tunes the CPU too, so a hand-over keeps scan calls short.
    fn tune(&self, target: std::time::Duration) -> Result<Option<u32>, HashError> {
        self.cpu.tune(target)?;
        self.run(|b| b.tune(target))
    }

    fn set_intensity(&self, intensity: u8) {
        self.primary.set_intensity(intensity);
    }

    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
        self.run(|b| b.scan(job))
    }
}
