//! The kinds of work `--backend auto` chooses a device for, each measured on its own.

use std::fmt;

use super::Algo;

/// What a command is about to hash: a device fast at one is not always fast at another (an
/// integrated GPU may out-mine the CPU yet hash torrent pieces slower).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// sha256d over block-header nonces (`scan`, `mine`), rated in hashes per second.
    NonceSearch,
    /// SHA-1 of many messages (v1 torrent pieces), rated in bytes per second.
    BulkSha1,
    /// SHA-256 of many messages (v2 torrent blocks), rated in bytes per second.
    BulkSha256,
}

impl WorkKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [WorkKind; 3] = [
        WorkKind::NonceSearch,
        WorkKind::BulkSha1,
        WorkKind::BulkSha256,
    ];

    /// The bulk kind that digests messages with `algo` (sha256d is two SHA-256 passes).
    #[must_use]
    pub fn bulk(algo: Algo) -> Self {
        match algo {
            Algo::Sha1 => WorkKind::BulkSha1,
            Algo::Sha256 | Algo::Sha256d => WorkKind::BulkSha256,
        }
    }

    /// The unit reports show rates of this kind in, and its size in base units per second.
    #[must_use]
    pub fn unit(self) -> (&'static str, f64) {
        match self {
            WorkKind::NonceSearch => ("MH/s", 1e6),
            WorkKind::BulkSha1 | WorkKind::BulkSha256 => ("MB/s", 1e6),
        }
    }
}

impl fmt::Display for WorkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkKind::NonceSearch => "nonce search",
            WorkKind::BulkSha1 => "SHA-1",
            WorkKind::BulkSha256 => "SHA-256",
        })
    }
}
