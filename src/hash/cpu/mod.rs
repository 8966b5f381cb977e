//! The rayon CPU backend over the `sha1`/`sha2` crates (which pick SHA-NI at run time), with a
//! hand-written SHA-NI sha256d nonce search. It is the oracle the GPU is checked against.

mod bulk;
mod mapped;
pub mod sha256d;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::bulk::{BulkItem, BulkJob, BulkReport, BulkResult};
use super::{
    check_pairs, split_pieces, Algo, BackendKind, BulkHasher, Device, HashError, KernelTarget,
    NonceSearcher, ScanJob, ScanOutcome, Sha1Digest, Sha256Digest,
};

/// The SHA-256 initial hash value.
pub use mapped::MappedWindow;
pub use sha256d::IV as SHA256_IV;

/// Nonces one rayon task searches: small enough to balance, large enough to amortize.
const SCAN_CHUNK: u64 = 1 << 18;

/// Whether this CPU has the SHA extensions that `sha1`/`sha2` and our nonce search use.
#[must_use]
pub fn has_sha_ni() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        false
    }
}

/// The oracle: the double SHA-256 of the header described by `job` with `nonce`, in wire order.
#[must_use]
pub fn sha256d_nonce(job: &ScanJob, nonce: u32) -> Sha256Digest {
    let mut block = [0u8; 64];
    for (dst, word) in block.chunks_exact_mut(4).zip(job.tail) {
        dst.copy_from_slice(&word.to_be_bytes());
    }
    block[12..16].copy_from_slice(&nonce.to_le_bytes());
    block[16] = 0x80;
    block[62..64].copy_from_slice(&640u16.to_be_bytes());
    let mut state = job.midstate;
    sha2::block_api::compress256(&mut state, &[block]);
    let mut first = [0u8; 32];
    for (dst, word) in first.chunks_exact_mut(4).zip(state) {
        dst.copy_from_slice(&word.to_be_bytes());
    }
    Sha256::digest(first).into()
}

/// Keeps the nonces that really meet the job's target; the rest are hardware errors.
#[must_use]
pub fn recheck(job: &ScanJob, reported: impl IntoIterator<Item = u32>) -> (Vec<u32>, u64) {
    let mut found = Vec::new();
    let mut hw_errors = 0;
    for nonce in reported {
        let in_range = u64::from(nonce.wrapping_sub(job.start)) < job.count;
        if in_range && job.target.is_met_by(&sha256d_nonce(job, nonce)) {
            found.push(nonce);
        } else {
            hw_errors += 1;
        }
    }
    found.sort_unstable();
    found.dedup();
    (found, hw_errors)
}

/// The CPU backend: a rayon pool of `threads` workers, or the calling thread alone.
pub struct CpuBackend {
    /// `None`: everything runs on the calling thread (see [`CpuBackend::inline`]).
    pool: Option<rayon::ThreadPool>,
    threads: usize,
    /// Nonces per [`Backend::scan`] call in a search: set by [`Backend::tune`].
    slice: AtomicU64,
}

impl CpuBackend {
    /// A backend using `threads` workers, or every core when `None`.
    ///
    /// # Errors
    /// When the thread pool cannot be created.
    pub fn new(threads: Option<usize>) -> Result<Self, HashError> {
        let threads = threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("peerhash-cpu-{i}"))
            .build()
            .map_err(|e| HashError::Io(std::io::Error::other(e)))?;
        Ok(Self {
            pool: Some(pool),
            threads,
            slice: AtomicU64::new(1 << 24),
        })
    }

    /// A backend that hashes on the calling thread: for callers that run one such thread
    /// per core and want each chunk hashed where it was just read, still in that core's cache.
    #[must_use]
    pub fn inline() -> Self {
        Self {
            pool: None,
            threads: 1,
            slice: AtomicU64::new(1 << 24),
        }
    }

    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// `f` over `items`, in the pool or on this thread.
    fn map<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
        match &self.pool {
            Some(pool) => pool.install(|| items.par_iter().map(f).collect()),
            None => items.iter().map(f).collect(),
        }
    }
}

fn digest_one(algo: Algo, message: &[u8]) -> Vec<u8> {
    match algo {
        Algo::Sha1 => Sha1::digest(message).to_vec(),
        Algo::Sha256 => Sha256::digest(message).to_vec(),
        Algo::Sha256d => Sha256::digest(Sha256::digest(message)).to_vec(),
    }
}

