//! Parsing `.torrent` files (BEP 3 v1, BEP 52 v2 and hybrid, BEP 47 pad files), keeping the raw
//! bencoded `info` dictionary so the info hashes are over the exact bytes.
//!
//! Bencode is read by [`super::bencode`], as leniently as libtorrent where that is harmless:
//! keys in any order (a non-canonical `info` gets a warning, its hash still that of its bytes),
//! but duplicate keys, malformed values and hostile paths are refused.

use std::collections::HashMap;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::bencode::{self, Dict, NonCanonical, TorrentFileError, Value};
use super::layout::{
    FileEntry, Layout, LayoutError, PathError, PieceScheme, TorrentPath, BLOCK_SIZE,
};
use super::merkle;
use crate::hash::cpu::CpuBackend;
use crate::hash::{Sha1Digest, Sha256Digest};

/// Torrent files larger than this are refused before parsing.
pub const MAX_TORRENT_BYTES: u64 = 256 << 20;
/// Deeper nesting than this is refused (a v2 file tree nests one level per directory).
const MAX_DEPTH: usize = 256;

/// Which BitTorrent versions a torrent carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
    Hybrid,
}

impl Version {
    #[must_use]
    pub fn has_v1(self) -> bool {
        self != Version::V2
    }

    #[must_use]
    pub fn has_v2(self) -> bool {
        self != Version::V1
    }
}

/// `v1`, `v2` or `hybrid`: the same spelling as in JSON.
impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::Hybrid => "hybrid",
        })
    }
}

/// Why a torrent was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    #[error("malformed bencode: {0}")]
    Bencode(bencode::DecodeError),
    #[error("the torrent is not a bencoded dictionary")]
    NotADict,
    #[error("invalid v2 piece layer: {0}")]
    Merkle(String),
    #[error("the torrent file is larger than {MAX_TORRENT_BYTES} bytes")]
    TooLarge,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is not {expected}")]
    Type {
        field: String,
        expected: &'static str,
    },
    #[error("`pieces` is {0} bytes long, not a multiple of 20")]
    PiecesNotMultiple(usize),
    #[error("`piece length` {0} is out of range (1 byte to 256 MiB)")]
    PieceLength(i64),
    #[error("v2 `piece length` {0} is not a power of two of at least 16 KiB")]
    V2PieceLength(u64),
    #[error("`pieces` holds {got} hashes but the files need {expected} pieces")]
    PieceCount { got: u64, expected: u64 },
    #[error("file {path}: length {length} is negative")]
    Length { path: String, length: i64 },
    #[error("file {path}: {problem}")]
    Path { path: String, problem: PathError },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("v2 file {path}: `pieces root` is missing or not 32 bytes")]
    PiecesRoot { path: String },
    #[error("v2 file {path}: no entry in `piece layers`")]
    LayerMissing { path: String },
    #[error(
        "v2 file {path}: piece layer holds {got} bytes, expected {expected} hashes of 32 bytes"
    )]
    LayerLength {
        path: String,
        got: usize,
        expected: u64,
    },
    #[error("v2 file {path}: piece layer does not match the file's `pieces root`")]
    LayerMismatch { path: String },
    #[error("hybrid torrent: v1 `files` and v2 `file tree` disagree ({0})")]
    HybridMismatch(String),
    #[error("`info` has neither `pieces` (v1) nor `file tree` (v2)")]
    NoVersion,
    #[error("unsupported `meta version` {0}")]
    MetaVersion(i64),
    #[error("`info` has both `length` (one file) and `files` (a folder): an ambiguous layout")]
    LengthAndFiles,
    #[error("`files` is an empty list: a torrent must hold at least one file")]
    EmptyFiles,
    #[error("`file tree` is empty: a torrent must hold at least one file")]
    EmptyFileTree,
}

