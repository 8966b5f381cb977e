//! Bitcoin proof-of-work nonce search: double SHA-256 of an 80-byte block header over a range of
//! nonces, single-threaded (the caller splits ranges across threads).
//!
//! Three implementations share one contract; `scan_range` picks the first the CPU supports:
//!
//! * **AVX-512** (x86-64 with AVX-512 F and BW): 16 nonces at once, one per 32-bit lane, through
//!   plain SHA-256 rounds built from rotates and three-input logic ops. This is what
//!   cpuminer-opt also prefers when it has AVX-512; on a Sapphire Rapids core it is about twice
//!   as fast as the SHA extensions, whose round instruction issues only every other cycle.
//! * **SHA-NI** (x86-64 with the SHA extensions): the `sha256rnds2` and `sha256msg2`
//!   instructions on four independent nonces at once, so that the latency of one stream's round
//!   instruction is hidden behind the others'.
//! * **Portable**: plain Rust, available everywhere.
//!
//! All exploit the structure of the problem:
//!
//! * The first 64 header bytes are hashed once by the caller (the `midstate`).
//! * Rounds 0..4 of the second block depend only on the midstate and the three `tail` words,
//!   except that the nonce word `W3` enters round 3 through `T1` alone, which is added to both the
//!   new `a` and the new `e`. So those four rounds are run once per call with `W3 = 0` and each
//!   nonce just adds `W3` to `a` and `e`.
//! * Message words that do not depend on the nonce (padding, length) are constants with `K`
//!   folded in.
//! * Of the second SHA-256 only the last digest word `H7` is needed to reject a nonce (it is the
//!   most significant word of the hash read as a little-endian number). `H7 = IV7 + h64` and
//!   `h64 = e61`, so rounds 61..64 are skipped. A nonce whose top word passes is verified by a
//!   straightforward full computation and the full 256-bit comparison.

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // lanes are indexed in lockstep across several arrays
mod ni;

// The AVX-512 intrinsics are stable since Rust 1.89 (the rest of the crate needs 1.87).
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod avx512;
mod portable;

/// The SHA-256 constants, re-exported where other code has always found them.
pub use crate::hash::sha256_consts::{IV, K};
use crate::hash::KernelTarget;
pub use portable::scan_range_portable;
pub(crate) use portable::ScalarJob;

/// The padding word right after the message, and the bit lengths of the two hashed messages.
pub(crate) const PAD: u32 = 0x8000_0000;
pub(crate) const HEADER_BITS: u32 = 80 * 8;
pub(crate) const DIGEST_BITS: u32 = 32 * 8;

/// Which implementation `scan_range` uses on this CPU.
#[must_use]
pub fn implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            return avx512::NAME;
        }
        if ni::available() {
            return ni::NAME;
        }
    }
    "portable"
}

/// Searches nonces `start..start + count` (`start + count <= 2^32`) of a block header whose first
/// 64 bytes compress to `midstate`, whose bytes 64..76 are the big-endian words `tail`, and whose
/// last 4 bytes are the little-endian nonce. Returns, in increasing order, every nonce whose double
/// SHA-256 meets `target`.
#[must_use]
pub fn scan_range(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    start: u32,
    count: u64,
    target: &KernelTarget,
) -> Vec<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            return avx512::scan_range(midstate, tail, start, count, target);
        }
        if ni::available() {
            return ni::scan_range(midstate, tail, start, count, target);
        }
    }
    scan_range_portable(midstate, tail, start, count, target)
}

/// The number of nonces actually searched: `count`, but never past `2^32` even if the caller
/// broke the contract (we must not wrap around to nonce 0).
fn clamp_count(start: u32, count: u64) -> u64 {
    count.min((1u64 << 32) - u64::from(start))
}

/// Fast rejection: whether the most significant little-endian word of the hash, which is the
/// final state word `h7` byte-swapped, could be `<= target` (the full comparison follows).
#[inline]
fn top_word_passes(h7: u32, target_top: u32) -> bool {
    h7.swap_bytes() <= target_top
}

