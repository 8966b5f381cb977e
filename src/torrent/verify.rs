//! Checking data on disk against a torrent: v1 pieces across files, v2 piece layers and file
//! roots, both for hybrid torrents (a disagreement between the two is reported), and a verdict
//! per file that blames only the file where the damage is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::hash::BulkHasher;

use super::metainfo::{Metainfo, Version};
use super::stream::{self, FileState, PieceResult, StreamError, Want};

/// The verdict on one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Every piece holding its bytes passed.
    Ok,
    /// A piece lying wholly in this file failed its hash (a v1 piece, or its v2 piece hash or
    /// root): the damage is in this file.
    Corrupt,
    /// The file's own pieces pass, but a v1 piece it shares with another file failed or could
    /// not be read (a neighbour is missing, short, unreadable or damaged in that piece): its
    /// bytes in that piece cannot be confirmed, though the damage is most likely next door.
    SharesBadPiece,
    Missing,
    /// Shorter or longer than the torrent says; its pieces are still checked.
    WrongSize,
    /// Present but could not be opened or read (permissions, I/O error, a directory).
    Unreadable,
    /// Modified while verify read it (size or modification time): run verify again.
    Changed,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FileReport {
    /// Relative to the torrent root, `/`-separated.
    pub path: String,
    pub length: u64,
    pub status: FileStatus,
    /// Share of the file's bytes that lie in pieces that passed, in percent, rounded down to
    /// 0.1 (so 100 means every byte was confirmed).
    pub percent_complete: f64,
    /// The bad pieces holding bytes of this file, as global indices (the numbering of the
    /// report's `bad_pieces`, for every version).
    pub bad_pieces: Vec<u64>,
}

/// Which half of a hybrid torrent a piece failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Half {
    /// The v1 SHA-1 piece hash.
    V1,
    /// The v2 SHA-256 piece hash (or file root).
    V2,
}

/// A hybrid piece whose bytes match one half of the torrent and not the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Disagreement {
    pub piece: u64,
    pub failed: Half,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub name: String,
    pub version: Version,
    /// Where the content was looked for: the single file, or the folder holding the files.
    pub content_path: String,
    pub info_hash_v1: Option<String>,
    pub info_hash_v2: Option<String>,
    pub piece_length: u64,
    pub pieces_total: u64,
    /// Share of the content's bytes (pad files excluded) in pieces that passed, in percent,
    /// rounded down to 0.1.
    pub percent_complete: f64,
    /// Global piece indices, sorted, of every piece that failed its hash or could not be read
    /// (for v2-only torrents libtorrent's numbering, where every file starts a new piece).
    pub bad_pieces: Vec<u64>,
    pub files: Vec<FileReport>,
    /// Hybrid only: pieces whose bytes match one half of the torrent but not the other.
    pub v1_v2_disagree: Vec<Disagreement>,
    pub bytes_hashed: u64,
    pub seconds: f64,
    pub backend: String,
    /// How the GPU was kept busy (lanes, bytes in flight, rounds overlapped); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::hash::bulk::BulkReport>,
}

/// Where a torrent's content lives on disk.
#[derive(Clone, Debug)]
pub struct Located {
    /// The single file, or the folder holding the files (whether or not it exists).
    pub content: PathBuf,
    /// Each file of the torrent, pad files included, in the torrent's order.
    pub files: Vec<PathBuf>,
}

/// Where each file of the torrent lives under `data`: the save directory that holds `name`,
/// or the content itself (the single file, or a directory called `name`).
#[must_use]
pub fn locate(meta: &Metainfo, data: &Path) -> Located {
    let files = &meta.layout.files;
    if meta.single_file {
        // The file's own path: `name` for v1, the file tree's key for v2 (as libtorrent reads it).
        let path = if data.is_file() {
            data.to_path_buf()
        } else {
            files
                .first()
                .map_or_else(|| data.join(&meta.name), |f| f.path.under(data))
        };
        return Located {
            files: files.iter().map(|_| path.clone()).collect(),
            content: path,
        };
    }
    let nested = data.join(&meta.name);
    let root = if !nested.is_dir()
        && data.is_dir()
        && data
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n == meta.name.as_str()))
            .unwrap_or(false)
    {
        data.to_path_buf()
    } else {
        nested
    };
    Located {
        files: files.iter().map(|f| f.path.under(&root)).collect(),
        content: root,
    }
}

