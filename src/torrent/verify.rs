//! Checking data on disk against a torrent: v1 pieces across files, v2 piece layers and file
//! roots, both for hybrid torrents (a disagreement between the two is reported).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::hash::BulkHasher;

use super::metainfo::{Metainfo, Version};
use super::stream::{self, FileState, PieceResult, StreamError, Want};

/// The verdict on one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Ok,
    Bad,
    Missing,
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
    /// Global v1 piece indices for v1 and hybrid torrents; file-relative for v2-only ones.
    pub bad_pieces: Vec<u64>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub name: String,
    pub version: Version,
    pub info_hash_v1: Option<String>,
    pub info_hash_v2: Option<String>,
    pub piece_length: u64,
    pub pieces_total: u64,
    /// Global piece indices, sorted.
    pub bad_pieces: Vec<u64>,
    pub files: Vec<FileReport>,
    /// Hybrid only: pieces whose v1 and v2 hashes disagree about the same bytes.
    pub v1_v2_disagree: Vec<u64>,
    pub bytes_hashed: u64,
    pub seconds: f64,
    pub backend: String,
    /// How the GPU was kept busy (lanes, bytes in flight, rounds overlapped); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::hash::bulk::BulkReport>,
}

/// Where each file of the torrent lives under `data`: the save directory that holds `name`,
/// or the content itself (the single file, or a directory called `name`).
#[must_use]
pub fn locate(meta: &Metainfo, data: &Path) -> Vec<PathBuf> {
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
        return files.iter().map(|_| path.clone()).collect();
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
    files.iter().map(|f| f.path.under(&root)).collect()
}

/// Verifies the files at `paths` (from [`locate`]); `progress` gets the bytes of each batch.
///
/// # Errors
/// A backend failure or a too small memory limit; bad data is a report, not an error.
pub fn verify(
    meta: &Metainfo,
    paths: &[PathBuf],
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
    let mut bad = BTreeSet::new();
    let mut disagree = Vec::new();
    let mut file_bad: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); layout.files.len()];
    let mut bytes_hashed = 0u64;
    let streamed = stream::run(backend, layout, paths, want, memory, |results| {
        let mut batch = 0;
        for piece in results {
            batch += piece.length;
            let v1_good = want.v1.then(|| check_v1(meta, piece));
            let v2_good = want.v2.then(|| check_v2(meta, piece));
            if piece.v1.is_some() || piece.v2.is_some() {
                bytes_hashed += piece.length;
            }
            if let (Some(a), Some(b)) = (v1_good, v2_good) {
                let readable = piece.v1.is_some();
                if a != b && readable {
                    disagree.push(piece.index);
                }
            }
            if v1_good == Some(false) || v2_good == Some(false) {
                bad.insert(piece.index);
                for file in piece.files.clone() {
                    if layout.files[file].pad || layout.files[file].length == 0 {
                        continue;
                    }
                    let number = if meta.version == Version::V2 {
                        piece.file_piece
                    } else {
                        piece.index
                    };
                    file_bad[file].insert(number);
                }
            }
        }
        progress(batch);
    })?;

    let files: Vec<FileReport> = layout
        .files
        .iter()
        .zip(&streamed.states)
        .zip(file_bad)
        .filter(|((file, _), _)| !file.pad)
        .map(|((file, state), bad_pieces)| FileReport {
            path: file.path.to_string(),
            length: file.length,
            status: match state {
                FileState::Missing => FileStatus::Missing,
                FileState::WrongSize => FileStatus::WrongSize,
                FileState::Unreadable => FileStatus::Unreadable,
                FileState::Changed => FileStatus::Changed,
                FileState::Present if bad_pieces.is_empty() => FileStatus::Ok,
                FileState::Present => FileStatus::Bad,
            },
            bad_pieces: bad_pieces.into_iter().collect(),
        })
        .collect();
    let ok = bad.is_empty() && files.iter().all(|f| f.status == FileStatus::Ok);
    Ok(VerifyReport {
        ok,
        name: meta.name.clone(),
        version: meta.version,
        info_hash_v1: meta.info_hash_v1().map(hex::encode),
        info_hash_v2: meta.info_hash_v2().map(hex::encode),
        piece_length: layout.piece_length,
        pieces_total: layout.piece_count(),
        bad_pieces: bad.into_iter().collect(),
        files,
        v1_v2_disagree: {
            disagree.sort_unstable();
            disagree
        },
        bytes_hashed,
        seconds: started.elapsed().as_secs_f64(),
        backend: backend.name(),
        device: streamed.device,
    })
}

fn check_v1(meta: &Metainfo, piece: &PieceResult) -> bool {
    let expected = usize::try_from(piece.index)
        .ok()
        .and_then(|i| meta.v1_pieces.get(i));
    piece.v1.is_some() && piece.v1.as_ref() == expected
}

fn check_v2(meta: &Metainfo, piece: &PieceResult) -> bool {
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