/// Full check of a candidate by an independent straightforward computation; pushes it if the
/// whole 256-bit hash is `<= target`.
#[cold]
#[inline(never)]
fn verify_push(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    nonce: u32,
    target: &KernelTarget,
    found: &mut Vec<u32>,
) {
    if target.is_met_by_state(&sha256d_state(midstate, tail, nonce)) {
        found.push(nonce);
    }
}

#[inline]
fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

#[inline]
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

#[inline]
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

#[inline]
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// One SHA-256 round on the state `s` (`a..h`) with `kw = K[t] + W[t]`.
#[inline]
#[allow(clippy::many_single_char_names)] // the names of FIPS 180-4
fn round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(big_sigma1(e))
        .wrapping_add((e & f) ^ (!e & g))
        .wrapping_add(kw);
    let t2 = big_sigma0(a).wrapping_add((a & b) ^ (a & c) ^ (b & c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

/// Expands the first 16 words of `w` into the full 64-word message schedule.
#[inline]
fn expand(w: &mut [u32; 64], from: usize) {
    for t in from..64 {
        w[t] = small_sigma1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(small_sigma0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
}

/// A full, unoptimized SHA-256 compression of the message words `block` into `state`.
fn compress(state: &[u32; 8], block: &[u32; 16]) -> [u32; 8] {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    expand(&mut w, 16);
    let mut s = *state;
    for (k, w) in K.iter().zip(w) {
        round(&mut s, k.wrapping_add(w));
    }
    let mut out = *state;
    for (o, x) in out.iter_mut().zip(s) {
        *o = o.wrapping_add(x);
    }
    out
}

/// The final state words `H0..H7` of the double SHA-256 of the header with `nonce`, computed the
/// plain way (the reference the fast paths are checked against).
fn sha256d_state(midstate: &[u32; 8], tail: &[u32; 3], nonce: u32) -> [u32; 8] {
    let mut block = [0u32; 16];
    block[..3].copy_from_slice(tail);
    block[3] = nonce.swap_bytes();
    block[4] = PAD;
    block[15] = HEADER_BITS;
    let first = compress(midstate, &block);
    let mut block = [0u32; 16];
    block[..8].copy_from_slice(&first);
    block[8] = PAD;
    block[15] = DIGEST_BITS;
    compress(&IV, &block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A tiny xorshift64* generator, enough for test headers.
    struct Rng(u64);

    impl Rng {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        }
    }

    /// The midstate and tail of an 80-byte header (its nonce bytes are ignored).
    fn split_header(header: &[u8; 80]) -> ([u32; 8], [u32; 3]) {
        let mut midstate = IV;
        let first: [u8; 64] = header[..64].try_into().unwrap();
        sha2::block_api::compress256(&mut midstate, &[first]);
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().unwrap());
        (midstate, [word(64), word(68), word(72)])
    }

    /// The reference: sha256d with the `sha2` crate, as little-endian 256-bit words.
    fn reference_hash(header: &[u8; 80], nonce: u32) -> [u32; 8] {
        let mut header = *header;
        header[76..].copy_from_slice(&nonce.to_le_bytes());
        let digest = Sha256::digest(Sha256::digest(header));
        let mut words = [0u32; 8];
        for (w, bytes) in words.iter_mut().zip(digest.chunks_exact(4)) {
            *w = u32::from_le_bytes(bytes.try_into().unwrap());
        }
        words
    }

    /// Raw test words as the target type (through `bitcoin::Target`, its only door).
    fn kernel(words: &[u32; 8]) -> KernelTarget {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        KernelTarget::from(bitcoin::Target::from_le_bytes(bytes))
    }

    fn le_leq(hash: &[u32; 8], target: &[u32; 8]) -> bool {
        hash.iter().rev().cmp(target.iter().rev()) != std::cmp::Ordering::Greater
    }

    fn reference_scan(header: &[u8; 80], start: u32, count: u64, target: &[u32; 8]) -> Vec<u32> {
        (u64::from(start)..u64::from(start) + count)
            .map(|n| u32::try_from(n).unwrap())
            .filter(|&n| le_leq(&reference_hash(header, n), target))
            .collect()
    }

    fn random_header(rng: &mut Rng) -> [u8; 80] {
        let mut header = [0u8; 80];
        for chunk in header.chunks_exact_mut(4) {
            chunk.copy_from_slice(&rng.next_u32().to_le_bytes());
        }
        header
    }

    /// Both implementations (and the dispatching one) against each other and a reference.
    fn check_all(header: &[u8; 80], start: u32, count: u64, target: &[u32; 8], expected: &[u32]) {
        let (midstate, tail) = split_header(header);
        let target = &kernel(target);
        let portable = scan_range_portable(&midstate, &tail, start, count, target);
        assert_eq!(portable, expected, "portable, start {start} count {count}");
        let dispatched = scan_range(&midstate, &tail, start, count, target);
        assert_eq!(
            dispatched,
            expected,
            "{}, start {start} count {count}",
            implementation()
        );
        #[cfg(target_arch = "x86_64")]
        if ni::available() {
            let sha_ni = ni::scan_range(&midstate, &tail, start, count, target);
            assert_eq!(sha_ni, expected, "sha-ni, start {start} count {count}");
        }
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            let avx512 = avx512::scan_range(&midstate, &tail, start, count, target);
            assert_eq!(avx512, expected, "avx-512, start {start} count {count}");
        }
    }

    fn genesis() -> [u8; 80] {
        const HEX: &str = "0100000000000000000000000000000000000000000000000000000000000000\
            000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49\
            ffff001d1dac2b7c";
        let mut header = [0u8; 80];
        for (i, byte) in header.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&HEX[2 * i..2 * i + 2], 16).unwrap();
        }
        header
    }

    /// The target encoded by compact `bits`, as little-endian 32-bit words.
    fn target_from_bits(bits: u32) -> [u32; 8] {
        let exponent = (bits >> 24) as usize;
        let mantissa = bits & 0x00ff_ffff;
        let mut bytes = [0u8; 32]; // little-endian
        for (i, b) in mantissa.to_le_bytes()[..3].iter().enumerate() {
            bytes[exponent - 3 + i] = *b;
        }
        let mut words = [0u32; 8];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes(chunk.try_into().unwrap());
        }
        words
    }

    const LOOSE: [u32; 8] = [
        u32::MAX,
        u32::MAX,
        u32::MAX,
        u32::MAX,
        u32::MAX,
        u32::MAX,
        u32::MAX,
        0x0fff_ffff,
    ];

    #[test]
    fn implementation_is_named() {
        let name = implementation();
        assert!(
            ["portable", "sha-ni x4", "avx-512 x16"].contains(&name),
            "{name}"
        );
        println!("sha256d implementation: {name}");
    }

    #[test]
    fn matches_reference_loose_target() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3 {
            let header = random_header(&mut rng);
            let start = rng.next_u32() % 0xffff_0000;
            let expected = reference_scan(&header, start, 3001, &LOOSE);
            assert!(expected.len() > 100, "{}", expected.len());
            check_all(&header, start, 3001, &LOOSE, &expected);
        }
    }

    #[test]
    fn exact_lower_word_comparison() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let header = random_header(&mut rng);
        let start = rng.next_u32() % 0xffff_0000;
        let count = 2000;
        // Targets equal to a hash in the range, and that hash plus or minus one in the lowest
        // word: the comparison has to go down all the words.
        let hashes: Vec<[u32; 8]> = (0..count)
            .map(|i| reference_hash(&header, start + i))
            .collect();
        let pick = hashes[1234];
        let mut targets = vec![pick];
        let mut minus = pick;
        minus[0] = minus[0].wrapping_sub(1);
        if pick[0] != 0 {
            targets.push(minus);
        }
        let mut plus = pick;
        plus[0] = plus[0].wrapping_add(1);
        if pick[0] != u32::MAX {
            targets.push(plus);
        }
        // And the top word only equal, lower words at each extreme.
        let mut zero_low = [0u32; 8];
        zero_low[7] = pick[7];
        targets.push(zero_low);
        let mut max_low = [u32::MAX; 8];
        max_low[7] = pick[7];
        targets.push(max_low);
        let mut mid_word = pick;
        mid_word[3] ^= 0x8000_0000;
        targets.push(mid_word);
        for target in &targets {
            let expected = reference_scan(&header, start, u64::from(count), target);
            check_all(&header, start, u64::from(count), target, &expected);
        }
        let exact = reference_scan(&header, start, u64::from(count), &pick);
        assert!(exact.contains(&(start + 1234)));
        let below = reference_scan(&header, start, u64::from(count), &minus);
        assert!(!below.contains(&(start + 1234)));
    }

    #[test]
    fn finds_genesis_nonce() {
        let header = genesis();
        let target = target_from_bits(0x1d00_ffff);
        assert_eq!(target, [0, 0, 0, 0, 0, 0, 0xffff_0000, 0]);
        let nonce = 2_083_236_893;
        let (midstate, tail) = split_header(&header);
        assert_eq!(reference_hash(&header, nonce), {
            let h = sha256d_state(&midstate, &tail, nonce);
            h.map(u32::swap_bytes)
        });
        check_all(&header, nonce - 1000, 2000, &target, &[nonce]);
        check_all(&header, nonce - 1, 3, &target, &[nonce]);
        check_all(&header, nonce, 1, &target, &[nonce]);
        check_all(&header, nonce + 1, 5, &target, &[]);
    }

    #[test]
    fn range_edges() {
        let mut rng = Rng(42);
        let header = random_header(&mut rng);
        let all = [u32::MAX; 8];
        let (midstate, tail) = split_header(&header);
        assert!(scan_range(&midstate, &tail, 7, 0, &KernelTarget::MAX).is_empty());
        assert!(scan_range_portable(&midstate, &tail, 7, 0, &KernelTarget::MAX).is_empty());
        assert!(scan_range(&midstate, &tail, u32::MAX, 0, &KernelTarget::MAX).is_empty());
        // Up to exactly 2^32.
        let top: Vec<u32> = (u32::MAX - 5..=u32::MAX).collect();
        check_all(&header, u32::MAX - 5, 6, &all, &top);
        check_all(&header, u32::MAX, 1, &all, &[u32::MAX]);
        let expected = reference_scan(&header, u32::MAX - 5, 6, &LOOSE);
        check_all(&header, u32::MAX - 5, 6, &LOOSE, &expected);
        // From 0.
        check_all(&header, 0, 3, &all, &[0, 1, 2]);
        let expected = reference_scan(&header, 0, 517, &LOOSE);
        check_all(&header, 0, 517, &LOOSE, &expected);
        // Lengths that are not multiples of any interleave width.
        for count in 1..=9 {
            let expected: Vec<u32> = (1000..1000 + count).collect();
            check_all(&header, 1000, u64::from(count), &all, &expected);
            let expected = reference_scan(&header, 5000, u64::from(count) * 37, &LOOSE);
            check_all(&header, 5000, u64::from(count) * 37, &LOOSE, &expected);
        }
    }

    #[test]
    fn impossible_target_finds_nothing() {
        let mut rng = Rng(7);
        let header = random_header(&mut rng);
        let (midstate, tail) = split_header(&header);
        assert!(scan_range(&midstate, &tail, 0, 5000, &KernelTarget::ZERO).is_empty());
        assert!(scan_range_portable(&midstate, &tail, 0, 5000, &KernelTarget::ZERO).is_empty());
    }
}
