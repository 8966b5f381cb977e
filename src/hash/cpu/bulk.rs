//! Bulk work on the CPU: every worker takes a chunk of whole messages and hashes it at once:
//! in place from the page cache where the files can be mapped (no `read()` copy), otherwise
//! read into its own buffer while the bytes are still in its core's cache. Nothing crosses
//! cores but the digests.

use std::sync::mpsc;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::hash::bulk::{
    read_into, BlockAlgo, BulkItem, BulkJob, BulkReport, BulkResult, BulkSource, V2_BLOCK,
};
use crate::hash::cpu::MappedWindow;
use crate::hash::HashError;

/// A worker's chunk: within a core's L2 cache, so what it read is still there when it hashes.
const CHUNK_BYTES: u64 = 2 << 20;
/// Workers past this many cores only contend for the disk and the memory bus.
const MAX_WORKERS: usize = 16;
/// A file's part of a chunk smaller than this is read: mapping and unmapping it would cost
/// more than the copy it saves.
const MIN_MAP_BYTES: u64 = 256 << 10;

/// Hashes `items` on `threads` workers within `memory` bytes of buffers.
///
/// # Errors
/// None today: reading failures are answers (`readable: false`), not errors.
pub fn hash_items(
    threads: usize,
    job: &BulkJob<'_>,
    items: &mut dyn Iterator<Item = BulkItem>,
    sink: &mut dyn FnMut(BulkResult),
) -> Result<BulkReport, HashError> {
    let BulkJob {
        algo,
        source,
        memory,
    } = *job;
    let workers = threads.clamp(1, MAX_WORKERS);
    let chunk_bytes = (memory / workers as u64).clamp(1, CHUNK_BYTES);
    let mut report = BulkReport::default();
    let (work_tx, work_rx) = mpsc::sync_channel::<Vec<BulkItem>>(workers);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<Vec<BulkResult>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            scope.spawn(move || {
                let mut buf = Vec::new();
                loop {
                    let batch = match work_rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv()
                    {
                        Ok(batch) => batch,
                        Err(_) => return,
                    };
                    let results = hash_batch(algo, batch, source, &mut buf);
                    if done_tx.send(results).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut items = items.peekable();
        while items.peek().is_some() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(item) = items.peek() {
                if !batch.is_empty() && bytes + item.length() > chunk_bytes {
                    break;
                }
                bytes += item.length();
                batch.push(items.next().expect("peeked"));
            }
            report.rounds += 1;
            // Workers may all be busy: answer what is done while waiting for one.
            let mut pending = Some(batch);
            while let Some(batch) = pending.take() {
                match work_tx.try_send(batch) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(batch)) => {
                        pending = Some(batch);
                        match done_rx.recv_timeout(std::time::Duration::from_millis(1)) {
                            Ok(results) => results.into_iter().for_each(&mut *sink),
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => return,
                }
            }
            while let Ok(results) = done_rx.try_recv() {
                results.into_iter().for_each(&mut *sink);
            }
        }
        drop(work_tx);
        for results in done_rx {
            results.into_iter().for_each(&mut *sink);
        }
    });
    Ok(report)
}

/// Hashes the messages of a batch in place where every file in it can be mapped, else reads
/// them back to back into `buf` and hashes each.
fn hash_batch(
    algo: Option<BlockAlgo>,
    batch: Vec<BulkItem>,
    source: &dyn BulkSource,
    buf: &mut Vec<u8>,
) -> Vec<BulkResult> {
    if let Some(results) = hash_mapped(algo, &batch, source) {
        return results;
    }
    let total: u64 = batch.iter().map(BulkItem::length).sum();
    buf.resize(usize::try_from(total).unwrap_or(usize::MAX), 0);
    let mut readable = Vec::with_capacity(batch.len());
    let mut at = 0usize;
    for item in &batch {
        let length = usize::try_from(item.length()).unwrap_or(usize::MAX);
        readable.push(read_into(item, source, &mut buf[at..at + length]));
        at += length;
    }
    let block = usize::try_from(V2_BLOCK).expect("16 KiB");
    let mut at = 0usize;
    batch
        .into_iter()
        .zip(readable)
        .map(|(item, readable)| {
            let length = usize::try_from(item.length()).unwrap_or(usize::MAX);
            let message = &buf[at..at + length];
            at += length;
            let digest = match algo {
                Some(BlockAlgo::Sha1) => Some(Sha1::digest(message).to_vec()),
                Some(BlockAlgo::Sha256) => Some(Sha256::digest(message).to_vec()),
                None => None,
            };
            let block_end = usize::try_from(item.block_bytes)
                .unwrap_or(usize::MAX)
                .min(message.len());
            BulkResult {
                id: item.id,
                digest,
                blocks: message[..block_end]
                    .chunks(block)
                    .map(|b| Sha256::digest(b).into())
                    .collect(),
                readable,
            }
        })
        .collect()
}

