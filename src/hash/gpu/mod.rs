//! The wgpu backend: WGSL kernels for sha256d nonce search, batched SHA-1/SHA-256 of messages
//! of any length, and merkle parents. Every nonce it reports is re-checked on the CPU.

mod bulk;
mod bulk_kernel;
pub mod bulk_shape;
pub mod context;
pub mod copy_rate;
mod pairs;
mod pipeline;
mod scan;
mod scan_kernel;
pub mod wgsl;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bulk::{BulkEngine, BulkKernels};
pub use bulk_kernel::Loads;
pub use bulk_shape::{AdapterProfile, BulkShape};
pub use context::{adapters, summarize, AdapterSummary, GpuContext};
use pipeline::Kernel;
pub use scan::ScanShape;

use super::bulk::{BlockAlgo, BulkItem, BulkJob, BulkReport, BulkResult, Extent, MemorySource};
use super::{
    check_pairs, cpu, split_pieces, Algo, Backend, BackendKind, BulkHasher, Device, Hardware,
    HashError, KernelTarget, NonceSearcher, ScanJob, ScanOutcome, Sha1Digest, Sha256Digest,
};

/// The default `--memory` for bulk work on a GPU: three rounds of 4,096+ lanes of 64 KiB
/// slices (see [`BulkShape`]); a machine with a graphics card has that to spare, and less
/// would leave a discrete card waiting.
pub const DEFAULT_GPU_MEMORY: u64 = 1 << 30;

/// The kernels a GPU backend compiles (each on first use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelId {
    Sha256dScan,
    Bulk(BlockAlgo, Loads),
    Sha256Pairs,
}

impl KernelId {
    pub const ALL: [KernelId; 6] = [
        KernelId::Sha256dScan,
        KernelId::Bulk(BlockAlgo::Sha1, Loads::Coalesced),
        KernelId::Bulk(BlockAlgo::Sha256, Loads::Coalesced),
        KernelId::Bulk(BlockAlgo::Sha1, Loads::Direct),
        KernelId::Bulk(BlockAlgo::Sha256, Loads::Direct),
        KernelId::Sha256Pairs,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KernelId::Sha256dScan => "sha256d_scan",
            KernelId::Bulk(BlockAlgo::Sha1, Loads::Coalesced) => "sha1_bulk",
            KernelId::Bulk(BlockAlgo::Sha256, Loads::Coalesced) => "sha256_bulk",
            KernelId::Bulk(BlockAlgo::Sha1, Loads::Direct) => "sha1_bulk_direct",
            KernelId::Bulk(BlockAlgo::Sha256, Loads::Direct) => "sha256_bulk_direct",
            KernelId::Sha256Pairs => "sha256_pairs",
        }
    }

    /// The kernel's whole WGSL module: the scan kernel is generated around
    /// `shaders/sha256d_scan.wgsl` (`scan_kernel.rs`); the others are their body joined with
    /// the shared SHA functions (`wgsl::kernel_source`).
    #[must_use]
    pub fn source(self) -> String {
        match self {
            KernelId::Sha256dScan => scan_kernel::ScanKernel::get().source().to_owned(),
            KernelId::Bulk(algo, loads) => wgsl::kernel_source(&bulk_kernel::source(algo, loads)),
            KernelId::Sha256Pairs => {
                wgsl::kernel_source(include_str!("../../../shaders/sha256_pairs.wgsl"))
            }
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|&k| k == self)
            .expect("ALL lists every kernel")
    }
}

/// Test hook (only with the `test-hooks` cargo feature; the release binary never reads it):
/// `PEERHASH_FAULT_GPU=fail-after:N` makes every GPU operation after the first N fail as a
/// lost device would; `stall-after:N` makes them hang (for an hour, then fail) as a hung
/// dispatch would; `bad-nonces` makes the scan report wrong nonces as a faulty GPU would.
/// They exist to prove the fallback, the watchdog and the CPU re-check work. Each opened
/// device counts its own operations, so a reopened one works for N more.
pub const FAULT_ENV: &str = "PEERHASH_FAULT_GPU";

/// The most nonces one scan dispatch may cover (2^31: the grid stays well inside limits).
pub const MAX_SCAN_BATCH: u32 = 1 << 31;

/// How long an injected stall lasts: far past any watchdog, yet bounded.
#[cfg(feature = "test-hooks")]
const INJECTED_STALL: Duration = Duration::from_secs(3600);

/// Faults injected through [`FAULT_ENV`].
#[derive(Debug, Default)]
struct Faults {
    fail_after: Option<u64>,
    stall_after: Option<u64>,
    bad_nonces: bool,
    operations: AtomicU64,
}

