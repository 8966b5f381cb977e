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

/// SHA-256 round constants (shared with the generated WGSL).
pub const K: [u32; 64] = [
    0x428a_2f98,
    0x7137_4491,
    0xb5c0_fbcf,
    0xe9b5_dba5,
    0x3956_c25b,
    0x59f1_11f1,
    0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98,
    0x1283_5b01,
    0x2431_85be,
    0x550c_7dc3,
    0x72be_5d74,
    0x80de_b1fe,
    0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1,
    0xefbe_4786,
    0x0fc1_9dc6,
    0x240c_a1cc,
    0x2de9_2c6f,
    0x4a74_84aa,
    0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152,
    0xa831_c66d,
    0xb003_27c8,
    0xbf59_7fc7,
    0xc6e0_0bf3,
    0xd5a7_9147,
    0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85,
    0x2e1b_2138,
    0x4d2c_6dfc,
    0x5338_0d13,
    0x650a_7354,
    0x766a_0abb,
    0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1,
    0xa81a_664b,
    0xc24b_8b70,
    0xc76c_51a3,
    0xd192_e819,
    0xd699_0624,
    0xf40e_3585,
    0x106a_a070,
    0x19a4_c116,
    0x1e37_6c08,
    0x2748_774c,
    0x34b0_bcb5,
    0x391c_0cb3,
    0x4ed8_aa4a,
    0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee,
    0x78a5_636f,
    0x84c8_7814,
    0x8cc7_0208,
    0x90be_fffa,
    0xa450_6ceb,
    0xbef9_a3f7,
    0xc671_78f2,
];

