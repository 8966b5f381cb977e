//! Every GPU kernel against the CPU oracle, including the paths that only show on big or
//! unlucky inputs: state carried across rounds, batch edges, more winners than result slots.

mod util;

use peerhash::hash::bulk::{BlockAlgo, BulkItem, BulkJob, BulkSource, Extent};
use peerhash::hash::cpu::{self, CpuBackend};
use peerhash::hash::gpu::{BulkShape, Loads, ScanShape};
use peerhash::hash::{Algo, BulkHasher, HashError, KernelTarget, NonceSearcher, ScanJob};
use peerhash::selftest::{self, XorShift, AWKWARD_LENGTHS};

fn cpu() -> CpuBackend {
    CpuBackend::new(None).expect("cpu backend")
}

#[test]
fn gpu_passes_every_selftest_check() {
    let gpu = util::gpu_backend();
    let failed: Vec<_> = selftest::run(&gpu, 7)
        .into_iter()
        .filter(|c| !c.ok)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
}

#[test]
fn cpu_passes_every_selftest_check() {
    let failed: Vec<_> = selftest::run(&cpu(), 7)
        .into_iter()
        .filter(|c| !c.ok)
        .collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
}

#[test]
fn state_carried_across_many_small_rounds_matches_cpu() {
    let mut gpu = util::gpu_backend();
    // Three lanes of two blocks per round: every message past 128 bytes needs several
    // rounds, lanes finish in different rounds and take the next message in the following one.
    gpu.set_bulk_shape(BulkShape {
        lanes: 3,
        slice: 128,
        in_flight: 2,
    });
    let mut rng = XorShift::new(11);
    let messages: Vec<Vec<u8>> = AWKWARD_LENGTHS
        .iter()
        .filter(|&&len| len < 100_000)
        .map(|&len| rng.bytes(len))
        .collect();
    let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    for algo in [Algo::Sha1, Algo::Sha256, Algo::Sha256d] {
        assert_eq!(
            gpu.digest_messages(algo, &slices).expect("gpu"),
            cpu().digest_messages(algo, &slices).expect("cpu"),
            "{algo}"
        );
    }
    let data = rng.bytes(50_001);
    assert_eq!(
        gpu.sha1_pieces(&data, 16_384).unwrap(),
        cpu().sha1_pieces(&data, 16_384).unwrap()
    );
    assert_eq!(
        gpu.sha256_pieces(&data, 16_384).unwrap(),
        cpu().sha256_pieces(&data, 16_384).unwrap()
    );
    let nodes: Vec<[u8; 32]> = (0..300)
        .map(|_| rng.bytes(32).try_into().unwrap())
        .collect();
    assert_eq!(
        gpu.sha256_pairs(&nodes).unwrap(),
        cpu().sha256_pairs(&nodes).unwrap()
    );
}

#[test]
fn scan_batch_edges_match_cpu() {
    let gpu = util::gpu_backend();
    // Batches and invocations that do not divide the range.
    gpu.set_scan_shape(ScanShape {
        batch: 1000,
        per_invocation: 7,
    });
    let header: [u8; 80] = XorShift::new(5).bytes(80).try_into().unwrap();
    let target = selftest::target_with_top_word(0x01ff_ffff);
    let job = ScanJob::new(&header, 123_457, 20_011, target).unwrap();
    let want = cpu().scan(&job).unwrap();
    assert!(want.found.len() > 50, "the target should give many winners");
    assert_eq!(gpu.scan(&job).unwrap(), want);
}

#[test]
fn more_winners_than_result_slots_loses_none() {
    let gpu = util::gpu_backend();
    let header = [7u8; 80];
    // Every hash meets the largest target: 5000 winners for 1024 slots.
    let job = ScanJob::new(&header, 1 << 20, 5000, KernelTarget::MAX).unwrap();
    let outcome = gpu.scan(&job).unwrap();
    assert_eq!(
        outcome.found,
        (1 << 20..(1 << 20) + 5000).collect::<Vec<u32>>()
    );
    assert_eq!(outcome.hw_errors, 0);
}

/// A target from its little-endian bytes (byte 31 most significant).
fn target_le(bytes: [u8; 32]) -> KernelTarget {
    KernelTarget::from(bitcoin::Target::from_le_bytes(bytes))
}

/// A little-endian 256-bit number minus one (it must not be zero).
fn minus_one(mut le: [u8; 32]) -> [u8; 32] {
    for byte in &mut le {
        let (less, borrow) = byte.overflowing_sub(1);
        *byte = less;
        if !borrow {
            break;
        }
    }
    le
}

