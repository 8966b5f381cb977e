//! Properties of the piece layout and v2 merkle roots for any file sizes: the v1 piece-to-file
//! mapping agrees with cutting the concatenated stream, the v2 per-file mapping with cutting each
//! file, and created v2 roots with the textbook merkle definition.

use peerhash::hash::cpu::CpuBackend;
use peerhash::selftest::XorShift;
use peerhash::torrent::create::{create, ContentFile, CreateOptions};
use peerhash::torrent::layout::{FileEntry, Layout, PieceScheme, TorrentPath};
use peerhash::torrent::metainfo::Version;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const BLOCK: usize = 16 << 10;

fn entries(sizes: &[(u64, bool)]) -> Vec<FileEntry> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(length, pad))| FileEntry {
            path: TorrentPath::from_components([format!("f{i}").as_bytes()]).unwrap(),
            length,
            pad,
            pieces_root: None,
        })
        .collect()
}

fn contents(sizes: &[(u64, bool)], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = XorShift::new(seed);
    sizes
        .iter()
        .map(|&(length, pad)| {
            if pad {
                vec![0; length as usize]
            } else {
                rng.bytes(length as usize)
            }
        })
        .collect()
}

/// Gathers a piece's bytes from its spans.
fn gather(files: &[Vec<u8>], spans: &[peerhash::torrent::layout::Span]) -> Vec<u8> {
    spans
        .iter()
        .flat_map(|s| {
            files[s.file][s.offset as usize..(s.offset + s.length) as usize]
                .iter()
                .copied()
        })
        .collect()
}

/// BEP 52's root: SHA-256 of each 16 KiB block, padded with zero hashes to a power of two.
fn naive_root(data: &[u8]) -> [u8; 32] {
    let mut layer: Vec<[u8; 32]> = data
        .chunks(BLOCK)
        .map(|b| Sha256::digest(b).into())
        .collect();
    layer.resize(layer.len().next_power_of_two(), [0; 32]);
    while layer.len() > 1 {
        layer = layer
            .chunks(2)
            .map(|p| {
                Sha256::new()
                    .chain_update(p[0])
                    .chain_update(p[1])
                    .finalize()
                    .into()
            })
            .collect();
    }
    layer[0]
}

proptest! {
    #[test]
    fn v1_pieces_cut_the_concatenated_stream(sizes in prop::collection::vec((0u64..3000, any::<bool>()), 0..12), piece_length in 1u64..5000, seed in any::<u64>()) {
        let layout = Layout::new(entries(&sizes), piece_length, PieceScheme::Concatenated).unwrap();
        let files = contents(&sizes, seed);
        let stream: Vec<u8> = files.concat();
        let pieces: Vec<_> = layout.pieces().collect();
        prop_assert_eq!(pieces.len() as u64, (stream.len() as u64).div_ceil(piece_length));
        prop_assert_eq!(layout.piece_count(), pieces.len() as u64);
        let mut next = 0u64;
        for (i, piece) in pieces.iter().enumerate() {
            prop_assert_eq!(u64::from(piece.index.get()), i as u64);
            prop_assert_eq!(piece.start, next);
            let end = (next + piece_length).min(stream.len() as u64);
            prop_assert_eq!(piece.length, end - next);
            prop_assert_eq!(gather(&files, &piece.spans), stream[next as usize..end as usize].to_vec());
            for span in &piece.spans {
                prop_assert!(layout.pieces_of_file(span.file).contains(&(i as u64)));
            }
            next = end;
        }
        prop_assert_eq!(next, stream.len() as u64);
    }

    #[test]
    fn v2_pieces_cut_each_file_on_its_own(sizes in prop::collection::vec(0u64..3000, 0..12), piece_length in 1u64..5000, seed in any::<u64>()) {
        let sizes: Vec<(u64, bool)> = sizes.into_iter().map(|s| (s, false)).collect();
        let layout = Layout::new(entries(&sizes), piece_length, PieceScheme::PerFile).unwrap();
        let files = contents(&sizes, seed);
        let mut rebuilt = vec![Vec::new(); files.len()];
        let mut count = 0u64;
        for piece in layout.pieces() {
            prop_assert_eq!(u64::from(piece.index.get()), count);
            let file = piece.spans[0].file;
            prop_assert!(piece.spans.iter().all(|s| s.file == file), "a v2 piece spans one file");
            prop_assert!(piece.length <= piece_length);
            prop_assert!(layout.pieces_of_file(file).contains(&count));
            rebuilt[file].extend(gather(&files, &piece.spans));
            count += 1;
        }
        prop_assert_eq!(rebuilt, files);
        prop_assert_eq!(count, sizes.iter().map(|s| s.0.div_ceil(piece_length)).sum::<u64>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn created_v2_roots_are_the_textbook_merkle_roots(sizes in prop::collection::vec(0usize..150_000, 1..5), piece_shift in 0u32..3, hybrid in any::<bool>(), seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = XorShift::new(seed);
        let mut files = Vec::new();
        let mut datas = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let data = rng.bytes(size);
            let disk = dir.path().join(format!("f{i}"));
            std::fs::write(&disk, &data).unwrap();
            files.push(ContentFile {
                path: TorrentPath::from_components([format!("f{i}").as_bytes()]).unwrap(),
                disk,
                length: size as u64,
            });
            datas.push(data);
        }
        let options = CreateOptions {
            version: if hybrid { Version::Hybrid } else { Version::V2 },
            piece_length: Some((16 << 10) << piece_shift),
            announce: Vec::new(),
            web_seeds: Vec::new(),
            private: false,
            comment: None,
            source: None,
            creation_date: None,
            memory: 64 << 20,
        };
        let backend = CpuBackend::new(Some(2)).unwrap();
        let created = create(&backend, "content", &files, false, &options, |_| {}).unwrap();
        let real: Vec<_> = created.meta.layout.files.iter().filter(|f| !f.pad).collect();
        prop_assert_eq!(real.len(), datas.len());
        for (entry, data) in real.iter().zip(&datas) {
            let want = (!data.is_empty()).then(|| naive_root(data));
            prop_assert_eq!(entry.pieces_root, want, "{}", entry.path);
        }
    }
}