/// One mapped file range of a batch.
struct Window {
    source: usize,
    start: u64,
    map: MappedWindow,
}

/// The batch hashed straight from file windows, one per file it touches; `None` when a file's
/// part is too small to be worth mapping, cannot be mapped, or a message's v2 blocks do not lie
/// in its first extent.
fn hash_mapped(
    algo: Option<BlockAlgo>,
    batch: &[BulkItem],
    source: &dyn BulkSource,
) -> Option<Vec<BulkResult>> {
    // Messages of a batch are consecutive, so each file's extents form one range.
    let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
    for item in batch {
        let first = item.extents.first();
        if item.block_bytes > 0
            && first.is_none_or(|e| e.source.is_none() || item.block_bytes > e.length)
        {
            return None;
        }
        for extent in &item.extents {
            let Some(file) = extent.source else { continue };
            let end = extent.offset + extent.length;
            match ranges.iter_mut().find(|r| r.0 == file) {
                Some(range) => {
                    range.1 = range.1.min(extent.offset);
                    range.2 = range.2.max(end);
                }
                None => ranges.push((file, extent.offset, end)),
            }
        }
    }
    if ranges.is_empty() || ranges.iter().any(|r| r.2 - r.1 < MIN_MAP_BYTES) {
        return None;
    }
    let windows = ranges
        .into_iter()
        .map(|(file, start, end)| {
            let map = source.map(file, start, usize::try_from(end - start).ok()?)?;
            Some(Window {
                source: file,
                start,
                map,
            })
        })
        .collect::<Option<Vec<Window>>>()?;
    let bytes_of = |file: usize, offset: u64, length: u64| -> &[u8] {
        let window = windows
            .iter()
            .find(|w| w.source == file)
            .expect("a window per file");
        let at = usize::try_from(offset - window.start).expect("inside the window");
        &window.map.bytes()[at..at + usize::try_from(length).expect("inside the window")]
    };
    let results = batch
        .iter()
        .map(|item| {
            let mut whole = algo.map(Whole::new);
            for extent in &item.extents {
                match extent.source {
                    Some(file) => {
                        if let Some(whole) = &mut whole {
                            whole.update(bytes_of(file, extent.offset, extent.length));
                        }
                    }
                    None => {
                        let mut left = extent.length;
                        while left > 0 {
                            let n = left.min(ZEROS.len() as u64);
                            if let Some(whole) = &mut whole {
                                whole.update(&ZEROS[..usize::try_from(n).expect("16 KiB")]);
                            }
                            left -= n;
                        }
                    }
                }
            }
            let block = usize::try_from(V2_BLOCK).expect("16 KiB");
            let blocks = match item.extents.first() {
                Some(first) if item.block_bytes > 0 => {
                    let file = first.source.expect("checked above");
                    bytes_of(file, first.offset, item.block_bytes)
                        .chunks(block)
                        .map(|b| Sha256::digest(b).into())
                        .collect()
                }
                _ => Vec::new(),
            };
            let readable = item.extents.iter().all(|e| {
                e.source
                    .is_none_or(|file| !windows.iter().any(|w| w.source == file && w.map.faulted()))
            });
            BulkResult {
                id: item.id,
                digest: whole.map(Whole::finish),
                blocks,
                readable,
            }
        })
        .collect();
    Some(results)
}

/// Zeros fed for pad extents.
static ZEROS: [u8; 16 << 10] = [0; 16 << 10];

