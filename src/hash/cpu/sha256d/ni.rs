//! The SHA-NI implementation: `LANES` nonces in flight, rounds of all lanes interleaved.
//!
//! Register layout is the one `sha256rnds2` wants: `ABEF` holds `[F, E, B, A]` (lane 0 first)
//! and `CDGH` holds `[H, G, D, C]`; message groups hold `[W4k, W4k+1, W4k+2, W4k+3]`.

use core::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_cvtsi128_si32, _mm_set_epi32,
    _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
    _mm_shuffle_epi32, _mm_slli_epi32, _mm_srli_epi32, _mm_xor_si128,
};

use crate::hash::KernelTarget;

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
    target: &KernelTarget,
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
fn sched_m(m: &[__m128i; LANES], c: &[__m128i; LANES], d: &[__m128i; LANES]) -> [__m128i; LANES] {
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
    target: &KernelTarget,
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
            if top_word_passes(h, target.top_word()) {
                verify_push(midstate, tail, n, target, &mut found);
            }
        }
        remaining -= live as u64;
        base = nonce;
    }
    found
}
