//! Making torrents: walk the content in a deterministic order, hash with the streaming engine,
//! and bencode v1, v2 or hybrid metainfo (hybrid pads files to piece boundaries, BEP 47).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bendy::encoding::Encoder;
use bendy::value::Value;

use crate::hash::{BulkHasher, Sha1Digest, Sha256Digest};

use super::layout::{FileEntry, Layout, LayoutError, PieceScheme, TorrentPath, BLOCK_SIZE};
use super::merkle;
use super::metainfo::{Metainfo, MetainfoError, Version};
use super::stream::{self, FileState, StreamError, Want};

/// Auto piece length bounds: v2 needs at least one 16 KiB block; 16 MiB is what clients accept.
const MIN_AUTO_PIECE: u64 = BLOCK_SIZE;
const MAX_AUTO_PIECE: u64 = 16 << 20;
/// Auto piece length aims at no more than this many pieces.
const TARGET_PIECES: u64 = 2048;

/// What to put in the torrent besides the hashes.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub version: Version,
    /// `None` picks [`auto_piece_length`].
    pub piece_length: Option<u64>,
    /// Tracker tiers (BEP 12), in order.
    pub announce: Vec<Vec<String>>,
    /// Web seeds (BEP 19 `url-list`).
    pub web_seeds: Vec<String>,
    pub private: bool,
    pub comment: Option<String>,
    pub source: Option<String>,
    /// Unix seconds for `creation date`, or none.
    pub creation_date: Option<i64>,
    pub memory: u64,
}

/// The OS error is the `source`, never repeated in the message: `{:#}` prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: file name is not UTF-8")]
    NotUtf8(PathBuf),
    #[error("{0}: no files to put in a torrent")]
    NoFiles(PathBuf),
    #[error(
        "{path}: nothing to share: {files} file(s), all empty (libtorrent and transmission \
         refuse a torrent without data)"
    )]
    Empty { path: PathBuf, files: usize },
    #[error("piece size {0} must be a power of two of at least 16 KiB for v2 and hybrid torrents")]
    PieceLength(u64),
    #[error("{0}: changed while hashing (its size or modification time is not what it was)")]
    Changed(PathBuf),
    #[error("{0}: a read failed while hashing, though the file opens again now")]
    ReadFailed(PathBuf),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("encoding the torrent: {0}")]
    Encode(String),
    #[error("the torrent made does not parse back")]
    Reparse(#[from] MetainfoError),
}

/// A file found under the content path.
#[derive(Clone, Debug)]
pub struct ContentFile {
    pub path: TorrentPath,
    pub disk: PathBuf,
    pub length: u64,
}

/// The smallest power of two from 16 KiB to 16 MiB that keeps the piece count at or below 2048.
#[must_use]
pub fn auto_piece_length(total: u64) -> u64 {
    total
        .div_ceil(TARGET_PIECES)
        .next_power_of_two()
        .clamp(MIN_AUTO_PIECE, MAX_AUTO_PIECE)
}

/// The order of a torrent's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOrder {
    /// Byte order of path components: the v2 `file tree`'s order (`a/b` before `a b`), which
    /// v2 and hybrid torrents must use.
    Components,
    /// Byte order of the whole `/`-joined path (`a b` before `a/b`): mktorrent's order, so a
    /// v1 torrent of the same files and piece size has mktorrent's info hash.
    Paths,
}

impl FileOrder {
    /// v1 torrents follow mktorrent; v2 and hybrid ones must follow the file tree.
    #[must_use]
    pub fn of(version: Version) -> Self {
        if version == Version::V1 {
            Self::Paths
        } else {
            Self::Components
        }
    }

    /// Sorts `files` into this order.
    pub fn sort(self, files: &mut [ContentFile]) {
        match self {
            Self::Components => files.sort_by(|a, b| a.path.cmp(&b.path)),
            Self::Paths => files.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str())),
        }
    }
}

