//! Bulk hashing of messages the backend reads itself: each message is a list of extents of
//! numbered sources (files, or buffers in memory), so a GPU backend can read every message a
//! slice at a time straight into its upload buffers, with thousands of messages in flight, and
//! the CPU backend can read each one whole.

use std::collections::BTreeMap;

use super::{BulkHasher, HashError, Sha256Digest};

/// The message algorithms bulk work uses (BitTorrent v1 pieces, or SHA-256 of whole messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAlgo {
    Sha1,
    Sha256,
}

const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

impl BlockAlgo {
    #[must_use]
    pub fn iv(self) -> &'static [u32] {
        match self {
            BlockAlgo::Sha1 => &SHA1_IV,
            BlockAlgo::Sha256 => &super::cpu::SHA256_IV,
        }
    }

    #[must_use]
    pub fn state_words(self) -> usize {
        self.iv().len()
    }
}

/// BitTorrent v2 hashes every 16 KiB block of a file on its own.
pub const V2_BLOCK: u64 = 16 << 10;

/// A run of bytes of a message: `length` bytes of source `source` from `offset`, or zeros
/// (a BEP 47 pad file) when `source` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub source: Option<usize>,
    pub offset: u64,
    pub length: u64,
}

/// One message of bulk work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkItem {
    /// The caller's name for it; results carry it back.
    pub id: u64,
    pub extents: Vec<Extent>,
    /// The first `block_bytes` bytes are also hashed as separate SHA-256 messages of 16 KiB
    /// each, the last one possibly shorter (BitTorrent v2 leaves).
    pub block_bytes: u64,
}

impl BulkItem {
    #[must_use]
    pub fn length(&self) -> u64 {
        self.extents.iter().map(|e| e.length).sum()
    }

    #[must_use]
    pub fn block_count(&self) -> u64 {
        self.block_bytes.div_ceil(V2_BLOCK)
    }
}

/// What every message of a run shares: the whole-message algorithm (if any), where the bytes
/// come from, and the memory the backend may hold in buffers.
#[derive(Clone, Copy)]
pub struct BulkJob<'a> {
    pub algo: Option<BlockAlgo>,
    pub source: &'a dyn BulkSource,
    pub memory: u64,
}

/// Where the bytes of the extents come from.
pub trait BulkSource: Sync {
    /// Fills `dst` with bytes `offset..offset + dst.len()` of `source`; false when they cannot
    /// all be read (the message is then reported unreadable).
    fn read(&self, source: usize, offset: u64, dst: &mut [u8]) -> bool;

    /// Bytes `offset..offset + len` of `source` mapped in place, for a backend that hashes
    /// without copying; `None` (the default) where the source cannot be mapped, and the
    /// backend then uses [`BulkSource::read`].
    fn map(&self, _source: usize, _offset: u64, _len: usize) -> Option<super::cpu::MappedWindow> {
        None
    }
}

