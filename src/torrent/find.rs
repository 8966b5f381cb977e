//! Finding a torrent's files on disk by content, whatever they are called now: an index of the
//! files under some folders by size, candidates of each torrent file's exact size (same name
//! first), and a proof by hashing. v2 and hybrid files are proven by their merkle root alone;
//! v1 files by the pieces lying wholly inside them, and by the pieces they share with their
//! neighbours once those are found. Every candidate costs one piece before it is read whole.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::hash::bulk::{BlockAlgo, BulkItem, BulkJob, BulkResult, BulkSource, Extent};
use crate::hash::cpu::MappedWindow;
use crate::hash::{BulkHasher, HashError, Sha256Digest};

use super::layout::{Layout, PieceScheme};
use super::merkle;
use super::metainfo::{Metainfo, Version};

/// Folders nested deeper than this under a search folder are not entered.
pub const MAX_DEPTH: usize = 512;
/// Directory entries visited before the walk gives up (a bound, not a goal).
pub const MAX_ENTRIES: u64 = 100_000_000;
/// Warnings kept in full; more are counted.
const WARNINGS_KEPT: usize = 20;
/// Candidate combinations tried for one shared v1 piece before it is given up.
const MAX_COMBINATIONS: usize = 64;
/// Files held open at once while hashing candidates.
const OPEN_FILES: usize = 128;

/// What stops a search.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("search folder {path}: {source}")]
    SearchFolder { path: PathBuf, source: io::Error },
    #[error("more than {MAX_ENTRIES} entries under the search folders")]
    TooManyEntries,
    #[error("--memory {memory} bytes is too small: it must hold at least 3 pieces of {piece_length} bytes")]
    MemoryTooSmall { memory: u64, piece_length: u64 },
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// A file found under the search folders whose size some torrent file has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub path: PathBuf,
    pub size: u64,
}

impl Candidate {
    fn name(&self) -> &[u8] {
        self.path.file_name().map_or(&[], OsStr::as_bytes)
    }
}

/// The regular files under the search folders, by size. Symbolic links are never followed
/// (a link target outside the folders cannot be found), a folder reached twice (a bind mount
/// inside itself) is entered once, and a file reached twice (hard links, overlapping folders)
/// is one candidate.
#[derive(Debug, Default)]
pub struct SizeIndex {
    candidates: Vec<Candidate>,
    by_size: HashMap<u64, Vec<usize>>,
    /// Regular files seen, whatever their size.
    pub files_seen: u64,
    /// Entries skipped: symbolic links and other non-regular files.
    pub skipped: u64,
    /// Entries that could not be read, with the reason (the first few).
    pub warnings: Vec<String>,
    /// Warnings beyond those kept.
    pub more_warnings: u64,
}

impl SizeIndex {
    /// Walks `folders` (a file given directly is a candidate too) keeping the files whose size
    /// is in `wanted`. Unreadable entries are skipped with a warning.
    ///
    /// # Errors
    /// A search folder that does not exist or cannot be read, or an absurd number of entries.
    pub fn build(folders: &[PathBuf], wanted: &HashSet<u64>) -> Result<Self, FindError> {
        let mut index = Self::default();
        let mut seen_dirs: HashSet<(u64, u64)> = HashSet::new();
        let mut seen_files: HashSet<(u64, u64)> = HashSet::new();
        let mut entries = 0u64;
        for folder in folders {
            // The folder named on the command line is followed if it is a link: it was asked for.
            let meta = std::fs::metadata(folder).map_err(|source| FindError::SearchFolder {
                path: folder.clone(),
                source,
            })?;
            if meta.is_file() {
                if seen_files.insert((meta.dev(), meta.ino())) {
                    index.add_file(folder.clone(), meta.len(), wanted);
                }
                continue;
            }
            std::fs::read_dir(folder).map_err(|source| FindError::SearchFolder {
                path: folder.clone(),
                source,
            })?;
            let mut stack = vec![(folder.clone(), 0usize)];
            seen_dirs.insert((meta.dev(), meta.ino()));
            while let Some((dir, depth)) = stack.pop() {
                let reader = match std::fs::read_dir(&dir) {
                    Ok(reader) => reader,
                    Err(e) => {
                        index.warn(format!("{}: {e}", dir.display()));
                        continue;
                    }
                };
                for entry in reader {
                    entries += 1;
                    if entries > MAX_ENTRIES {
                        return Err(FindError::TooManyEntries);
                    }
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(e) => {
                            index.warn(format!("{}: {e}", dir.display()));
                            continue;
                        }
                    };
                    let path = entry.path();
                    // symlink_metadata: a link is itself, never its target.
                    let meta = match std::fs::symlink_metadata(&path) {
                        Ok(meta) => meta,
                        Err(e) => {
                            index.warn(format!("{}: {e}", path.display()));
                            continue;
                        }
                    };
                    if meta.is_dir() {
                        if depth + 1 >= MAX_DEPTH {
                            index.warn(format!(
                                "{}: nested deeper than {MAX_DEPTH} folders, not entered",
                                path.display()
                            ));
                        } else if seen_dirs.insert((meta.dev(), meta.ino())) {
                            stack.push((path, depth + 1));
                        }
                    } else if meta.is_file() {
                        if seen_files.insert((meta.dev(), meta.ino())) {
                            index.add_file(path, meta.len(), wanted);
                        }
                    } else {
                        index.skipped += 1;
                    }
                }
            }
        }
        Ok(index)
    }

    /// An index of the given files, as if found on disk (for tests and fuzzing).
    #[must_use]
    pub fn from_candidates(candidates: impl IntoIterator<Item = Candidate>) -> Self {
        let mut index = Self::default();
        for candidate in candidates {
            index.add_file(
                candidate.path,
                candidate.size,
                &HashSet::from([candidate.size]),
            );
        }
        index
    }

    fn add_file(&mut self, path: PathBuf, size: u64, wanted: &HashSet<u64>) {
        self.files_seen += 1;
        if size == 0 || !wanted.contains(&size) {
            return;
        }
        self.by_size
            .entry(size)
            .or_default()
            .push(self.candidates.len());
        self.candidates.push(Candidate { path, size });
    }

    fn warn(&mut self, warning: String) {
        if self.warnings.len() < WARNINGS_KEPT {
            tracing::warn!("{warning}");
            self.warnings.push(warning);
        } else {
            self.more_warnings += 1;
        }
    }

    /// Candidates kept (files of a wanted size).
    #[must_use]
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    #[must_use]
    pub fn candidate(&self, id: usize) -> &Candidate {
        &self.candidates[id]
    }

    /// The candidates of exactly `size` bytes: those called `name` first, then by path.
    #[must_use]
    pub fn candidates_for(&self, size: u64, name: &str) -> Vec<usize> {
        let mut ids = self.by_size.get(&size).cloned().unwrap_or_default();
        ids.sort_by(|&a, &b| {
            let (a, b) = (&self.candidates[a], &self.candidates[b]);
            (a.name() != name.as_bytes(), &a.path).cmp(&(b.name() != name.as_bytes(), &b.path))
        });
        ids
    }
}