impl Faults {
    #[cfg(feature = "test-hooks")]
    fn from_env() -> Self {
        let value = std::env::var(FAULT_ENV).unwrap_or_default();
        let after = |prefix: &str| value.strip_prefix(prefix).and_then(|n| n.parse().ok());
        Self {
            fail_after: after("fail-after:"),
            stall_after: after("stall-after:"),
            bad_nonces: value == "bad-nonces",
            operations: AtomicU64::new(0),
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    fn from_env() -> Self {
        Self::default()
    }

    fn check(&self, ctx: &GpuContext) -> Result<(), HashError> {
        let done = self.operations.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "test-hooks")]
        if self.stall_after.is_some_and(|limit| done >= limit) {
            std::thread::sleep(INJECTED_STALL);
        }
        match self.fail_after.or(self.stall_after) {
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
    kernels: [OnceLock<Kernel>; 6],
    /// The nonce search's buffers and bind group, made on first use; one scan at a time
    /// uses them.
    scan_buffers: OnceLock<Mutex<scan::ScanBuffers>>,
    /// How bulk kernels load their blocks on this device.
    loads: Loads,
    /// Set by tests to force many rounds on small inputs; otherwise sized per run.
    bulk_override: Option<BulkShape>,
    bulk: Mutex<Option<BulkEngine>>,
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
            bulk_override: None,
            bulk: Mutex::new(None),
            scan_buffers: OnceLock::new(),
            loads: if ctx.is_software() {
                Loads::Direct
            } else {
                Loads::Coalesced
            },
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
            let job = ScanJob::new(&[0x5a; 80], 0, u64::from(batch), KernelTarget::ZERO)
                .expect("in range");
            let started = Instant::now();
            let (kernel, buffers) = self.scanner()?;
            scan::scan(
                &self.ctx,
                kernel,
                &buffers,
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

    /// Fixes the bulk rounds' shape (tests use this to force many rounds with carried state
    /// on small inputs; `slice` must be a multiple of 64, or of 16 KiB for v2 blocks).
    pub fn set_bulk_shape(&mut self, shape: BulkShape) {
        self.bulk_override = Some(shape);
    }

    /// Chooses how bulk kernels load their blocks (tests run both kinds on lavapipe).
    pub fn set_loads(&mut self, loads: Loads) {
        self.loads = loads;
    }

    /// The shape bulk work takes on this device for pieces of `piece_len` bytes.
    #[must_use]
    pub fn shape_for(&self, piece_len: u64, memory: u64) -> BulkShape {
        self.bulk_override.unwrap_or_else(|| {
            BulkShape::for_adapter(
                &AdapterProfile::of(&self.ctx.info, &self.ctx.limits),
                piece_len,
                memory,
            )
        })
    }

    fn kernel(&self, id: KernelId) -> Result<&Kernel, HashError> {
        self.faults.check(&self.ctx)?;
        let slot = &self.kernels[id.index()];
        if let Some(kernel) = slot.get() {
            return Ok(kernel);
        }
        let kernel = if id == KernelId::Sha256dScan {
            // SAFETY: every index in the generated scan kernel is a constant into a fixed-size
            // array, except `found.nonces[slot]`, guarded by `slot < sizes.z`, which the host
            // sets to `scan::FOUND_CAPACITY`, the number of slots it allocates; its one loop
            // ends when `k` reaches `sizes.y`.
            unsafe { Kernel::new_trusted(&self.ctx, id.name(), &id.source())? }
        } else {
            Kernel::new(&self.ctx, id.name(), &id.source())?
        };
        // Another thread may have won the race; either compiled kernel is the same.
        let _ = slot.set(kernel);
        Ok(slot.get().expect("just set"))
    }

    /// The scan kernel and its buffers, made on first use and kept.
    fn scanner(
        &self,
    ) -> Result<(&Kernel, std::sync::MutexGuard<'_, scan::ScanBuffers>), HashError> {
        let kernel = self.kernel(KernelId::Sha256dScan)?;
        let buffers = match self.scan_buffers.get() {
            Some(buffers) => buffers,
            None => {
                let made = self.ctx.scoped("making the scan buffers", || {
                    Ok(Mutex::new(scan::ScanBuffers::new(&self.ctx, kernel)))
                })?;
                // Another thread may have won the race; either set of buffers is the same.
                let _ = self.scan_buffers.set(made);
                self.scan_buffers.get().expect("just set")
            }
        };
        Ok((
            kernel,
            buffers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }

    /// Bulk work on the device engine, its buffers made once and kept for the next run.
    fn run_bulk(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        let (algo, memory) = (job.algo, job.memory);
        let mut items = items.peekable();
        let Some(first) = items.peek() else {
            return Ok(BulkReport::default());
        };
        let mut shape = self.shape_for(first.length().max(first.block_bytes), memory);
        if first.block_bytes > 0 && u64::from(shape.slice) % super::bulk::V2_BLOCK != 0 {
            shape.slice = shape.slice.next_multiple_of(16 << 10);
        }
        let kernels = BulkKernels {
            sha1: match algo {
                Some(BlockAlgo::Sha1) => {
                    Some(self.kernel(KernelId::Bulk(BlockAlgo::Sha1, self.loads))?)
                }
                _ => None,
            },
            sha256: self.kernel(KernelId::Bulk(BlockAlgo::Sha256, self.loads))?,
            before_round: &|| self.faults.check(&self.ctx),
        };
        let mut engine = self
            .bulk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !engine.as_ref().is_some_and(|e| e.fits(&shape)) {
            // Drop the old buffers first: both sets at once may not fit in device memory.
            *engine = None;
            *engine = Some(self.ctx.scoped("making bulk buffers", || {
                Ok(BulkEngine::new(&self.ctx, shape))
            })?);
        }
        let engine = engine.as_mut().expect("just made");
        engine.run(&self.ctx, &kernels, shape, job, &mut items, sink)
    }

    fn digest(&self, algo: BlockAlgo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        let mut items = messages.iter().enumerate().map(|(i, m)| BulkItem {
            id: i as u64,
            extents: vec![Extent {
                source: Some(i),
                offset: 0,
                length: m.len() as u64,
            }],
            block_bytes: 0,
        });
        let mut digests = vec![Vec::new(); messages.len()];
        let mut sink = |r: BulkResult| {
            if let (Ok(i), Some(d)) = (usize::try_from(r.id), r.digest) {
                digests[i] = d;
            }
        };
        let job = BulkJob {
            algo: Some(algo),
            source: &MemorySource(messages),
            memory: DEFAULT_GPU_MEMORY,
        };
        self.run_bulk(&job, &mut items, &mut sink)?;
        Ok(digests)
    }
}

fn fixed<const N: usize>(digests: Vec<Vec<u8>>) -> Vec<[u8; N]> {
    digests
        .into_iter()
        .map(|d| d.try_into().expect("kernel digests have a fixed size"))
        .collect()
}

impl Device for GpuBackend {
    fn name(&self) -> String {
        format!(
            "gpu:{} ({}, {})",
            self.ctx.index, self.ctx.info.name, self.ctx.info.backend
        )
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn hardware(&self) -> Hardware {
        let info = &self.ctx.info;
        if self.ctx.is_software() {
            return Hardware::Unknown;
        }
        Hardware::Pci {
            vendor: info.vendor,
            device: info.device,
            bus: Some(info.device_pci_bus_id.clone()).filter(|bus| !bus.is_empty()),
        }
    }

    /// The same adapter opened again, with this one's scan and bulk settings.
    fn reopen(&self) -> Option<Result<Arc<dyn Backend>, HashError>> {
        let adapters = adapters();
        let adapter = adapters
            .get(self.ctx.index)
            .filter(|a| a.get_info().name == self.ctx.info.name);
        let Some(adapter) = adapter else {
            return Some(Err(self
                .ctx
                .error("the adapter is no longer listed at its index".to_owned())));
        };
        Some(Self::open(self.ctx.index, adapter).map(|mut gpu| {
            gpu.set_scan_shape(self.scan_shape());
            gpu.loads = self.loads;
            gpu.bulk_override = self.bulk_override;
            Arc::new(gpu) as Arc<dyn Backend>
        }))
    }
}

impl BulkHasher for GpuBackend {
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
        let max_pairs = usize::try_from(self.ctx.limits.max_storage_buffer_binding_size / 64)
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        pairs::parents(
            &self.ctx,
            self.kernel(KernelId::Sha256Pairs)?,
            nodes,
            max_pairs,
        )
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

    fn hash_items(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        self.run_bulk(job, items, sink)
    }

    fn bulk_shape(&self, piece_len: u64, memory: u64) -> Option<BulkShape> {
        Some(self.shape_for(piece_len, memory))
    }
}

impl NonceSearcher for GpuBackend {
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
        let (kernel, buffers) = self.scanner()?;
        let mut reported = scan::scan(&self.ctx, kernel, &buffers, job, self.scan_shape())?;
        drop(buffers);
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