impl Device for CpuBackend {
    fn name(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            self.threads,
            sha256d::implementation()
        )
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn hardware(&self) -> super::Hardware {
        super::Hardware::Cpu
    }
}

impl BulkHasher for CpuBackend {
    fn sha1_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha1Digest>, HashError> {
        let pieces = split_pieces(data, piece_len)?;
        Ok(self.map(&pieces, |p| Sha1::digest(p).into()))
    }

    fn sha256_pieces(&self, data: &[u8], piece_len: usize) -> Result<Vec<Sha256Digest>, HashError> {
        let pieces = split_pieces(data, piece_len)?;
        Ok(self.map(&pieces, |p| Sha256::digest(p).into()))
    }

    fn sha256_pairs(&self, nodes: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        check_pairs(nodes)?;
        let pairs: Vec<&[Sha256Digest]> = nodes.chunks_exact(2).collect();
        Ok(self.map(&pairs, |pair| {
            Sha256::new()
                .chain_update(pair[0])
                .chain_update(pair[1])
                .finalize()
                .into()
        }))
    }

    fn digest_messages(&self, algo: Algo, messages: &[&[u8]]) -> Result<Vec<Vec<u8>>, HashError> {
        Ok(self.map(messages, |m| digest_one(algo, m)))
    }

    /// One worker per thread, each reading a cache-sized chunk of whole messages and hashing
    /// it while the bytes are still in its cache.
    fn hash_items(
        &self,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        bulk::hash_items(self.threads, job, items, sink)
    }
}

impl NonceSearcher for CpuBackend {
    fn scan_slice(&self) -> u64 {
        self.slice.load(Ordering::Relaxed)
    }

    /// Measures this CPU's search rate and sizes a scan call to take about `target`, in whole
    /// rounds of one chunk per worker so no worker idles at the end of a call.
    fn tune(&self, target: Duration) -> Result<Option<u32>, HashError> {
        let round = SCAN_CHUNK * self.threads as u64;
        let mut count = SCAN_CHUNK.min(round);
        let (count, elapsed) = loop {
            let job = ScanJob::new(&[0x5a; 80], 0, count, KernelTarget::ZERO).expect("in range");
            let started = Instant::now();
            self.scan(&job)?;
            let elapsed = started.elapsed();
            if elapsed >= target / 2 || count >= 1 << 31 {
                break (count, elapsed);
            }
            count *= 2;
        };
        #[allow(clippy::cast_precision_loss)]
        let rate = count as f64 / elapsed.as_secs_f64().max(1e-6);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let wanted = (rate * target.as_secs_f64()).min(f64::from(u32::MAX)) as u64;
        let slice = if wanted >= round {
            wanted / round * round
        } else {
            wanted.max(1024)
        };
        self.slice.store(slice, Ordering::Relaxed);
        Ok(Some(u32::try_from(slice).unwrap_or(u32::MAX)))
    }

    fn scan(&self, job: &ScanJob) -> Result<ScanOutcome, HashError> {
        let end = u64::from(job.start) + job.count;
        let chunk_starts: Vec<u64> = (u64::from(job.start)..end)
            .step_by(SCAN_CHUNK as usize)
            .collect();
        let reported: Vec<u32> = self
            .map(&chunk_starts, |&first| {
                let count = SCAN_CHUNK.min(end - first);
                let first = u32::try_from(first).expect("ScanJob keeps nonces below 2^32");
                sha256d::scan_range(&job.midstate, &job.tail, first, count, &job.target)
            })
            .concat();
        let (found, hw_errors) = recheck(job, reported);
        Ok(ScanOutcome {
            found,
            hashes: job.count,
            hw_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_counts_wrong_and_out_of_range_nonces_as_hardware_errors() {
        let genesis = crate::selftest::KNOWN_HEADERS[0].hex;
        let header = crate::mining::header::BlockHeader::from_hex(genesis).unwrap();
        let target = crate::mining::target::from_bits(0x1d00_ffff).unwrap();
        let job = ScanJob::new(header.bytes(), 2_083_236_000, 1000, target.into()).unwrap();
        let real = header.nonce();
        // A device that lies: a wrong nonce, a real winner reported twice, one outside the job.
        let (found, hw_errors) = recheck(&job, [real + 1, real, real, 5]);
        assert_eq!(found, vec![real]);
        assert_eq!(hw_errors, 2);
    }
}