/// Every file size the torrents hold (pad and empty files excluded): what the index keeps.
#[must_use]
pub fn wanted_sizes(metas: &[Metainfo]) -> HashSet<u64> {
    metas
        .iter()
        .flat_map(|m| m.layout.files.iter())
        .filter(|f| !f.pad && f.length > 0)
        .map(|f| f.length)
        .collect()
}

/// How a torrent file's match was proven, or why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// An empty file: nothing to find.
    Empty,
    /// Its v2 merkle root (every byte) matched.
    Root,
    /// Every v1 piece holding its bytes matched.
    Pieces,
    /// The v1 pieces that could be checked matched; those it shares with a neighbour that was
    /// not found (or did not match there) were not proven.
    Partial,
    /// Files of its size exist, but every piece holding its bytes is shared with neighbours
    /// that were not found, or whose candidates are too many to try together: it can only be
    /// proven together with them. Not a match.
    SizeOnly,
    /// Files of its size exist and were hashed: none matched.
    Mismatch,
    /// No file of its size.
    Missing,
}

impl Proof {
    /// Whether a file was found (some hash over its bytes matched, or it is empty).
    #[must_use]
    pub fn found(self) -> bool {
        matches!(
            self,
            Proof::Empty | Proof::Root | Proof::Pieces | Proof::Partial
        )
    }
}

/// The outcome for one file of a torrent (pad files are not listed).
#[derive(Clone, Debug, serde::Serialize)]
pub struct FileMatch {
    /// Index in the torrent's file list (pad files counted), for laying the tree out.
    #[serde(skip)]
    pub file: usize,
    /// Relative to the torrent root, `/`-separated.
    pub path: String,
    pub length: u64,
    /// The file proven to hold its bytes (for `size_only`, the first of its size).
    pub found: Option<PathBuf>,
    pub proof: Proof,
    /// Files of its size under the search folders.
    pub candidates: usize,
}

/// The outcome for one torrent.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TorrentMatch {
    pub name: String,
    pub version: Version,
    pub info_hash_v1: Option<String>,
    pub info_hash_v2: Option<String>,
    /// Every file (pad files excluded) was found.
    pub complete: bool,
    pub files: Vec<FileMatch>,
}

/// The outcome of a search.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FindOutcome {
    pub torrents: Vec<TorrentMatch>,
    /// Bytes read and hashed, failed candidates included.
    pub bytes_hashed: u64,
    /// Bytes of the torrents' files that were found.
    pub bytes_matched: u64,
}

/// What a torrent file needs to be proven, and its candidates in the order they are tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub file: usize,
    pub kind: TargetKind,
    pub candidates: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Empty,
    /// Proven by its v2 pieces (or root, for a file of one piece).
    V2 {
        pieces: u64,
    },
    /// Proven by the v1 pieces lying wholly in it (`own`, maybe empty) and those it shares.
    V1 {
        own: Range<u64>,
    },
}