/// A parsed torrent.
#[derive(Clone, Debug)]
pub struct Metainfo {
    pub name: String,
    pub version: Version,
    /// Files in torrent order (v1 order with pad files for v1 and hybrid, file tree order for v2).
    pub layout: Layout,
    /// v1 piece hashes; empty for v2-only torrents.
    pub v1_pieces: Vec<Sha1Digest>,
    /// v2 piece layers by file root, each checked against its root.
    pub piece_layers: HashMap<Sha256Digest, Vec<Sha256Digest>>,
    /// The bencoded `info` dictionary exactly as it is in the file.
    pub raw_info: Vec<u8>,
    /// Whether the torrent is a single file (its path is `name`) rather than a directory.
    pub single_file: bool,
    /// Trackers by tier (BEP 12): `announce-list` when it has any, else `announce` alone.
    /// Empty tiers and repeats are dropped.
    pub tracker_tiers: Vec<Vec<String>>,
    /// Web seeds (BEP 19 `url-list`, a string or a list of strings).
    pub web_seeds: Vec<String>,
    pub private: bool,
    pub comment: Option<String>,
    /// The first spot where `info` is not canonical bencode (keys out of order, leading zeros):
    /// its info hash is still that of its bytes, but tools that re-encode it get another.
    pub info_non_canonical: Option<NonCanonical>,
}

impl Metainfo {
    /// Every tracker, tier by tier.
    pub fn trackers(&self) -> impl Iterator<Item = &str> {
        self.tracker_tiers.iter().flatten().map(String::as_str)
    }

    /// SHA-1 of the raw `info` bytes: the v1 info hash (present for v1 and hybrid torrents).
    #[must_use]
    pub fn info_hash_v1(&self) -> Option<Sha1Digest> {
        self.version
            .has_v1()
            .then(|| Sha1::digest(&self.raw_info).into())
    }

    /// SHA-256 of the raw `info` bytes: the v2 info hash (present for v2 and hybrid torrents).
    #[must_use]
    pub fn info_hash_v2(&self) -> Option<Sha256Digest> {
        self.version
            .has_v2()
            .then(|| Sha256::digest(&self.raw_info).into())
    }

    /// Parses and validates a whole `.torrent` file.
    ///
    /// # Errors
    /// Malformed bencode, missing or mistyped fields, hostile paths, inconsistent hashes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        if bytes.len() as u64 > MAX_TORRENT_BYTES {
            return Err(MetainfoError::TooLarge);
        }
        let file = bencode::decode_torrent(bytes, MAX_DEPTH).map_err(|e| match e {
            TorrentFileError::Decode(e) => MetainfoError::Bencode(e),
            TorrentFileError::NotADict => MetainfoError::NotADict,
        })?;
        let raw_info = file.raw_info.ok_or(MetainfoError::Missing("info"))?;
        let Some(Value::Dict(info)) = file.top.get(b"info") else {
            return Err(type_error("info", "a dictionary"));
        };
        if let Some(spot) = &file.info_non_canonical {
            tracing::warn!(
                "the torrent's `info` is not canonical bencode ({spot}); its info hash is \
                 taken over the bytes as written, as libtorrent does"
            );
        }
        if file.trailing > 0 {
            tracing::warn!(
                "ignoring {} bytes after the torrent's bencoded dictionary",
                file.trailing
            );
        }
        let mut meta = parse(&file.top, info, raw_info.to_vec())?;
        meta.info_non_canonical = file.info_non_canonical;
        Ok(meta)
    }
}

fn type_error(field: &str, expected: &'static str) -> MetainfoError {
    MetainfoError::Type {
        field: field.to_owned(),
        expected,
    }
}

fn get<'v, 'a>(dict: &'v Dict<'a>, key: &str) -> Option<&'v Value<'a>> {
    dict.get(key.as_bytes())
}

fn bytes<'v>(dict: &'v Dict<'_>, key: &'static str) -> Result<Option<&'v [u8]>, MetainfoError> {
    match get(dict, key) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(type_error(key, "a byte string")),
    }
}