/// The content under `root` in byte order of path components (the v2 file tree's order; see
/// [`FileOrder`]). Hidden files are included; symbolic links inside a directory are skipped with
/// a warning. The torrent is named after `root` itself, a symbolic link included.
///
/// # Errors
/// An unreadable directory, a name that is not UTF-8, no files, or only empty ones.
pub fn collect(root: &Path) -> Result<(String, Vec<ContentFile>, bool), CreateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CreateError::Io { path, source }
    };
    // `.`, `..` and `dir/..` have no name of their own: take the folder they lead to.
    let named = match root.file_name() {
        Some(name) => PathBuf::from(name),
        None => root.canonicalize().map_err(io(root))?,
    };
    let name = named
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CreateError::NotUtf8(root.to_path_buf()))?
        .to_owned();
    let meta = std::fs::metadata(root).map_err(io(root))?;
    let name_path = TorrentPath::from_components([name.as_bytes()])
        .map_err(|_| CreateError::NotUtf8(root.to_path_buf()))?;
    if meta.is_file() {
        if meta.len() == 0 {
            return Err(CreateError::Empty {
                path: root.to_path_buf(),
                files: 1,
            });
        }
        let file = ContentFile {
            path: name_path,
            disk: root.to_path_buf(),
            length: meta.len(),
        };
        return Ok((name, vec![file], true));
    }
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let disk = entry.path();
            let kind = entry.file_type().map_err(io(&disk))?;
            let component = entry
                .file_name()
                .into_string()
                .map_err(|_| CreateError::NotUtf8(disk.clone()))?;
            let mut components = prefix.clone();
            components.push(component);
            if kind.is_symlink() {
                tracing::warn!("skipping symbolic link {}", disk.display());
            } else if kind.is_dir() {
                pending.push((disk, components));
            } else if kind.is_file() {
                let length = entry.metadata().map_err(io(&disk))?.len();
                let path = TorrentPath::from_components(components.iter().map(String::as_bytes))
                    .map_err(|_| CreateError::NotUtf8(disk.clone()))?;
                files.push(ContentFile { path, disk, length });
            }
        }
    }
    if files.is_empty() {
        return Err(CreateError::NoFiles(root.to_path_buf()));
    }
    if files.iter().all(|f| f.length == 0) {
        return Err(CreateError::Empty {
            path: root.to_path_buf(),
            files: files.len(),
        });
    }
    FileOrder::Components.sort(&mut files);
    Ok((name, files, false))
}

/// The bencoded torrent and its parsed form.
pub struct Created {
    pub bytes: Vec<u8>,
    pub meta: Metainfo,
    /// How the GPU was kept busy; `None` on the CPU.
    pub device: Option<crate::hash::bulk::BulkReport>,
}