/// The targets of every non-pad file of `meta`, with candidates of their exact size from
/// `index`: the pure half of [`find`], which hashes nothing.
#[must_use]
pub fn plan(meta: &Metainfo, index: &SizeIndex) -> Vec<Target> {
    let layout = &meta.layout;
    let own = if meta.version == Version::V1 {
        own_pieces(layout)
    } else {
        Vec::new()
    };
    layout
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.pad)
        .map(|(i, f)| {
            if f.length == 0 {
                return Target {
                    file: i,
                    kind: TargetKind::Empty,
                    candidates: Vec::new(),
                };
            }
            let name = f.path.components().last().unwrap_or_default();
            let kind = if meta.version.has_v2() && f.pieces_root.is_some() {
                TargetKind::V2 {
                    pieces: f.length.div_ceil(layout.piece_length),
                }
            } else {
                TargetKind::V1 {
                    own: own.get(i).cloned().unwrap_or(0..0),
                }
            };
            Target {
                file: i,
                kind,
                candidates: index.candidates_for(f.length, name),
            }
        })
        .collect()
}

/// Byte offset of each file in the concatenated data.
fn file_starts(layout: &Layout) -> Vec<u64> {
    let mut start = 0;
    layout
        .files
        .iter()
        .map(|f| {
            let here = start;
            start += f.length;
            here
        })
        .collect()
}

/// The non-pad files with bytes in v1 piece `piece`, in order.
fn files_in_piece(layout: &Layout, starts: &[u64], piece: u64) -> Vec<usize> {
    piece_spans(layout, starts, piece)
        .into_iter()
        .filter(|&(file, _, _)| !layout.files[file].pad)
        .map(|(file, _, _)| file)
        .collect()
}

/// The files' runs `(file, offset, length)` in v1 piece `piece` (pad files included).
fn piece_spans(layout: &Layout, starts: &[u64], piece: u64) -> Vec<(usize, u64, u64)> {
    debug_assert_eq!(layout.scheme, PieceScheme::Concatenated);
    let begin = piece * layout.piece_length;
    let end = (begin + layout.piece_length).min(layout.total_length());
    // The last file starting at or before `begin`; empty files before it are skipped below.
    let first = starts.partition_point(|&s| s <= begin).saturating_sub(1);
    let mut spans = Vec::new();
    for (file, entry) in layout.files.iter().enumerate().skip(first) {
        let start = starts[file];
        if start >= end {
            break;
        }
        let from = begin.max(start);
        let to = end.min(start + entry.length);
        if to > from {
            spans.push((file, from - start, to - from));
        }
    }
    spans
}

/// Per file, the v1 pieces whose every non-pad byte is the file's (a contiguous run).
fn own_pieces(layout: &Layout) -> Vec<Range<u64>> {
    let mut own = vec![0..0; layout.files.len()];
    for piece in layout.pieces() {
        let mut real = piece
            .spans
            .iter()
            .filter(|s| !layout.files[s.file].pad && s.length > 0)
            .map(|s| s.file);
        let Some(file) = real.next() else { continue };
        if real.any(|other| other != file) {
            continue;
        }
        let index = u64::from(piece.index.get());
        let run = &mut own[file];
        if run.start == run.end {
            *run = index..index + 1;
        } else {
            run.end = index + 1;
        }
    }
    own
}

