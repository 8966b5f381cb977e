//! A unit of mining work: how to build headers for it, the target it must meet, and the
//! solutions found for it.

use std::sync::Arc;

use bitcoin::hashes::{sha256d, Hash as _};
use bitcoin::Target;

use super::header::BlockHeader;

/// Where the nonce space of a job comes from once the 32-bit nonce is used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobWork {
    /// A finished header (getwork): one nonce space only, the node hands out the next one.
    Header([u8; 80]),
    /// A coinbase split around an extranonce (Stratum, getblocktemplate): every extranonce2
    /// value is a fresh merkle root and so a fresh nonce space.
    Coinbase(CoinbaseWork),
    /// A header whose merkle root the pool fixed (a Stratum V2 standard channel): the version
    /// bits the pool allows are the only thing rolled besides the nonce.
    Standard(StandardWork),
}

/// Header-only work: everything but the nonce and the rollable version bits is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardWork {
    pub version: i32,
    /// Previous block hash in internal (wire) byte order.
    pub prev_hash: [u8; 32],
    /// Merkle root in internal (wire) byte order.
    pub merkle_root: [u8; 32],
    pub time: u32,
    pub bits: u32,
    /// Version bits the miner may roll, 0 when none.
    pub version_mask: u32,
}

impl StandardWork {
    /// One header per combination of the rollable version bits.
    #[must_use]
    pub fn roll_space(&self) -> u64 {
        1 << self.version_mask.count_ones()
    }

    /// The header version for roll `roll`.
    #[must_use]
    pub fn version(&self, roll: u64) -> i32 {
        let base = u32::from_ne_bytes(self.version.to_ne_bytes());
        let bits = deposit_bits(roll, self.version_mask);
        i32::from_ne_bytes(((base & !self.version_mask) | bits).to_ne_bytes())
    }

    /// The 80-byte header for roll `roll` with nonce 0.
    #[must_use]
    pub fn header(&self, roll: u64) -> [u8; 80] {
        let mut header = [0u8; 80];
        header[..4].copy_from_slice(&self.version(roll).to_le_bytes());
        header[4..36].copy_from_slice(&self.prev_hash);
        header[36..68].copy_from_slice(&self.merkle_root);
        header[68..72].copy_from_slice(&self.time.to_le_bytes());
        header[72..76].copy_from_slice(&self.bits.to_le_bytes());
        header
    }
}

/// The header fields and coinbase halves that a Stratum `mining.notify` (or a template) gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoinbaseWork {
    pub version: i32,
    /// Previous block hash in internal (wire) byte order.
    pub prev_hash: [u8; 32],
    pub time: u32,
    pub bits: u32,
    /// Coinbase bytes before the extranonce.
    pub coinb1: Vec<u8>,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    /// Coinbase bytes after the extranonce.
    pub coinb2: Vec<u8>,
    /// Merkle branch of the coinbase, from the leaves up, in internal byte order.
    pub branch: Vec<[u8; 32]>,
    /// Version bits the pool lets the miner roll (BIP 310), 0 when not negotiated.
    pub version_mask: u32,
}

/// Spreads the low bits of `counter` over the set bits of `mask` (lowest first).
fn deposit_bits(mut counter: u64, mask: u32) -> u32 {
    let mut out = 0;
    for bit in 0..32 {
        if mask & (1 << bit) != 0 {
            if counter & 1 != 0 {
                out |= 1 << bit;
            }
            counter >>= 1;
        }
    }
    out
}

impl CoinbaseWork {
    /// How many distinct headers the job gives: extranonce2 values times rolled versions
    /// (capped at 2^64 - 1).
    #[must_use]
    pub fn roll_space(&self) -> u64 {
        let extranonces: u64 = match self.extranonce2_size {
            0 => 1,
            n if n >= 8 => u64::MAX,
            n => 1 << (8 * n),
        };
        extranonces.saturating_mul(1 << self.version_mask.count_ones())
    }

    /// Roll `roll` split into (extranonce2 counter, version bits): the version rolls first,
    /// since a new version does not need a new merkle root.
    fn split_roll(&self, roll: u64) -> (u64, u32) {
        let bits = self.version_mask.count_ones();
        let version_counter = roll & ((1u64 << bits) - 1);
        (
            roll >> bits,
            deposit_bits(version_counter, self.version_mask),
        )
    }

    /// The header version for roll `roll`.
    #[must_use]
    pub fn version(&self, roll: u64) -> i32 {
        let (_, bits) = self.split_roll(roll);
        let base = u32::from_ne_bytes(self.version.to_ne_bytes());
        i32::from_ne_bytes(((base & !self.version_mask) | bits).to_ne_bytes())
    }

    /// The extranonce2 bytes for roll number `roll` (little-endian counter, cut to size).
    #[must_use]
    pub fn extranonce2(&self, roll: u64) -> Vec<u8> {
        let (counter, _) = self.split_roll(roll);
        let mut bytes = counter.to_le_bytes().to_vec();
        bytes.resize(self.extranonce2_size, 0);
        bytes
    }