/// A whole-message digest fed extent by extent.
enum Whole {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Whole {
    fn new(algo: BlockAlgo) -> Self {
        match algo {
            BlockAlgo::Sha1 => Whole::Sha1(Sha1::new()),
            BlockAlgo::Sha256 => Whole::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Whole::Sha1(h) => h.update(bytes),
            Whole::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Whole::Sha1(h) => h.finalize().to_vec(),
            Whole::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::hash::bulk::Extent;

    /// Temporary files as sources; `mapping` chooses whether [`BulkSource::map`] answers, and
    /// `shrink_after_map` truncates a file right after mapping it (a file cut short mid-run).
    struct Files {
        files: Vec<File>,
        mapping: bool,
        shrink_after_map: Option<(usize, u64)>,
        maps: std::sync::atomic::AtomicUsize,
    }

    impl BulkSource for Files {
        fn read(&self, source: usize, offset: u64, dst: &mut [u8]) -> bool {
            self.files[source].read_exact_at(dst, offset).is_ok()
        }

        fn map(&self, source: usize, offset: u64, len: usize) -> Option<MappedWindow> {
            if !self.mapping {
                return None;
            }
            let window = MappedWindow::new(&self.files[source], offset, len)?;
            self.maps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some((file, size)) = self.shrink_after_map {
                if file == source {
                    self.files[file].set_len(size).unwrap();
                }
            }
            Some(window)
        }
    }

    fn files(sizes: &[usize]) -> Vec<File> {
        let mut rng = crate::selftest::XorShift::new(9);
        sizes
            .iter()
            .map(|&size| {
                let mut file = tempfile::tempfile().unwrap();
                file.write_all(&rng.bytes(size)).unwrap();
                file
            })
            .collect()
    }

    fn extent(source: Option<usize>, offset: u64, length: u64) -> Extent {
        Extent {
            source,
            offset,
            length,
        }
    }

    /// Hybrid-shaped work: pieces inside a file, a piece across two files, a pad, v2 blocks;
    /// under 2 MiB in all, so one batch, every file's part of it big enough to be mapped.
    fn items() -> Vec<BulkItem> {
        let piece = 512 << 10;
        vec![
            BulkItem {
                id: 0,
                extents: vec![extent(Some(0), 0, piece)],
                block_bytes: piece,
            },
            BulkItem {
                id: 1,
                extents: vec![
                    extent(Some(0), piece, 300_000),
                    extent(None, 0, piece - 300_000),
                ],
                block_bytes: 300_000,
            },
            BulkItem {
                id: 2,
                extents: vec![
                    extent(Some(1), 0, 400_000),
                    extent(Some(2), 0, piece - 400_000),
                ],
                block_bytes: 0,
            },
            BulkItem {
                id: 3,
                extents: vec![extent(Some(2), piece - 400_000, 400_000)],
                block_bytes: 0,
            },
        ]
    }

    fn run(source: &Files, algo: BlockAlgo) -> Vec<BulkResult> {
        let job = BulkJob {
            algo: Some(algo),
            source,
            memory: 64 << 20,
        };
        let mut results = Vec::new();
        hash_items(2, &job, &mut items().into_iter(), &mut |r| results.push(r)).unwrap();
        results.sort_by_key(|r| r.id);
        results
    }

    #[test]
    fn mapped_and_read_paths_agree() {
        let sizes = [(512 << 10) + 300_000, 400_000, 2_000_000];
        for algo in [BlockAlgo::Sha1, BlockAlgo::Sha256] {
            let read = Files {
                files: files(&sizes),
                mapping: false,
                shrink_after_map: None,
                maps: 0.into(),
            };
            let mapped = Files {
                files: files(&sizes),
                mapping: true,
                shrink_after_map: None,
                maps: 0.into(),
            };
            let want = run(&read, algo);
            assert_eq!(want.len(), 4);
            assert!(want.iter().all(|r| r.readable));
            assert_eq!(run(&mapped, algo), want, "{algo:?}");
            assert_eq!(mapped.maps.into_inner(), 3, "one window per file");
        }
    }

    #[test]
    fn a_file_cut_short_while_mapped_is_unreadable_not_a_crash() {
        let source = Files {
            files: files(&[(512 << 10) + 300_000, 400_000, 2_000_000]),
            mapping: true,
            shrink_after_map: Some((2, 4096)),
            maps: 0.into(),
        };
        let results = run(&source, BlockAlgo::Sha1);
        let readable: Vec<bool> = results.iter().map(|r| r.readable).collect();
        assert_eq!(readable, [true, true, false, false]);
    }
}
