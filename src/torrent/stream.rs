//! The streaming engine shared by verify and create. On the CPU every core reads a chunk of
//! whole pieces and hashes it itself, while the bytes are still in its cache; on a GPU a reader
//! thread fills large reusable chunks through a bounded queue and the calling thread hashes
//! each chunk on the device in one batch (SHA-1 pieces, SHA-256 blocks, merkle layers).
//! Peak memory is the chunk buffers in flight, fixed by `--memory`, whatever the torrent size.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};

use crate::hash::bulk::{BlockAlgo, BulkItem, BulkReport, BulkResult, BulkSource, Extent};
use crate::hash::cpu::CpuBackend;
use crate::hash::{Algo, Backend, BackendKind, HashError, Sha1Digest, Sha256Digest};

use super::layout::{Layout, PieceSpans, BLOCK_SIZE};
use super::merkle;

/// CPU chunks (at least one piece) stay within a core's L2 cache, so the bytes a core just
/// copied are still there when it hashes them.
const CPU_CHUNK_BYTES: u64 = 2 << 20;
/// Readers-and-hashers past this many cores only contend for the disk and memory bus.
const MAX_CORES: usize = 16;
/// The default for `--memory` on the CPU.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// The default for `--memory` on `kind` of backend: a GPU needs thousands of pieces in flight
/// (see [`crate::hash::gpu::DEFAULT_GPU_MEMORY`]).
#[must_use]
pub fn default_memory(kind: BackendKind) -> u64 {
    match kind {
        BackendKind::Cpu => DEFAULT_MEMORY,
        BackendKind::Gpu => crate::hash::gpu::DEFAULT_GPU_MEMORY,
    }
}

/// How a file on disk compares with the torrent before reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Present,
    Missing,
    WrongSize,
    Unreadable,
    /// Its size or modification time changed while it was being read: what was hashed may be
    /// neither the old nor the new content.
    Changed,
}

/// What a file looked like before reading: its length and modification time.
type Stamp = Option<(u64, std::time::SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Which hashes to compute per piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    pub v1: bool,
    pub v2: bool,
}

/// The hashes of one piece, or why it could not be read.
#[derive(Clone, Debug)]
pub struct PieceResult {
    /// Global piece index (v1 index, or libtorrent's per-file numbering for v2-only).
    pub index: u64,
    /// The file owning the piece's first byte (the file a v2 piece belongs to).
    pub file: usize,
    /// The piece's index within that file (v2 numbering).
    pub file_piece: u64,
    /// Files whose bytes the piece holds (pad and empty files excluded).
    pub files: std::ops::RangeInclusive<usize>,
    /// Bytes of the piece (pad bytes included).
    pub length: u64,
    /// `None` when a byte of the piece could not be read.
    pub v1: Option<Sha1Digest>,
    /// The v2 piece hash, or the file root for a file no longer than one piece.
    pub v2: Option<Sha256Digest>,
}

/// Errors that stop the engine (per-file problems are reported, not raised).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("--memory {memory} bytes is too small: it must hold at least 3 pieces of {piece_length} bytes")]
    MemoryTooSmall { memory: u64, piece_length: u64 },
    #[error("a reading thread panicked")]
    ReaderPanic,
}

struct Slot {
    index: u64,
    file: usize,
    file_piece: u64,
    files: std::ops::RangeInclusive<usize>,
    start: usize,
    length: usize,
    /// Bytes of the owning file at the start of the piece (the rest is pad).
    data_length: usize,
    /// Length of the owning file, which decides the merkle padding.
    file_length: u64,
    readable: bool,
}

struct Chunk {
    buf: Vec<u8>,
    slots: Vec<Slot>,
}

/// Stats every non-pad file before reading.
#[must_use]
pub fn check_files(layout: &Layout, paths: &[PathBuf]) -> Vec<FileState> {
    layout
        .files
        .iter()
        .zip(paths)
        .map(|(file, path)| {
            if file.pad {
                return FileState::Present;
            }
            match std::fs::metadata(path) {
                Ok(meta) if !meta.is_file() => FileState::Unreadable,
                Ok(meta) if meta.len() != file.length => FileState::WrongSize,
                Ok(_) => FileState::Present,
                Err(e) if e.kind() == io::ErrorKind::NotFound => FileState::Missing,
                Err(_) => FileState::Unreadable,
            }
        })
        .collect()
}

