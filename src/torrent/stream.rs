//! The streaming engine shared by verify and create: every piece becomes bulk work for the
//! backend ([`BulkHasher::hash_items`]), which reads it through positioned reads of the files. On
//! the CPU every core reads a chunk of whole pieces and hashes it while the bytes are still in
//! its cache; on a GPU thousands of pieces are in flight, a slice of each per round. Peak
//! memory is the buffers in flight, fixed by `--memory`, whatever the torrent size.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::hash::bulk::{BlockAlgo, BulkItem, BulkJob, BulkReport, BulkResult, BulkSource, Extent};
use crate::hash::cpu::MappedWindow;
use crate::hash::{BackendKind, BulkHasher, HashError, Sha1Digest, Sha256Digest};

use super::layout::{Layout, PieceSpans, BLOCK_SIZE};
use super::merkle;

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
    /// False when a byte of the piece could not be read (then neither hash is computed).
    pub readable: bool,
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
    length: usize,
    /// Bytes of the owning file at the start of the piece (the rest is pad).
    data_length: usize,
    /// Length of the owning file, which decides the merkle padding.
    file_length: u64,
    readable: bool,
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
    backend: &dyn BulkHasher,
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
    let on_gpu = backend.kind() == BackendKind::Gpu;
    let (mut states, report) =
        hash_pieces(backend, layout, paths, want, memory, states, &mut sink)?;
    // The CPU has no rounds to report, and neither has a GPU that handed over mid-run.
    let device = (on_gpu && backend.kind() == BackendKind::Gpu).then_some(report);
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

/// Pieces answered before their merkle layers are reduced and handed on together.
const RESULT_BATCH: usize = 4096;

/// Every piece as bulk work for the backend, read through [`FileSource`]: on the CPU each core
/// reads a chunk of whole pieces and hashes it while it is in its cache; on a GPU the engine
/// reads every piece a slice at a time straight into its upload buffers, thousands in flight.
/// v2 leaves come back with the SHA-1 digests and the merkle layers are reduced in batches.
fn hash_pieces(
    backend: &dyn BulkHasher,
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
        let slot = describe(layout, &piece)?;
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
        if answered.len() >= RESULT_BATCH && failure.is_none() {
            if let Err(e) = flush(&mut answered) {
                failure = Some(e);
            }
        }
    };
    let algo = want.v1.then_some(BlockAlgo::Sha1);
    let job = BulkJob {
        algo,
        source: &source,
        memory,
    };
    let report = backend.hash_items(&job, &mut items, &mut on_result)?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    flush(&mut answered)?;
    Ok((source.into_states(), report))
}

/// Turns the backend's answers into piece results, reducing the v2 leaves to piece hashes.
fn device_results(
    backend: &dyn BulkHasher,
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
            readable: slot.readable,
            v1: if want.v1 && slot.readable {
                result.digest.and_then(|d| d.try_into().ok())
            } else {
                None
            },
            v2,
        })
        .collect())
}

/// The torrent's files as bulk sources, read with positioned reads so every core can fill its
/// part of an upload buffer at once. A file is opened at its first read and closed once every
/// byte the torrent wants from it has been read: a torrent of many files must not hold them all
/// open (the usual limit is 1024 descriptors; past it, files would fail to open).
struct FileSource<'a> {
    layout: &'a Layout,
    paths: &'a [PathBuf],
    files: Vec<OpenFile>,
    states: Mutex<Vec<FileState>>,
}

struct OpenFile {
    handle: Mutex<Option<Arc<File>>>,
    /// Bytes the torrent wants from the file that were not read yet.
    unread: AtomicU64,
}

impl<'a> FileSource<'a> {
    fn new(layout: &'a Layout, paths: &'a [PathBuf], states: Vec<FileState>) -> Self {
        Self {
            layout,
            paths,
            files: layout
                .files
                .iter()
                .map(|file| OpenFile {
                    handle: Mutex::new(None),
                    unread: AtomicU64::new(file.length),
                })
                .collect(),
            states: Mutex::new(states),
        }
    }

    /// The open file, opening it if this is its first read (or a read after it was closed).
    fn open(&self, file: usize) -> Option<Arc<File>> {
        let mut handle = self.files[file]
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = &*handle {
            return Some(Arc::clone(open));
        }
        let open = Arc::new(File::open(&self.paths[file]).ok()?);
        *handle = Some(Arc::clone(&open));
        Some(open)
    }

    /// Counts `read` bytes of `file` as done; closes it when none is left to read (readers
    /// still holding it keep it open until they finish).
    fn done(&self, file: usize, read: u64) {
        let slot = &self.files[file];
        let left = slot
            .unread
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(read))
            })
            .map_or(0, |before| before.saturating_sub(read));
        if left == 0 {
            *slot.handle.lock().unwrap_or_else(PoisonError::into_inner) = None;
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
    fn map(&self, file: usize, offset: u64, len: usize) -> Option<MappedWindow> {
        let state = self.states.lock().unwrap_or_else(PoisonError::into_inner)[file];
        if self.layout.files[file].pad
            || !matches!(state, FileState::Present | FileState::WrongSize)
        {
            return None;
        }
        let window = MappedWindow::new(&*self.open(file)?, offset, len)?;
        // The mapping outlives the descriptor, so the file may close as if read.
        self.done(file, len as u64);
        Some(window)
    }

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
        let Some(handle) = self.open(file) else {
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
        self.done(file, dst.len() as u64);
        true
    }
}

/// Where a piece stands in the torrent: its owner file (the first that is not padding), the
/// files it touches and how much of it is the owner's data.
fn describe(layout: &Layout, piece: &PieceSpans) -> Option<Slot> {
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
        length,
        data_length: usize::try_from(data_length).unwrap_or(usize::MAX),
        file_length: layout.files[owner.file].length,
        readable: true,
    })
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
    backend: &dyn BulkHasher,
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
