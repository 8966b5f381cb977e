//! Bulk work on the CPU: every worker takes a chunk of whole messages, reads it into its own
//! buffer and hashes it at once, while the bytes it just read are still in its core's cache.
//! Nothing crosses cores but the digests.

use std::sync::mpsc;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::hash::bulk::{
    read_into, BlockAlgo, BulkItem, BulkJob, BulkReport, BulkResult, BulkSource, V2_BLOCK,
};
use crate::hash::HashError;

/// A worker's chunk: within a core's L2 cache, so what it read is still there when it hashes.
const CHUNK_BYTES: u64 = 2 << 20;
/// Workers past this many cores only contend for the disk and the memory bus.
const MAX_WORKERS: usize = 16;

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

/// Reads the messages of a batch back to back into `buf` and hashes each.
fn hash_batch(
    algo: Option<BlockAlgo>,
    batch: Vec<BulkItem>,
    source: &dyn BulkSource,
    buf: &mut Vec<u8>,
) -> Vec<BulkResult> {
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