    /// The serialized coinbase (non-witness) for roll `roll`.
    #[must_use]
    pub fn coinbase(&self, roll: u64) -> Vec<u8> {
        let mut tx = Vec::with_capacity(
            self.coinb1.len() + self.extranonce1.len() + self.extranonce2_size + self.coinb2.len(),
        );
        tx.extend_from_slice(&self.coinb1);
        tx.extend_from_slice(&self.extranonce1);
        tx.extend_from_slice(&self.extranonce2(roll));
        tx.extend_from_slice(&self.coinb2);
        tx
    }

    /// The merkle root for roll `roll`, in internal byte order.
    #[must_use]
    pub fn merkle_root(&self, roll: u64) -> [u8; 32] {
        let mut root = sha256d::Hash::hash(&self.coinbase(roll)).to_byte_array();
        for sibling in &self.branch {
            let mut pair = [0u8; 64];
            pair[..32].copy_from_slice(&root);
            pair[32..].copy_from_slice(sibling);
            root = sha256d::Hash::hash(&pair).to_byte_array();
        }
        root
    }

    /// The 80-byte header for roll `roll` with nonce 0.
    #[must_use]
    pub fn header(&self, roll: u64) -> [u8; 80] {
        let mut header = [0u8; 80];
        header[..4].copy_from_slice(&self.version(roll).to_le_bytes());
        header[4..36].copy_from_slice(&self.prev_hash);
        header[36..68].copy_from_slice(&self.merkle_root(roll));
        header[68..72].copy_from_slice(&self.time.to_le_bytes());
        header[72..76].copy_from_slice(&self.bits.to_le_bytes());
        header
    }
}

/// The merkle branch of the first leaf (the coinbase) over the other leaves `txids`, which are
/// in internal byte order: what a Stratum pool sends, computed from a block template.
#[must_use]
pub fn coinbase_branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut branch = Vec::new();
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    while let Some(&first) = level.first() {
        branch.push(first);
        // The rest of the level pairs up on its own; an odd last node pairs with itself.
        level = level[1..]
            .chunks(2)
            .map(|pair| {
                let mut both = [0u8; 64];
                both[..32].copy_from_slice(&pair[0]);
                both[32..].copy_from_slice(pair.get(1).unwrap_or(&pair[0]));
                sha256d::Hash::hash(&both).to_byte_array()
            })
            .collect();
    }
    branch
}

/// One job from a work source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The source's own id (a Stratum job id, or a counter for getwork and templates).
    pub id: String,
    pub work: JobWork,
    /// What a solution must meet: the share target for a pool, the block target solo.
    pub target: Target,
    /// Solo work is finished by its first solution: the block it makes ends the job.
    pub solo: bool,
    /// Block height, when the source says.
    pub height: Option<u64>,
    /// Extra data a source needs to turn a solution into a submission.
    pub extra: JobExtra,
}

/// Per-source data carried with a job.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum JobExtra {
    #[default]
    None,
    /// getwork: the 48 bytes of SHA-256 padding after the header, sent back on submit.
    GetworkPadding(Vec<u8>),
    /// getblocktemplate: the other transactions of the block, serialized, and whether the
    /// coinbase needs its witness reserved value (segwit active).
    Template {
        transactions: Vec<Vec<u8>>,
        segwit: bool,
    },
}

impl Job {
    /// How many distinct headers (each a 2^32 nonce space) this job can produce.
    #[must_use]
    pub fn roll_space(&self) -> u64 {
        match &self.work {
            JobWork::Header(_) => 1,
            JobWork::Coinbase(work) => work.roll_space(),
            JobWork::Standard(work) => work.roll_space(),
        }
    }

    /// The header for roll `roll` (nonce 0), or `None` past the roll space.
    #[must_use]
    pub fn header(&self, roll: u64) -> Option<[u8; 80]> {
        if roll >= self.roll_space() {
            return None;
        }
        Some(match &self.work {
            JobWork::Header(header) => *header,
            JobWork::Coinbase(work) => work.header(roll),
            JobWork::Standard(work) => work.header(roll),
        })
    }
}

/// A nonce that met a job's target, re-checked on the CPU.
#[derive(Clone, Debug)]
pub struct Solution {
    pub job: Arc<Job>,
    pub roll: u64,
    pub header: BlockHeader,
    /// The index of the device that found it, for per-device counts.
    pub device: Option<usize>,
}

impl Solution {
    #[must_use]
    pub fn new(job: Arc<Job>, roll: u64, header: [u8; 80], nonce: u32) -> Self {
        let header = BlockHeader::from_bytes(header).with_nonce(nonce);
        Self {
            job,
            roll,
            header,
            device: None,
        }
    }

    /// The same solution, credited to device `index`.
    #[must_use]
    pub fn from_device(self, index: usize) -> Self {
        Self {
            device: Some(index),
            ..self
        }
    }

    #[must_use]
    pub fn nonce(&self) -> u32 {
        self.header.nonce()
    }

