//! Properties that must hold for any input: byte orders and target conversions agree with the
//! `bitcoin` crate, and the GPU agrees with the CPU oracle on random messages and nonce ranges.

mod util;

use std::sync::OnceLock;

use bitcoin::hashes::Hash as _;
use peerhash::hash::cpu::CpuBackend;
use peerhash::hash::gpu::GpuBackend;
use peerhash::hash::{Algo, BulkHasher, KernelTarget, NonceSearcher, ScanJob};
use peerhash::mining::header::{display_hash, BlockHeader};
use peerhash::mining::target;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn gpu() -> &'static GpuBackend {
    static GPU: OnceLock<GpuBackend> = OnceLock::new();
    GPU.get_or_init(util::gpu_backend)
}

fn cpu() -> &'static CpuBackend {
    static CPU: OnceLock<CpuBackend> = OnceLock::new();
    CPU.get_or_init(|| CpuBackend::new(None).expect("cpu backend"))
}

proptest! {
    #[test]
    fn header_bytes_round_trip_and_hash_like_bitcoin(bytes in prop::array::uniform32(any::<u8>()), tail in prop::array::uniform32(any::<u8>()), rest in prop::array::uniform16(any::<u8>())) {
        let mut header = [0u8; 80];
        header[..32].copy_from_slice(&bytes);
        header[32..64].copy_from_slice(&tail);
        header[64..].copy_from_slice(&rest);
        let parsed = BlockHeader::from_hex(&hex::encode(header)).unwrap();
        prop_assert_eq!(parsed.bytes(), &header);
        let wire: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
        prop_assert_eq!(display_hash(&wire), parsed.block_hash().to_string());
        let nonce = u32::from_le_bytes(header[76..].try_into().unwrap());
        prop_assert_eq!(parsed.nonce(), nonce);
    }

    #[test]
    fn full_target_compare_agrees_with_bitcoin(hash in prop::array::uniform32(any::<u8>()), target in prop::array::uniform32(any::<u8>()), share_top in any::<bool>()) {
        let mut target = target;
        if share_top {
            // Equal high words force the comparison down to the low ones.
            target[16..].copy_from_slice(&hash[16..]);
        }
        let bitcoin_target = bitcoin::Target::from_le_bytes(target);
        let block_hash = bitcoin::BlockHash::from_byte_array(hash);
        let kernel = KernelTarget::from(bitcoin_target);
        prop_assert_eq!(kernel.is_met_by(&hash), bitcoin_target.is_met_by(block_hash));
        let state: [u32; 8] = std::array::from_fn(|i| u32::from_be_bytes(hash[4 * i..4 * i + 4].try_into().unwrap()));
        prop_assert_eq!(kernel.is_met_by_state(&state), bitcoin_target.is_met_by(block_hash));
    }

    #[test]
    fn typed_targets_round_trip(target in prop::array::uniform32(any::<u8>())) {
        let t = bitcoin::Target::from_be_bytes(target);
        prop_assert_eq!(target::parse_target(&target::display(t)).unwrap(), t);
        prop_assert_eq!(target::parse_target(&format!("0x{}", hex::encode(target))).unwrap(), t);
    }

    #[test]
    fn compact_bits_agree_with_bitcoin(exponent in 0u32..=34, mantissa in 0u32..0x0080_0000) {
        let bits = exponent << 24 | mantissa;
        match target::from_bits(bits) {
            Ok(t) => {
                prop_assert_eq!(t, bitcoin::Target::from_compact(bitcoin::CompactTarget::from_consensus(bits)));
                // A normalized encoding survives the round trip through the bitcoin crate.
                if t != bitcoin::Target::ZERO {
                    prop_assert_eq!(bitcoin::Target::from_compact(t.to_compact_lossy()), t);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("above 2^256"), "{}", e),
        }
        prop_assert_eq!(target::parse_bits(&format!("{bits:08x}")), target::from_bits(bits));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn gpu_digests_equal_cpu(messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)) {
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        for algo in [Algo::Sha1, Algo::Sha256, Algo::Sha256d] {
            prop_assert_eq!(gpu().digest_messages(algo, &slices).unwrap(), cpu().digest_messages(algo, &slices).unwrap());
        }
    }

    #[test]
    fn gpu_pieces_equal_cpu(data in prop::collection::vec(any::<u8>(), 0..5000), piece_len in 1usize..700) {
        prop_assert_eq!(gpu().sha1_pieces(&data, piece_len).unwrap(), cpu().sha1_pieces(&data, piece_len).unwrap());
        prop_assert_eq!(gpu().sha256_pieces(&data, piece_len).unwrap(), cpu().sha256_pieces(&data, piece_len).unwrap());
    }

    #[test]
    fn gpu_scan_equals_cpu(header in prop::collection::vec(any::<u8>(), 80), start in any::<u32>(), count in 0u64..20_000, top in any::<u32>(), low in any::<u32>()) {
        let header: [u8; 80] = header.try_into().unwrap();
        let count = count.min((1u64 << 32) - u64::from(start));
        // A top word near zero keeps winners rare but present; `low` exercises the lower words.
        let mut bytes = [0u8; 32];
        for chunk in bytes[..28].chunks_exact_mut(4) {
            chunk.copy_from_slice(&low.to_le_bytes());
        }
        bytes[28..].copy_from_slice(&(top >> 20).to_le_bytes());
        let target = KernelTarget::from(bitcoin::Target::from_le_bytes(bytes));
        let job = ScanJob::new(&header, u64::from(start), count, target).unwrap();
        prop_assert_eq!(gpu().scan(&job).unwrap(), cpu().scan(&job).unwrap());
    }
}

proptest! {
    #[test]
    fn pool_difficulty_and_share_target_agree_with_bitcoin(exponent in -20i32..30, fraction in 1.0f64..2.0) {
        use peerhash::mining::stratum::messages::share_target;
        let difficulty = fraction * 2f64.powi(exponent);
        let target = share_target(difficulty).unwrap();
        // bitcoin's difficulty is diff1 / target with the same truncated diff1 pools use.
        let back = target.difficulty_float();
        prop_assert!((back - difficulty).abs() <= difficulty * 1e-9, "{difficulty} -> {back}");
        // A harder pool never gives an easier target.
        let harder = share_target(difficulty * 1.5).unwrap();
        prop_assert!(harder <= target);
        for bad in [0.0, -difficulty, f64::NAN, f64::INFINITY] {
            prop_assert!(share_target(bad).is_err());
        }
    }
}