fn text(dict: &Dict<'_>, key: &'static str) -> Result<Option<String>, MetainfoError> {
    bytes(dict, key)?
        .map(|b| String::from_utf8(b.to_vec()).map_err(|_| type_error(key, "UTF-8 text")))
        .transpose()
}

fn integer(dict: &Dict<'_>, key: &'static str) -> Result<Option<i64>, MetainfoError> {
    match get(dict, key) {
        None => Ok(None),
        Some(Value::Integer(i)) => Ok(Some(*i)),
        Some(_) => Err(type_error(key, "an integer")),
    }
}

fn length(path: &str, value: i64) -> Result<u64, MetainfoError> {
    u64::try_from(value).map_err(|_| MetainfoError::Length {
        path: path.to_owned(),
        length: value,
    })
}

fn parse(top: &Dict<'_>, info: &Dict<'_>, raw_info: Vec<u8>) -> Result<Metainfo, MetainfoError> {
    let name_bytes = bytes(info, "name.utf-8")?
        .or(bytes(info, "name")?)
        .ok_or(MetainfoError::Missing("name"))?;
    let name_path =
        TorrentPath::from_components([name_bytes]).map_err(|problem| MetainfoError::Path {
            path: String::from_utf8_lossy(name_bytes).into_owned(),
            problem,
        })?;
    let name = name_path.to_string();
    let piece_length =
        integer(info, "piece length")?.ok_or(MetainfoError::Missing("piece length"))?;
    let piece_length = u64::try_from(piece_length)
        .ok()
        .filter(|&p| p > 0 && p <= super::layout::MAX_PIECE_LENGTH)
        .ok_or(MetainfoError::PieceLength(piece_length))?;

    let meta_version = integer(info, "meta version")?;
    let has_tree = get(info, "file tree").is_some();
    let has_pieces = get(info, "pieces").is_some();
    let version = match (has_pieces, meta_version, has_tree) {
        (_, Some(v), _) if v != 2 => return Err(MetainfoError::MetaVersion(v)),
        (_, Some(_), false) => return Err(MetainfoError::Missing("file tree")),
        (true, Some(_), true) => Version::Hybrid,
        (false, Some(_), true) => Version::V2,
        (true, None, _) => Version::V1,
        (false, None, _) => return Err(MetainfoError::NoVersion),
    };

    let v2_files = if version.has_v2() {
        if !piece_length.is_power_of_two() || piece_length < BLOCK_SIZE {
            return Err(MetainfoError::V2PieceLength(piece_length));
        }
        Some(parse_file_tree(info)?)
    } else {
        None
    };
    let v1_files = if version.has_v1() {
        Some(parse_v1_files(info, &name_path)?)
    } else {
        None
    };

    let (files, single_file) = match (v1_files, v2_files) {
        (Some(v1), Some(v2)) => (merge_hybrid(v1.0, &v2.0)?, v1.1),
        (Some(v1), None) => v1,
        (None, Some(v2)) => v2,
        (None, None) => return Err(MetainfoError::NoVersion),
    };
    let scheme = if version == Version::V2 {
        PieceScheme::PerFile
    } else {
        PieceScheme::Concatenated
    };
    let layout = Layout::new(files, piece_length, scheme)?;

    let v1_pieces = if version.has_v1() {
        let pieces = bytes(info, "pieces")?.ok_or(MetainfoError::Missing("pieces"))?;
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultiple(pieces.len()));
        }
        let got = (pieces.len() / 20) as u64;
        if got != layout.piece_count() {
            return Err(MetainfoError::PieceCount {
                got,
                expected: layout.piece_count(),
            });
        }
        pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("20-byte chunks"))
            .collect()
    } else {
        Vec::new()
    };

    let piece_layers = if version.has_v2() {
        parse_piece_layers(top, &layout)?
    } else {
        HashMap::new()
    };

    Ok(Metainfo {
        name,
        version,
        layout,
        v1_pieces,
        piece_layers,
        raw_info,
        single_file,
        tracker_tiers: parse_tracker_tiers(top),
        web_seeds: parse_web_seeds(top),
        private: integer(info, "private")? == Some(1),
        comment: text(top, "comment").ok().flatten(),
        info_non_canonical: None,
    })
}