/// SHA-256 initial hash value.
pub const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The padding word right after the message, and the bit lengths of the two hashed messages.
const PAD: u32 = 0x8000_0000;
const HEADER_BITS: u32 = 80 * 8;
const DIGEST_BITS: u32 = 32 * 8;

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
/// SHA-256, read as a 256-bit little-endian number, is `<= target` (`target[7]` most significant
/// little-endian word).
#[must_use]
pub fn scan_range(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    start: u32,
    count: u64,
    target: &[u32; 8],
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

/// The portable implementation of [`scan_range`], always available, same contract.
#[must_use]
pub fn scan_range_portable(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    start: u32,
    count: u64,
    target: &[u32; 8],
) -> Vec<u32> {
    let count = clamp_count(start, count);
    let job = ScalarJob::new(midstate, tail);
    let mut found = Vec::new();
    let mut nonce = start;
    for _ in 0..count {
        if top_word_passes(job.h7(nonce), target[7]) {
            verify_push(midstate, tail, nonce, target, &mut found);
        }
        nonce = nonce.wrapping_add(1);
    }
    found
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
    target: &[u32; 8],
    found: &mut Vec<u32>,
) {
    if hash_meets_target(&sha256d_state(midstate, tail, nonce), target) {
        found.push(nonce);
    }
}

/// Whether the final state `h` of the second SHA-256, read as Bitcoin's little-endian 256-bit
/// number (word `i` is `h[i].swap_bytes()`), is `<= target`.
fn hash_meets_target(h: &[u32; 8], target: &[u32; 8]) -> bool {
    for i in (0..8).rev() {
        let word = h[i].swap_bytes();
        if word != target[i] {
            return word < target[i];
        }
    }
    true
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

/// Per-call precomputation of the portable path.
struct ScalarJob {
    /// State after rounds 0..4 of the second header block, computed with `W3 = 0`.
    state4: [u32; 8],
    /// The midstate, added back after the compression.
    midstate: [u32; 8],
    /// The second header block's message schedule with `W3 = 0`; words that do not depend on
    /// the nonce are final, the others are recomputed per nonce.
    schedule: [u32; 64],
}

impl ScalarJob {
    fn new(midstate: &[u32; 8], tail: &[u32; 3]) -> Self {
        let mut schedule = [0u32; 64];
        schedule[..3].copy_from_slice(tail);
        schedule[4] = PAD;
        schedule[15] = HEADER_BITS;
        // W16 and W17 do not involve W3; the rest are overwritten per nonce.
        expand(&mut schedule, 16);
        let mut state4 = *midstate;
        for t in 0..4 {
            round(&mut state4, K[t].wrapping_add(schedule[t]));
        }
        Self {
            state4,
            midstate: *midstate,
            schedule,
        }
    }

    /// The final state word `H7` of the double SHA-256 for `nonce` (the rest is not computed).
    #[inline]
    fn h7(&self, nonce: u32) -> u32 {
        let w3 = nonce.swap_bytes();

        // First hash, second block: rounds 4..64 from the precomputed state.
        let mut w = self.schedule;
        w[3] = w3;
        expand(&mut w, 18);
        let mut s = self.state4;
        s[0] = s[0].wrapping_add(w3);
        s[4] = s[4].wrapping_add(w3);
        for t in 4..64 {
            round(&mut s, K[t].wrapping_add(w[t]));
        }

        // Second hash: 61 rounds give e61 = h64.
        let mut w2 = [0u32; 64];
        for i in 0..8 {
            w2[i] = self.midstate[i].wrapping_add(s[i]);
        }
        w2[8] = PAD;
        w2[15] = DIGEST_BITS;
        expand(&mut w2, 16);
        let mut s = IV;
        for t in 0..61 {
            round(&mut s, K[t].wrapping_add(w2[t]));
        }
        IV[7].wrapping_add(s[4])
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // lanes are indexed in lockstep across several arrays
mod ni {
    //! The SHA-NI implementation: `LANES` nonces in flight, rounds of all lanes interleaved.
    //!
    //! Register layout is the one `sha256rnds2` wants: `ABEF` holds `[F, E, B, A]` (lane 0 first)
    //! and `CDGH` holds `[H, G, D, C]`; message groups hold `[W4k, W4k+1, W4k+2, W4k+3]`.

    use core::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_set_epi32,
        _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
        _mm_shuffle_epi32, _mm_slli_epi32, _mm_srli_epi32, _mm_xor_si128,
    };

    use super::{
        clamp_count, top_word_passes, verify_push, ScalarJob, DIGEST_BITS, HEADER_BITS, IV, K, PAD,
    };

    /// Nonces processed together. The round instruction's throughput, not its latency, is the
    /// limit from two streams on; four measured a few percent faster than two or three.
    const LANES: usize = 4;

    pub(super) const NAME: &str = "sha-ni x4";

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    pub(super) fn scan_range(
        midstate: &[u32; 8],
        tail: &[u32; 3],
        start: u32,
        count: u64,
        target: &[u32; 8],
    ) -> Vec<u32> {
        assert!(available(), "SHA-NI scan called on a CPU without SHA-NI");
        // SAFETY: the CPU supports every feature `scan` is compiled for (checked just above).
        unsafe { scan(midstate, tail, start, count, target) }
    }

    /// `[e0, e1, e2, e3]` (lane 0 first) as a vector.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn v(e0: u32, e1: u32, e2: u32, e3: u32) -> __m128i {
        _mm_set_epi32(
            e3.cast_signed(),
            e2.cast_signed(),
            e1.cast_signed(),
            e0.cast_signed(),
        )
    }

    /// `K[4k..4k + 4]` plus the message group `w`, as a vector.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn kw(k: usize, w: [u32; 4]) -> __m128i {
        v(
            K[4 * k].wrapping_add(w[0]),
            K[4 * k + 1].wrapping_add(w[1]),
            K[4 * k + 2].wrapping_add(w[2]),
            K[4 * k + 3].wrapping_add(w[3]),
        )
    }

    /// A state `a..h` as the `(ABEF, CDGH)` register pair.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn to_regs(s: &[u32; 8]) -> (__m128i, __m128i) {
        (v(s[5], s[4], s[1], s[0]), v(s[7], s[6], s[3], s[2]))
    }

    /// Per-call constants, all as vectors.
    struct Job {
        /// `ABEF`/`CDGH` after rounds 0..4 of the header's second block with `W3 = 0`.
        pre_abef: __m128i,
        pre_cdgh: __m128i,
        /// The midstate as `ABEF`/`CDGH`, added at the end of the first hash.
        mid_abef: __m128i,
        mid_cdgh: __m128i,
        /// Message group 0 of the header's second block with `W3 = 0`.
        g0: __m128i,
        /// `K + W` of the nonce-independent groups 1..4 of the header's second block, low
        /// halves (rounds `4k`, `4k + 1`) and high halves moved down (rounds `4k + 2`, `4k + 3`).
        h1_kw: [(__m128i, __m128i); 3],
        /// `K + W` of the constant groups 2 and 3 of the second hash, halves as above.
        h2_kw: [(__m128i, __m128i); 2],
        /// The constant message groups 1 and 3 of the header's second block.
        h1_g1: __m128i,
        h1_g3: __m128i,
        /// `sha256msg1` of the constant groups (1, 2) and (2, 3) of the header's second block.
        h1_m12: __m128i,
        h1_m23: __m128i,
        /// `sha256msg1` of groups 3 and 4 of the header's second block: it only reads `W16`.
        h1_m34: __m128i,
        /// The constant message groups 2 and 3 of the second hash, and `sha256msg1` of them.
        h2_g2: __m128i,
        h2_g3: __m128i,
        h2_m23: __m128i,
        /// The IV as `ABEF`/`CDGH`.
        iv_abef: __m128i,
        iv_cdgh: __m128i,
    }

    impl Job {
        #[inline]
        #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
        fn new(midstate: &[u32; 8], tail: &[u32; 3]) -> Self {
            let scalar = ScalarJob::new(midstate, tail);
            let (pre_abef, pre_cdgh) = to_regs(&scalar.state4);
            let (mid_abef, mid_cdgh) = to_regs(midstate);
            let (iv_abef, iv_cdgh) = to_regs(&IV);
            // `sha256rnds2` only reads the low two words of its `K + W` operand.
            let halves = |k: usize, w: [u32; 4]| {
                let full = kw(k, w);
                (full, _mm_shuffle_epi32::<0x0E>(full))
            };
            let h1_g1 = v(PAD, 0, 0, 0);
            let h1_g2 = _mm_setzero_si128();
            let h1_g3 = v(0, 0, 0, HEADER_BITS);
            let h2_g2 = v(PAD, 0, 0, 0);
            let h2_g3 = v(0, 0, 0, DIGEST_BITS);
            Self {
                pre_abef,
                pre_cdgh,
                mid_abef,
                mid_cdgh,
                g0: v(tail[0], tail[1], tail[2], 0),
                h1_kw: [
                    halves(1, [PAD, 0, 0, 0]),
                    halves(2, [0; 4]),
                    halves(3, [0, 0, 0, HEADER_BITS]),
                ],
                h2_kw: [halves(2, [PAD, 0, 0, 0]), halves(3, [0, 0, 0, DIGEST_BITS])],
                h1_g1,
                h1_g3,
                h1_m12: _mm_sha256msg1_epu32(h1_g1, h1_g2),
                h1_m23: _mm_sha256msg1_epu32(h1_g2, h1_g3),
                h1_m34: _mm_sha256msg1_epu32(h1_g3, v(scalar.schedule[16], 0, 0, 0)),
                h2_g2,
                h2_g3,
                h2_m23: _mm_sha256msg1_epu32(h2_g2, h2_g3),
                iv_abef,
                iv_cdgh,
            }
        }
    }

    /// Four rounds on every lane with per-lane `K + W` in `wk` (all four words).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn quad(abef: &mut [__m128i; LANES], cdgh: &mut [__m128i; LANES], wk: &[__m128i; LANES]) {
        for l in 0..LANES {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk[l]);
        }
        for l in 0..LANES {
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32::<0x0E>(wk[l]));
        }
    }

    /// Four rounds on every lane with a `K + W` shared by all lanes, already split in halves.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn quad_const(
        abef: &mut [__m128i; LANES],
        cdgh: &mut [__m128i; LANES],
        (lo, hi): (__m128i, __m128i),
    ) {
        for l in 0..LANES {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], lo);
        }
        for l in 0..LANES {
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], hi);
        }
    }

    /// `g + K[4k..4k + 4]` for every lane.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn add_k(k: usize, g: &[__m128i; LANES]) -> [__m128i; LANES] {
        let kv = kw(k, [0; 4]);
        let mut out = *g;
        for l in 0..LANES {
            out[l] = _mm_add_epi32(g[l], kv);
        }
        out
    }

    /// Message group `k` from groups `k - 4` (already through `sha256msg1` with group `k - 3`:
    /// `m`), `k - 2` (`c`) and `k - 1` (`d`).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn sched_m(
        m: &[__m128i; LANES],
        c: &[__m128i; LANES],
        d: &[__m128i; LANES],
    ) -> [__m128i; LANES] {
        let mut out = *m;
        for l in 0..LANES {
            let x = _mm_add_epi32(m[l], _mm_alignr_epi8::<4>(d[l], c[l]));
            out[l] = _mm_sha256msg2_epu32(x, d[l]);
        }
        out
    }

    /// Whether `sha256msg1` is replaced by plain SSE arithmetic. On Intel cores it competes with
    /// `sha256rnds2` for the SHA unit (measured: two `sha256msg1` per round pair nearly double
    /// its cost), while shifts and XORs go to otherwise idle ports.
    const MSG1_SSE: bool = true;

    /// `sha256msg1(a, b)`: `a + sigma0([a1, a2, a3, b0])`.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn m1(a: __m128i, b: __m128i) -> __m128i {
        if MSG1_SSE {
            let x = _mm_alignr_epi8::<4>(b, a);
            let r = _mm_xor_si128(
                _mm_xor_si128(_mm_srli_epi32::<7>(x), _mm_slli_epi32::<25>(x)),
                _mm_xor_si128(_mm_srli_epi32::<18>(x), _mm_slli_epi32::<14>(x)),
            );
            _mm_add_epi32(a, _mm_xor_si128(r, _mm_srli_epi32::<3>(x)))
        } else {
            _mm_sha256msg1_epu32(a, b)
        }
    }

    /// `sha256msg1` of groups `a` and `b`, lane by lane.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn msg1(a: &[__m128i; LANES], b: &[__m128i; LANES]) -> [__m128i; LANES] {
        let mut out = *a;
        for l in 0..LANES {
            out[l] = m1(a[l], b[l]);
        }
        out
    }

    /// Message group `k` from groups `k - 4` .. `k - 1`.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn sched(
        a: &[__m128i; LANES],
        b: &[__m128i; LANES],
        c: &[__m128i; LANES],
        d: &[__m128i; LANES],
    ) -> [__m128i; LANES] {
        sched_m(&msg1(a, b), c, d)
    }

    /// The final state word `H7` of the double SHA-256 of each lane's nonce.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn h7(job: &Job, nonces: [u32; LANES]) -> [u32; LANES] {
        let splat = |x: __m128i| [x; LANES];

        // First hash, header block 2. Rounds 0..4 are precomputed with W3 = 0; W3 only enters
        // round 3's T1, which goes into both A and E.
        let mut abef = splat(job.pre_abef);
        let mut cdgh = splat(job.pre_cdgh);
        let mut g0 = splat(job.g0);
        for l in 0..LANES {
            let w3 = nonces[l].swap_bytes();
            abef[l] = _mm_add_epi32(abef[l], v(0, w3, 0, w3));
            g0[l] = _mm_add_epi32(g0[l], v(0, 0, 0, w3));
        }
        // Groups 1..4 are constant.
        quad_const(&mut abef, &mut cdgh, job.h1_kw[0]);
        quad_const(&mut abef, &mut cdgh, job.h1_kw[1]);
        quad_const(&mut abef, &mut cdgh, job.h1_kw[2]);
        // Group 4: msg1(g0, g1) + (W9..W13 = 0), then msg2 with g3.
        let g3 = splat(job.h1_g3);
        let g4 = {
            let mut out = g0;
            for l in 0..LANES {
                out[l] = _mm_sha256msg2_epu32(m1(g0[l], job.h1_g1), job.h1_g3);
            }
            out
        };
        quad(&mut abef, &mut cdgh, &add_k(4, &g4));
        let g5 = sched_m(&splat(job.h1_m12), &g3, &g4);
        quad(&mut abef, &mut cdgh, &add_k(5, &g5));
        let g6 = sched_m(&splat(job.h1_m23), &g4, &g5);
        quad(&mut abef, &mut cdgh, &add_k(6, &g6));
        // msg1(g3, g4) only reads W12..W16, none of which depends on the nonce.
        let g7 = sched_m(&splat(job.h1_m34), &g5, &g6);
        quad(&mut abef, &mut cdgh, &add_k(7, &g7));
        let g8 = sched(&g4, &g5, &g6, &g7);
        quad(&mut abef, &mut cdgh, &add_k(8, &g8));
        let g9 = sched(&g5, &g6, &g7, &g8);
        quad(&mut abef, &mut cdgh, &add_k(9, &g9));
        let g10 = sched(&g6, &g7, &g8, &g9);
        quad(&mut abef, &mut cdgh, &add_k(10, &g10));
        let g11 = sched(&g7, &g8, &g9, &g10);
        quad(&mut abef, &mut cdgh, &add_k(11, &g11));
        let g12 = sched(&g8, &g9, &g10, &g11);
        quad(&mut abef, &mut cdgh, &add_k(12, &g12));
        let g13 = sched(&g9, &g10, &g11, &g12);
        quad(&mut abef, &mut cdgh, &add_k(13, &g13));
        let g14 = sched(&g10, &g11, &g12, &g13);
        quad(&mut abef, &mut cdgh, &add_k(14, &g14));
        let g15 = sched(&g11, &g12, &g13, &g14);
        quad(&mut abef, &mut cdgh, &add_k(15, &g15));

        // Add the midstate and reorder ABEF/CDGH into the message groups [A B C D], [E F G H].
        let mut w0 = abef;
        let mut w1 = cdgh;
        for l in 0..LANES {
            let abef_l = _mm_add_epi32(abef[l], job.mid_abef);
            let cdgh_l = _mm_add_epi32(cdgh[l], job.mid_cdgh);
            let feba = _mm_shuffle_epi32::<0x1B>(abef_l); // [A B E F]
            let dchg = _mm_shuffle_epi32::<0xB1>(cdgh_l); // [G H C D]
            w0[l] = _mm_blend_epi16::<0xF0>(feba, dchg); // [A B C D]
            w1[l] = _mm_alignr_epi8::<8>(dchg, feba); // [E F G H]
        }

        // Second hash, from the IV.
        let mut abef = splat(job.iv_abef);
        let mut cdgh = splat(job.iv_cdgh);
        quad(&mut abef, &mut cdgh, &add_k(0, &w0));
        quad(&mut abef, &mut cdgh, &add_k(1, &w1));
        quad_const(&mut abef, &mut cdgh, job.h2_kw[0]);
        quad_const(&mut abef, &mut cdgh, job.h2_kw[1]);
        let g2 = splat(job.h2_g2);
        let g3 = splat(job.h2_g3);
        // Group 4: W9..W12 are zero, so no alignr term.
        let g4 = {
            let mut out = w0;
            for l in 0..LANES {
                out[l] = _mm_sha256msg2_epu32(m1(w0[l], w1[l]), job.h2_g3);
            }
            out
        };
        quad(&mut abef, &mut cdgh, &add_k(4, &g4));
        let g5 = sched(&w1, &g2, &g3, &g4);
        quad(&mut abef, &mut cdgh, &add_k(5, &g5));
        let g6 = sched_m(&splat(job.h2_m23), &g4, &g5);
        quad(&mut abef, &mut cdgh, &add_k(6, &g6));
        let g7 = sched(&g3, &g4, &g5, &g6);
        quad(&mut abef, &mut cdgh, &add_k(7, &g7));
        let g8 = sched(&g4, &g5, &g6, &g7);
        quad(&mut abef, &mut cdgh, &add_k(8, &g8));
        let g9 = sched(&g5, &g6, &g7, &g8);
        quad(&mut abef, &mut cdgh, &add_k(9, &g9));
        let g10 = sched(&g6, &g7, &g8, &g9);
        quad(&mut abef, &mut cdgh, &add_k(10, &g10));
        let g11 = sched(&g7, &g8, &g9, &g10);
        quad(&mut abef, &mut cdgh, &add_k(11, &g11));
        let g12 = sched(&g8, &g9, &g10, &g11);
        quad(&mut abef, &mut cdgh, &add_k(12, &g12));
        let g13 = sched(&g9, &g10, &g11, &g12);
        quad(&mut abef, &mut cdgh, &add_k(13, &g13));
        let g14 = sched(&g10, &g11, &g12, &g13);
        quad(&mut abef, &mut cdgh, &add_k(14, &g14));
        let g15 = sched(&g11, &g12, &g13, &g14);
        // Only rounds 60 and 61: the new ABEF's F is e61 = h64.
        let wk = add_k(15, &g15);
        let mut out = [0u32; LANES];
        for l in 0..LANES {
            let abef_62 = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk[l]);
            out[l] = IV[7].wrapping_add(_mm_cvtsi128_si32(abef_62).cast_unsigned());
        }
        out
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn scan(
        midstate: &[u32; 8],
        tail: &[u32; 3],
        start: u32,
        count: u64,
        target: &[u32; 8],
    ) -> Vec<u32> {
        let job = Job::new(midstate, tail);
        let mut found = Vec::new();
        let mut remaining = clamp_count(start, count);
        let mut base = start;
        let mut nonces = [0u32; LANES];
        while remaining > 0 {
            let mut nonce = base;
            for n in &mut nonces {
                *n = nonce;
                nonce = nonce.wrapping_add(1);
            }
            let h = h7(&job, nonces);
            // Lanes past the end of the range (last batch only) are ignored.
            let live = usize::try_from(remaining).map_or(LANES, |r| r.min(LANES));
            for (&n, &h) in nonces.iter().zip(&h).take(live) {
                if top_word_passes(h, target[7]) {
                    verify_push(midstate, tail, n, target, &mut found);
                }
            }
            remaining -= live as u64;
            base = nonce;
        }
        found
    }
}