/// Searches `index` for the files of every torrent in `metas` and proves each match by hashing
/// on `backend` with `memory` bytes of buffers; `progress` gets the bytes of each batch.
///
/// # Errors
/// A backend failure or a memory limit below three pieces of some torrent.
pub fn find(
    metas: &[Metainfo],
    index: &SizeIndex,
    backend: &dyn BulkHasher,
    memory: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<FindOutcome, FindError> {
    for meta in metas {
        if memory < 3 * meta.layout.piece_length {
            return Err(FindError::MemoryTooSmall {
                memory,
                piece_length: meta.layout.piece_length,
            });
        }
    }
    let mut hasher = Hasher {
        backend,
        memory,
        index,
        bytes_hashed: 0,
        progress,
    };
    let mut torrents = Vec::with_capacity(metas.len());
    let mut bytes_matched = 0;
    for meta in metas {
        let targets = plan(meta, index);
        let chosen = prove(meta, &targets, &mut hasher)?;
        let files: Vec<FileMatch> = targets
            .iter()
            .zip(chosen)
            .map(|(target, (proof, found))| FileMatch {
                file: target.file,
                path: meta.layout.files[target.file].path.to_string(),
                length: meta.layout.files[target.file].length,
                found: found.map(|c| index.candidate(c).path.clone()),
                proof,
                candidates: target.candidates.len(),
            })
            .collect();
        bytes_matched += files
            .iter()
            .filter(|f| f.proof.found())
            .map(|f| f.length)
            .sum::<u64>();
        torrents.push(TorrentMatch {
            name: meta.name.clone(),
            version: meta.version,
            info_hash_v1: meta.info_hash_v1().map(hex::encode),
            info_hash_v2: meta.info_hash_v2().map(hex::encode),
            complete: files.iter().all(|f| f.proof.found()),
            files,
        });
    }
    Ok(FindOutcome {
        torrents,
        bytes_hashed: hasher.bytes_hashed,
        bytes_matched,
    })
}

/// One piece of a candidate (or of several, for a shared v1 piece) to hash and compare.
struct Check {
    extents: Vec<Extent>,
    /// How a v2 piece pads its merkle tree; `None` for a v1 SHA-1 check.
    v2: Option<V2Shape>,
    expected: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct V2Shape {
    file_length: u64,
    piece_length: u64,
}

impl Check {
    fn length(&self) -> u64 {
        self.extents.iter().map(|e| e.length).sum()
    }
}

/// A target's way through the proof: its candidates that passed the first piece, and the one
/// proven.
struct Progress {
    passed: Vec<usize>,
    fixed: Option<usize>,
    probed: bool,
}

/// Proves the targets of one torrent; returns each one's proof and the candidate chosen.
fn prove(
    meta: &Metainfo,
    targets: &[Target],
    hasher: &mut Hasher<'_>,
) -> Result<Vec<(Proof, Option<usize>)>, FindError> {
    let layout = &meta.layout;
    let starts = file_starts(layout);
    let piece_length = layout.piece_length;
    // The first piece of each candidate, hashed once however many targets share its shape.
    let first_piece = |target: &Target| -> Option<(u64, Check)> {
        let file = &layout.files[target.file];
        match &target.kind {
            TargetKind::Empty => None,
            TargetKind::V2 { .. } => {
                let root = file.pieces_root?;
                let expected = if file.length > piece_length {
                    *meta.piece_layers.get(&root)?.first()?
                } else {
                    root
                };
                Some((0, v2_check(file.length, piece_length, 0, expected)))
            }
            TargetKind::V1 { own } if !own.is_empty() => {
                let check = v1_check(meta, &starts, own.start, target.file)?;
                Some((own.start, check))
            }
            TargetKind::V1 { .. } => None,
        }
    };
    let mut state: Vec<Progress> = targets
        .iter()
        .map(|_| Progress {
            passed: Vec::new(),
            fixed: None,
            probed: false,
        })
        .collect();
    // Probe: group equal first-piece shapes so a candidate is hashed once per shape.
    let mut shapes: HashMap<ShapeKey, Vec<usize>> = HashMap::new();
    let mut checks: Vec<(usize, Check)> = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let Some((_, check)) = first_piece(target) else {
            continue;
        };
        state[t].probed = true;
        for &candidate in &target.candidates {
            let key = ShapeKey::of(&check, candidate);
            shapes.entry(key).or_default().push(t);
        }
        checks.push((t, check));
    }
    let mut jobs: Vec<(ShapeKey, Check)> = Vec::new();
    let mut queued: HashSet<ShapeKey> = HashSet::new();
    for (t, check) in &checks {
        for &candidate in &targets[*t].candidates {
            let key = ShapeKey::of(check, candidate);
            if queued.insert(key.clone()) {
                jobs.push((key, bind(check, candidate)));
            }
        }
    }
    let digests = hasher.digests(jobs.iter().map(|(_, c)| c))?;
    let by_shape: HashMap<&ShapeKey, &Option<Vec<u8>>> =
        jobs.iter().map(|(k, _)| k).zip(&digests).collect();
    for (t, check) in &checks {
        for &candidate in &targets[*t].candidates {
            let key = ShapeKey::of(check, candidate);
            if by_shape.get(&key).and_then(|d| d.as_ref()) == Some(&check.expected) {
                state[*t].passed.push(candidate);
            }
        }
    }

    // The rest of each target's own pieces, one candidate per round in preference order.
    let rest = |target: &Target, candidate: usize| -> Vec<Check> {
        let file = &layout.files[target.file];
        match &target.kind {
            TargetKind::V2 { pieces } => {
                let Some(layer) = file.pieces_root.and_then(|r| meta.piece_layers.get(&r)) else {
                    return Vec::new();
                };
                (1..*pieces)
                    .filter_map(|p| {
                        let expected = *layer.get(usize::try_from(p).ok()?)?;
                        Some(bind(
                            &v2_check(file.length, piece_length, p, expected),
                            candidate,
                        ))
                    })
                    .collect()
            }
            TargetKind::V1 { own } => (own.start + 1..own.end)
                .filter_map(|p| Some(bind(&v1_check(meta, &starts, p, target.file)?, candidate)))
                .collect(),
            TargetKind::Empty => Vec::new(),
        }
    };
    let rounds = state.iter().map(|s| s.passed.len()).max().unwrap_or(0);
    for round in 0..rounds {
        let mut round_checks: Vec<(usize, Check)> = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            if state[t].fixed.is_some() {
                continue;
            }
            let Some(&candidate) = state[t].passed.get(round) else {
                continue;
            };
            let before = round_checks.len();
            round_checks.extend(rest(target, candidate).into_iter().map(|c| (t, c)));
            // Proven by its first piece alone when it has no other.
            if round_checks.len() == before {
                state[t].fixed = Some(candidate);
            }
        }
        if round_checks.is_empty() {
            continue;
        }
        let digests = hasher.digests(round_checks.iter().map(|(_, c)| c))?;
        let mut failed: HashSet<usize> = HashSet::new();
        for ((t, check), digest) in round_checks.iter().zip(&digests) {
            if digest.as_ref() != Some(&check.expected) {
                failed.insert(*t);
            }
        }
        for (t, _) in &round_checks {
            if !failed.contains(t) && state[*t].fixed.is_none() {
                state[*t].fixed = state[*t].passed.get(round).copied();
            }
        }
    }

    let shared = if meta.version == Version::V1 {
        prove_shared(meta, &starts, targets, &state, hasher)?
    } else {
        SharedOutcome::default()
    };
    Ok(targets
        .iter()
        .enumerate()
        .map(|(t, target)| {
            let file = target.file;
            let fixed = state[t].fixed.or(shared.assigned.get(&file).copied());
            let proof = match (&target.kind, fixed) {
                (TargetKind::Empty, _) => Proof::Empty,
                (_, None) if target.candidates.is_empty() => Proof::Missing,
                (TargetKind::V2 { .. }, Some(_)) => Proof::Root,
                (TargetKind::V1 { .. }, Some(_)) if shared.unproven.contains(&file) => {
                    Proof::Partial
                }
                (TargetKind::V1 { .. }, Some(_)) => Proof::Pieces,
                (_, None) if state[t].probed || shared.refuted.contains(&file) => Proof::Mismatch,
                (_, None) => Proof::SizeOnly,
            };
            let found = fixed.or(if proof == Proof::SizeOnly {
                target.candidates.first().copied()
            } else {
                None
            });
            (proof, found)
        })
        .collect())
}