/// Why a piece is bad.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A byte of it could not be read (a file missing, short or unreadable).
    Unreadable,
    /// Read in full, and a hash did not match.
    Failed {
        v1: bool,
        v2: bool,
        /// The file owning the piece (the one its v2 hash covers).
        owner: usize,
    },
}

/// Verifies the files at `located` (from [`locate`]); `progress` gets the bytes of each batch.
///
/// # Errors
/// A backend failure or a too small memory limit; bad data is a report, not an error.
pub fn verify(
    meta: &Metainfo,
    located: &Located,
    backend: &dyn BulkHasher,
    memory: u64,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, StreamError> {
    let started = Instant::now();
    let layout = &meta.layout;
    let want = Want {
        v1: meta.version.has_v1(),
        v2: meta.version.has_v2(),
    };
    let mut faults: BTreeMap<u64, Fault> = BTreeMap::new();
    let mut bytes_hashed = 0u64;
    let streamed = stream::run(backend, layout, &located.files, want, memory, |results| {
        let mut batch = 0;
        for piece in results {
            batch += piece.length;
            if !piece.readable {
                faults.insert(piece.index, Fault::Unreadable);
                continue;
            }
            bytes_hashed += piece.length;
            let v1 = want.v1 && !v1_matches(meta, piece);
            let v2 = want.v2 && !v2_matches(meta, piece);
            if v1 || v2 {
                let owner = piece.file;
                faults.insert(piece.index, Fault::Failed { v1, v2, owner });
            }
        }
        progress(batch);
    })?;

    let blame = Blame::of(meta, &faults);
    let files: Vec<FileReport> = layout
        .files
        .iter()
        .enumerate()
        .zip(&streamed.states)
        .filter(|((_, file), _)| !file.pad)
        .map(|((i, file), &state)| {
            let status = match state {
                FileState::Missing => FileStatus::Missing,
                FileState::WrongSize => FileStatus::WrongSize,
                FileState::Unreadable => FileStatus::Unreadable,
                FileState::Changed => FileStatus::Changed,
                FileState::Present if blame.corrupt[i] => FileStatus::Corrupt,
                FileState::Present if !blame.bad_pieces[i].is_empty() => FileStatus::SharesBadPiece,
                FileState::Present => FileStatus::Ok,
            };
            let percent_complete = if file.length == 0 {
                // Nothing to hash: complete when it is there.
                if matches!(status, FileStatus::Ok | FileStatus::WrongSize) {
                    100.0
                } else {
                    0.0
                }
            } else {
                percent(file.length - blame.bad_bytes[i], file.length)
            };
            FileReport {
                path: file.path.to_string(),
                length: file.length,
                status,
                percent_complete,
                bad_pieces: blame.bad_pieces[i].clone(),
            }
        })
        .collect();
    let ok = faults.is_empty() && files.iter().all(|f| f.status == FileStatus::Ok);
    let content = layout.content_length();
    let bad_bytes: u64 = layout
        .files
        .iter()
        .zip(&blame.bad_bytes)
        .filter(|(f, _)| !f.pad)
        .map(|(_, bad)| bad)
        .sum();
    let v1_v2_disagree = faults
        .iter()
        .filter_map(|(&piece, fault)| match *fault {
            Fault::Failed {
                v1: true,
                v2: false,
                ..
            } if want.v2 => Some(Disagreement {
                piece,
                failed: Half::V1,
            }),
            Fault::Failed {
                v1: false,
                v2: true,
                ..
            } if want.v1 => Some(Disagreement {
                piece,
                failed: Half::V2,
            }),
            _ => None,
        })
        .collect();
    Ok(VerifyReport {
        ok,
        name: meta.name.clone(),
        version: meta.version,
        content_path: located.content.display().to_string(),
        info_hash_v1: meta.info_hash_v1().map(hex::encode),
        info_hash_v2: meta.info_hash_v2().map(hex::encode),
        piece_length: layout.piece_length,
        pieces_total: layout.piece_count(),
        percent_complete: percent(content - bad_bytes.min(content), content),
        bad_pieces: faults.keys().copied().collect(),
        files,
        v1_v2_disagree,
        bytes_hashed,
        seconds: started.elapsed().as_secs_f64(),
        backend: backend.name(),
        device: streamed.device,
    })
}

/// `part` of `whole` in percent, rounded down to 0.1 so that only a whole is 100.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    let tenths = u128::from(part) * 1000 / u128::from(whole);
    // At most 1000: exact in an f64.
    #[allow(clippy::cast_precision_loss)]
    let tenths = tenths as f64;
    tenths / 10.0
}