// The AVX-512 intrinsics are stable since Rust 1.89 (the rest of this file needs 1.87).
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
mod avx512 {
    //! The AVX-512 implementation: 16 nonces, one per 32-bit lane of a 512-bit vector, through
    //! the plain SHA-256 rounds (rotates and three-input logic ops). On CPUs with full-width
    //! AVX-512 this outruns the SHA extensions, whose round instruction is slow to issue.

    use core::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_cmple_epu32_mask, _mm512_ror_epi32, _mm512_set1_epi32,
        _mm512_set_epi32, _mm512_shuffle_epi8, _mm512_srli_epi32, _mm512_ternarylogic_epi32,
    };

    use super::{
        big_sigma0, big_sigma1, clamp_count, small_sigma0, small_sigma1, verify_push, ScalarJob,
        DIGEST_BITS, HEADER_BITS, IV, K, PAD,
    };

    type V = __m512i;

    /// Nonces per batch.
    const LANES: u32 = 16;

    pub(super) const NAME: &str = "avx-512 x16";

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    pub(super) fn scan_range(
        midstate: &[u32; 8],
        tail: &[u32; 3],
        start: u32,
        count: u64,
        target: &[u32; 8],
    ) -> Vec<u32> {
        assert!(available(), "AVX-512 scan called on a CPU without AVX-512");
        // SAFETY: the CPU supports every feature `scan` is compiled for (checked just above).
        unsafe { scan(midstate, tail, start, count, target) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(x: u32) -> V {
        _mm512_set1_epi32(x.cast_signed())
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: V, b: V) -> V {
        _mm512_add_epi32(a, b)
    }

    /// `a ^ b ^ c`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn xor3(a: V, b: V, c: V) -> V {
        _mm512_ternarylogic_epi32::<0x96>(a, b, c)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn bs0(x: V) -> V {
        xor3(
            _mm512_ror_epi32::<2>(x),
            _mm512_ror_epi32::<13>(x),
            _mm512_ror_epi32::<22>(x),
        )
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn bs1(x: V) -> V {
        xor3(
            _mm512_ror_epi32::<6>(x),
            _mm512_ror_epi32::<11>(x),
            _mm512_ror_epi32::<25>(x),
        )
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn ss0(x: V) -> V {
        xor3(
            _mm512_ror_epi32::<7>(x),
            _mm512_ror_epi32::<18>(x),
            _mm512_srli_epi32::<3>(x),
        )
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn ss1(x: V) -> V {
        xor3(
            _mm512_ror_epi32::<17>(x),
            _mm512_ror_epi32::<19>(x),
            _mm512_srli_epi32::<10>(x),
        )
    }

    /// `W[t] = ss1(W[t-2]) + W[t-7] + ss0(W[t-15]) + W[t-16]` in a 16-word window.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn expand(w: &mut [V; 16], t: usize) {
        w[t % 16] = add(
            add(ss1(w[(t - 2) % 16]), w[(t - 7) % 16]),
            add(ss0(w[(t - 15) % 16]), w[t % 16]),
        );
    }

    /// `T1` of a round without its `K + W` term, plus `kw`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn t1(s: &[V; 8], kw: V) -> V {
        let ch = _mm512_ternarylogic_epi32::<0xCA>(s[4], s[5], s[6]);
        add(add(s[7], bs1(s[4])), add(ch, kw))
    }

    /// One full round with `kw = K[t] + W[t]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round(s: &mut [V; 8], kw: V) {
        let t1 = t1(s, kw);
        let maj = _mm512_ternarylogic_epi32::<0xE8>(s[0], s[1], s[2]);
        let t2 = add(bs0(s[0]), maj);
        *s = [
            add(t1, t2),
            s[0],
            s[1],
            s[2],
            add(s[3], t1),
            s[4],
            s[5],
            s[6],
        ];
    }

    /// A round whose new `a` is never used: only the new `e` is computed (`a` gets `T1`, junk).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round_e_only(s: &mut [V; 8], kw: V) {
        let t1 = t1(s, kw);
        *s = [t1, s[0], s[1], s[2], add(s[3], t1), s[4], s[5], s[6]];
    }

    /// Per-call constants.
    struct Job {
        /// State after rounds 0..4 of the header's second block with `W3 = 0`.
        state4: [u32; 8],
        midstate: [u32; 8],
        /// Nonce-independent parts of `W16..W33` of the header's second block, see `h7`.
        w16: u32,
        w17: u32,
        c18: u32,
        c19: u32,
        c30: u32,
        c31: u32,
        c32: u32,
        /// State after round 0 of the second hash minus `W0` in `a` and `e`.
        h2_a1: u32,
        h2_e1: u32,
    }

    impl Job {
        fn new(midstate: &[u32; 8], tail: &[u32; 3]) -> Self {
            let scalar = ScalarJob::new(midstate, tail);
            let w = &scalar.schedule;
            let (w16, w17) = (w[16], w[17]);
            let t1 = IV[7]
                .wrapping_add(big_sigma1(IV[4]))
                .wrapping_add((IV[4] & IV[5]) ^ (!IV[4] & IV[6]))
                .wrapping_add(K[0]);
            let t2 =
                big_sigma0(IV[0]).wrapping_add((IV[0] & IV[1]) ^ (IV[0] & IV[2]) ^ (IV[1] & IV[2]));
            Self {
                state4: scalar.state4,
                midstate: *midstate,
                w16,
                w17,
                c18: small_sigma1(w16).wrapping_add(w[2]),
                c19: small_sigma1(w17).wrapping_add(small_sigma0(PAD)),
                c30: small_sigma0(HEADER_BITS),
                c31: small_sigma0(w16).wrapping_add(HEADER_BITS),
                c32: small_sigma0(w17).wrapping_add(w16),
                h2_a1: t1.wrapping_add(t2),
                h2_e1: IV[3].wrapping_add(t1),
            }
        }
    }

    /// `H7` of the double SHA-256 of the 16 nonces whose big-endian message words are `w3`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_lines)] // one straight-line double hash
    fn h7(job: &Job, w3: V) -> V {
        let k = |t: usize| splat(K[t]);

        // First hash, header block 2. Rounds 0..4 were run with W3 = 0; W3 only enters round
        // 3's T1, which goes into both a and e.
        let mut s = job.state4.map(|x| splat(x));
        s[0] = add(s[0], w3);
        s[4] = add(s[4], w3);
        // W4 = PAD, W5..W14 = 0, W15 = bit length.
        round(&mut s, splat(K[4].wrapping_add(PAD)));
        for t in 5..15 {
            round(&mut s, k(t));
        }
        round(&mut s, splat(K[15].wrapping_add(HEADER_BITS)));
        // W16..W32, skipping the terms that are zero or do not depend on the nonce.
        let w16 = splat(job.w16);
        let w17 = splat(job.w17);
        let w18 = add(splat(job.c18), ss0(w3));
        let w19 = add(splat(job.c19), w3);
        let w20 = add(ss1(w18), splat(PAD));
        let w21 = ss1(w19);
        let w22 = add(ss1(w20), splat(HEADER_BITS));
        let w23 = add(ss1(w21), w16);
        let w24 = add(ss1(w22), w17);
        let w25 = add(ss1(w23), w18);
        let w26 = add(ss1(w24), w19);
        let w27 = add(ss1(w25), w20);
        let w28 = add(ss1(w26), w21);
        let w29 = add(ss1(w27), w22);
        let w30 = add(add(ss1(w28), w23), splat(job.c30));
        let w31 = add(add(ss1(w29), w24), splat(job.c31));
        // The window holds W[t] at index t % 16: W32, W33, then W18..W31.
        let mut w = [
            add(add(ss1(w30), w25), splat(job.c32)),
            add(add(ss1(w31), w26), add(ss0(w18), w17)),
            w18,
            w19,
            w20,
            w21,
            w22,
            w23,
            w24,
            w25,
            w26,
            w27,
            w28,
            w29,
            w30,
            w31,
        ];
        round(&mut s, add(w16, k(16)));
        round(&mut s, add(w17, k(17)));
        for t in 18..34 {
            round(&mut s, add(w[t % 16], k(t)));
        }
        for t in 34..64 {
            expand(&mut w, t);
            round(&mut s, add(w[t % 16], k(t)));
        }

        // Second hash: W0..W7 is the first hash, W8 = PAD, W9..W14 = 0, W15 = bit length.
        let mut m = [splat(0); 8];
        for ((m, &s), &mid) in m.iter_mut().zip(&s).zip(&job.midstate) {
            *m = add(s, splat(mid));
        }
        // Round 0 from the IV is constant but for W0.
        let mut s = [
            add(splat(job.h2_a1), m[0]),
            splat(IV[0]),
            splat(IV[1]),
            splat(IV[2]),
            add(splat(job.h2_e1), m[0]),
            splat(IV[4]),
            splat(IV[5]),
            splat(IV[6]),
        ];
        for (t, &w) in m.iter().enumerate().skip(1) {
            round(&mut s, add(w, k(t)));
        }
        round(&mut s, splat(K[8].wrapping_add(PAD)));
        for t in 9..15 {
            round(&mut s, k(t));
        }
        round(&mut s, splat(K[15].wrapping_add(DIGEST_BITS)));
        let w16 = add(ss0(m[1]), m[0]);
        let w17 = add(add(ss0(m[2]), m[1]), splat(small_sigma1(DIGEST_BITS)));
        let w18 = add(add(ss1(w16), ss0(m[3])), m[2]);
        let w19 = add(add(ss1(w17), ss0(m[4])), m[3]);
        let w20 = add(add(ss1(w18), ss0(m[5])), m[4]);
        let w21 = add(add(ss1(w19), ss0(m[6])), m[5]);
        let w22 = add(add(ss1(w20), ss0(m[7])), add(m[6], splat(DIGEST_BITS)));
        let w23 = add(add(ss1(w21), w16), add(m[7], splat(small_sigma0(PAD))));
        let w24 = add(add(ss1(w22), w17), splat(PAD));
        let w25 = add(ss1(w23), w18);
        let w26 = add(ss1(w24), w19);
        let w27 = add(ss1(w25), w20);
        let w28 = add(ss1(w26), w21);
        let w29 = add(ss1(w27), w22);
        let w30 = add(add(ss1(w28), w23), splat(small_sigma0(DIGEST_BITS)));
        let w31 = add(add(ss1(w29), w24), add(ss0(w16), splat(DIGEST_BITS)));
        let mut w = [
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
        ];
        for t in 16..32 {
            round(&mut s, add(w[t % 16], k(t)));
        }
        for t in 32..57 {
            expand(&mut w, t);
            round(&mut s, add(w[t % 16], k(t)));
        }
        // Rounds 57..61 only as far as e: e61 = h64.
        for t in 57..61 {
            expand(&mut w, t);
            round_e_only(&mut s, add(w[t % 16], k(t)));
        }
        add(s[4], splat(IV[7]))
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    fn scan(
        midstate: &[u32; 8],
        tail: &[u32; 3],
        start: u32,
        count: u64,
        target: &[u32; 8],
    ) -> Vec<u32> {
        let job = Job::new(midstate, tail);
        // Byte swap within each 32-bit lane.
        let bswap = _mm512_set_epi32(
            0x0c0d_0e0f,
            0x0809_0a0b,
            0x0405_0607,
            0x0001_0203,
            0x0c0d_0e0f,
            0x0809_0a0b,
            0x0405_0607,
            0x0001_0203,
            0x0c0d_0e0f,
            0x0809_0a0b,
            0x0405_0607,
            0x0001_0203,
            0x0c0d_0e0f,
            0x0809_0a0b,
            0x0405_0607,
            0x0001_0203,
        );
        let iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let top = splat(target[7]);
        let mut found = Vec::new();
        let mut remaining = clamp_count(start, count);
        let mut base = start;
        while remaining > 0 {
            let nonces = add(splat(base), iota);
            let h7 = h7(&job, _mm512_shuffle_epi8(nonces, bswap));
            let mut hits = _mm512_cmple_epu32_mask(_mm512_shuffle_epi8(h7, bswap), top);
            if remaining < u64::from(LANES) {
                // Last batch: lanes past the end of the range are ignored.
                hits &= (1u16 << remaining) - 1;
            }
            while hits != 0 {
                let lane = hits.trailing_zeros();
                hits &= hits - 1;
                verify_push(midstate, tail, base.wrapping_add(lane), target, &mut found);
            }
            remaining = remaining.saturating_sub(u64::from(LANES));
            base = base.wrapping_add(LANES);
        }
        found
    }
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
        assert!(scan_range(&midstate, &tail, 7, 0, &all).is_empty());
        assert!(scan_range_portable(&midstate, &tail, 7, 0, &all).is_empty());
        assert!(scan_range(&midstate, &tail, u32::MAX, 0, &all).is_empty());
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
        assert!(scan_range(&midstate, &tail, 0, 5000, &[0; 8]).is_empty());
        assert!(scan_range_portable(&midstate, &tail, 0, 5000, &[0; 8]).is_empty());
    }
}
