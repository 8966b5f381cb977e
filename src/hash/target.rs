//! The one target type the search kernels compare against, built only from [`bitcoin::Target`]
//! so that byte order is decided here, once.

use bitcoin::Target;

use super::Sha256Digest;

/// A proof-of-work target as the kernels read it: eight little-endian 32-bit words, word 7 the
/// most significant. A hash meets it when, read as Bitcoin's little-endian 256-bit number, it is
/// `<=` the target (as [`Target::is_met_by`] decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelTarget([u32; 8]);

impl KernelTarget {
    /// The easiest target: every hash meets it.
    pub const MAX: Self = Self([u32::MAX; 8]);
    /// The hardest target: only an all-zero hash meets it (benchmarks use it to find nothing).
    pub const ZERO: Self = Self([0; 8]);

    /// The words a kernel uploads, `words()[7]` most significant.
    #[must_use]
    pub fn words(&self) -> [u32; 8] {
        self.0
    }

    /// The most significant word, the one a kernel's fast rejection tests.
    #[must_use]
    pub fn top_word(&self) -> u32 {
        self.0[7]
    }

    /// Whether a double-SHA-256 `hash` in wire byte order meets this target.
    #[must_use]
    pub fn is_met_by(&self, hash: &Sha256Digest) -> bool {
        let words = le_words(hash);
        words.iter().rev().le(self.0.iter().rev())
    }

    /// Whether the final state `h` of the second SHA-256 meets this target: the digest's
    /// little-endian word `i` is `h[i].swap_bytes()`.
    #[must_use]
    pub fn is_met_by_state(&self, h: &[u32; 8]) -> bool {
        h.iter()
            .map(|word| word.swap_bytes())
            .rev()
            .le(self.0.iter().copied().rev())
    }

    /// The target whose value is exactly `hash` (wire byte order): that hash meets it and any
    /// larger one does not. Self-tests use it to probe the comparison's edge.
    #[must_use]
    pub fn exactly(hash: &Sha256Digest) -> Self {
        Self::from(Target::from_le_bytes(*hash))
    }
}

impl From<Target> for KernelTarget {
    fn from(target: Target) -> Self {
        Self(le_words(&target.to_le_bytes()))
    }
}

impl From<KernelTarget> for Target {
    fn from(target: KernelTarget) -> Self {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(target.0) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Target::from_le_bytes(bytes)
    }
}

fn le_words(le_bytes: &[u8; 32]) -> [u32; 8] {
    let mut words = [0u32; 8];
    for (word, chunk) in words.iter_mut().zip(le_bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
    }
    words
}

#[cfg(test)]
mod tests {
    use bitcoin::hashes::Hash as _;
    use bitcoin::{BlockHash, CompactTarget};

    use super::*;

    #[test]
    fn agrees_with_bitcoin_at_the_edge() {
        let target = Target::from_compact(CompactTarget::from_consensus(0x1d00_ffff));
        let kernel = KernelTarget::from(target);
        let mut at = target.to_le_bytes();
        assert!(kernel.is_met_by(&at));
        assert!(target.is_met_by(BlockHash::from_byte_array(at)));
        at[0] = 1;
        at[26] = 0xff;
        assert!(!kernel.is_met_by(&at));
        assert!(!target.is_met_by(BlockHash::from_byte_array(at)));
        assert_eq!(Target::from(kernel), target);
    }

    #[test]
    fn state_and_digest_comparisons_agree() {
        let digest: Sha256Digest = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let state: [u32; 8] = std::array::from_fn(|i| {
            u32::from_be_bytes(digest[4 * i..4 * i + 4].try_into().unwrap())
        });
        for target in [
            KernelTarget::exactly(&digest),
            KernelTarget::MAX,
            KernelTarget::ZERO,
        ] {
            assert_eq!(target.is_met_by(&digest), target.is_met_by_state(&state));
        }
        assert!(KernelTarget::exactly(&digest).is_met_by(&digest));
        assert!(!KernelTarget::ZERO.is_met_by(&digest));
        assert_eq!(
            KernelTarget::exactly(&digest).top_word(),
            u32::from_le_bytes(digest[28..].try_into().unwrap())
        );
    }
}