/// The bad pieces laid over the files: which files hold bytes of them, how many, and which
/// files a failed piece convicts.
struct Blame {
    /// Per file (pad files included, left empty): the bad pieces holding its bytes.
    bad_pieces: Vec<Vec<u64>>,
    /// Per file: its bytes inside bad pieces.
    bad_bytes: Vec<u64>,
    /// Per file: a piece lying wholly in it, or its own v2 hash, failed.
    corrupt: Vec<bool>,
}

impl Blame {
    fn of(meta: &Metainfo, faults: &BTreeMap<u64, Fault>) -> Self {
        let layout = &meta.layout;
        let count = layout.files.len();
        let mut blame = Blame {
            bad_pieces: vec![Vec::new(); count],
            bad_bytes: vec![0; count],
            corrupt: vec![false; count],
        };
        if faults.is_empty() {
            return blame;
        }
        for piece in layout.pieces() {
            let index = u64::from(piece.index.get());
            let Some(&fault) = faults.get(&index) else {
                continue;
            };
            let mut holders = piece
                .spans
                .iter()
                .filter(|s| !layout.files[s.file].pad && s.length > 0)
                .peekable();
            let only = holders.peek().map(|s| s.file);
            let mut several = false;
            for span in holders {
                several |= Some(span.file) != only;
                blame.bad_pieces[span.file].push(index);
                blame.bad_bytes[span.file] += span.length;
            }
            if let Fault::Failed { v1, v2, owner } = fault {
                // A v2 hash covers its owner's bytes alone; a v1 piece convicts a file only
                // when no other file has bytes in it.
                if v2 {
                    blame.corrupt[owner] = true;
                }
                if let (true, false, Some(file)) = (v1, several, only) {
                    blame.corrupt[file] = true;
                }
            }
        }
        blame
    }
}

fn v1_matches(meta: &Metainfo, piece: &PieceResult) -> bool {
    let expected = usize::try_from(piece.index)
        .ok()
        .and_then(|i| meta.v1_pieces.get(i));
    piece.v1.is_some() && piece.v1.as_ref() == expected
}

fn v2_matches(meta: &Metainfo, piece: &PieceResult) -> bool {
    let file = &meta.layout.files[piece.file];
    let Some(root) = file.pieces_root else {
        // A piece of pad bytes only (a malformed hybrid): nothing v2 to check, v1 decides.
        return true;
    };
    let Some(got) = piece.v2 else {
        return false;
    };
    if file.length <= meta.layout.piece_length {
        return got == root;
    }
    let expected = meta
        .piece_layers
        .get(&root)
        .and_then(|layer| layer.get(usize::try_from(piece.file_piece).ok()?));
    expected == Some(&got)
}
