//! The hashing engine: two jobs, [`BulkHasher`] and [`NonceSearcher`] ([`Backend`] does both),
//! a rayon CPU implementation (the oracle) and a wgpu GPU implementation whose every reported
//! nonce is re-checked on the CPU.

pub mod bulk;
pub mod cpu;
mod fallback;
pub mod gpu;
mod multi;
pub mod probe;
mod select;
pub mod sha256_consts;
mod target;
pub mod watchdog;
mod work;

use std::fmt;

pub use fallback::FallbackBackend;
pub use multi::{DeviceStats, MultiBackend};
pub use select::{
    open_backend, open_devices, open_resilient_backend, open_watched_backend, open_watched_devices,
    open_watched_resilient_backend, BackendChoice, BackendChoiceError,
};
pub use target::KernelTarget;
pub use watchdog::{Watchdog, WatchdogConfig, WatchdogEvent};
pub use work::WorkKind;

/// A SHA-1 digest (BitTorrent v1 piece hash).
pub type Sha1Digest = [u8; 20];
/// A SHA-256 digest (BitTorrent v2 block or merkle node, or a Bitcoin hash in wire byte order).
pub type Sha256Digest = [u8; 32];

/// The digest algorithms the engine hashes messages with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Sha1,
    Sha256,
    /// SHA-256 applied twice, as Bitcoin does.
    Sha256d,
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha256d => "sha256d",
        })
    }
}

/// A sha256d nonce search over one block header: the header's first 64 bytes are already
/// compressed into `midstate`, so a backend only hashes the 16-byte tail per nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanJob {
    /// SHA-256 state after compressing header bytes 0..64.
    pub midstate: [u32; 8],
    /// Header bytes 64..76 (merkle root tail, time, bits) as big-endian message words.
    pub tail: [u32; 3],
    /// First nonce searched.
    pub start: u32,
    /// Number of nonces searched; `start + count <= 2^32` always holds.
    pub count: u64,
    /// A hash wins when it meets this target.
    pub target: KernelTarget,
}

/// A nonce range past 2^32 or an empty header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("nonce range {start}..{start}+{count} goes past 2^32 (the last nonce is 4294967295)")]
pub struct NonceRangeError {
    pub start: u64,
    pub count: u64,
}

impl ScanJob {
    /// Builds a job for nonces `start..start + count` of an 80-byte header.
    ///
    /// # Errors
    /// When the range goes past the 32-bit nonce space.
    pub fn new(
        header: &[u8; 80],
        start: u64,
        count: u64,
        target: KernelTarget,
    ) -> Result<Self, NonceRangeError> {
        let end = start.checked_add(count);
        let Some(end) = end.filter(|&end| end <= 1 << 32) else {
            return Err(NonceRangeError { start, count });
        };
        let start = u32::try_from(start).map_err(|_| NonceRangeError { start, count })?;
        debug_assert!(end >= u64::from(start));
        let mut midstate = cpu::SHA256_IV;
        let first: [u8; 64] = header[..64].try_into().expect("80 > 64");
        sha2::block_api::compress256(&mut midstate, &[first]);
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        Ok(Self {
            midstate,
            tail: [word(64), word(68), word(72)],
            start,
            count,
            target,
        })
    }

    /// The same job over a sub-range of nonces.
    #[must_use]
    pub fn sub_range(&self, start: u32, count: u64) -> Self {
        debug_assert!(u64::from(start) + count <= 1 << 32);
        Self {
            start,
            count,
            ..self.clone()
        }
    }
}

/// What a nonce search found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Winning nonces in increasing order, each re-checked on the CPU.
    pub found: Vec<u32>,
    /// Nonces hashed.
    pub hashes: u64,
    /// Nonces a device reported that failed the CPU re-check.
    pub hw_errors: u64,
}

/// What can go wrong inside a backend.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("GPU error on {adapter}: {message}")]
    Gpu { adapter: String, message: String },
    #[error("piece length must be at least 1 byte")]
    ZeroPieceLength,
    #[error("merkle pairs need an even number of nodes, got {0}")]
    OddNodeCount(usize),
    #[error("reading input")]
    Io(#[from] std::io::Error),
    #[error("{device} was dropped by the watchdog after {restarts} restarts: {reason}")]
    Dropped {
        device: String,
        restarts: u32,
        reason: String,
    },
}

impl HashError {
    /// A failure of the device itself (lost, hung, dropped), after which another device
    /// should take the work over, as opposed to a problem with the input.
    #[must_use]
    pub fn is_device_failure(&self) -> bool {
        matches!(self, Self::Gpu { .. } | Self::Dropped { .. })
    }
}

/// Where a device sits in the machine, for finding its temperature sensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hardware {
    /// The processor package.
    Cpu,
    /// A PCI device: vendor and device ids, and its bus address (`0000:03:00.0`) when the
    /// driver tells it.
    Pci {
        vendor: u32,
        device: u32,
        bus: Option<String>,
    },
    /// Nothing known (several devices together, a software device).
    Unknown,
}

/// The kind of device a backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Cpu,
    Gpu,
}

/// What [`NonceSearcher::tune`] aims for unless told otherwise: one scan call (one GPU dispatch)
/// short enough to drop stale work quickly, long enough to keep a GPU busy.
pub const DEFAULT_DISPATCH: std::time::Duration = std::time::Duration::from_millis(30);
/// The `--intensity` range for [`NonceSearcher::set_intensity`]: 2^12 is the smallest dispatch lavapipe
/// fills, 2^31 the largest nonce range a dispatch can take.
pub const MIN_INTENSITY: u8 = 12;
pub const MAX_INTENSITY: u8 = 31;

