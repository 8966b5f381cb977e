//! Where a torrent's bytes live: validated relative paths, files with BEP 47 pad files, and the
//! mapping from pieces to byte ranges of files.

use std::fmt;
use std::path::PathBuf;

/// BitTorrent v2 hashes files in 16 KiB blocks.
pub const BLOCK_SIZE: u64 = 16 * 1024;

/// A path component from a torrent that would escape or alias the save directory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty path (no components)")]
    NoComponents,
    #[error("empty path component in {0:?}")]
    EmptyComponent(String),
    #[error("reserved path component {component:?} in {path:?} (`.` and `..` are refused)")]
    Reserved { component: String, path: String },
    #[error("path component {component:?} in {path:?} contains a separator or NUL (absolute or nested path)")]
    Separator { component: String, path: String },
    #[error("path component in {0:?} is not UTF-8")]
    NotUtf8(String),
}

/// A relative path inside a torrent: every component is non-empty, not `.` or `..`, and holds
/// no separator or NUL, so joining it to a directory can never leave that directory. Kept as
/// one `/`-joined string (a torrent may list millions of files: one allocation each).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TorrentPath(Box<str>);

impl TorrentPath {
    /// Validates raw components as they appear in a torrent.
    ///
    /// # Errors
    /// A component that is empty, reserved, not UTF-8 or that contains a separator.
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, PathError> {
        let raw: Vec<&[u8]> = components.into_iter().collect();
        let shown = || {
            raw.iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("/")
        };
        if raw.is_empty() {
            return Err(PathError::NoComponents);
        }
        let mut joined = String::with_capacity(raw.iter().map(|c| c.len() + 1).sum());
        for component in &raw {
            let text = std::str::from_utf8(component).map_err(|_| PathError::NotUtf8(shown()))?;
            if text.is_empty() {
                return Err(PathError::EmptyComponent(shown()));
            }
            if text == "." || text == ".." {
                return Err(PathError::Reserved {
                    component: text.to_owned(),
                    path: shown(),
                });
            }
            if text.contains(['/', '\\', '\0']) || (cfg!(windows) && text.contains(':')) {
                return Err(PathError::Separator {
                    component: text.to_owned(),
                    path: shown(),
                });
            }
            if !joined.is_empty() {
                joined.push('/');
            }
            joined.push_str(text);
        }
        Ok(Self(joined.into_boxed_str()))
    }

    /// The components, in order (never empty, none contains `/`).
    pub fn components(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.0.split('/')
    }

    /// The path as the torrent spells it, components joined with `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path below `root`; safe because every component was validated.
    #[must_use]
    pub fn under(&self, root: &std::path::Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.components());
        path
    }

    /// Whether `self` is a folder holding `other` (`a` holds `a/b`, not `ab`).
    #[must_use]
    pub fn holds(&self, other: &TorrentPath) -> bool {
        other
            .0
            .strip_prefix(&*self.0)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Component by component (the v2 `file tree` order): `a/b` before `a b`, unlike a byte
/// comparison of the joined strings, where `/` sorts after the space.
impl Ord for TorrentPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.components()
            .map(str::as_bytes)
            .cmp(other.components().map(str::as_bytes))
    }
}

impl PartialOrd for TorrentPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TorrentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of a torrent's file list, in torrent order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the torrent root: the file name itself for a single-file torrent.
    pub path: TorrentPath,
    pub length: u64,
    /// A BEP 47 pad file: zeros that are never read from or written to disk.
    pub pad: bool,
    /// v2 merkle root of the file's 16 KiB blocks; `None` for v1-only torrents and empty files.
    pub pieces_root: Option<[u8; 32]>,
}

/// A piece index known to be below the layout's piece count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValidPieceIndex(u32);

impl ValidPieceIndex {
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Layouts larger than this many pieces are refused: `u32` piece indices, as in the wire protocol.
pub const MAX_PIECES: u64 = u32::MAX as u64;

/// A run of one file's bytes inside a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index into [`Layout::files`].
    pub file: usize,
    pub offset: u64,
    pub length: u64,
}

