//! The payload the torrent interop tests make torrents of, and copies of it to damage.

use std::fs;
use std::path::Path;

/// Deterministic bytes that differ from file to file.
#[must_use]
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// The payload's files (relative to the content directory) and sizes: a file over many
/// pieces, odd sizes, a file smaller than a piece, an empty file, unicode and a space.
pub const FILES: [(&str, usize); 5] = [
    ("a.bin", 300_001),
    ("sub dir/é b.txt", 70_000),
    ("sub dir/deeper/odd.dat", 16_385),
    ("empty", 0),
    ("tiny", 5),
];

/// Writes `files` under `root`, file `i` filled with `bytes(i + 1, len)`.
pub fn write_files(root: &Path, files: &[(&str, usize)]) {
    for (i, (path, len)) in files.iter().enumerate() {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes(i as u64 + 1, *len)).unwrap();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
