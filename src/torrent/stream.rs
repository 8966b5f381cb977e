//! The streaming engine shared by verify and create. On the CPU every core reads a chunk of
//! whole pieces and hashes it itself, while the bytes are still in its cache; on a GPU a reader
//! thread fills large reusable chunks through a bounded queue and the calling thread hashes
//! each chunk on the device in one batch (SHA-1 pieces, SHA-256 blocks, merkle layers).
//! Peak memory is the chunk buffers in flight, fixed by `--memory`, whatever the torrent size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};

use crate::hash::cpu::CpuBackend;
use crate::hash::{Algo, Backend, BackendKind, HashError, Sha1Digest, Sha256Digest};

use super::layout::{Layout, PieceSpans, BLOCK_SIZE};
use super::merkle;

/// GPU chunks: large enough to fill the device with one dispatch round.
const GPU_CHUNK_BYTES: u64 = 64 << 20;
/// CPU chunks (at least one piece) stay within a core's L2 cache, so the bytes a core just
/// copied are still there when it hashes them.
const CPU_CHUNK_BYTES: u64 = 2 << 20;
/// More GPU buffers than this only make the queue hold more data.
const GPU_MAX_BUFFERS: u64 = 8;
/// Readers-and-hashers past this many cores only contend for the disk and memory bus.
const MAX_CORES: usize = 16;
/// The default for `--memory`.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

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
) -> Result<Vec<FileState>, StreamError> {
    let piece_length = layout.piece_length;
    if memory < 3 * piece_length {
        return Err(StreamError::MemoryTooSmall {
            memory,
            piece_length,
        });
    }
    let stamps: Vec<Stamp> = paths.iter().map(|p| stamp(p)).collect();
    let states = check_files(layout, paths);
    let mut states = match backend.kind() {
        BackendKind::Cpu => on_every_core(layout, paths, want, memory, &states, &mut sink)?,
        BackendKind::Gpu => pipelined(backend, layout, paths, want, memory, states, &mut sink)?,
    };
    for ((state, path), before) in states.iter_mut().zip(paths).zip(&stamps) {
        if *state == FileState::Present && before.is_some() && stamp(path) != *before {
            *state = FileState::Changed;
        }
    }
    Ok(states)
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

/// GPU: a reader thread fills large chunks through a bounded queue while one thread feeds
/// each chunk to the device as one batch.
fn pipelined(
    backend: &dyn Backend,
    layout: &Layout,
    paths: &[PathBuf],
    want: Want,
    memory: u64,
    states: Vec<FileState>,
    sink: &mut impl FnMut(&[PieceResult]),
) -> Result<Vec<FileState>, StreamError> {
    let piece_length = layout.piece_length;
    let chunk_bytes =
        (memory / 4).min(GPU_CHUNK_BYTES).max(piece_length) / piece_length * piece_length;
    // The hasher holds a buffer and the reader fills one; the rest wait in the queue.
    let buffers = (memory / chunk_bytes).clamp(3, GPU_MAX_BUFFERS);
    let buffers = usize::try_from(buffers).expect("a few buffers");
    let depth = buffers.saturating_sub(2).max(1);
    let chunk_bytes = usize::try_from(chunk_bytes).unwrap_or(usize::MAX);

    let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(depth);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut reader = Reader {
                layout,
                paths,
                states,
                open: None,
            };
            reader.run(chunk_bytes, buffers, &full_tx, &empty_rx);
            reader.states
        });
        let mut outcome = Ok(());
        for chunk in full_rx.iter() {
            let result = hash_chunk(backend, layout, want, &chunk);
            // The reader may have stopped already; a dropped buffer is then simply freed.
            let _ = empty_tx.send(chunk.buf);
            match result {
                Ok(results) => sink(&results),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Dropping the queue stops the reader if it is still going.
        drop(full_rx);
        drop(empty_tx);
        let states = reader.join().map_err(|_| StreamError::ReaderPanic)?;
        outcome.map_err(StreamError::from)?;
        Ok(states)
    })
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

struct Reader<'a> {
    layout: &'a Layout,
    paths: &'a [PathBuf],
    states: Vec<FileState>,
    /// The open file, its index and read position: pieces arrive in file order.
    open: Option<(usize, File, u64)>,
}

impl Reader<'_> {
    fn run(
        &mut self,
        chunk_bytes: usize,
        buffers: usize,
        full: &mpsc::SyncSender<Chunk>,
        empty: &mpsc::Receiver<Vec<u8>>,
    ) {
        let mut allocated = 0usize;
        let mut pieces = self.layout.pieces().peekable();
        while pieces.peek().is_some() {
            let mut buf = if allocated < buffers {
                allocated += 1;
                Vec::with_capacity(chunk_bytes)
            } else {
                match empty.recv() {
                    Ok(buf) => buf,
                    Err(_) => return,
                }
            };
            let batch = next_chunk(&mut pieces, chunk_bytes);
            let slots = self.fill(batch, &mut buf);
            if full.send(Chunk { buf, slots }).is_err() {
                return;
            }
        }
    }

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
            let owner = piece
                .spans
                .iter()
                .find(|s| !self.layout.files[s.file].pad)
                .or(piece.spans.first())
                .copied();
            let Some(owner) = owner else { continue };
            let real = piece
                .spans
                .iter()
                .filter(|s| !self.layout.files[s.file].pad)
                .map(|s| s.file);
            let first = real.clone().min().unwrap_or(owner.file);
            let last = real.max().unwrap_or(owner.file);
            let data_length = if self.layout.files[owner.file].pad {
                0
            } else {
                owner.length
            };
            slots.push(Slot {
                index: u64::from(piece.index.get()),
                file: owner.file,
                file_piece: owner.offset / self.layout.piece_length,
                files: first..=last,
                start,
                length,
                data_length: usize::try_from(data_length).unwrap_or(usize::MAX),
                file_length: self.layout.files[owner.file].length,
                readable,
            });
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
        // Pieces grouped by leaf width (a power of two): each group reduces a layer at a time.
        let mut groups: BTreeMap<usize, (Vec<usize>, Vec<Sha256Digest>)> = BTreeMap::new();
        for &i in &with_data {
            let slot = &chunk.slots[i];
            let count = slot.data_length.div_ceil(block);
            let width = merkle::leaf_width(count as u64, slot.file_length, layout.piece_length);
            let width = usize::try_from(width).expect("leaf width is at most a piece's blocks");
            let (members, leaves) = groups.entry(width).or_default();
            members.push(i);
            leaves.extend(
                digests
                    .by_ref()
                    .take(count)
                    .map(|d| d.try_into().unwrap_or([0; 32])),
            );
            leaves.resize(members.len() * width, [0; 32]);
        }
        for (width, (members, leaves)) in groups {
            let roots = merkle::reduce_groups(backend, leaves, width.trailing_zeros())?;
            for (member, root) in members.into_iter().zip(roots) {
                v2[member] = Some(root);
            }
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
