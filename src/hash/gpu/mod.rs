//! The wgpu backend: WGSL kernels for sha256d nonce search, batched SHA-1/SHA-256 of messages
//! of any length, and merkle parents. Every nonce it reports is re-checked on the CPU.

pub mod context;
pub mod copy_rate;
mod messages;
mod pairs;
mod pipeline;
mod scan;
pub mod wgsl;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use context::{adapters, summarize, AdapterSummary, GpuContext};
use messages::{BlockAlgo, RoundLimits};
use pipeline::Kernel;
pub use scan::ScanShape;

use super::{
    check_pairs, cpu, split_pieces, Algo, Backend, BackendKind, HashError, ScanJob, ScanOutcome,
    Sha1Digest, Sha256Digest,
};

/// The kernels, one per file in `shaders/`.
pub const KERNELS: [(&str, &str); 4] = [
    (
        "sha256d_scan",
        include_str!("../../../shaders/sha256d_scan.wgsl"),
    ),
    (
        "sha1_blocks",
        include_str!("../../../shaders/sha1_blocks.wgsl"),
    ),
    (
        "sha256_blocks",
        include_str!("../../../shaders/sha256_blocks.wgsl"),
    ),
    (
        "sha256_pairs",
        include_str!("../../../shaders/sha256_pairs.wgsl"),
    ),
];

/// Test hook: `PEERHASH_FAULT_GPU=fail-after:N` makes every GPU operation after the first N
/// fail as a lost device would; `PEERHASH_FAULT_GPU=bad-nonces` makes the scan report wrong
/// nonces as a faulty GPU would. Both exist to prove the fallback and the CPU re-check work.
pub const FAULT_ENV: &str = "PEERHASH_FAULT_GPU";

/// The most nonces one scan dispatch may cover (2^31: the grid stays well inside limits).
pub const MAX_SCAN_BATCH: u32 = 1 << 31;

/// Faults injected through [`FAULT_ENV`].
#[derive(Debug, Default)]
struct Faults {
    fail_after: Option<u64>,
    bad_nonces: bool,
    operations: AtomicU64,
}

impl Faults {
    fn from_env() -> Self {
        let value = std::env::var(FAULT_ENV).unwrap_or_default();
        Self {
            fail_after: value
                .strip_prefix("fail-after:")
                .and_then(|n| n.parse().ok()),
            bad_nonces: value == "bad-nonces",
            operations: AtomicU64::new(0),
        }
    }

    fn check(&self, ctx: &GpuContext) -> Result<(), HashError> {
        let done = self.operations.fetch_add(1, Ordering::Relaxed);
        match self.fail_after {
            Some(limit) if done >= limit => Err(ctx.error(format!(
                "device lost (injected by {FAULT_ENV} after {limit} operations)"
            ))),
            _ => Ok(()),
        }
    }
}

/// A backend on one wgpu adapter. Pipelines compile on first use.
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    kernels: [OnceLock<Kernel>; 4],
    limits: RoundLimits,
    shape: Mutex<ScanShape>,
    faults: Faults,
}

impl GpuBackend {
    /// Opens adapter `index` of [`adapters`].
    ///
    /// # Errors
    /// When the device cannot be opened.
    pub fn open(index: usize, adapter: &wgpu::Adapter) -> Result<Self, HashError> {
        let ctx = GpuContext::open(index, adapter)?;
        Ok(Self {
            limits: RoundLimits::for_device(&ctx),
            shape: Mutex::new(ScanShape::for_device(&ctx)),
            ctx,
            kernels: Default::default(),
            faults: Faults::from_env(),
        })
    }