/// A device that hashes: its name in reports and its kind. The two jobs it can do are
/// [`BulkHasher`] (torrent pieces, messages) and [`NonceSearcher`] (sha256d mining).
pub trait Device: Send + Sync {
    /// A short name for reports, e.g. `cpu (2 threads, sha-ni)` or `gpu:0 (NVIDIA H100)`.
    fn name(&self) -> String;

    fn kind(&self) -> BackendKind;

    /// Per-device counters for backends made of several devices; empty for a single device.
    fn device_stats(&self) -> Vec<DeviceStats> {
        Vec::new()
    }

    /// Where the device sits, for its temperature.
    fn hardware(&self) -> Hardware {
        Hardware::Unknown
    }

    /// A fresh instance of the same device, as the watchdog restarts it; `None` where there is
    /// nothing to reopen.
    fn reopen(&self) -> Option<Result<std::sync::Arc<dyn Backend>, HashError>> {
        None
    }
}

/// Bulk hashing: torrent pieces, v2 blocks and merkle pairs, messages of any length.
/// Implementations must agree bit for bit; the CPU one is the oracle.
pub trait BulkHasher: Device {
    /// SHA-1 of `data` split into pieces of `piece_len` bytes, the last one possibly shorter.
    ///
    /// # Errors
    /// A device failure, or a zero piece length.
    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError>;

    /// SHA-256 of `data` split into pieces of `piece_len` bytes (BitTorrent v2 uses 16 KiB
    /// blocks), the last one possibly shorter.
    ///
    /// # Errors
    /// A device failure, or a zero piece length.
    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError>;

    /// Merkle parents: `out[i] = SHA-256(nodes[2i] || nodes[2i+1])`.
    ///
    /// # Errors
    /// An odd number of nodes, or a device failure.
    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError>;

    /// Digest of one message of any length: several messages of any lengths hash in one call,
    /// carrying hash state across device dispatches where a message is long.
    ///
    /// # Errors
    /// A device failure.
    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError>;

    /// Bulk hashing of messages the backend reads itself through `source`: each item's whole
    /// digest with `job.algo` (if any) and the SHA-256 of its v2 blocks, answered through `sink` as
    /// each completes (in any order). `job.memory` bounds the buffers in flight. Backends without
    /// a streaming engine read each message whole and use [`BulkHasher::digest_messages`].
    ///
    /// # Errors
    /// A device failure.
    fn hash_items(
        &self,
        job: &bulk::BulkJob<'_>,
        items: &mut dyn Iterator<Item = bulk::BulkItem>,
        sink: &mut dyn FnMut(bulk::BulkResult),
    ) -> Result<bulk::BulkReport, HashError> {
        bulk::hash_in_memory(self, job, items, sink)
    }

    /// The shape [`BulkHasher::hash_items`] takes on this device for messages of `piece_len`
    /// bytes within `memory`; `None` where bulk work has no rounds (the CPU).
    fn bulk_shape(&self, _piece_len: u64, _memory: u64) -> Option<gpu::BulkShape> {
        None
    }
}

/// The sha256d nonce search from a midstate, sized and tuned per device. Every nonce an
/// implementation reports has passed the CPU re-check.
pub trait NonceSearcher: Device {
    /// Nonces worth giving one [`NonceSearcher::scan`] call: enough to keep the device busy, few
    /// enough that progress and new work are noticed quickly (see [`NonceSearcher::tune`]).
    fn scan_slice(&self) -> u64 {
        1 << 24
    }

    /// Sizes [`NonceSearcher::scan_slice`] so one scan call (on a GPU, one dispatch) takes about
    /// `target`, by measuring; returns the nonces per call chosen.
    ///
    /// # Errors
    /// A device failure while measuring.
    fn tune(&self, _target: std::time::Duration) -> Result<Option<u32>, HashError> {
        Ok(None)
    }

    /// Fixes the nonces per device dispatch at `2^intensity` (GPU only; the CPU ignores it).
    fn set_intensity(&self, _intensity: u8) {}

    /// Searches a nonce range; every reported nonce has passed the CPU re-check.
    ///
    /// # Errors
    /// A device failure.
    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError>;
}

/// Both jobs on one device: what `--backend` opens. Every type that does both is one.
pub trait Backend: BulkHasher + NonceSearcher {}

impl<T: BulkHasher + NonceSearcher + ?Sized> Backend for T {}

/// Splits `data` into pieces of `piece_len` bytes, the last one possibly shorter.
///
/// # Errors
/// A zero piece length.
pub fn split_pieces(data: &[u8], piece_len: usize) -> Result<Vec<&[u8]>, HashError> {
    if piece_len == 0 {
        return Err(HashError::ZeroPieceLength);
    }
    Ok(data.chunks(piece_len).collect())
}

/// Merkle pairs need an even number of nodes.
///
/// # Errors
/// An odd count.
pub fn check_pairs(nodes: &[Sha256Digest]) -> Result<(), HashError> {
    if nodes.len().is_multiple_of(2) {
        Ok(())
    } else {
        Err(HashError::OddNodeCount(nodes.len()))
    }
}