/// What the shared v1 pieces proved.
#[derive(Default)]
struct SharedOutcome {
    /// Files without pieces of their own, now proven by a shared piece: file → candidate.
    assigned: HashMap<usize, usize>,
    /// Files with a shared piece that could not be checked or did not match.
    unproven: HashSet<usize>,
    /// Files refuted by a shared piece: the only file in it still to choose, every candidate
    /// tried, none matched.
    refuted: HashSet<usize>,
}

/// The v1 pieces several files share, in order: each is hashed once every file in it has a
/// proven candidate or candidates to try; files with no piece of their own take the first
/// combination of candidates that matches (at most [`MAX_COMBINATIONS`] are tried per piece).
fn prove_shared(
    meta: &Metainfo,
    starts: &[u64],
    targets: &[Target],
    state: &[Progress],
    hasher: &mut Hasher<'_>,
) -> Result<SharedOutcome, FindError> {
    let layout = &meta.layout;
    let by_file: HashMap<usize, usize> = targets
        .iter()
        .enumerate()
        .map(|(t, target)| (target.file, t))
        .collect();
    let mut outcome = SharedOutcome::default();
    // Files without own pieces whose every combination failed: their later pieces cannot match.
    let mut given_up: HashSet<usize> = HashSet::new();
    let mut last_piece = None;
    for target in targets {
        if !matches!(target.kind, TargetKind::V1 { .. }) {
            continue;
        }
        let pieces = layout.pieces_of_file(target.file);
        for piece in pieces {
            if last_piece.is_some_and(|last| piece <= last) {
                continue;
            }
            let files = files_in_piece(layout, starts, piece);
            let mut distinct = files.clone();
            distinct.dedup();
            if distinct.len() < 2 {
                continue;
            }
            last_piece = Some(piece);
            let Some(expected) = usize::try_from(piece)
                .ok()
                .and_then(|i| meta.v1_pieces.get(i))
            else {
                continue;
            };
            // Each file's options: its proven candidate, or (without own pieces) its candidates.
            let mut options: Vec<(usize, Vec<usize>)> = Vec::new();
            let mut checkable = true;
            for &file in &distinct {
                let Some(&t) = by_file.get(&file) else {
                    checkable = false;
                    break;
                };
                let own_empty =
                    matches!(&targets[t].kind, TargetKind::V1 { own } if own.is_empty());
                let choice = match (state[t].fixed, outcome.assigned.get(&file)) {
                    (Some(c), _) | (None, Some(&c)) => vec![c],
                    (None, None) if own_empty && !given_up.contains(&file) => {
                        targets[t].candidates.clone()
                    }
                    _ => Vec::new(),
                };
                if choice.is_empty() {
                    checkable = false;
                    break;
                }
                options.push((file, choice));
            }
            if !checkable {
                outcome.unproven.extend(distinct.iter().copied());
                continue;
            }
            let combos = combinations(&options, MAX_COMBINATIONS);
            let checks: Vec<Check> = combos
                .iter()
                .filter_map(|combo| {
                    let chosen: HashMap<usize, usize> = combo.iter().copied().collect();
                    shared_check(meta, starts, piece, &chosen, expected)
                })
                .collect();
            // Files still to choose in this piece, and whether every combination was tried.
            let open: Vec<usize> = options
                .iter()
                .filter(|(f, _)| {
                    state[by_file[f]].fixed.is_none() && !outcome.assigned.contains_key(f)
                })
                .map(|(f, _)| *f)
                .collect();
            let exhaustive = options
                .iter()
                .fold(1usize, |n, (_, o)| n.saturating_mul(o.len()))
                <= combos.len();
            let digests = hasher.digests(checks.iter())?;
            let hit = digests
                .iter()
                .position(|d| d.as_deref() == Some(&expected[..]));
            match hit {
                Some(at) => {
                    for &(file, candidate) in &combos[at] {
                        let t = by_file[&file];
                        if state[t].fixed.is_none() {
                            outcome.assigned.insert(file, candidate);
                        }
                    }
                }
                None => {
                    outcome.unproven.extend(distinct.iter().copied());
                    if let ([file], true) = (&open[..], exhaustive) {
                        outcome.refuted.insert(*file);
                    }
                    // Those proven by an earlier piece stay (partial); the others are given up.
                    for (file, _) in &options {
                        if state[by_file[file]].fixed.is_none()
                            && !outcome.assigned.contains_key(file)
                        {
                            given_up.insert(*file);
                        }
                    }
                }
            }
        }
    }
    Ok(outcome)
}

