//! Known-answer vectors and backend-versus-oracle comparisons, shared by `peerhash selftest`
//! and the test suite.

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::hash::cpu::sha256d::scan_range_portable;
use crate::hash::cpu::CpuBackend;
use crate::hash::{Algo, Backend, BulkHasher, KernelTarget, ScanJob};
use crate::mining::header::{display_hash, BlockHeader};
use crate::mining::target;

/// A real mainnet block header with its known hash.
pub struct KnownHeader {
    pub name: &'static str,
    pub hex: &'static str,
    pub hash: &'static str,
}

/// Real mainnet headers: genesis, block 1 and block 125552 (the wiki's hashing example).
pub const KNOWN_HEADERS: [KnownHeader; 3] = [
    KnownHeader {
        name: "genesis",
        hex: "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c",
        hash: "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    },
    KnownHeader {
        name: "block 1",
        hex: "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299",
        hash: "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048",
    },
    KnownHeader {
        name: "block 125552",
        hex: "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695",
        hash: "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d",
    },
];

const NIST_448: &[u8] = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

/// NIST FIPS 180 examples: (name, algo, message, digest hex).
fn nist_vectors() -> Vec<(&'static str, Algo, Vec<u8>, &'static str)> {
    let million_a = vec![b'a'; 1_000_000];
    vec![
        (
            "sha1 \"abc\"",
            Algo::Sha1,
            b"abc".to_vec(),
            "a9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            "sha1 empty",
            Algo::Sha1,
            Vec::new(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ),
        (
            "sha1 448 bits",
            Algo::Sha1,
            NIST_448.to_vec(),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
        ),
        (
            "sha1 million a",
            Algo::Sha1,
            million_a.clone(),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
        ),
        (
            "sha256 \"abc\"",
            Algo::Sha256,
            b"abc".to_vec(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            "sha256 empty",
            Algo::Sha256,
            Vec::new(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "sha256 448 bits",
            Algo::Sha256,
            NIST_448.to_vec(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
        (
            "sha256 million a",
            Algo::Sha256,
            million_a,
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        ),
    ]
}

/// Message lengths around every padding boundary, plus lengths that span dispatch rounds.
pub const AWKWARD_LENGTHS: [usize; 17] = [
    0,
    1,
    3,
    55,
    56,
    57,
    63,
    64,
    65,
    119,
    120,
    127,
    128,
    1000,
    16_384,
    16_385,
    3 << 20 | 7,
];

/// The outcome of one check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Check {
    fn compare<T: PartialEq + std::fmt::Debug>(name: impl Into<String>, got: &T, want: &T) -> Self {
        let ok = got == want;
        let detail = if ok {
            String::new()
        } else {
            format!("got {got:?}, expected {want:?}")
        };
        Self {
            name: name.into(),
            ok,
            detail,
        }
    }

    fn failed(name: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.to_string(),
        }
    }
}

/// A small deterministic generator, so a failing seed can be replayed with `--seed`.
pub struct XorShift(u64);

impl XorShift {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    #[must_use]
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn reference_digest(algo: Algo, message: &[u8]) -> Vec<u8> {
    match algo {
        Algo::Sha1 => Sha1::digest(message).to_vec(),
        Algo::Sha256 => Sha256::digest(message).to_vec(),
        Algo::Sha256d => Sha256::digest(Sha256::digest(message)).to_vec(),
    }
}

/// Nonces either side of a real nonce that the scan check searches.
const SCAN_WINDOW: u64 = 1 << 20;

/// Runs every check on `backend`; `seed` drives the random inputs.
#[must_use]
pub fn run(backend: &dyn Backend, seed: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    known_answers(backend, &mut checks);
    headers(backend, &mut checks);
    random_comparisons(backend, seed, &mut checks);
    checks
}

fn known_answers(backend: &dyn Backend, checks: &mut Vec<Check>) {
    for (name, algo, message, want) in nist_vectors() {
        let check = match backend.digest_messages(algo, &[&message]) {
            Ok(got) => Check::compare(
                format!("NIST {name}"),
                &hex::encode(&got[0]),
                &want.to_owned(),
            ),
            Err(e) => Check::failed(format!("NIST {name}"), e),
        };
        checks.push(check);
    }
}

fn headers(backend: &dyn Backend, checks: &mut Vec<Check>) {
    for known in &KNOWN_HEADERS {
        let header = BlockHeader::from_hex(known.hex).expect("built-in headers are valid");
        let hash_check = match backend.digest_messages(Algo::Sha256d, &[header.bytes()]) {
            Ok(got) => {
                let got: [u8; 32] = got[0].as_slice().try_into().expect("32 bytes");
                Check::compare(
                    format!("{} hash", known.name),
                    &display_hash(&got),
                    &known.hash.to_owned(),
                )
            }
            Err(e) => Check::failed(format!("{} hash", known.name), e),
        };
        checks.push(hash_check);
        let nonce = u64::from(header.nonce());
        let start = nonce.saturating_sub(SCAN_WINDOW / 2 + 12_345);
        let count = SCAN_WINDOW.min((1 << 32) - start);
        let target = target::from_bits(header.fields().bits.to_consensus()).expect("real bits");
        let job = ScanJob::new(header.bytes(), start, count, target.into()).expect("in range");
        let name = format!("{} scan finds nonce {nonce}", known.name);
        checks.push(match backend.scan(&job) {
            Ok(outcome) => Check::compare(
                name,
                &(outcome.found, outcome.hw_errors),
                &(vec![header.nonce()], 0),
            ),
            Err(e) => Check::failed(name, e),
        });
    }
}

fn random_comparisons(backend: &dyn Backend, seed: u64, checks: &mut Vec<Check>) {
    let mut rng = XorShift::new(seed);
    let messages: Vec<Vec<u8>> = AWKWARD_LENGTHS.iter().map(|&len| rng.bytes(len)).collect();
    let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    for algo in [Algo::Sha1, Algo::Sha256, Algo::Sha256d] {
        let want: Vec<Vec<u8>> = slices.iter().map(|m| reference_digest(algo, m)).collect();
        let name = format!(
            "{algo} of {} random messages of awkward lengths",
            slices.len()
        );
        checks.push(match backend.digest_messages(algo, &slices) {
            Ok(got) => Check::compare(name, &got, &want),
            Err(e) => Check::failed(name, e),
        });
    }

    let data = rng.bytes(200_003);
    for piece_len in [64, 1000, 16_384, 65_536, 200_003, 1 << 20] {
        let name = format!("sha1 pieces of {piece_len} bytes over 200003 bytes");
        let want: Vec<[u8; 20]> = data
            .chunks(piece_len)
            .map(|p| Sha1::digest(p).into())
            .collect();
        checks.push(match backend.sha1_pieces(&data, piece_len) {
            Ok(got) => Check::compare(name, &got, &want),
            Err(e) => Check::failed(name, e),
        });
        let name = format!("sha256 pieces of {piece_len} bytes over 200003 bytes");
        let want: Vec<[u8; 32]> = data
            .chunks(piece_len)
            .map(|p| Sha256::digest(p).into())
            .collect();
        checks.push(match backend.sha256_pieces(&data, piece_len) {
            Ok(got) => Check::compare(name, &got, &want),
            Err(e) => Check::failed(name, e),
        });
    }

    let nodes: Vec<[u8; 32]> = (0..1026)
        .map(|_| rng.bytes(32).try_into().expect("32"))
        .collect();
    let want = CpuBackend::inline()
        .sha256_pairs(&nodes)
        .expect("an even number of nodes");
    let name = "merkle parents of 1026 random nodes";
    checks.push(match backend.sha256_pairs(&nodes) {
        Ok(got) => Check::compare(name, &got, &want),
        Err(e) => Check::failed(name, e),
    });

    scan_comparisons(backend, &mut rng, checks);
}

/// A target whose most significant 32 bits are `top` and whose others are all ones: about
/// `top / 2^32` of hashes meet it, which tests use to get many winners.
#[must_use]
pub fn target_with_top_word(top: u32) -> KernelTarget {
    let mut bytes = [0xff; 32];
    bytes[28..].copy_from_slice(&top.to_le_bytes());
    KernelTarget::from(bitcoin::Target::from_le_bytes(bytes))
}

fn scan_comparisons(backend: &dyn Backend, rng: &mut XorShift, checks: &mut Vec<Check>) {
    let header: [u8; 80] = rng.bytes(80).try_into().expect("80");
    // About one nonce in 256 wins: many winners, compared one by one.
    let easy = target_with_top_word(0x00ff_ffff);
    let start = rng.next_u64() >> 33;
    let job = ScanJob::new(&header, start, 1 << 18, easy).expect("in range");
    let want = scan_range_portable(&job.midstate, &job.tail, job.start, job.count, &job.target);
    checks.push(match backend.scan(&job) {
        Ok(got) => Check::compare(
            "scan at an easy target (1 in 256)",
            &(got.found, got.hw_errors),
            &(want, 0),
        ),
        Err(e) => Check::failed("scan at an easy target", e),
    });

    // A target equal to one nonce's hash: the comparison must go down to the lowest word.
    let nonce = u32::try_from(start + 777).expect("start < 2^31");
    let hash: [u8; 32] = Sha256::digest(Sha256::digest(
        BlockHeader::from_bytes(header).with_nonce(nonce).bytes(),
    ))
    .into();
    let exact = KernelTarget::exactly(&hash);
    let job = ScanJob::new(&header, start, 1 << 12, exact).expect("in range");
    let want = scan_range_portable(&job.midstate, &job.tail, job.start, job.count, &job.target);
    let name = "scan at a target equal to a hash (full 256-bit compare)";
    checks.push(match backend.scan(&job) {
        Ok(got) if want.contains(&nonce) => {
            Check::compare(name, &(got.found, got.hw_errors), &(want, 0))
        }
        Ok(_) => Check::failed(name, "the oracle itself missed the nonce"),
        Err(e) => Check::failed(name, e),
    });

    // The very end of the nonce space, where a 32-bit counter would wrap.
    let job = ScanJob::new(&header, (1 << 32) - 5000, 5000, easy).expect("in range");
    let want = scan_range_portable(&job.midstate, &job.tail, job.start, job.count, &job.target);
    checks.push(match backend.scan(&job) {
        Ok(got) => Check::compare(
            "scan up to nonce 2^32 - 1",
            &(got.found, got.hw_errors),
            &(want, 0),
        ),
        Err(e) => Check::failed("scan up to nonce 2^32 - 1", e),
    });
}