/// Sources that are buffers in memory, numbered by position.
pub struct MemorySource<'a>(pub &'a [&'a [u8]]);

impl BulkSource for MemorySource<'_> {
    fn read(&self, source: usize, offset: u64, dst: &mut [u8]) -> bool {
        let Some(bytes) = self.0.get(source) else {
            return false;
        };
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        match bytes.get(start..start + dst.len()) {
            Some(src) => {
                dst.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// The digests of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkResult {
    pub id: u64,
    /// The whole message's digest (big-endian state bytes), when one was asked for.
    pub digest: Option<Vec<u8>>,
    /// SHA-256 of each 16 KiB block of the first `block_bytes` bytes.
    pub blocks: Vec<Sha256Digest>,
    /// False when a byte could not be read: the digests are then meaningless.
    pub readable: bool,
}

/// How the device was kept busy, for `--json` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkReport {
    /// The most messages hashed side by side in one dispatch (whole-message lanes).
    pub lanes_per_dispatch: u32,
    /// The most v2 block lanes in one dispatch.
    pub block_lanes_per_dispatch: u32,
    /// Bytes each message contributes per round.
    pub slice_bytes: u32,
    /// Host buffer bytes the rounds in flight hold.
    pub bytes_in_flight: u64,
    /// Rounds dispatched.
    pub rounds: u64,
    /// The most rounds submitted at once before the oldest was collected.
    pub rounds_overlapped: u32,
}

impl BulkReport {
    /// Folds another run's figures into this one (a report covers a whole command).
    pub fn merge(&mut self, other: &BulkReport) {
        self.lanes_per_dispatch = self.lanes_per_dispatch.max(other.lanes_per_dispatch);
        self.block_lanes_per_dispatch = self
            .block_lanes_per_dispatch
            .max(other.block_lanes_per_dispatch);
        self.slice_bytes = self.slice_bytes.max(other.slice_bytes);
        self.bytes_in_flight = self.bytes_in_flight.max(other.bytes_in_flight);
        self.rounds += other.rounds;
        self.rounds_overlapped = self.rounds_overlapped.max(other.rounds_overlapped);
    }
}

/// Bytes the in-memory fallback reads before it hashes a batch.
const BATCH_BYTES: u64 = 64 << 20;

/// Reads messages whole, a batch at a time, and hashes each batch with
/// [`Backend::digest_messages`]: how backends without a streaming engine do bulk work.
///
/// # Errors
/// A failure of `backend`.
pub fn hash_in_memory<B: BulkHasher + ?Sized>(
    backend: &B,
    job: &BulkJob<'_>,
    items: &mut dyn Iterator<Item = BulkItem>,
    sink: &mut dyn FnMut(BulkResult),
) -> Result<BulkReport, HashError> {
    let BulkJob { algo, source, .. } = *job;
    let mut report = BulkReport::default();
    let mut items = items.peekable();
    while items.peek().is_some() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            let Some(item) = items.next() else { break };
            bytes += item.length();
            batch.push(item);
        }
        let mut readable = Vec::with_capacity(batch.len());
        let buffers: Vec<Vec<u8>> = batch
            .iter()
            .map(|item| {
                let (buf, ok) = read_whole(item, source);
                readable.push(ok);
                buf
            })
            .collect();
        let messages: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
        let digests = match algo {
            Some(BlockAlgo::Sha1) => Some(backend.digest_messages(super::Algo::Sha1, &messages)?),
            Some(BlockAlgo::Sha256) => {
                Some(backend.digest_messages(super::Algo::Sha256, &messages)?)
            }
            None => None,
        };
        let block = usize::try_from(V2_BLOCK).expect("16 KiB");
        let blocks: Vec<&[u8]> = batch
            .iter()
            .zip(&messages)
            .flat_map(|(item, message)| {
                let end = usize::try_from(item.block_bytes).unwrap_or(usize::MAX);
                message[..end.min(message.len())].chunks(block)
            })
            .collect();
        let mut block_digests = backend
            .digest_messages(super::Algo::Sha256, &blocks)?
            .into_iter();
        let mut digests = digests.map(Vec::into_iter);
        for (item, readable) in batch.into_iter().zip(readable) {
            let count = usize::try_from(item.block_count()).unwrap_or(usize::MAX);
            sink(BulkResult {
                id: item.id,
                digest: digests.as_mut().and_then(Iterator::next),
                blocks: block_digests
                    .by_ref()
                    .take(count)
                    .map(|d| d.try_into().unwrap_or([0; 32]))
                    .collect(),
                readable,
            });
        }
        report.rounds += 1;
    }
    Ok(report)
}

/// The bytes of `item`, and whether all of them could be read.
#[must_use]
pub fn read_whole(item: &BulkItem, source: &dyn BulkSource) -> (Vec<u8>, bool) {
    let length = usize::try_from(item.length()).unwrap_or(0);
    let mut buf = vec![0u8; length];
    let ok = read_into(item, source, &mut buf);
    (buf, ok)
}

/// Reads `item` into `dst` (its length; zeros for pad extents); false when a byte could not be
/// read.
pub fn read_into(item: &BulkItem, source: &dyn BulkSource, dst: &mut [u8]) -> bool {
    let mut at = 0;
    let mut ok = true;
    for extent in &item.extents {
        let len = usize::try_from(extent.length).unwrap_or(0);
        let out = &mut dst[at..at + len];
        match extent.source {
            Some(src) => ok &= source.read(src, extent.offset, out),
            None => out.fill(0),
        }
        at += len;
    }
    ok
}

/// Runs bulk work on `primary` and, if it fails with a device error, finishes on `fallback`:
/// the messages `primary` had taken but not answered, then the rest.
///
/// # Errors
/// A non-device failure of `primary`, or any failure of `fallback`.
pub fn hash_with_fallback(
    primary: &dyn BulkHasher,
    fallback: &dyn BulkHasher,
    on_failure: impl FnOnce(&HashError),
    job: &BulkJob<'_>,
    items: &mut dyn Iterator<Item = BulkItem>,
    sink: &mut dyn FnMut(BulkResult),
) -> Result<BulkReport, HashError> {
    let pending = std::cell::RefCell::new(BTreeMap::new());
    let result = {
        let mut tracked = (&mut *items).inspect(|item| {
            pending.borrow_mut().insert(item.id, item.clone());
        });
        let mut tracked_sink = |result: BulkResult| {
            pending.borrow_mut().remove(&result.id);
            sink(result);
        };
        primary.hash_items(job, &mut tracked, &mut tracked_sink)
    };
    match result {
        Err(e) if e.is_device_failure() => {
            on_failure(&e);
            let mut rest = pending.into_inner().into_values().chain(items);
            fallback.hash_items(job, &mut rest, sink)
        }
        result => result,
    }
}