/// Up to `cap` ways to pick one option per file, the earlier options (same name) first.
fn combinations(options: &[(usize, Vec<usize>)], cap: usize) -> Vec<Vec<(usize, usize)>> {
    let mut out: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
    for (file, choices) in options {
        let mut next = Vec::new();
        'outer: for partial in &out {
            for &choice in choices {
                if next.len() >= cap {
                    break 'outer;
                }
                let mut combo = partial.clone();
                combo.push((*file, choice));
                next.push(combo);
            }
        }
        out = next;
    }
    out
}

/// A first-piece shape bound to a candidate: equal keys hash to equal digests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ShapeKey {
    candidate: usize,
    extents: Vec<(bool, u64, u64)>,
    v2: Option<V2Shape>,
}

impl ShapeKey {
    fn of(check: &Check, candidate: usize) -> Self {
        Self {
            candidate,
            extents: check
                .extents
                .iter()
                .map(|e| (e.source.is_some(), e.offset, e.length))
                .collect(),
            v2: check.v2,
        }
    }
}

/// `check` reading `candidate` wherever it reads a file.
fn bind(check: &Check, candidate: usize) -> Check {
    Check {
        extents: check
            .extents
            .iter()
            .map(|e| Extent {
                source: e.source.map(|_| candidate),
                ..*e
            })
            .collect(),
        v2: check.v2,
        expected: check.expected.clone(),
    }
}

/// v2 piece `piece` of a file of `file_length` bytes (unbound: source 0).
fn v2_check(file_length: u64, piece_length: u64, piece: u64, expected: Sha256Digest) -> Check {
    let offset = piece * piece_length;
    Check {
        extents: vec![Extent {
            source: Some(0),
            offset,
            length: piece_length.min(file_length - offset),
        }],
        v2: Some(V2Shape {
            file_length,
            piece_length,
        }),
        expected: expected.to_vec(),
    }
}

/// v1 piece `piece`, all of whose non-pad bytes are `file`'s (unbound: source 0).
fn v1_check(meta: &Metainfo, starts: &[u64], piece: u64, file: usize) -> Option<Check> {
    let expected = meta.v1_pieces.get(usize::try_from(piece).ok()?)?;
    let extents = piece_spans(&meta.layout, starts, piece)
        .into_iter()
        .map(|(f, offset, length)| {
            debug_assert!(f == file || meta.layout.files[f].pad);
            Extent {
                source: (f == file).then_some(0),
                offset,
                length,
            }
        })
        .collect();
    Some(Check {
        extents,
        v2: None,
        expected: expected.to_vec(),
    })
}

/// v1 piece `piece` read from the candidates `chosen` for its files.
fn shared_check(
    meta: &Metainfo,
    starts: &[u64],
    piece: u64,
    chosen: &HashMap<usize, usize>,
    expected: &[u8; 20],
) -> Option<Check> {
    let extents = piece_spans(&meta.layout, starts, piece)
        .into_iter()
        .map(|(f, offset, length)| {
            let source = if meta.layout.files[f].pad {
                None
            } else {
                Some(*chosen.get(&f)?)
            };
            Some(Extent {
                source,
                offset,
                length,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Check {
        extents,
        v2: None,
        expected: expected.to_vec(),
    })
}

/// Hashes checks on the backend, through the candidates' files.
struct Hasher<'a> {
    backend: &'a dyn BulkHasher,
    memory: u64,
    index: &'a SizeIndex,
    bytes_hashed: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Hasher<'_> {
    /// The digest of each check in order (the v1 SHA-1, or the v2 piece hash), `None` where a
    /// byte could not be read.
    fn digests<'c>(
        &mut self,
        checks: impl Iterator<Item = &'c Check>,
    ) -> Result<Vec<Option<Vec<u8>>>, FindError> {
        let checks: Vec<&Check> = checks.collect();
        let source = CandidateSource::new(self.index);
        let mut out: Vec<Option<Vec<u8>>> = vec![None; checks.len()];
        for v2 in [false, true] {
            let mut items = checks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.v2.is_some() == v2)
                .map(|(i, check)| BulkItem {
                    id: i as u64,
                    extents: check.extents.clone(),
                    block_bytes: if v2 { check.length() } else { 0 },
                })
                .peekable();
            if items.peek().is_none() {
                continue;
            }
            let job = BulkJob {
                algo: (!v2).then_some(BlockAlgo::Sha1),
                source: &source,
                memory: self.memory,
            };
            let mut leaves: Vec<(usize, Vec<Sha256Digest>, V2Shape)> = Vec::new();
            let mut bytes = 0;
            let progress = &mut self.progress;
            self.backend
                .hash_items(&job, &mut items, &mut |result: BulkResult| {
                    let Some((i, check)) = usize::try_from(result.id)
                        .ok()
                        .and_then(|i| Some((i, *checks.get(i)?)))
                    else {
                        return;
                    };
                    let length = check.length();
                    bytes += length;
                    progress(length);
                    if !result.readable {
                        return;
                    }
                    match check.v2 {
                        Some(shape) => leaves.push((i, result.blocks, shape)),
                        None => out[i] = result.digest,
                    }
                })?;
            for (i, hash) in v2_piece_hashes(self.backend, leaves)? {
                out[i] = Some(hash.to_vec());
            }
            self.bytes_hashed += bytes;
        }
        Ok(out)
    }
}