    #[must_use]
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Nonces per dispatch and per invocation of the scan kernel.
    #[must_use]
    pub fn scan_shape(&self) -> ScanShape {
        *self
            .shape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_scan_shape(&self, shape: ScanShape) {
        *self
            .shape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = shape;
    }

    /// Sizes the nonces per dispatch so that one dispatch, read-back included, takes about
    /// `target`: long enough to amortize the round trip, short enough that new work is picked
    /// up quickly, the desktop stays usable and no driver watchdog fires.
    ///
    /// # Errors
    /// A device failure while measuring.
    pub fn tune_scan_batch(&self, target: Duration) -> Result<ScanShape, HashError> {
        let mut shape = self.scan_shape();
        let grain = shape.per_invocation * pipeline::WORKGROUP_SIZE;
        let time = |batch: u32| -> Result<Duration, HashError> {
            let job = ScanJob::new(&[0x5a; 80], 0, u64::from(batch), [0; 8]).expect("in range");
            let started = Instant::now();
            scan::scan(
                &self.ctx,
                self.kernel(0)?,
                &job,
                ScanShape { batch, ..shape },
            )?;
            Ok(started.elapsed())
        };
        time(grain)?; // compiles the pipeline and warms the driver
        let mut batch = grain.saturating_mul(16).min(MAX_SCAN_BATCH);
        let mut elapsed = time(batch)?;
        while elapsed < target / 4 && batch < MAX_SCAN_BATCH {
            batch = batch.saturating_mul(4).min(MAX_SCAN_BATCH);
            elapsed = time(batch)?;
        }
        let scaled = f64::from(batch) * target.as_secs_f64() / elapsed.as_secs_f64().max(1e-6);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let scaled = scaled.min(f64::from(MAX_SCAN_BATCH)) as u32;
        shape.batch = (scaled / grain * grain).clamp(grain, MAX_SCAN_BATCH);
        self.set_scan_shape(shape);
        tracing::info!(
            "{}: {} nonces per dispatch for {target:?}",
            self.name(),
            shape.batch
        );
        Ok(shape)
    }

    /// Caps the bytes uploaded per round and blocks per lane (tests use this to force many
    /// rounds with carried state on small inputs).
    pub fn set_round_limits(&mut self, bytes_per_round: usize, blocks_per_lane: usize) {
        self.limits = RoundLimits {
            bytes_per_round: bytes_per_round.max(128),
            blocks_per_lane: blocks_per_lane.max(2),
        };
    }

    fn kernel(&self, slot: usize) -> Result<&Kernel, HashError> {
        self.faults.check(&self.ctx)?;
        if let Some(kernel) = self.kernels[slot].get() {
            return Ok(kernel);
        }
        let (name, source) = KERNELS[slot];
        let kernel = Kernel::new(&self.ctx, name, source)?;
        // Another thread may have won the race; either compiled kernel is the same.
        let _ = self.kernels[slot].set(kernel);
        Ok(self.kernels[slot].get().expect("just set"))
    }

    fn digest(&self, algo: BlockAlgo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        let slot = match algo {
            BlockAlgo::Sha1 => 1,
            BlockAlgo::Sha256 => 2,
        };
        messages::digest_messages(&self.ctx, self.kernel(slot)?, algo, messages, self.limits)
    }
}

fn fixed<const N: usize>(digests: Vec<Vec<u8>>) -> Vec<[u8; N]> {
    digests
        .into_iter()
        .map(|d| d.try_into().expect("kernel digests have a fixed size"))
        .collect()
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!(
            "gpu:{} ({}, {})",
            self.ctx.index, self.ctx.info.name, self.ctx.info.backend
        )
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError> {
        let pieces = split_pieces(data, piece_len)?;
        Ok(fixed(self.digest(BlockAlgo::Sha1, &pieces)?))
    }

    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError> {
        let pieces = split_pieces(data, piece_len)?;
        Ok(fixed(self.digest(BlockAlgo::Sha256, &pieces)?))
    }

    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        check_pairs(nodes)?;
        let max_pairs = self.limits.bytes_per_round / 64;
        pairs::parents(&self.ctx, self.kernel(3)?, nodes, max_pairs)
    }

    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        match algo {
            Algo::Sha1 => self.digest(BlockAlgo::Sha1, messages),
            Algo::Sha256 => self.digest(BlockAlgo::Sha256, messages),
            Algo::Sha256d => {
                let first = self.digest(BlockAlgo::Sha256, messages)?;
                let first: Vec<&[u8]> = first.iter().map(Vec::as_slice).collect();
                self.digest(BlockAlgo::Sha256, &first)
            }
        }
    }

    fn scan_slice(&self) -> u64 {
        u64::from(self.scan_shape().batch)
    }

    fn tune(&self, target: Duration) -> Result<Option<u32>, HashError> {
        Ok(Some(self.tune_scan_batch(target)?.batch))
    }

    fn set_intensity(&self, intensity: u8) {
        let mut shape = self.scan_shape();
        let grain = shape.per_invocation * pipeline::WORKGROUP_SIZE;
        let batch = 1u64 << intensity.min(31);
        shape.batch = u32::try_from(batch).unwrap_or(MAX_SCAN_BATCH).max(grain);
        self.set_scan_shape(shape);
    }

    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
        let mut reported = scan::scan(&self.ctx, self.kernel(0)?, job, self.scan_shape())?;
        if self.faults.bad_nonces {
            reported.extend([job.start, job.start.wrapping_add(1)]);
        }
        let (found, hw_errors) = cpu::recheck(job, reported);
        if hw_errors > 0 {
            tracing::warn!(
                "{}: {hw_errors} reported nonces failed the CPU re-check (hardware errors)",
                self.name()
            );
        }
        Ok(ScanOutcome {
            found,
            hashes: job.count,
            hw_errors,
        })
    }
}