/// Where a piece's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceSpans {
    pub index: ValidPieceIndex,
    /// Byte offset of the piece in the torrent's concatenated data (pad files included).
    pub start: u64,
    pub length: u64,
    pub spans: Vec<Span>,
}

/// How pieces are cut: v1 cuts the concatenation of all files; v2 cuts each file on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceScheme {
    /// Pieces run across file boundaries (v1 and hybrid; hybrid pads files to piece boundaries).
    Concatenated,
    /// Every file starts a new piece (v2-only); piece indices are global, as libtorrent counts.
    PerFile,
}

/// The files of a torrent and how pieces map onto them.
#[derive(Clone, Debug)]
pub struct Layout {
    pub files: Vec<FileEntry>,
    pub piece_length: u64,
    pub scheme: PieceScheme,
    /// First global piece of each file and its piece count (for `PerFile` and hybrid checks).
    file_pieces: Vec<(u64, u64)>,
    piece_count: u64,
    total_length: u64,
}

/// A layout that cannot be hashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("piece length {0} is out of range (1 byte to 256 MiB)")]
    PieceLength(u64),
    #[error("total length overflows 2^60 bytes (absurd file lengths)")]
    TotalLength,
    #[error("{0} pieces is more than the {MAX_PIECES} a torrent can have")]
    TooManyPieces(u64),
    #[error("{0:?} is listed twice (an ambiguous layout)")]
    DuplicatePath(String),
    #[error("{file:?} is both a file and a folder (the torrent also lists {inside:?})")]
    FileAndFolder { file: String, inside: String },
}

/// The largest piece length accepted: one piece must fit in memory several times over.
pub const MAX_PIECE_LENGTH: u64 = 256 << 20;