/// Hashes `files` (in the order they are given: see [`FileOrder`]) and builds the torrent;
/// `progress` gets the bytes of each batch.
///
/// # Errors
/// A bad piece length, a file that cannot be read or changes while hashing, a backend failure.
pub fn create(
    backend: &dyn BulkHasher,
    name: &str,
    files: &[ContentFile],
    single_file: bool,
    options: &CreateOptions,
    progress: impl FnMut(u64),
) -> Result<Created, CreateError> {
    let total: u64 = files.iter().map(|f| f.length).sum();
    let piece_length = options
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));
    let version = options.version;
    if version.has_v2() && (!piece_length.is_power_of_two() || piece_length < BLOCK_SIZE) {
        return Err(CreateError::PieceLength(piece_length));
    }
    let (entries, paths) = plan(files, piece_length, version);
    let scheme = if version == Version::V2 {
        PieceScheme::PerFile
    } else {
        PieceScheme::Concatenated
    };
    let layout = Layout::new(entries, piece_length, scheme)?;
    let want = Want {
        v1: version.has_v1(),
        v2: version.has_v2(),
    };

    // Batches arrive in any order: keep indices, sort once at the end.
    let mut v1_pieces: Vec<(u64, Sha1Digest)> = Vec::new();
    let mut v2_pieces: Vec<Vec<(u64, Sha256Digest)>> = vec![Vec::new(); layout.files.len()];
    let mut unreadable: Option<usize> = None;
    let mut progress = progress;
    let streamed = stream::run(backend, &layout, &paths, want, options.memory, |results| {
        let mut batch = 0;
        for piece in results {
            batch += piece.length;
            match (piece.v1, want.v1) {
                (Some(digest), true) => v1_pieces.push((piece.index, digest)),
                (None, true) => unreadable = unreadable.or(Some(piece.file)),
                _ => {}
            }
            if want.v2 && !layout.files[piece.file].pad {
                match piece.v2 {
                    Some(hash) => v2_pieces[piece.file].push((piece.file_piece, hash)),
                    None => unreadable = unreadable.or(Some(piece.file)),
                }
            }
        }
        progress(batch);
    })?;
    // The engine marks the very file that failed; a failed piece alone may start in a neighbour.
    if let Some(file) = streamed
        .states
        .iter()
        .position(|s| *s != FileState::Present)
        .or(unreadable)
    {
        return Err(read_failure(&paths[file], streamed.states[file]));
    }

    v1_pieces.sort_unstable_by_key(|(index, _)| *index);
    let v1_pieces: Vec<u8> = v1_pieces.iter().flat_map(|(_, digest)| *digest).collect();
    let v2_pieces: Vec<Vec<Sha256Digest>> = v2_pieces
        .into_iter()
        .map(|mut pieces| {
            pieces.sort_unstable_by_key(|(index, _)| *index);
            pieces.into_iter().map(|(_, hash)| hash).collect()
        })
        .collect();
    let mut roots: Vec<Option<Sha256Digest>> = vec![None; layout.files.len()];
    let mut layers: BTreeMap<Sha256Digest, Vec<u8>> = BTreeMap::new();
    if want.v2 {
        for (i, file) in layout.files.iter().enumerate() {
            if file.pad || file.length == 0 {
                continue;
            }
            let pieces = &v2_pieces[i];
            let root = if file.length > piece_length {
                let root = merkle::root_from_piece_layer(backend, pieces, piece_length)
                    .map_err(StreamError::from)?;
                layers.insert(root, pieces.concat());
                root
            } else {
                pieces.first().copied().unwrap_or([0; 32])
            };
            roots[i] = Some(root);
        }
    }

    let info = info_dict(name, &layout, single_file, &v1_pieces, &roots, options);
    let mut top: BTreeMap<Cow<'static, [u8]>, Value<'static>> = BTreeMap::new();
    let mut put = |key: &'static str, value: Value<'static>| {
        top.insert(Cow::Borrowed(key.as_bytes()), value);
    };
    // As mktorrent writes them: `announce` is the first tracker, `announce-list` only when there
    // is more than one, `url-list` a string for one web seed and a list for several.
    let trackers: Vec<&String> = options.announce.iter().flatten().collect();
    if let Some(first) = trackers.first() {
        put("announce", bytes(first.as_bytes()));
    }
    if trackers.len() > 1 {
        let tiers = options
            .announce
            .iter()
            .filter(|tier| !tier.is_empty())
            .map(|tier| Value::List(tier.iter().map(|url| bytes(url.as_bytes())).collect()))
            .collect();
        put("announce-list", Value::List(tiers));
    }
    match options.web_seeds.as_slice() {
        [] => {}
        [one] => put("url-list", bytes(one.as_bytes())),
        many => put(
            "url-list",
            Value::List(many.iter().map(|url| bytes(url.as_bytes())).collect()),
        ),
    }
    if let Some(comment) = &options.comment {
        put("comment", bytes(comment.as_bytes()));
    }
    put(
        "created by",
        bytes(concat!("peerhash ", env!("CARGO_PKG_VERSION")).as_bytes()),
    );
    if let Some(date) = options.creation_date {
        put("creation date", Value::Integer(date));
    }
    put("info", info);
    if want.v2 {
        let layers = layers
            .into_iter()
            .map(|(root, layer)| (Cow::Owned(root.to_vec()), bytes(&layer)))
            .collect();
        put("piece layers", Value::Dict(layers));
    }
    // Value has no static depth: the encoder needs one that fits the deepest directory.
    let depth = layout
        .files
        .iter()
        .map(|f| f.path.components().count())
        .max()
        .unwrap_or(0);
    let mut encoder = Encoder::new().with_max_depth(depth + 8);
    let encoded = encoder
        .emit(Value::Dict(top))
        .and_then(|()| encoder.get_output())
        .map_err(|e| CreateError::Encode(e.to_string()))?;
    let meta = Metainfo::from_bytes(&encoded)?;
    Ok(Created {
        bytes: encoded,
        meta,
        device: streamed.device,
    })
}

/// Why a file could not be hashed, with the OS's own reason when there is one.
fn read_failure(path: &Path, state: FileState) -> CreateError {
    use std::io::Read;
    let io = |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if matches!(state, FileState::Changed | FileState::WrongSize) {
        return CreateError::Changed(path.to_path_buf());
    }
    // The engine keeps states, not errors: ask the OS again for the reason.
    match std::fs::File::open(path).and_then(|mut file| file.read(&mut [0u8; 1])) {
        Err(e) => io(e),
        Ok(_) if state == FileState::Missing => io(std::io::ErrorKind::NotFound.into()),
        Ok(_) => CreateError::ReadFailed(path.to_path_buf()),
    }
}