    /// Whether the header's hash meets the job target (a full 256-bit comparison).
    #[must_use]
    pub fn meets_target(&self) -> bool {
        self.job.target.is_met_by(self.header.block_hash())
    }

    /// The difficulty the job asked for (a pool's share difficulty, or the block's).
    #[must_use]
    pub fn share_difficulty(&self) -> f64 {
        self.job.target.difficulty_float()
    }

    /// The difficulty the header's hash reached (cgminer's "best share").
    #[must_use]
    pub fn hash_difficulty(&self) -> f64 {
        Target::from_le_bytes(self.header.block_hash().to_byte_array()).difficulty_float()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::merkle_tree;
    use bitcoin::Txid;

    fn leaf(i: u8) -> [u8; 32] {
        sha256d::Hash::hash(&[i]).to_byte_array()
    }

    #[test]
    fn branch_folds_to_the_bitcoin_crate_merkle_root() {
        for n in 0..12u8 {
            let coinbase = leaf(200);
            let others: Vec<[u8; 32]> = (0..n).map(leaf).collect();
            let mut all = vec![Txid::from_byte_array(coinbase)];
            all.extend(others.iter().map(|h| Txid::from_byte_array(*h)));
            let expected = merkle_tree::calculate_root(all.into_iter())
                .expect("non-empty")
                .to_byte_array();
            let mut root = coinbase;
            for sibling in coinbase_branch(&others) {
                let mut pair = [0u8; 64];
                pair[..32].copy_from_slice(&root);
                pair[32..].copy_from_slice(&sibling);
                root = sha256d::Hash::hash(&pair).to_byte_array();
            }
            assert_eq!(root, expected, "{n} other transactions");
        }
    }

    #[test]
    fn version_rolling_rolls_the_masked_bits_before_the_extranonce() {
        let work = CoinbaseWork {
            version: 0x2000_0000,
            prev_hash: [0; 32],
            time: 0,
            bits: 0x207f_ffff,
            coinb1: vec![],
            extranonce1: vec![],
            extranonce2_size: 2,
            coinb2: vec![],
            branch: vec![],
            version_mask: 0x1fff_e000,
        };
        assert_eq!(work.roll_space(), (1 << 16) << 16);
        assert_eq!(work.version(0), 0x2000_0000);
        assert_eq!(work.version(1), 0x2000_2000);
        assert_eq!(work.version(3), 0x2000_6000);
        assert_eq!(work.version((1 << 16) - 1), 0x3fff_e000);
        assert_eq!(work.extranonce2((1 << 16) - 1), vec![0, 0]);
        assert_eq!(work.version(1 << 16), 0x2000_0000);
        assert_eq!(work.extranonce2(1 << 16), vec![1, 0]);
        assert_eq!(
            work.header(1)[36..68],
            work.header(0)[36..68],
            "same merkle root"
        );
        assert_ne!(work.header(1 << 16)[36..68], work.header(0)[36..68]);
    }

    #[test]
    fn standard_work_rolls_only_the_masked_version_bits() {
        let work = StandardWork {
            version: 0x2000_0000,
            prev_hash: [1; 32],
            merkle_root: [2; 32],
            time: 7,
            bits: 0x207f_ffff,
            version_mask: 0x1fff_e000,
        };
        assert_eq!(work.roll_space(), 1 << 16);
        assert_eq!(work.version(0), 0x2000_0000);
        assert_eq!(work.version(1), 0x2000_2000);
        assert_eq!(work.version((1 << 16) - 1), 0x3fff_e000);
        let header = work.header(1);
        assert_eq!(&header[..4], &0x2000_2000u32.to_le_bytes());
        assert_eq!(&header[4..36], &[1; 32]);
        assert_eq!(&header[36..68], &[2; 32]);
        assert_eq!(&header[68..72], &7u32.to_le_bytes());
        let job = Job {
            id: "1".into(),
            work: JobWork::Standard(work),
            target: Target::MAX,
            solo: false,
            height: None,
            extra: JobExtra::None,
        };
        assert!(job.header(1 << 16).is_none());
    }

    #[test]
    fn extranonce2_is_a_little_endian_counter_cut_to_size() {
        let work = CoinbaseWork {
            version: 0x2000_0000,
            prev_hash: [0; 32],
            time: 0,
            bits: 0x207f_ffff,
            coinb1: vec![1, 2],
            extranonce1: vec![0xaa; 4],
            extranonce2_size: 4,
            coinb2: vec![3],
            branch: vec![],
            version_mask: 0,
        };
        assert_eq!(work.extranonce2(0x0102), vec![2, 1, 0, 0]);
        assert_eq!(work.roll_space(), 1 << 32);
        assert_eq!(
            work.coinbase(1),
            vec![1, 2, 0xaa, 0xaa, 0xaa, 0xaa, 1, 0, 0, 0, 3]
        );
        let header = work.header(1);
        assert_eq!(&header[72..76], &[0xff, 0xff, 0x7f, 0x20]);
        assert_eq!(
            &header[36..68],
            &sha256d::Hash::hash(&work.coinbase(1)).to_byte_array()
        );
    }
}
