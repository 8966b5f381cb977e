//! libtorrent resume data (qBittorrent's `BT_backup/<id>.fastresume`) from a verify result, so a
//! client takes the torrent at the pieces peerhash verified instead of hashing it all again.
//!
//! The format is what `libtorrent::write_resume_data` writes (`file-version` 1): libtorrent 1.2
//! and 2.0 trust `pieces` and only check that the files holding had pieces exist. They do not
//! read file sizes or mtimes (only 1.1 did), so none are written.

use std::path::{Path, PathBuf};

use bendy::decoding::{Decoder, Object};
use bendy::encoding::{Encoder, SingleItemEncoder};

use super::layout::BLOCK_SIZE;
use super::merkle;
use super::metainfo::Metainfo;
use super::verify::{FileStatus, VerifyReport};

/// The `file-format` tag libtorrent requires.
pub const FILE_FORMAT: &str = "libtorrent resume file";

/// Why resume data could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("{path}: cannot resolve the save directory: {source}")]
    SavePath {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not UTF-8 (libtorrent and qBittorrent keep paths as UTF-8)")]
    NotUtf8(PathBuf),
    #[error("the verify report does not match the torrent: {0}")]
    Mismatch(&'static str),
    #[error("bencode: {0}")]
    Bencode(String),
    #[error("not libtorrent resume data: {0}")]
    Format(&'static str),
}

impl From<bendy::encoding::Error> for ResumeError {
    fn from(e: bendy::encoding::Error) -> Self {
        Self::Bencode(e.to_string())
    }
}

impl From<bendy::decoding::Error> for ResumeError {
    fn from(e: bendy::decoding::Error) -> Self {
        Self::Bencode(e.to_string())
    }
}

/// Resume data for one torrent: where its content lies and which pieces a client may take as had.
#[derive(Clone, Debug)]
pub struct Resume<'a> {
    meta: &'a Metainfo,
    /// libtorrent's `save_path`: the absolute directory holding the torrent's content.
    save_path: String,
    /// A single-file torrent's file name on disk when it is not the torrent's (`mapped_files`).
    renamed_file: Option<String>,
    /// One flag per piece in libtorrent's numbering (v2-only: every file starts a piece).
    have: Vec<bool>,
    /// Unix time recorded as added (and completed, when every piece is had).
    now: i64,
}

impl<'a> Resume<'a> {
    /// The pieces `report` found good, for the content at `paths` (from [`super::verify::locate`]).
    /// A piece touching a file that changed while it was read is not claimed.
    ///
    /// # Errors
    /// A save directory that cannot be resolved or is not UTF-8, or a report of another torrent.
    pub fn from_verify(
        meta: &'a Metainfo,
        report: &VerifyReport,
        paths: &[PathBuf],
        now: i64,
    ) -> Result<Self, ResumeError> {
        let layout = &meta.layout;
        let count =
            usize::try_from(layout.piece_count()).map_err(|_| ResumeError::Mismatch("pieces"))?;
        if report.pieces_total != layout.piece_count() || paths.len() != layout.files.len() {
            return Err(ResumeError::Mismatch("piece or file count"));
        }
        let mut have = vec![true; count];
        for &piece in &report.bad_pieces {
            *have
                .get_mut(usize::try_from(piece).unwrap_or(usize::MAX))
                .ok_or(ResumeError::Mismatch("bad piece out of range"))? = false;
        }
        let real_files = layout.files.iter().enumerate().filter(|(_, f)| !f.pad);
        for ((index, _), file) in real_files.zip(&report.files) {
            if matches!(file.status, FileStatus::Changed | FileStatus::Unreadable) {
                for piece in layout.pieces_of_file(index) {
                    if let Some(flag) = usize::try_from(piece).ok().and_then(|p| have.get_mut(p)) {
                        *flag = false;
                    }
                }
            }
        }
        let (save_path, renamed_file) = save_path(meta, paths)?;
        Ok(Self {
            meta,
            save_path,
            renamed_file,
            have,
            now,
        })
    }

    /// Pieces claimed as had.
    #[must_use]
    pub fn have_count(&self) -> usize {
        self.have.iter().filter(|&&h| h).count()
    }

    #[must_use]
    pub fn save_path(&self) -> &str {
        &self.save_path
    }

    /// The bencoded resume data: libtorrent's keys, plus the `qBt-` keys qBittorrent reads so it
    /// keeps the save path (manual mode) and the content layout as they are.
    ///
    /// # Errors
    /// An encoder failure (not expected for well-formed input).
    pub fn encode(&self) -> Result<Vec<u8>, ResumeError> {
        let meta = self.meta;
        let complete = self.have.iter().all(|&h| h);
        let mut dict: Vec<(&[u8], Vec<u8>)> = vec![
            (b"added_time", encode_with(|e| e.emit_int(self.now))?),
            (b"allocation", encode_with(|e| e.emit_str("sparse"))?),
            // Running and queued like a freshly added torrent; qBittorrent reads paused=1 with
            // auto_managed=0 as stopped, paused=0 with auto_managed=0 as force-started.
            (b"auto_managed", encode_with(|e| e.emit_int(1))?),
            (b"file-format", encode_with(|e| e.emit_str(FILE_FORMAT))?),
            (b"file-version", encode_with(|e| e.emit_int(1))?),
            // The exact bytes: libtorrent checks them against the info hashes.
            (b"info", meta.raw_info.clone()),
            (b"name", encode_with(|e| e.emit_str(&meta.name))?),
            (b"paused", encode_with(|e| e.emit_int(0))?),
            (
                b"pieces",
                encode_with(|e| e.emit_bytes(&self.pieces_bytes()))?,
            ),
            (
                b"qBt-contentLayout",
                encode_with(|e| e.emit_str("Original"))?,
            ),
            (
                b"qBt-savePath",
                encode_with(|e| e.emit_str(&self.save_path))?,
            ),
            (
                b"qBt-seedStatus",
                encode_with(|e| e.emit_int(i64::from(complete)))?,
            ),
            (b"save_path", encode_with(|e| e.emit_str(&self.save_path))?),
            (b"trackers", encode_with(|e| self.emit_trackers(e))?),
        ];
        if complete {
            dict.push((b"completed_time", encode_with(|e| e.emit_int(self.now))?));
        }
        if !meta.web_seeds.is_empty() {
            let seeds = encode_with(|e| {
                e.emit_list(|list| {
                    for url in &meta.web_seeds {
                        list.emit_str(url)?;
                    }
                    Ok(())
                })
            })?;
            dict.push((b"url-list", seeds));
        }
        if let Some(hash) = meta.info_hash_v1() {
            dict.push((b"info-hash", encode_with(|e| e.emit_bytes(&hash))?));
        }
        if let Some(hash) = meta.info_hash_v2() {
            dict.push((b"info-hash2", encode_with(|e| e.emit_bytes(&hash))?));
            dict.push((b"trees", encode_with(|e| self.emit_trees(e))?));
        }
        if let Some(name) = &self.renamed_file {
            dict.push((
                b"mapped_files",
                encode_with(|e| e.emit_list(|l| l.emit_str(name)))?,
            ));
        }
        Ok(dictionary(dict))
    }

    fn pieces_bytes(&self) -> Vec<u8> {
        self.have.iter().map(|&h| u8::from(h)).collect()
    }

    /// The torrent's tracker tiers, as libtorrent keeps them.
    fn emit_trackers(&self, e: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
        e.emit_list(|tiers| {
            for tier in &self.meta.tracker_tiers {
                tiers.emit_list(|list| {
                    for url in tier {
                        list.emit_str(url)?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    }

    /// The v2 piece layers as libtorrent stores merkle trees: one entry per file in its file
    /// index order (a pad file after each file that does not end on a piece boundary), holding
    /// the piece-layer nodes and a mask of where they sit in the file's full tree.
    fn emit_trees(&self, e: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
        let layout = &self.meta.layout;
        let piece_length = layout.piece_length;
        let empty = |l: &mut Encoder| {
            l.emit_dict(|mut d| d.emit_pair_with(b"hashes", |e| e.emit_bytes(b"")))
        };
        e.emit_list(|list| {
            let files: Vec<_> = layout.files.iter().filter(|f| !f.pad).collect();
            for (n, file) in files.iter().enumerate() {
                let layer = file
                    .pieces_root
                    .filter(|_| file.length > piece_length)
                    .and_then(|root| self.meta.piece_layers.get(&root));
                match layer {
                    Some(layer) => {
                        let leaves = file.length.div_ceil(BLOCK_SIZE).next_power_of_two();
                        let level = leaves / merkle::blocks_per_piece(piece_length);
                        let nodes = usize::try_from(2 * leaves - 1).unwrap_or(usize::MAX);
                        let first = usize::try_from(level - 1).unwrap_or(usize::MAX);
                        let mut mask = vec![b'0'; nodes];
                        for bit in mask.iter_mut().skip(first).take(layer.len()) {
                            *bit = b'1';
                        }
                        list.emit_dict(|mut d| {
                            d.emit_pair_with(b"hashes", |e| e.emit_bytes(&layer.concat()))?;
                            d.emit_pair_with(b"mask", |e| e.emit_bytes(&mask))
                        })?;
                    }
                    None => empty(list)?,
                }
                let last = n + 1 == files.len();
                if !last && file.length % piece_length != 0 {
                    empty(list)?;
                }
            }
            Ok(())
        })
    }
}

/// qBittorrent's name for the torrent in `BT_backup` (`<id>.fastresume`, `<id>.torrent`): with
/// libtorrent 2 the v2 hash cut to 20 bytes when the torrent has one, else the v1 hash.
#[must_use]
pub fn qbittorrent_id(meta: &Metainfo) -> String {
    match (meta.info_hash_v2(), meta.info_hash_v1()) {
        (Some(v2), _) => hex::encode(&v2[..20]),
        (None, Some(v1)) => hex::encode(v1),
        (None, None) => String::new(),
    }
}

/// libtorrent's `save_path` (the directory holding `name`, absolute) for content found at
/// `paths`, and the single file's own name when it differs from the torrent's.
fn save_path(meta: &Metainfo, paths: &[PathBuf]) -> Result<(String, Option<String>), ResumeError> {
    let (Some(first), Some(file)) = (paths.first(), meta.layout.files.first()) else {
        return Err(ResumeError::Mismatch("no files"));
    };
    // The content root: the file itself, or the directory the first file's path hangs from.
    let (root, expected) = if meta.single_file {
        (first.clone(), file.path.to_string())
    } else {
        let depth = file.path.components().count();
        let root = first
            .ancestors()
            .nth(depth)
            .ok_or(ResumeError::Mismatch("file path"))?;
        (root.to_path_buf(), meta.name.clone())
    };
    let named = |p: &Path| p.file_name().is_some_and(|n| n == expected.as_str());
    let dir = match root.canonicalize() {
        Ok(real) if named(&real) => real.parent().map(Path::to_path_buf),
        _ => None,
    };
    let dir = match dir {
        Some(dir) => dir,
        None => {
            // The content is missing, renamed, or a link to another name: its parent holds it.
            let parent = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            parent
                .canonicalize()
                .map_err(|source| ResumeError::SavePath {
                    path: parent.to_path_buf(),
                    source,
                })?
        }
    };
    let save = dir
        .to_str()
        .ok_or_else(|| ResumeError::NotUtf8(dir.clone()))?
        .to_owned();
    let renamed = if meta.single_file && !named(&root) {
        let name = root.file_name().and_then(|n| n.to_str());
        Some(
            name.ok_or_else(|| ResumeError::NotUtf8(root.clone()))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok((save, renamed))
}

fn encode_with(
    value: impl FnOnce(SingleItemEncoder) -> Result<(), bendy::encoding::Error>,
) -> Result<Vec<u8>, ResumeError> {
    let mut encoder = Encoder::new();
    encoder.emit_with(value)?;
    Ok(encoder.get_output()?)
}

/// A dictionary of values already encoded (bendy cannot splice the raw `info` bytes itself).
fn dictionary(mut pairs: Vec<(&[u8], Vec<u8>)>) -> Vec<u8> {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = vec![b'd'];
    for (key, value) in pairs {
        out.extend_from_slice(key.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(key);
        out.extend_from_slice(&value);
    }
    out.push(b'e');
    out
}

/// What a resume file says, read back: for tests and for checking a file before a client sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeSummary {
    pub info_hash: Option<[u8; 20]>,
    pub info_hash2: Option<[u8; 32]>,
    pub name: String,
    pub save_path: String,
    /// One flag per piece.
    pub pieces: Vec<bool>,
    /// The raw `info` dictionary, when present.
    pub info: Option<Vec<u8>>,
}

/// Deeper nesting than this is refused (resume data nests three levels).
const MAX_DEPTH: usize = 64;

impl ResumeSummary {
    /// Reads the keys peerhash writes from bencoded resume data.
    ///
    /// # Errors
    /// Malformed bencode, a missing or wrong `file-format`, no info hash, mistyped keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ResumeError> {
        let mut decoder = Decoder::new(bytes).with_max_depth(MAX_DEPTH);
        let Some(Object::Dict(mut dict)) = decoder.next_object()? else {
            return Err(ResumeError::Format("not a dictionary"));
        };
        let mut summary = Self::default();
        let mut format_ok = false;
        while let Some((key, value)) = dict.next_pair()? {
            match (key, value) {
                (b"file-format", Object::Bytes(b)) => format_ok = b == FILE_FORMAT.as_bytes(),
                (b"info-hash", Object::Bytes(b)) => summary.info_hash = b.try_into().ok(),
                (b"info-hash2", Object::Bytes(b)) => summary.info_hash2 = b.try_into().ok(),
                (b"name", Object::Bytes(b)) => summary.name = text(b)?,
                (b"save_path", Object::Bytes(b)) => summary.save_path = text(b)?,
                (b"pieces", Object::Bytes(b)) => {
                    summary.pieces = b.iter().map(|&p| p & 1 == 1).collect();
                }
                (b"info", Object::Dict(info)) => summary.info = Some(info.into_raw()?.to_vec()),
                (b"file-format" | b"info-hash" | b"info-hash2" | b"name", _)
                | (b"save_path" | b"pieces" | b"info", _) => {
                    return Err(ResumeError::Format("a key has the wrong type"));
                }
                // Skip other values whole (a list or dict must be walked to its end).
                (_, Object::List(list)) => drop(list.into_raw()?),
                (_, Object::Dict(inner)) => drop(inner.into_raw()?),
                _ => {}
            }
        }
        if !format_ok {
            return Err(ResumeError::Format(
                "`file-format` is not a libtorrent resume file",
            ));
        }
        if summary.info_hash.is_none() && summary.info_hash2.is_none() {
            return Err(ResumeError::Format(
                "no 20-byte `info-hash` or 32-byte `info-hash2`",
            ));
        }
        Ok(summary)
    }
}

fn text(bytes: &[u8]) -> Result<String, ResumeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ResumeError::Format("text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent(info: &[u8]) -> Vec<u8> {
        [&b"d8:announce9:http://x/4:info"[..], info, b"e"].concat()
    }

    fn resume<'a>(meta: &'a Metainfo, dir: &Path, have: Vec<bool>) -> Resume<'a> {
        let paths = super::super::verify::locate(meta, dir).files;
        let (save_path, renamed_file) = save_path(meta, &paths).unwrap();
        Resume {
            meta,
            save_path,
            renamed_file,
            have,
            now: 1_700_000_000,
        }
    }

    #[test]
    fn reads_back_what_it_writes_with_the_exact_info_bytes() {
        // An unknown key inside `info` is kept: the info hash covers it.
        let info = b"d6:lengthi20000e4:name5:a.txt12:piece lengthi16384e6:pieces40:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1:zi7ee";
        let meta = Metainfo::from_bytes(&torrent(info)).unwrap();
        let dir = std::env::temp_dir();
        let encoded = resume(&meta, &dir, vec![true, false]).encode().unwrap();
        let summary = ResumeSummary::from_bytes(&encoded).unwrap();
        assert_eq!(summary.info.as_deref(), Some(&info[..]));
        assert_eq!(summary.info_hash, meta.info_hash_v1());
        assert_eq!(summary.info_hash2, None);
        assert_eq!(summary.pieces, [true, false]);
        assert_eq!(summary.name, "a.txt");
        assert_eq!(
            Path::new(&summary.save_path),
            dir.canonicalize().unwrap().as_path()
        );
        // Every top-level key in bencode order, as libtorrent and bendy expect.
        let mut decoder = Decoder::new(&encoded);
        let Some(Object::Dict(mut dict)) = decoder.next_object().unwrap() else {
            panic!("not a dict")
        };
        let mut keys = Vec::new();
        while let Some((key, _)) = dict.next_pair().unwrap() {
            keys.push(key.to_vec());
        }
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn a_renamed_single_file_is_mapped() {
        let info =
            b"d6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
        let meta = Metainfo::from_bytes(&torrent(info)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("other name.bin");
        std::fs::write(&file, b"hello").unwrap();
        let paths = super::super::verify::locate(&meta, &file).files;
        let (save, renamed) = save_path(&meta, &paths).unwrap();
        assert_eq!(Path::new(&save), dir.path().canonicalize().unwrap());
        assert_eq!(renamed.as_deref(), Some("other name.bin"));
        let paths = super::super::verify::locate(&meta, dir.path()).files;
        assert_eq!(save_path(&meta, &paths).unwrap().1, None);
    }

    #[test]
    fn unusable_input_is_an_error_not_a_panic() {
        let encoded =
            b"d11:file-format22:libtorrent resume file9:info-hash20:AAAAAAAAAAAAAAAAAAAAe";
        assert!(ResumeSummary::from_bytes(encoded).is_ok());
        for end in 0..encoded.len() - 1 {
            assert!(ResumeSummary::from_bytes(&encoded[..end]).is_err(), "{end}");
        }
        assert!(ResumeSummary::from_bytes(
            b"d11:file-format3:abc9:info-hash20:AAAAAAAAAAAAAAAAAAAAe"
        )
        .is_err());
        assert!(ResumeSummary::from_bytes(b"d11:file-format22:libtorrent resume filee").is_err());
        assert!(ResumeSummary::from_bytes(b"le").is_err());
    }

    #[test]
    fn the_qbittorrent_id_is_the_v1_hash_or_the_cut_v2_hash() {
        let info =
            b"d6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
        let meta = Metainfo::from_bytes(&torrent(info)).unwrap();
        assert_eq!(
            qbittorrent_id(&meta),
            hex::encode(meta.info_hash_v1().unwrap())
        );
    }
}