/// Runs the engine over `layout`, whose files live at `paths`, calling `sink` with each batch of
/// results (batches arrive in any order). Returns the file states, updated with read failures.
///
/// # Errors
/// A backend failure or a memory limit below three pieces.
pub fn run(
    backend: &dyn Backend,
    layout: &Layout,
    paths: &[PathBuf],
    want: Want,
    memory: u64,
    mut sink: impl FnMut(&[PieceResult]),
) -> Result<Streamed, StreamError> {
    let piece_length = layout.piece_length;
    if memory < 3 * piece_length {
        return Err(StreamError::MemoryTooSmall {
            memory,
            piece_length,
        });
    }
    let stamps: Vec<Stamp> = paths.iter().map(|p| stamp(p)).collect();
    let states = check_files(layout, paths);
    let mut device = None;
    let mut states = match backend.kind() {
        BackendKind::Cpu => on_every_core(layout, paths, want, memory, &states, &mut sink)?,
        BackendKind::Gpu => {
            let (states, report) =
                on_device(backend, layout, paths, want, memory, states, &mut sink)?;
            device = Some(report);
            states
        }
    };
    for ((state, path), before) in states.iter_mut().zip(paths).zip(&stamps) {
        if *state == FileState::Present && before.is_some() && stamp(path) != *before {
            *state = FileState::Changed;
        }
    }
    Ok(Streamed { states, device })
}

/// What the engine found besides the piece results.
#[derive(Debug)]
pub struct Streamed {
    /// The file states, updated with read failures and changes during the run.
    pub states: Vec<FileState>,
    /// How the device was kept busy (GPU backends only).
    pub device: Option<BulkReport>,
}

/// CPU: one thread per core reads a chunk and hashes it itself, while the bytes it just
/// copied are still in its own cache; nothing crosses cores but the results.
fn on_every_core(
    layout: &Layout,
    paths: &[PathBuf],
    want: Want,
    memory: u64,
    states: &[FileState],
    sink: &mut impl FnMut(&[PieceResult]),
) -> Result<Vec<FileState>, StreamError> {
    let piece_length = layout.piece_length;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_CORES));
    let workers =
        usize::try_from(memory / piece_length).map_or(cores, |most| cores.min(most).max(1));
    let per_worker = memory / workers as u64;
    let chunk_bytes =
        per_worker.min(CPU_CHUNK_BYTES.max(piece_length)) / piece_length * piece_length;
    let chunk_bytes = usize::try_from(chunk_bytes).unwrap_or(usize::MAX);
    let pieces = Mutex::new(layout.pieces().peekable());
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = mpsc::sync_channel::<Result<Vec<PieceResult>, HashError>>(workers * 2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (done_tx, pieces, stop) = (done_tx.clone(), &pieces, &stop);
                scope.spawn(move || {
                    let hasher = CpuBackend::inline();
                    let mut reader = Reader {
                        layout,
                        paths,
                        states: states.to_vec(),
                        open: None,
                    };
                    let mut buf = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let batch = next_chunk(
                            &mut pieces.lock().unwrap_or_else(PoisonError::into_inner),
                            chunk_bytes,
                        );
                        if batch.is_empty() {
                            break;
                        }
                        let slots = reader.fill(batch, &mut buf);
                        let chunk = Chunk { buf, slots };
                        let result = hash_chunk(&hasher, layout, want, &chunk);
                        buf = chunk.buf;
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if done_tx.send(result).is_err() {
                            break;
                        }
                    }
                    reader.states
                })
            })
            .collect();
        drop(done_tx);
        let mut outcome = Ok(());
        for result in done_rx.iter() {
            match result {
                Ok(results) if outcome.is_ok() => sink(&results),
                Ok(_) => {}
                Err(e) => outcome = outcome.and(Err(e)),
            }
        }
        // A file one worker could not read is marked in that worker's copy only.
        let mut merged = states.to_vec();
        for handle in handles {
            let worker_states = handle.join().map_err(|_| StreamError::ReaderPanic)?;
            for (state, seen) in merged.iter_mut().zip(worker_states) {
                if seen != *state {
                    *state = seen;
                }
            }
        }
        outcome.map_err(StreamError::from)?;
        Ok(merged)
    })
}

/// Results the device answers before their merkle layers are reduced and handed on together.
const DEVICE_BATCH: usize = 4096;