impl Layout {
    /// # Errors
    /// An out-of-range piece length, an overflowing total, too many pieces, or an ambiguous
    /// layout (a path listed twice, or both a file and a folder).
    pub fn new(
        files: Vec<FileEntry>,
        piece_length: u64,
        scheme: PieceScheme,
    ) -> Result<Self, LayoutError> {
        if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
            return Err(LayoutError::PieceLength(piece_length));
        }
        let mut total: u64 = 0;
        let mut file_pieces = Vec::with_capacity(files.len());
        let mut per_file_count: u64 = 0;
        for file in &files {
            let first = match scheme {
                PieceScheme::Concatenated => total / piece_length,
                PieceScheme::PerFile => per_file_count,
            };
            let count = file.length.div_ceil(piece_length);
            file_pieces.push((first, count));
            if !file.pad {
                per_file_count += count;
            }
            total = total
                .checked_add(file.length)
                .filter(|&t| t <= 1 << 60)
                .ok_or(LayoutError::TotalLength)?;
        }
        let piece_count = match scheme {
            PieceScheme::Concatenated => total.div_ceil(piece_length),
            PieceScheme::PerFile => per_file_count,
        };
        if piece_count > MAX_PIECES {
            return Err(LayoutError::TooManyPieces(piece_count));
        }
        check_unambiguous(&files)?;
        Ok(Self {
            files,
            piece_length,
            scheme,
            file_pieces,
            piece_count,
            total_length: total,
        })
    }

    #[must_use]
    pub fn piece_count(&self) -> u64 {
        self.piece_count
    }

    /// Bytes of all files, pad files included.
    #[must_use]
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Bytes of real files (pad files excluded).
    #[must_use]
    pub fn content_length(&self) -> u64 {
        self.files.iter().filter(|f| !f.pad).map(|f| f.length).sum()
    }

    #[must_use]
    pub fn piece(&self, index: u64) -> Option<ValidPieceIndex> {
        if index >= self.piece_count {
            return None;
        }
        u32::try_from(index).ok().map(ValidPieceIndex)
    }

    /// The first global piece of file `file` and how many pieces it touches or owns.
    #[must_use]
    pub fn file_pieces(&self, file: usize) -> (u64, u64) {
        self.file_pieces[file]
    }

    /// The global pieces a file's bytes fall in: for `Concatenated`, every piece it overlaps.
    #[must_use]
    pub fn pieces_of_file(&self, file: usize) -> std::ops::Range<u64> {
        let entry = &self.files[file];
        match self.scheme {
            PieceScheme::PerFile => {
                let (first, count) = self.file_pieces[file];
                first..first + count
            }
            PieceScheme::Concatenated => {
                if entry.length == 0 {
                    return 0..0;
                }
                let start: u64 = self.files[..file].iter().map(|f| f.length).sum();
                let end = start + entry.length;
                start / self.piece_length..end.div_ceil(self.piece_length)
            }
        }
    }

    /// Every piece in order with the file ranges it covers; pad files appear as spans too.
    pub fn pieces(&self) -> impl Iterator<Item = PieceSpans> + '_ {
        let mut file = 0usize;
        let mut file_offset = 0u64;
        let mut start = 0u64;
        let mut index = 0u64;
        std::iter::from_fn(move || {
            // Skip exhausted and empty files before cutting the next piece.
            while file < self.files.len() && file_offset >= self.files[file].length {
                file += 1;
                file_offset = 0;
            }
            if index >= self.piece_count || file >= self.files.len() {
                return None;
            }
            let mut spans = Vec::new();
            let mut remaining = self.piece_length;
            let piece_start = start;
            while remaining > 0 && file < self.files.len() {
                let entry = &self.files[file];
                let available = entry.length - file_offset;
                if available == 0 {
                    file += 1;
                    file_offset = 0;
                    if self.scheme == PieceScheme::PerFile && !spans.is_empty() {
                        break;
                    }
                    continue;
                }
                let take = available.min(remaining);
                spans.push(Span {
                    file,
                    offset: file_offset,
                    length: take,
                });
                file_offset += take;
                remaining -= take;
                start += take;
                if self.scheme == PieceScheme::PerFile && file_offset == entry.length {
                    break;
                }
            }
            let piece = PieceSpans {
                index: ValidPieceIndex(u32::try_from(index).ok()?),
                start: piece_start,
                length: self.piece_length - remaining,
                spans,
            };
            index += 1;
            Some(piece)
        })
    }
}