fn utf8<'a>(value: &'a Value<'_>) -> Option<&'a str> {
    match value {
        Value::Bytes(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// BEP 12: clients use `announce-list` when present and `announce` otherwise. Non-text
/// entries, repeats and tiers left empty are skipped: a tracker list is advice, not proof.
fn parse_tracker_tiers(top: &Dict<'_>) -> Vec<Vec<String>> {
    let mut seen: Vec<&str> = Vec::new();
    let mut tiers = Vec::new();
    if let Some(Value::List(list)) = get(top, "announce-list") {
        for tier in list {
            let Value::List(urls) = tier else { continue };
            let mut kept = Vec::new();
            for url in urls.iter().filter_map(utf8) {
                if !seen.contains(&url) {
                    seen.push(url);
                    kept.push(url.to_owned());
                }
            }
            if !kept.is_empty() {
                tiers.push(kept);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = get(top, "announce").and_then(utf8) {
            tiers.push(vec![url.to_owned()]);
        }
    }
    tiers
}

/// BEP 19 `url-list`: one URL as a string, or a list of them.
fn parse_web_seeds(top: &Dict<'_>) -> Vec<String> {
    let mut seeds: Vec<String> = Vec::new();
    let urls: Vec<&str> = match get(top, "url-list") {
        Some(Value::List(list)) => list.iter().filter_map(utf8).collect(),
        Some(value) => utf8(value).into_iter().collect(),
        None => Vec::new(),
    };
    for url in urls {
        if !url.is_empty() && !seeds.iter().any(|s| s == url) {
            seeds.push(url.to_owned());
        }
    }
    seeds
}

/// v1 `length` (single file) or `files` (a directory named `name`), pad files marked.
fn parse_v1_files(
    info: &Dict<'_>,
    name: &TorrentPath,
) -> Result<(Vec<FileEntry>, bool), MetainfoError> {
    let single = integer(info, "length")?;
    if single.is_some() && get(info, "files").is_some() {
        return Err(MetainfoError::LengthAndFiles);
    }
    if let Some(length) = single {
        let length = self::length(&name.to_string(), length)?;
        let file = FileEntry {
            path: name.clone(),
            length,
            pad: false,
            pieces_root: None,
        };
        return Ok((vec![file], true));
    }
    let Some(list) = get(info, "files") else {
        return Err(MetainfoError::Missing("length` or `files"));
    };
    let Value::List(list) = list else {
        return Err(type_error("files", "a list"));
    };
    if list.is_empty() {
        return Err(MetainfoError::EmptyFiles);
    }
    let mut files = Vec::with_capacity(list.len());
    for entry in list {
        let Value::Dict(entry) = entry else {
            return Err(type_error("files[]", "a dictionary"));
        };
        let components = match get(entry, "path.utf-8").or_else(|| get(entry, "path")) {
            Some(Value::List(parts)) => parts
                .iter()
                .map(|p| match p {
                    Value::Bytes(b) => Ok(&b[..]),
                    _ => Err(type_error("path[]", "a byte string")),
                })
                .collect::<Result<Vec<&[u8]>, _>>()?,
            Some(_) => return Err(type_error("path", "a list")),
            None => return Err(MetainfoError::Missing("path")),
        };
        let shown = components
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/");
        let path =
            TorrentPath::from_components(components).map_err(|problem| MetainfoError::Path {
                path: shown.clone(),
                problem,
            })?;
        let length = integer(entry, "length")?.ok_or(MetainfoError::Missing("length"))?;
        let length = self::length(&shown, length)?;
        let pad = bytes(entry, "attr")?.is_some_and(|attr| attr.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            pad,
            pieces_root: None,
        });
    }
    Ok((files, false))
}

/// The v2 `file tree`, flattened in key order. A tree whose only entry is a file is a
/// single-file torrent of that file, whatever `name` says: libtorrent reads it so, and a v2-only
/// torrent has no other way to say "a directory holding one file" (hybrid torrents do: their v1
/// `files` list decides).
fn parse_file_tree(info: &Dict<'_>) -> Result<(Vec<FileEntry>, bool), MetainfoError> {
    let Some(Value::Dict(tree)) = get(info, "file tree") else {
        return Err(type_error("file tree", "a dictionary"));
    };
    let mut files = Vec::new();
    let mut prefix = Vec::new();
    walk_tree(tree, &mut prefix, &mut files)?;
    if files.is_empty() {
        return Err(MetainfoError::EmptyFileTree);
    }
    let single = tree.len() == 1 && files.len() == 1 && files[0].path.components().count() == 1;
    Ok((files, single))
}

fn walk_tree<'a>(
    tree: &'a Dict<'_>,
    prefix: &mut Vec<&'a [u8]>,
    files: &mut Vec<FileEntry>,
) -> Result<(), MetainfoError> {
    for (key, value) in tree.iter() {
        let Value::Dict(node) = value else {
            return Err(type_error("file tree node", "a dictionary"));
        };
        prefix.push(key);
        let shown = || {
            prefix
                .iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("/")
        };
        let path = TorrentPath::from_components(prefix.iter().copied()).map_err(|problem| {
            MetainfoError::Path {
                path: shown(),
                problem,
            }
        })?;
        match node.get(b"") {
            Some(Value::Dict(leaf)) if node.len() == 1 => {
                let length = integer(leaf, "length")?.ok_or(MetainfoError::Missing("length"))?;
                let length = self::length(&shown(), length)?;
                let pieces_root = match bytes(leaf, "pieces root")? {
                    Some(root) => Some(
                        <[u8; 32]>::try_from(root)
                            .map_err(|_| MetainfoError::PiecesRoot { path: shown() })?,
                    ),
                    None if length == 0 => None,
                    None => return Err(MetainfoError::PiecesRoot { path: shown() }),
                };
                files.push(FileEntry {
                    path,
                    length,
                    pad: false,
                    pieces_root: pieces_root.filter(|_| length > 0),
                });
            }
            Some(_) => return Err(type_error(&shown(), "a file entry")),
            None => walk_tree(node, prefix, files)?,
        }
        prefix.pop();
    }
    Ok(())
}

/// Hybrid torrents list the same files twice; v1 adds pad files. Both lists must agree.
fn merge_hybrid(mut v1: Vec<FileEntry>, v2: &[FileEntry]) -> Result<Vec<FileEntry>, MetainfoError> {
    let mut v2_files = v2.iter();
    for file in v1.iter_mut().filter(|f| !f.pad) {
        let Some(other) = v2_files.next() else {
            return Err(MetainfoError::HybridMismatch(format!(
                "{} is not in the file tree",
                file.path
            )));
        };
        if other.path != file.path || other.length != file.length {
            return Err(MetainfoError::HybridMismatch(format!(
                "{} ({} bytes) against {} ({} bytes)",
                file.path, file.length, other.path, other.length
            )));
        }
        file.pieces_root = other.pieces_root;
    }
    if let Some(extra) = v2_files.next() {
        return Err(MetainfoError::HybridMismatch(format!(
            "{} is only in the file tree",
            extra.path
        )));
    }
    Ok(v1)
}

/// `piece layers`: every file longer than a piece needs one, and each must hash to its root.
fn parse_piece_layers(
    top: &Dict<'_>,
    layout: &Layout,
) -> Result<HashMap<Sha256Digest, Vec<Sha256Digest>>, MetainfoError> {
    let empty = Dict::default();
    let raw = match get(top, "piece layers") {
        Some(Value::Dict(d)) => d,
        Some(_) => return Err(type_error("piece layers", "a dictionary")),
        None => &empty,
    };
    let mut layers = HashMap::new();
    for file in &layout.files {
        let Some(root) = file.pieces_root else {
            continue;
        };
        if file.length <= layout.piece_length || layers.contains_key(&root) {
            continue;
        }
        let path = file.path.to_string();
        let Some(Value::Bytes(layer)) = raw.get(&root[..]) else {
            return Err(MetainfoError::LayerMissing { path });
        };
        let expected = file.length.div_ceil(layout.piece_length);
        if layer.len() % 32 != 0 || (layer.len() / 32) as u64 != expected {
            return Err(MetainfoError::LayerLength {
                path,
                got: layer.len(),
                expected,
            });
        }
        let hashes: Vec<Sha256Digest> = layer
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunks"))
            .collect();
        let cpu: &dyn crate::hash::BulkHasher = &CpuBackend::inline();
        let computed = merkle::root_from_piece_layer(cpu, &hashes, layout.piece_length)
            .map_err(|e| MetainfoError::Merkle(e.to_string()))?;
        if computed != root {
            return Err(MetainfoError::LayerMismatch { path });
        }
        layers.insert(root, hashes);
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &[u8] =
        b"d6:lengthi5e4:name5:a.txt12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";

    fn torrent(info: &[u8]) -> Vec<u8> {
        [&b"d8:announce9:http://x/4:info"[..], info, b"5:zzzzzi1ee"].concat()
    }

    #[test]
    fn info_hash_is_over_the_exact_info_bytes() {
        let meta = Metainfo::from_bytes(&torrent(INFO)).unwrap();
        assert_eq!(meta.raw_info, INFO);
        let expected: Sha1Digest = Sha1::digest(INFO).into();
        assert_eq!(meta.info_hash_v1(), Some(expected));
        assert_eq!(meta.info_hash_v2(), None);
        assert_eq!(meta.version, Version::V1);
        assert!(meta.single_file);
        assert_eq!(meta.tracker_tiers, [["http://x/"]]);
        assert_eq!(meta.layout.piece_count(), 1);
    }

    #[test]
    fn announce_list_tiers_win_over_announce_and_url_list_is_a_string_or_a_list() {
        let with = |top: &[u8]| {
            let bytes = [&b"d"[..], top, b"4:info", INFO, b"e"].concat();
            Metainfo::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
        };
        // BEP 12: announce-list replaces announce; repeats, non-text and empty tiers go.
        let meta = with(b"8:announce9:http://x/13:announce-listll9:http://a/9:http://b/eli7eel9:http://a/9:http://c/ee");
        assert_eq!(
            meta.tracker_tiers,
            [vec!["http://a/", "http://b/"], vec!["http://c/"]]
        );
        assert_eq!(
            meta.trackers().collect::<Vec<_>>(),
            ["http://a/", "http://b/", "http://c/"]
        );
        // An empty announce-list falls back to announce.
        assert_eq!(
            with(b"8:announce9:http://x/13:announce-listle").tracker_tiers,
            [["http://x/"]]
        );
        assert_eq!(with(b"8:url-list9:http://w/").web_seeds, ["http://w/"]);
        assert_eq!(
            with(b"8:url-listl9:http://v/0:9:http://w/9:http://v/e").web_seeds,
            ["http://v/", "http://w/"]
        );
        assert!(with(b"8:url-listi3e").web_seeds.is_empty());
        assert!(with(b"").tracker_tiers.is_empty());
    }

    #[test]
    fn pad_files_are_marked() {
        let info = b"d5:filesld6:lengthi3e4:pathl1:aeed4:attr1:p6:lengthi16381e4:pathl4:.pad5:16381eed6:lengthi2e4:pathl1:beee4:name1:d12:piece lengthi16384e6:pieces40:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAe";
        let meta = Metainfo::from_bytes(&torrent(info)).unwrap();
        let pads: Vec<bool> = meta.layout.files.iter().map(|f| f.pad).collect();
        assert_eq!(pads, [false, true, false]);
        assert_eq!(meta.layout.content_length(), 5);
        assert_eq!(meta.layout.piece_count(), 2);
    }

    #[test]
    fn unsorted_keys_are_read_and_a_non_canonical_info_keeps_the_hash_of_its_bytes() {
        // torrentfile writes top-level keys out of order; libtorrent reads them.
        let sorted = Metainfo::from_bytes(&torrent(INFO)).unwrap();
        assert_eq!(sorted.info_non_canonical, None);
        let top_unsorted = [&b"d4:info"[..], INFO, b"8:announce9:http://x/e"].concat();
        let meta = Metainfo::from_bytes(&top_unsorted).unwrap();
        assert_eq!(meta.info_hash_v1(), sorted.info_hash_v1());
        assert_eq!(meta.tracker_tiers, [["http://x/"]]);
        assert_eq!(meta.info_non_canonical, None, "only `info` is hashed");

        let info =
            b"d4:name5:a.txt6:lengthi5e12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
        let meta = Metainfo::from_bytes(&torrent(info)).unwrap();
        assert_eq!(meta.raw_info, info);
        assert_eq!(meta.info_hash_v1(), Some(Sha1::digest(info).into()));
        assert_ne!(meta.info_hash_v1(), sorted.info_hash_v1());
        let spot = meta.info_non_canonical.unwrap().to_string();
        assert_eq!(spot, "key \"length\" out of order at byte 44");
        assert_eq!(meta.layout.content_length(), 5);
    }

    #[test]
    fn duplicate_keys_are_refused_with_the_key_and_where() {
        let info = b"d6:lengthi5e6:lengthi6e4:name5:a.txt12:piece lengthi16384e6:pieces20:AAAAAAAAAAAAAAAAAAAAe";
        let error = Metainfo::from_bytes(&torrent(info))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "malformed bencode: dictionary key \"length\" appears twice at byte 42"
        );
        // Out of order and repeated: still found.
        let top = [&b"d4:info"[..], INFO, b"1:ai1e4:info", INFO, b"e"].concat();
        let error = Metainfo::from_bytes(&top).unwrap_err().to_string();
        assert!(error.contains("\"info\" appears twice"), "{error}");
    }

    #[test]
    fn malformed_bencode_says_what_and_where() {
        for (bytes, expected) in [
            (&b"d4:infoi-e"[..], "malformed integer at byte 8"),
            (b"d4:infoi1x", "malformed integer at byte 8"),
            (
                b"d4:infoi99999999999999999999e",
                "integer does not fit in 64 bits at byte 8",
            ),
            (
                b"d4:info99:ab",
                "string of 99 bytes runs past the end of the data at byte 7",
            ),
            (b"di1e1:ae", "dictionary key is not a byte string at byte 1"),
            (
                b"d4:infox",
                "unexpected byte 'x' where a value should start at byte 7",
            ),
            (b"d4:info", "the data ends inside a value at byte 7"),
            (b"", "nothing to decode at byte 0"),
        ] {
            let error = Metainfo::from_bytes(bytes).unwrap_err().to_string();
            assert_eq!(error, format!("malformed bencode: {expected}"));
        }
        let deep = [&b"d4:info"[..], &[b'l'; 300], &[b'e'; 301]].concat();
        let error = Metainfo::from_bytes(&deep).unwrap_err().to_string();
        assert!(error.contains("nesting deeper than 256 levels"), "{error}");
        let error = Metainfo::from_bytes(b"li1ee").unwrap_err().to_string();
        assert_eq!(error, "the torrent is not a bencoded dictionary");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = torrent(INFO);
        for end in 0..bytes.len() - 1 {
            assert!(Metainfo::from_bytes(&bytes[..end]).is_err(), "{end}");
        }
    }
}
