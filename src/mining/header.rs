//! 80-byte block headers as serialized on the wire, and the block hash in display order.

use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;

/// A header the user typed in hex.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header is not hex: {0}")]
    NotHex(String),
    #[error("header must be 80 bytes (160 hex digits), got {bytes} bytes")]
    WrongLength { bytes: usize },
}

/// A block header with its wire bytes and decoded fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    bytes: [u8; 80],
    header: bitcoin::block::Header,
}

impl BlockHeader {
    /// Parses the header's wire bytes from hex (spaces and a `0x` prefix are tolerated).
    ///
    /// # Errors
    /// Non-hex text or a length other than 80 bytes.
    pub fn from_hex(text: &str) -> Result<Self, HeaderError> {
        let text: String = text.split_whitespace().collect();
        let text = text.strip_prefix("0x").unwrap_or(&text);
        let bytes = hex::decode(text).map_err(|e| HeaderError::NotHex(e.to_string()))?;
        let bytes: [u8; 80] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| HeaderError::WrongLength { bytes: b.len() })?;
        Ok(Self::from_bytes(bytes))
    }

    #[must_use]
    pub fn from_bytes(bytes: [u8; 80]) -> Self {
        let header = encode::deserialize(&bytes).expect("any 80 bytes decode as a header");
        Self { bytes, header }
    }

    #[must_use]
    pub fn bytes(&self) -> &[u8; 80] {
        &self.bytes
    }

    /// The decoded fields (version, previous hash, merkle root, time, bits, nonce).
    #[must_use]
    pub fn fields(&self) -> &bitcoin::block::Header {
        &self.header
    }

    #[must_use]
    pub fn nonce(&self) -> u32 {
        self.header.nonce
    }

    /// The header with another nonce.
    #[must_use]
    pub fn with_nonce(&self, nonce: u32) -> Self {
        let mut bytes = self.bytes;
        bytes[76..].copy_from_slice(&nonce.to_le_bytes());
        Self::from_bytes(bytes)
    }

    /// The block hash (double SHA-256), shown as Bitcoin shows it.
    #[must_use]
    pub fn block_hash(&self) -> bitcoin::BlockHash {
        self.header.block_hash()
    }
}

/// Displays a double-SHA-256 in wire order the way Bitcoin shows block hashes (reversed hex).
#[must_use]
pub fn display_hash(wire: &[u8; 32]) -> String {
    bitcoin::BlockHash::from_byte_array(*wire).to_string()
}