/// Reduces each check's v2 leaves to its piece hash (or file root), grouped by leaf width so
/// each group reduces a layer at a time.
fn v2_piece_hashes(
    backend: &dyn BulkHasher,
    pieces: Vec<(usize, Vec<Sha256Digest>, V2Shape)>,
) -> Result<Vec<(usize, Sha256Digest)>, HashError> {
    let mut groups: HashMap<u64, (Vec<usize>, Vec<Sha256Digest>)> = HashMap::new();
    for (i, leaves, shape) in pieces {
        let width = merkle::leaf_width(leaves.len() as u64, shape.file_length, shape.piece_length);
        let (members, all) = groups.entry(width).or_default();
        members.push(i);
        all.extend(leaves);
        all.resize(
            members.len() * usize::try_from(width).unwrap_or(usize::MAX),
            [0; 32],
        );
    }
    let mut out = Vec::new();
    for (width, (members, leaves)) in groups {
        let roots = merkle::reduce_groups(backend, leaves, width.trailing_zeros())?;
        out.extend(members.into_iter().zip(roots));
    }
    Ok(out)
}

/// The candidates' files as bulk sources: opened at first read, at most [`OPEN_FILES`] held.
struct CandidateSource<'a> {
    index: &'a SizeIndex,
    open: Mutex<HashMap<usize, Arc<File>>>,
}

impl<'a> CandidateSource<'a> {
    fn new(index: &'a SizeIndex) -> Self {
        Self {
            index,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, candidate: usize) -> Option<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = open.get(&candidate) {
            return Some(Arc::clone(file));
        }
        let path = &self.index.candidates.get(candidate)?.path;
        let file = Arc::new(File::open(path).ok()?);
        if open.len() >= OPEN_FILES {
            // Readers still holding a file keep it open until they finish.
            open.clear();
        }
        open.insert(candidate, Arc::clone(&file));
        Some(file)
    }
}

impl BulkSource for CandidateSource<'_> {
    fn map(&self, source: usize, offset: u64, len: usize) -> Option<MappedWindow> {
        MappedWindow::new(&*self.file(source)?, offset, len)
    }

    fn read(&self, source: usize, offset: u64, dst: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(file) = self.file(source) else {
            return false;
        };
        let mut filled = 0;
        while filled < dst.len() {
            match file.read_at(&mut dst[filled..], offset + filled as u64) {
                Ok(0) => return false,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// Where `file` of `meta` goes under a client's save folder `save`.
#[must_use]
pub fn save_path(meta: &Metainfo, file: usize, save: &Path) -> PathBuf {
    let path = &meta.layout.files[file].path;
    if meta.single_file {
        path.under(save)
    } else {
        path.under(&save.join(&meta.name))
    }
}

/// What `--link-to` did for one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOutcome {
    HardLink,
    /// Hard-linking crossed file systems: a symbolic link to the found file's absolute path.
    SymLink,
    /// An empty file, created.
    Created,
    /// Something exists at the path or on the way to it: nothing was touched.
    Refused(String),
    Failed(String),
}

/// Lays `file` (found at `found`, or empty) out at `target`, creating the folders on the way
/// below `save` and never replacing or following anything that exists.
#[must_use]
pub fn link_file(save: &Path, target: &Path, found: Option<&Path>) -> LinkOutcome {
    let Ok(relative) = target.strip_prefix(save) else {
        return LinkOutcome::Refused(format!("{} is not under the save folder", target.display()));
    };
    if !is_plain_relative(relative) {
        return LinkOutcome::Refused(format!("{}: not a plain relative path", relative.display()));
    }
    let mut dir = save.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        dir.push(component);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return LinkOutcome::Refused(format!(
                    "{} exists and is not a folder",
                    dir.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Err(e) = std::fs::create_dir(&dir) {
                    return LinkOutcome::Failed(format!("{}: {e}", dir.display()));
                }
            }
            Err(e) => return LinkOutcome::Failed(format!("{}: {e}", dir.display())),
        }
    }
    let exists = |e: &io::Error| e.kind() == io::ErrorKind::AlreadyExists;
    let Some(found) = found else {
        return match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
        {
            Ok(_) => LinkOutcome::Created,
            Err(e) if exists(&e) => LinkOutcome::Refused(format!("{} exists", target.display())),
            Err(e) => LinkOutcome::Failed(format!("{}: {e}", target.display())),
        };
    };
    match std::fs::hard_link(found, target) {
        Ok(()) => LinkOutcome::HardLink,
        Err(e) if exists(&e) => LinkOutcome::Refused(format!("{} exists", target.display())),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let absolute = match std::fs::canonicalize(found) {
                Ok(path) => path,
                Err(e) => return LinkOutcome::Failed(format!("{}: {e}", found.display())),
            };
            match std::os::unix::fs::symlink(&absolute, target) {
                Ok(()) => LinkOutcome::SymLink,
                Err(e) if exists(&e) => {
                    LinkOutcome::Refused(format!("{} exists", target.display()))
                }
                Err(e) => LinkOutcome::Failed(format!("{}: {e}", target.display())),
            }
        }
        Err(e) => LinkOutcome::Failed(format!("{}: {e}", target.display())),
    }
}

