//! The size index and matcher of `find`: any torrent bytes with any list of candidate files
//! (sizes and names from the input) plan without panicking, every candidate has its target's
//! exact size, same-name candidates come first, and pad files are never searched.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use peerhash::torrent::find::{plan, Candidate, SizeIndex, TargetKind};
use peerhash::torrent::Metainfo;

fuzz_target!(|data: &[u8]| {
    // The first two bytes say where the torrent ends; the rest lists candidates as
    // (size byte pairs, name byte).
    if data.len() < 2 {
        return;
    }
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (torrent, rest) = data[2..].split_at(split);
    let Ok(meta) = Metainfo::from_bytes(torrent) else { return };
    let names: Vec<String> = meta
        .layout
        .files
        .iter()
        .filter_map(|f| f.path.components().last().map(str::to_owned))
        .collect();
    let candidates = rest.chunks_exact(3).enumerate().map(|(i, c)| {
        let size = u64::from(u16::from_le_bytes([c[0], c[1]]));
        // A file's real name or another, so ties by name are exercised.
        let name = names
            .get(usize::from(c[2]) % (names.len() + 1))
            .cloned()
            .unwrap_or_else(|| format!("other{i}"));
        Candidate { path: PathBuf::from(format!("d{i}")).join(name), size }
    });
    let index = SizeIndex::from_candidates(candidates);
    let targets = plan(&meta, &index);
    assert_eq!(
        targets.len(),
        meta.layout.files.iter().filter(|f| !f.pad).count()
    );
    for target in &targets {
        let file = &meta.layout.files[target.file];
        assert!(!file.pad);
        let name = file.path.components().last().unwrap_or_default();
        let mut named = true;
        for &c in &target.candidates {
            let candidate = index.candidate(c);
            assert_eq!(candidate.size, file.length);
            let same = candidate.path.file_name().is_some_and(|n| n == name);
            assert!(named || !same, "a same-name candidate after another");
            named &= same;
        }
        match &target.kind {
            TargetKind::Empty => assert_eq!(file.length, 0),
            TargetKind::V2 { pieces } => {
                assert_eq!(*pieces, file.length.div_ceil(meta.layout.piece_length));
            }
            TargetKind::V1 { own } => {
                let all = meta.layout.pieces_of_file(target.file);
                assert!(own.is_empty() || (all.start <= own.start && own.end <= all.end));
            }
        }
    }
});