/// Every real file has its own path: two entries with one path, or a file that is also a
/// folder of others, would let one file's bytes be checked (or written) as another's. Pad files
/// are exempt: libtorrent names them after their length, so `.pad/N` repeats.
fn check_unambiguous(files: &[FileEntry]) -> Result<(), LayoutError> {
    let mut paths: Vec<&TorrentPath> = files.iter().filter(|f| !f.pad).map(|f| &f.path).collect();
    // In component order, the paths inside a folder follow the folder's own path at once.
    paths.sort_unstable();
    for pair in paths.windows(2) {
        if pair[0] == pair[1] {
            return Err(LayoutError::DuplicatePath(pair[0].to_string()));
        }
        if pair[0].holds(pair[1]) {
            return Err(LayoutError::FileAndFolder {
                file: pair[0].to_string(),
                inside: pair[1].to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, length: u64, pad: bool) -> FileEntry {
        FileEntry {
            path: TorrentPath::from_components([name.as_bytes()]).unwrap(),
            length,
            pad,
            pieces_root: None,
        }
    }

    #[test]
    fn hostile_components_are_refused() {
        let bad: [&[&[u8]]; 6] = [
            &[b".."],
            &[b"a", b".."],
            &[b"/etc", b"passwd"],
            &[b""],
            &[b"a/b"],
            &[b"a\0"],
        ];
        for components in bad {
            assert!(TorrentPath::from_components(components.iter().copied()).is_err());
        }
        assert!(TorrentPath::from_components([]).is_err());
        let ok = TorrentPath::from_components([&b"d ir"[..], "é.txt".as_bytes()]).unwrap();
        assert_eq!(ok.to_string(), "d ir/é.txt");
    }

    #[test]
    fn concatenated_pieces_span_files() {
        let layout = Layout::new(
            vec![
                file("a", 5, false),
                file("e", 0, false),
                file("b", 7, false),
            ],
            4,
            PieceScheme::Concatenated,
        )
        .unwrap();
        assert_eq!(layout.piece_count(), 3);
        let pieces: Vec<_> = layout.pieces().collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[1].spans.len(), 2);
        assert_eq!(pieces[1].spans[0].file, 0);
        assert_eq!(pieces[1].spans[1].file, 2);
        assert_eq!(pieces[2].length, 4);
        assert_eq!(layout.pieces_of_file(2), 1..3);
        assert_eq!(layout.pieces_of_file(1), 0..0);
    }

    #[test]
    fn per_file_pieces_start_at_file_boundaries() {
        let layout = Layout::new(
            vec![file("a", 5, false), file("b", 3, false)],
            4,
            PieceScheme::PerFile,
        )
        .unwrap();
        let pieces: Vec<_> = layout.pieces().collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[1].length, 1);
        assert_eq!(pieces[2].spans[0].file, 1);
        assert_eq!(layout.pieces_of_file(1), 2..3);
    }

    fn nested(path: &str, length: u64, pad: bool) -> FileEntry {
        FileEntry {
            path: TorrentPath::from_components(path.split('/').map(str::as_bytes)).unwrap(),
            length,
            pad,
            pieces_root: None,
        }
    }

    #[test]
    fn paths_order_by_component_and_hold_only_whole_components() {
        let path = |p: &str| nested(p, 0, false).path;
        // The v2 file tree order: `a/b` before `a b` although `/` is after ` ` in ASCII.
        assert!(path("Season 1/e01") < path("Season 1 Extras/x"));
        assert!(path("Season 1/e01").as_str() > path("Season 1 Extras/x").as_str());
        assert!(path("a").holds(&path("a/b")));
        assert!(!path("a").holds(&path("ab")));
        assert!(!path("a").holds(&path("a")));
        assert_eq!(path("d ir/é.txt").components().count(), 2);
    }

    #[test]
    fn ambiguous_layouts_are_refused() {
        let layout = |files: Vec<FileEntry>| Layout::new(files, 4, PieceScheme::Concatenated);
        let twice = layout(vec![
            nested("d/a.bin", 1, false),
            nested("d/b", 1, false),
            nested("d/a.bin", 1, false),
        ]);
        assert_eq!(
            twice.unwrap_err(),
            LayoutError::DuplicatePath("d/a.bin".into())
        );
        let both = layout(vec![
            nested("a.bin/x", 1, false),
            nested("a.bin y", 1, false),
            nested("a.bin", 1, false),
        ]);
        assert_eq!(
            both.unwrap_err(),
            LayoutError::FileAndFolder {
                file: "a.bin".into(),
                inside: "a.bin/x".into()
            }
        );
        // Pad files repeat their names in libtorrent's torrents; a prefix that is not a whole
        // component is another file.
        let fine = layout(vec![
            nested("a", 3, false),
            nested(".pad/1", 1, true),
            nested("ab", 3, false),
            nested(".pad/1", 1, true),
            nested("a b/c", 1, false),
        ]);
        assert!(fine.is_ok());
    }

    #[test]
    fn absurd_layouts_are_refused() {
        assert!(Layout::new(vec![], 0, PieceScheme::Concatenated).is_err());
        let huge = vec![file("a", u64::MAX, false), file("b", 2, false)];
        assert!(Layout::new(huge, 1 << 20, PieceScheme::Concatenated).is_err());
        let many = vec![file("a", 1 << 40, false)];
        assert!(Layout::new(many, 1, PieceScheme::Concatenated).is_err());
    }
}