fn bytes(data: &[u8]) -> Value<'static> {
    Value::Bytes(Cow::Owned(data.to_vec()))
}

/// The layout's files and where they are on disk; hybrid pads every file but the last to a
/// piece boundary with a `.pad/N` file, as libtorrent does.
fn plan(
    files: &[ContentFile],
    piece_length: u64,
    version: Version,
) -> (Vec<FileEntry>, Vec<PathBuf>) {
    let mut entries = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        entries.push(FileEntry {
            path: file.path.clone(),
            length: file.length,
            pad: false,
            pieces_root: None,
        });
        paths.push(file.disk.clone());
        let tail = file.length % piece_length;
        if version == Version::Hybrid && tail != 0 && i + 1 < files.len() {
            let pad = piece_length - tail;
            let name = pad.to_string();
            let path = TorrentPath::from_components([&b".pad"[..], name.as_bytes()])
                .expect(".pad/N is a valid path");
            entries.push(FileEntry {
                path,
                length: pad,
                pad: true,
                pieces_root: None,
            });
            paths.push(PathBuf::new());
        }
    }
    (entries, paths)
}

fn info_dict(
    name: &str,
    layout: &Layout,
    single_file: bool,
    v1_pieces: &[u8],
    roots: &[Option<Sha256Digest>],
    options: &CreateOptions,
) -> Value<'static> {
    type Dict = BTreeMap<Cow<'static, [u8]>, Value<'static>>;
    let key = |k: &'static str| Cow::Borrowed(k.as_bytes());
    let mut info = Dict::new();
    info.insert(key("name"), bytes(name.as_bytes()));
    info.insert(
        key("piece length"),
        Value::Integer(i64::try_from(layout.piece_length).unwrap_or(i64::MAX)),
    );
    let length = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    if options.private {
        info.insert(key("private"), Value::Integer(1));
    }
    if let Some(source) = &options.source {
        info.insert(key("source"), bytes(source.as_bytes()));
    }
    if options.version.has_v1() {
        info.insert(key("pieces"), bytes(v1_pieces));
        if single_file {
            info.insert(key("length"), length(layout.files[0].length));
        } else {
            let list = layout
                .files
                .iter()
                .map(|file| {
                    let mut entry = Dict::new();
                    entry.insert(key("length"), length(file.length));
                    let path = file
                        .path
                        .components()
                        .map(|c| bytes(c.as_bytes()))
                        .collect();
                    entry.insert(key("path"), Value::List(path));
                    if file.pad {
                        entry.insert(key("attr"), bytes(b"p"));
                    }
                    Value::Dict(entry)
                })
                .collect();
            info.insert(key("files"), Value::List(list));
        }
    }
    if options.version.has_v2() {
        info.insert(key("meta version"), Value::Integer(2));
        let mut tree = Dict::new();
        for (file, root) in layout.files.iter().zip(roots).filter(|(f, _)| !f.pad) {
            let mut leaf = Dict::new();
            leaf.insert(key("length"), length(file.length));
            if let Some(root) = root {
                leaf.insert(key("pieces root"), bytes(root));
            }
            let mut node = Dict::new();
            node.insert(Cow::Borrowed(&b""[..]), Value::Dict(leaf));
            insert_path(&mut tree, file.path.components(), Value::Dict(node));
        }
        info.insert(key("file tree"), Value::Dict(tree));
    }
    Value::Dict(info)
}

fn insert_path<'p>(
    tree: &mut BTreeMap<Cow<'static, [u8]>, Value<'static>>,
    mut components: impl Iterator<Item = &'p str> + Clone,
    leaf: Value<'static>,
) {
    let Some(first) = components.next() else {
        return;
    };
    let key = Cow::Owned(first.as_bytes().to_vec());
    let rest = components;
    if rest.clone().next().is_none() {
        tree.insert(key, leaf);
        return;
    }
    let node = tree
        .entry(key)
        .or_insert_with(|| Value::Dict(BTreeMap::new()));
    if let Value::Dict(child) = node {
        insert_path(child, rest, leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_piece_length_follows_size() {
        assert_eq!(auto_piece_length(0), 16 << 10);
        assert_eq!(auto_piece_length(1 << 30), 512 << 10);
        assert_eq!(auto_piece_length(2 << 30), 1 << 20);
        assert_eq!(auto_piece_length(1 << 50), 16 << 20);
    }
}