#[test]
fn scan_at_targets_on_the_edge_of_a_hash_matches_cpu() {
    let gpu = util::gpu_backend();
    let header: [u8; 80] = XorShift::new(21).bytes(80).try_into().unwrap();
    let range = ScanJob::new(&header, 3_000_000, 1 << 14, KernelTarget::ZERO).unwrap();
    // The two smallest hashes of the range (little-endian numbers, byte 31 most significant).
    let mut hashes: Vec<([u8; 32], u32)> = (range.start..range.start + (1 << 14))
        .map(|n| (cpu::sha256d_nonce(&range, n), n))
        .collect();
    hashes.sort_by(|a, b| a.0.iter().rev().cmp(b.0.iter().rev()));
    let [(best, best_nonce), (second, second_nonce)] = [hashes[0], hashes[1]];
    let top = u32::from_le_bytes(best[28..].try_into().unwrap());
    let mut top_only = [0u8; 32];
    top_only[28..].copy_from_slice(&top.to_le_bytes());
    let mut top_minus_one = [0xff; 32];
    top_minus_one[28..].copy_from_slice(&(top - 1).to_le_bytes());
    let mut both = vec![best_nonce, second_nonce];
    both.sort_unstable();
    let cases: [(&str, KernelTarget, Vec<u32>); 5] = [
        (
            "equal to the smallest hash",
            KernelTarget::exactly(&best),
            vec![best_nonce],
        ),
        (
            "equal to the second smallest",
            KernelTarget::exactly(&second),
            both,
        ),
        (
            "one below the smallest hash",
            target_le(minus_one(best)),
            vec![],
        ),
        (
            "top word equal, lower words zero",
            target_le(top_only),
            vec![],
        ),
        (
            "top word one below, lower words all ones",
            target_le(top_minus_one),
            vec![],
        ),
    ];
    for (name, target, want) in cases {
        let job = ScanJob {
            target,
            ..range.clone()
        };
        let got = gpu.scan(&job).unwrap();
        assert_eq!(got, cpu().scan(&job).unwrap(), "{name}");
        assert_eq!((got.found, got.hw_errors), (want, 0), "{name}");
    }
}

#[test]
fn scan_at_the_end_of_the_nonce_space_matches_cpu() {
    let gpu = util::gpu_backend();
    let header: [u8; 80] = XorShift::new(22).bytes(80).try_into().unwrap();
    let easy = selftest::target_with_top_word(0x00ff_ffff);
    let job = ScanJob::new(&header, (1 << 32) - 300_007, 300_007, easy).unwrap();
    let want = cpu().scan(&job).unwrap();
    assert!(
        want.found.len() > 500,
        "the target should give many winners"
    );
    assert_eq!(gpu.scan(&job).unwrap(), want);
    gpu.set_scan_shape(ScanShape {
        batch: 1000,
        per_invocation: 7,
    });
    assert_eq!(gpu.scan(&job).unwrap(), want);
    let last = ScanJob::new(&header, u64::from(u32::MAX), 1, KernelTarget::MAX).unwrap();
    assert_eq!(gpu.scan(&last).unwrap().found, vec![u32::MAX]);
}

#[test]
fn all_ones_target_is_exact_whether_the_winners_fit_the_slots_or_not() {
    let gpu = util::gpu_backend();
    let job = ScanJob::new(&[9u8; 80], (1 << 32) - 3000, 3000, KernelTarget::MAX).unwrap();
    let every: Vec<u32> = (job.start..=u32::MAX).collect();
    // 1024 winners fill the slots exactly; 1025 overflow them and go to the CPU.
    for batch in [1024, 1025, 1 << 20] {
        gpu.set_scan_shape(ScanShape {
            batch,
            per_invocation: 5,
        });
        let outcome = gpu.scan(&job).unwrap();
        assert_eq!(outcome.found, every, "batch {batch}");
        assert_eq!(outcome.hw_errors, 0, "batch {batch}");
    }
}

#[test]
fn impossible_target_finds_nothing_on_either_backend() {
    let gpu = util::gpu_backend();
    let job = ScanJob::new(&[1u8; 80], 0, 1 << 16, KernelTarget::ZERO).unwrap();
    assert_eq!(gpu.scan(&job).unwrap().found, Vec::<u32>::new());
    assert_eq!(cpu().scan(&job).unwrap().found, Vec::<u32>::new());
}

#[test]
fn empty_inputs_agree() {
    let gpu = util::gpu_backend();
    assert_eq!(
        gpu.sha1_pieces(&[], 16_384).unwrap(),
        Vec::<[u8; 20]>::new()
    );
    assert_eq!(gpu.sha256_pairs(&[]).unwrap(), Vec::<[u8; 32]>::new());
    assert_eq!(
        gpu.digest_messages(Algo::Sha1, &[]).unwrap(),
        Vec::<Vec<u8>>::new()
    );
    let job = ScanJob::new(&[0u8; 80], 5, 0, KernelTarget::MAX).unwrap();
    assert_eq!(gpu.scan(&job).unwrap().found, Vec::<u32>::new());
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let gpu = util::gpu_backend();
    assert!(matches!(
        gpu.sha1_pieces(b"abc", 0),
        Err(HashError::ZeroPieceLength)
    ));
    assert!(matches!(
        cpu().sha256_pieces(b"abc", 0),
        Err(HashError::ZeroPieceLength)
    ));
    let odd = [[0u8; 32]; 3];
    assert!(matches!(
        gpu.sha256_pairs(&odd),
        Err(HashError::OddNodeCount(3))
    ));
    assert!(matches!(
        cpu().sha256_pairs(&odd),
        Err(HashError::OddNodeCount(3))
    ));
    assert!(ScanJob::new(&[0u8; 80], u64::from(u32::MAX), 2, KernelTarget::ZERO).is_err());
    assert!(ScanJob::new(&[0u8; 80], u64::from(u32::MAX), 1, KernelTarget::ZERO).is_ok());
}

