//! The AVX-512 implementation: 16 nonces, one per 32-bit lane of a 512-bit vector, through
//! the plain SHA-256 rounds (rotates and three-input logic ops). On CPUs with full-width
//! AVX-512 this outruns the SHA extensions, whose round instruction is slow to issue.

use core::arch::x86_64::{
    __m512i, _mm512_add_epi32, _mm512_cmple_epu32_mask, _mm512_ror_epi32, _mm512_set1_epi32,
    _mm512_set_epi32, _mm512_shuffle_epi8, _mm512_srli_epi32, _mm512_ternarylogic_epi32,
};

use crate::hash::KernelTarget;

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
    target: &KernelTarget,
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
    target: &KernelTarget,
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
    let top = splat(target.top_word());
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