/// Whether `path` runs through `Path::components` as plain names only (the torrent layer
/// guarantees it; checked again before anything is created).
#[must_use]
pub fn is_plain_relative(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::layout::{FileEntry, TorrentPath};

    fn entry(name: &str, length: u64, pad: bool) -> FileEntry {
        FileEntry {
            path: TorrentPath::from_components(name.split('/').map(str::as_bytes)).unwrap(),
            length,
            pad,
            pieces_root: None,
        }
    }

    #[test]
    fn own_pieces_lie_wholly_in_one_file_pad_bytes_aside() {
        // a: 0..10, pad 10..12, b: 12..13, c: 13..30 with 4-byte pieces.
        let layout = Layout::new(
            vec![
                entry("a", 10, false),
                entry(".pad/2", 2, true),
                entry("b", 1, false),
                entry("c", 17, false),
            ],
            4,
            PieceScheme::Concatenated,
        )
        .unwrap();
        let own = own_pieces(&layout);
        // Piece 2 (8..12) is a's last bytes and the pad: a's own. Piece 3 (12..16) holds b and c.
        assert_eq!(own[0], 0..3);
        assert_eq!(own[2], 0..0);
        assert_eq!(own[3], 4..8);
        let starts = file_starts(&layout);
        assert_eq!(piece_spans(&layout, &starts, 3), [(2, 0, 1), (3, 0, 3)]);
        assert_eq!(piece_spans(&layout, &starts, 2), [(0, 8, 2), (1, 0, 2)]);
        assert_eq!(files_in_piece(&layout, &starts, 2), [0]);
        assert_eq!(piece_spans(&layout, &starts, 7), [(3, 15, 2)]);
    }

    #[test]
    fn same_name_candidates_come_first_then_paths() {
        let index = SizeIndex::from_candidates([
            Candidate {
                path: "z/x.bin".into(),
                size: 5,
            },
            Candidate {
                path: "b/a.bin".into(),
                size: 5,
            },
            Candidate {
                path: "a/y".into(),
                size: 5,
            },
            Candidate {
                path: "c/a.bin".into(),
                size: 6,
            },
        ]);
        let paths: Vec<&Path> = index
            .candidates_for(5, "x.bin")
            .into_iter()
            .map(|c| index.candidate(c).path.as_path())
            .collect();
        assert_eq!(
            paths,
            [Path::new("z/x.bin"), Path::new("a/y"), Path::new("b/a.bin")]
        );
        assert!(index.candidates_for(7, "x").is_empty());
    }

    #[test]
    fn combinations_keep_preference_order_and_stop_at_the_cap() {
        let options = vec![(1, vec![10, 11]), (2, vec![20]), (3, vec![30, 31])];
        let all = combinations(&options, 64);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], [(1, 10), (2, 20), (3, 30)]);
        assert_eq!(all[3], [(1, 11), (2, 20), (3, 31)]);
        assert_eq!(combinations(&options, 3).len(), 3);
    }

    #[test]
    fn the_walk_counts_a_hard_linked_file_once_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("l")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let index = SizeIndex::build(&[dir.path().to_path_buf()], &HashSet::from([5])).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index.skipped, 2);
        let missing = SizeIndex::build(&[dir.path().join("none")], &HashSet::new());
        assert!(matches!(missing, Err(FindError::SearchFolder { .. })));
    }

    #[test]
    fn links_never_replace_or_follow_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let save = dir.path().join("save");
        std::fs::create_dir(&save).unwrap();
        let found = dir.path().join("found");
        std::fs::write(&found, b"data").unwrap();
        let target = save.join("t/f");
        assert_eq!(
            link_file(&save, &target, Some(&found)),
            LinkOutcome::HardLink
        );
        assert!(matches!(
            link_file(&save, &target, Some(&found)),
            LinkOutcome::Refused(_)
        ));
        std::os::unix::fs::symlink(dir.path(), save.join("l")).unwrap();
        assert!(matches!(
            link_file(&save, &save.join("l/x"), Some(&found)),
            LinkOutcome::Refused(_)
        ));
        assert!(!dir.path().join("x").exists());
        assert!(matches!(
            link_file(&save, &save.join("../escape"), None),
            LinkOutcome::Refused(_)
        ));
        assert!(!dir.path().join("escape").exists());
        assert_eq!(
            link_file(&save, &save.join("e"), None),
            LinkOutcome::Created
        );
    }
}