#[test]
fn tuned_batch_is_whole_invocations_and_still_matches_cpu() {
    let gpu = util::gpu_backend();
    let shape = gpu
        .tune_scan_batch(std::time::Duration::from_millis(20))
        .unwrap();
    let grain = shape.per_invocation * 64;
    assert!(
        shape.batch >= grain && shape.batch.is_multiple_of(grain),
        "{shape:?}"
    );
    assert_eq!(gpu.scan_shape().batch, shape.batch);
    let target = selftest::target_with_top_word(0x00ff_ffff);
    let job = ScanJob::new(&[3u8; 80], 99, 3 * u64::from(shape.batch) + 17, target).unwrap();
    assert_eq!(gpu.scan(&job).unwrap(), cpu().scan(&job).unwrap());
}

/// Torrent-shaped bulk work: pieces made of several extents (pad runs included), v2 blocks
/// beside the whole-piece SHA-1, an empty message, a short last block, and a source that
/// fails for one file. Both load paths of the kernel, several rounds per piece.
#[test]
fn bulk_items_with_v2_blocks_pads_and_unreadable_sources_match_cpu() {
    struct Files(Vec<Vec<u8>>);
    impl BulkSource for Files {
        fn read(&self, source: usize, offset: u64, dst: &mut [u8]) -> bool {
            let Some(file) = self.0.get(source).filter(|_| source != 3) else {
                return false;
            };
            let at = usize::try_from(offset).unwrap();
            dst.copy_from_slice(&file[at..at + dst.len()]);
            true
        }
    }
    let mut rng = XorShift::new(23);
    let files = Files((0..5).map(|i| rng.bytes(70_000 + i * 9_001)).collect());
    let extent = |source: Option<usize>, offset: u64, length: u64| Extent {
        source,
        offset,
        length,
    };
    let items = vec![
        BulkItem {
            id: 10,
            extents: vec![extent(Some(0), 0, 65_536)],
            block_bytes: 65_536,
        },
        BulkItem {
            id: 11,
            extents: vec![extent(Some(1), 100, 40_001), extent(None, 0, 25_535)],
            block_bytes: 40_001,
        },
        BulkItem {
            id: 12,
            extents: vec![],
            block_bytes: 0,
        },
        BulkItem {
            id: 13,
            extents: vec![extent(Some(2), 5, 55), extent(Some(4), 0, 60_000)],
            block_bytes: 60_055,
        },
        BulkItem {
            id: 14,
            extents: vec![extent(Some(3), 0, 1_000)],
            block_bytes: 1_000,
        },
        BulkItem {
            id: 15,
            extents: vec![extent(Some(4), 7, 63)],
            block_bytes: 63,
        },
    ];
    let collect = |backend: &dyn BulkHasher, algo: Option<BlockAlgo>| {
        let mut got = Vec::new();
        let job = BulkJob {
            algo,
            source: &files,
            memory: 64 << 20,
        };
        let report = backend
            .hash_items(&job, &mut items.clone().into_iter(), &mut |r| got.push(r))
            .expect("bulk work");
        got.sort_by_key(|r| r.id);
        (got, report)
    };
    for loads in [Loads::Direct, Loads::Coalesced] {
        let mut gpu = util::gpu_backend();
        gpu.set_loads(loads);
        // Two lanes of 16 KiB slices: five rounds for the longest piece, lanes reassigned.
        gpu.set_bulk_shape(BulkShape {
            lanes: 2,
            slice: 16 << 10,
            in_flight: 2,
        });
        for algo in [Some(BlockAlgo::Sha1), Some(BlockAlgo::Sha256), None] {
            let (want, _) = collect(&cpu(), algo);
            let (got, report) = collect(&gpu, algo);
            assert_eq!(got.len(), items.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.id, w.id);
                assert_eq!(g.readable, w.readable, "{loads:?} {algo:?} item {}", g.id);
                if w.readable {
                    assert_eq!(g, w, "{loads:?} {algo:?} item {}", g.id);
                }
            }
            assert!(!got[4].readable, "the failing source marks its item");
            assert!(report.rounds >= 5, "{report:?}");
            assert!(report.rounds_overlapped == 2, "{report:?}");
        }
    }
}