/// GPU: the device engine reads every piece a slice at a time straight into its upload buffers
/// (through [`FileSource`]), with thousands of pieces in flight; v2 leaves come back with the
/// SHA-1 digests and the merkle layers are reduced in batches.
fn on_device(
    backend: &dyn Backend,
    layout: &Layout,
    paths: &[PathBuf],
    want: Want,
    memory: u64,
    states: Vec<FileState>,
    sink: &mut impl FnMut(&[PieceResult]),
) -> Result<(Vec<FileState>, BulkReport), StreamError> {
    let source = FileSource::new(layout, paths, states);
    let pending: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());
    let mut items = layout.pieces().filter_map(|piece| {
        let slot = describe(layout, &piece, 0, true)?;
        let extents = piece
            .spans
            .iter()
            .map(|span| Extent {
                source: (!layout.files[span.file].pad).then_some(span.file),
                offset: span.offset,
                length: span.length,
            })
            .collect();
        let item = BulkItem {
            id: slot.index,
            extents,
            block_bytes: if want.v2 { slot.data_length as u64 } else { 0 },
        };
        pending.borrow_mut().insert(slot.index, slot);
        Some(item)
    });
    let mut answered: Vec<(Slot, BulkResult)> = Vec::new();
    let mut failure = None;
    let mut flush = |answered: &mut Vec<(Slot, BulkResult)>| -> Result<(), HashError> {
        let results = device_results(backend, layout, want, std::mem::take(answered))?;
        sink(&results);
        Ok(())
    };
    let mut on_result = |result: BulkResult| {
        let Some(mut slot) = pending.borrow_mut().remove(&result.id) else {
            return;
        };
        slot.readable = result.readable;
        answered.push((slot, result));
        if answered.len() >= DEVICE_BATCH && failure.is_none() {
            if let Err(e) = flush(&mut answered) {
                failure = Some(e);
            }
        }
    };
    let algo = want.v1.then_some(BlockAlgo::Sha1);
    let report = backend.hash_items(algo, &mut items, &source, memory, &mut on_result)?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    flush(&mut answered)?;
    Ok((source.into_states(), report))
}

/// Turns the device's answers into piece results, reducing the v2 leaves to piece hashes.
fn device_results(
    backend: &dyn Backend,
    layout: &Layout,
    want: Want,
    answered: Vec<(Slot, BulkResult)>,
) -> Result<Vec<PieceResult>, HashError> {
    let mut leaves = Vec::new();
    let mut with_leaves = Vec::new();
    for (i, (slot, result)) in answered.iter().enumerate() {
        if want.v2 && slot.readable && slot.data_length > 0 {
            with_leaves.push(i);
            leaves.push(PieceLeaves {
                data_length: slot.data_length,
                file_length: slot.file_length,
                leaves: result.blocks.clone(),
            });
        }
    }
    let mut v2: Vec<Option<Sha256Digest>> = vec![None; answered.len()];
    for (&i, root) in with_leaves.iter().zip(v2_roots(backend, layout, leaves)?) {
        v2[i] = Some(root);
    }
    Ok(answered
        .into_iter()
        .zip(v2)
        .map(|((slot, result), v2)| PieceResult {
            index: slot.index,
            file: slot.file,
            file_piece: slot.file_piece,
            files: slot.files,
            length: slot.length as u64,
            v1: if want.v1 && slot.readable {
                result.digest.and_then(|d| d.try_into().ok())
            } else {
                None
            },
            v2,
        })
        .collect())
}

/// The torrent's files as bulk sources: opened once each, read with positioned reads so
/// every core can fill its part of an upload buffer at once.
struct FileSource<'a> {
    layout: &'a Layout,
    paths: &'a [PathBuf],
    files: Vec<std::sync::OnceLock<Option<File>>>,
    states: Mutex<Vec<FileState>>,
}

impl<'a> FileSource<'a> {
    fn new(layout: &'a Layout, paths: &'a [PathBuf], states: Vec<FileState>) -> Self {
        Self {
            layout,
            paths,
            files: (0..paths.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            states: Mutex::new(states),
        }
    }

    fn into_states(self) -> Vec<FileState> {
        self.states
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn mark(&self, file: usize, state: FileState) {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)[file] = state;
    }
}

impl BulkSource for FileSource<'_> {
    fn read(&self, file: usize, offset: u64, dst: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let state = self.states.lock().unwrap_or_else(PoisonError::into_inner)[file];
        if self.layout.files[file].pad {
            dst.fill(0);
            return true;
        }
        if !matches!(state, FileState::Present | FileState::WrongSize) {
            return false;
        }
        let handle = self.files[file].get_or_init(|| File::open(&self.paths[file]).ok());
        let Some(handle) = handle else {
            self.mark(file, FileState::Unreadable);
            return false;
        };
        let mut filled = 0;
        while filled < dst.len() {
            match handle.read_at(&mut dst[filled..], offset + filled as u64) {
                Ok(0) => return false,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.mark(file, FileState::Unreadable);
                    return false;
                }
            }
        }
        true
    }
}

