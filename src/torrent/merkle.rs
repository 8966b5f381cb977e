//! BitTorrent v2 (BEP 52) merkle trees: 16 KiB leaf blocks, the leaf layer padded to a power
//! of two with zero hashes, a piece layer at `piece_length / 16 KiB` leaves per piece, and a
//! root per file. Parents come in batches from a pair hasher so the GPU can do whole layers.

use sha2::{Digest, Sha256};

use crate::hash::{BulkHasher, HashError, Sha256Digest};

use super::layout::BLOCK_SIZE;

/// Parents of a layer: `out[i] = SHA-256(layer[2i] || layer[2i+1])`.
pub trait PairHasher {
    /// # Errors
    /// A device failure.
    fn pairs(&self, layer: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError>;
}

impl PairHasher for dyn BulkHasher + '_ {
    fn pairs(&self, layer: &[Sha256Digest]) -> Result<Vec<Sha256Digest>, HashError> {
        self.sha256_pairs(layer)
    }
}

/// The root of a subtree of `2^height` zero leaves.
#[must_use]
pub fn zero_subtree(height: u32) -> Sha256Digest {
    let mut hash = [0u8; 32];
    for _ in 0..height {
        hash = Sha256::new()
            .chain_update(hash)
            .chain_update(hash)
            .finalize()
            .into();
    }
    hash
}

/// Leaf blocks in one piece of `piece_length` bytes (a power of two of at least 16 KiB).
#[must_use]
pub fn blocks_per_piece(piece_length: u64) -> u64 {
    (piece_length / BLOCK_SIZE).max(1)
}

/// Reduces `groups` equal-sized groups of leaves (`leaves.len() = groups * 2^height`) to one root
/// per group, a whole layer at a time.
///
/// # Errors
/// A device failure.
pub fn reduce_groups(
    hasher: &(impl PairHasher + ?Sized),
    mut leaves: Vec<Sha256Digest>,
    height: u32,
) -> Result<Vec<Sha256Digest>, HashError> {
    for _ in 0..height {
        leaves = hasher.pairs(&leaves)?;
    }
    Ok(leaves)
}

/// The root over `nodes`, padded on the right with `pad` up to a power of two (at least one).
///
/// # Errors
/// A device failure.
pub fn padded_root(
    hasher: &(impl PairHasher + ?Sized),
    nodes: &[Sha256Digest],
    pad: Sha256Digest,
) -> Result<Sha256Digest, HashError> {
    let width = nodes.len().max(1).next_power_of_two();
    let mut layer = nodes.to_vec();
    layer.resize(width, pad);
    let height = width.trailing_zeros();
    Ok(reduce_groups(hasher, layer, height)?[0])
}

/// A file's root from its piece layer (files longer than one piece).
///
/// # Errors
/// A device failure.
pub fn root_from_piece_layer(
    hasher: &(impl PairHasher + ?Sized),
    layer: &[Sha256Digest],
    piece_length: u64,
) -> Result<Sha256Digest, HashError> {
    let piece_height = blocks_per_piece(piece_length).trailing_zeros();
    padded_root(hasher, layer, zero_subtree(piece_height))
}

/// Leaves a piece (or a whole small file) is hashed over: its block count rounded up to
/// `blocks_per_piece` for pieces of files longer than a piece, else to a power of two.
#[must_use]
pub fn leaf_width(blocks: u64, file_length: u64, piece_length: u64) -> u64 {
    if file_length > piece_length {
        blocks_per_piece(piece_length)
    } else {
        blocks.max(1).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu() -> &'static dyn BulkHasher {
        static CPU: std::sync::OnceLock<crate::hash::cpu::CpuBackend> = std::sync::OnceLock::new();
        CPU.get_or_init(crate::hash::cpu::CpuBackend::inline)
    }

    fn sha(data: &[u8]) -> Sha256Digest {
        Sha256::digest(data).into()
    }

    /// The textbook definition over the whole file, for comparison.
    fn naive_root(data: &[u8]) -> Sha256Digest {
        let mut leaves: Vec<Sha256Digest> = data.chunks(BLOCK_SIZE as usize).map(sha).collect();
        let width = leaves.len().max(1).next_power_of_two();
        leaves.resize(width, [0; 32]);
        while leaves.len() > 1 {
            leaves = leaves
                .chunks(2)
                .map(|p| sha(&[p[0], p[1]].concat()))
                .collect();
        }
        leaves[0]
    }

    #[test]
    fn piece_layer_root_equals_full_tree_root() {
        let piece_length = 4 * BLOCK_SIZE;
        let data: Vec<u8> = (0..(piece_length * 2 + BLOCK_SIZE + 7))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let layer: Vec<Sha256Digest> = data
            .chunks(piece_length as usize)
            .map(|piece| {
                let leaves: Vec<Sha256Digest> =
                    piece.chunks(BLOCK_SIZE as usize).map(sha).collect();
                padded_root(cpu(), &leaves, [0; 32]).unwrap()
            })
            .collect();
        // The last piece's leaves pad to a full piece, which padded_root over 2 leaves does not:
        // recompute it the way verify does.
        let last = &data[(piece_length * 2) as usize..];
        let mut leaves: Vec<Sha256Digest> = last.chunks(BLOCK_SIZE as usize).map(sha).collect();
        leaves.resize(4, [0; 32]);
        let mut layer = layer;
        layer[2] = reduce_groups(cpu(), leaves, 2).unwrap()[0];
        let root = root_from_piece_layer(cpu(), &layer, piece_length).unwrap();
        assert_eq!(root, naive_root(&data));
    }

    #[test]
    fn one_block_file_root_is_its_hash() {
        let data = b"hello";
        assert_eq!(
            padded_root(cpu(), &[sha(data)], [0; 32]).unwrap(),
            sha(data)
        );
        assert_eq!(leaf_width(3, 3 * BLOCK_SIZE, 8 * BLOCK_SIZE), 4);
        assert_eq!(leaf_width(3, 20 * BLOCK_SIZE, 8 * BLOCK_SIZE), 8);
    }
}
