//! The portable nonce search: plain Rust, available everywhere, and the per-call
//! precomputation ([`ScalarJob`]) the SIMD paths start from too.

use crate::hash::KernelTarget;

use super::{
    clamp_count, expand, round, top_word_passes, verify_push, DIGEST_BITS, HEADER_BITS, IV, K, PAD,
};

/// The portable implementation of [`super::scan_range`], always available, same contract.
#[must_use]
pub fn scan_range_portable(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    start: u32,
    count: u64,
    target: &KernelTarget,
) -> Vec<u32> {
    let count = clamp_count(start, count);
    let job = ScalarJob::new(midstate, tail);
    let mut found = Vec::new();
    let mut nonce = start;
    for _ in 0..count {
        if top_word_passes(job.h7(nonce), target.top_word()) {
            verify_push(midstate, tail, nonce, target, &mut found);
        }
        nonce = nonce.wrapping_add(1);
    }
    found
}

/// Per-call precomputation of the portable path (the SIMD paths and the GPU scan kernel's
/// job constants start from it too).
pub(crate) struct ScalarJob {
    /// State after rounds 0..4 of the second header block, computed with `W3 = 0`.
    pub(crate) state4: [u32; 8],
    /// The midstate, added back after the compression.
    pub(crate) midstate: [u32; 8],
    /// The second header block's message schedule with `W3 = 0`; words that do not depend on
    /// the nonce are final, the others are recomputed per nonce.
    pub(crate) schedule: [u32; 64],
}

impl ScalarJob {
    pub(crate) fn new(midstate: &[u32; 8], tail: &[u32; 3]) -> Self {
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
    pub(super) fn h7(&self, nonce: u32) -> u32 {
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