/// The next chunk's pieces: whole pieces up to `chunk_bytes` (at least one while any remain).
fn next_chunk(
    pieces: &mut std::iter::Peekable<impl Iterator<Item = PieceSpans>>,
    chunk_bytes: usize,
) -> Vec<PieceSpans> {
    let mut used = 0usize;
    let mut batch = Vec::new();
    while let Some(piece) = pieces.peek() {
        let length = usize::try_from(piece.length).unwrap_or(usize::MAX);
        if used.saturating_add(length) > chunk_bytes && !batch.is_empty() {
            break;
        }
        used = used.saturating_add(length);
        batch.push(pieces.next().expect("peeked"));
    }
    batch
}

/// Where a piece stands in the torrent: its owner file (the first that is not padding), the
/// files it touches and how much of it is the owner's data.
fn describe(layout: &Layout, piece: &PieceSpans, start: usize, readable: bool) -> Option<Slot> {
    let length = usize::try_from(piece.length).unwrap_or(usize::MAX);
    let owner = piece
        .spans
        .iter()
        .find(|s| !layout.files[s.file].pad)
        .or(piece.spans.first())
        .copied()?;
    let real = piece
        .spans
        .iter()
        .filter(|s| !layout.files[s.file].pad)
        .map(|s| s.file);
    let first = real.clone().min().unwrap_or(owner.file);
    let last = real.max().unwrap_or(owner.file);
    let data_length = if layout.files[owner.file].pad {
        0
    } else {
        owner.length
    };
    Some(Slot {
        index: u64::from(piece.index.get()),
        file: owner.file,
        file_piece: owner.offset / layout.piece_length,
        files: first..=last,
        start,
        length,
        data_length: usize::try_from(data_length).unwrap_or(usize::MAX),
        file_length: layout.files[owner.file].length,
        readable,
    })
}

struct Reader<'a> {
    layout: &'a Layout,
    paths: &'a [PathBuf],
    states: Vec<FileState>,
    /// The open file, its index and read position: pieces arrive in file order.
    open: Option<(usize, File, u64)>,
}

impl Reader<'_> {
    /// Reads `pieces` one after another into `buf` (grown as needed) and says where each is.
    fn fill(&mut self, pieces: Vec<PieceSpans>, buf: &mut Vec<u8>) -> Vec<Slot> {
        // Buffers are reused without clearing: every byte hashed is read or zeroed below.
        let mut used = 0usize;
        let mut slots = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let length = usize::try_from(piece.length).unwrap_or(usize::MAX);
            let start = used;
            used += length;
            if buf.len() < used {
                buf.resize(used, 0);
            }
            let mut readable = true;
            let mut cursor = start;
            for span in &piece.spans {
                let len = usize::try_from(span.length).unwrap_or(usize::MAX);
                let dst = &mut buf[cursor..cursor + len];
                if self.layout.files[span.file].pad {
                    dst.fill(0);
                } else if !self.read(span.file, span.offset, dst) {
                    readable = false;
                }
                cursor += len;
            }
            if let Some(slot) = describe(self.layout, &piece, start, readable) {
                slots.push(slot);
            }
        }
        slots
    }

    /// Reads a span into `dst`; false (and the file marked) when it cannot be read in full.
    fn read(&mut self, file: usize, offset: u64, dst: &mut [u8]) -> bool {
        if !matches!(self.states[file], FileState::Present | FileState::WrongSize) {
            return false;
        }
        if self.open.as_ref().is_none_or(|(open, _, _)| *open != file) {
            self.open = None;
            match File::open(&self.paths[file]) {
                Ok(handle) => self.open = Some((file, handle, 0)),
                Err(_) => {
                    self.states[file] = FileState::Unreadable;
                    return false;
                }
            }
        }
        let Some((_, handle, position)) = self.open.as_mut() else {
            return false;
        };
        let result = (|| -> io::Result<bool> {
            if *position != offset {
                handle.seek(SeekFrom::Start(offset))?;
                *position = offset;
            }
            let mut filled = 0;
            while filled < dst.len() {
                match handle.read(&mut dst[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            *position += filled as u64;
            Ok(filled == dst.len())
        })();
        match result {
            Ok(complete) => complete,
            Err(_) => {
                self.states[file] = FileState::Unreadable;
                self.open = None;
                false
            }
        }
    }
}

/// The v2 leaves of one piece's data.
struct PieceLeaves {
    data_length: usize,
    file_length: u64,
    leaves: Vec<Sha256Digest>,
}

/// The v2 piece hash (or the file root, for a file no longer than a piece) of each piece, with
/// pieces grouped by leaf width (a power of two) so each group reduces a layer at a time.
fn v2_roots(
    backend: &dyn Backend,
    layout: &Layout,
    pieces: Vec<PieceLeaves>,
) -> Result<Vec<Sha256Digest>, HashError> {
    let block = usize::try_from(BLOCK_SIZE).expect("16 KiB fits usize");
    let mut roots = vec![[0u8; 32]; pieces.len()];
    let mut groups: BTreeMap<usize, (Vec<usize>, Vec<Sha256Digest>)> = BTreeMap::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let count = piece.data_length.div_ceil(block);
        let width = merkle::leaf_width(count as u64, piece.file_length, layout.piece_length);
        let width = usize::try_from(width).expect("leaf width is at most a piece's blocks");
        let (members, leaves) = groups.entry(width).or_default();
        members.push(i);
        leaves.extend(piece.leaves);
        leaves.resize(members.len() * width, [0; 32]);
    }
    for (width, (members, leaves)) in groups {
        let reduced = merkle::reduce_groups(backend, leaves, width.trailing_zeros())?;
        for (member, root) in members.into_iter().zip(reduced) {
            roots[member] = root;
        }
    }
    Ok(roots)
}

/// Hashes one chunk: SHA-1 per piece, SHA-256 per 16 KiB block, then merkle layers grouped by
/// leaf width so that every layer of every piece in the chunk is one backend call.
fn hash_chunk(
    backend: &dyn Backend,
    layout: &Layout,
    want: Want,
    chunk: &Chunk,
) -> Result<Vec<PieceResult>, HashError> {
    let readable: Vec<usize> = (0..chunk.slots.len())
        .filter(|&i| chunk.slots[i].readable)
        .collect();
    let mut v1: Vec<Option<Sha1Digest>> = vec![None; chunk.slots.len()];
    let mut v2: Vec<Option<Sha256Digest>> = vec![None; chunk.slots.len()];

    if want.v1 && !readable.is_empty() {
        let messages: Vec<&[u8]> = readable
            .iter()
            .map(|&i| &chunk.buf[chunk.slots[i].start..][..chunk.slots[i].length])
            .collect();
        let digests = backend.digest_messages(Algo::Sha1, &messages)?;
        for (&i, digest) in readable.iter().zip(digests) {
            v1[i] = digest.try_into().ok();
        }
    }

    if want.v2 {
        let with_data: Vec<usize> = readable
            .iter()
            .copied()
            .filter(|&i| chunk.slots[i].data_length > 0)
            .collect();
        let block = usize::try_from(BLOCK_SIZE).expect("16 KiB fits usize");
        let mut blocks: Vec<&[u8]> = Vec::new();
        for &i in &with_data {
            let slot = &chunk.slots[i];
            blocks.extend(chunk.buf[slot.start..][..slot.data_length].chunks(block));
        }
        let mut digests = backend.digest_messages(Algo::Sha256, &blocks)?.into_iter();
        let leaves: Vec<PieceLeaves> = with_data
            .iter()
            .map(|&i| {
                let slot = &chunk.slots[i];
                let count = slot.data_length.div_ceil(block);
                PieceLeaves {
                    data_length: slot.data_length,
                    file_length: slot.file_length,
                    leaves: digests
                        .by_ref()
                        .take(count)
                        .map(|d| d.try_into().unwrap_or([0; 32]))
                        .collect(),
                }
            })
            .collect();
        for (&i, root) in with_data.iter().zip(v2_roots(backend, layout, leaves)?) {
            v2[i] = Some(root);
        }
    }

    Ok(chunk
        .slots
        .iter()
        .enumerate()
        .map(|(i, slot)| PieceResult {
            index: slot.index,
            file: slot.file,
            file_piece: slot.file_piece,
            files: slot.files.clone(),
            length: slot.length as u64,
            v1: v1[i],
            v2: v2[i],
        })
        .collect())
}
