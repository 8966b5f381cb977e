//! One device's measured speed at each kind of work.

use crate::hash::WorkKind;

/// Rates in base units per second: nonces for [`WorkKind::NonceSearch`], bytes for the bulk
/// kinds. `None`: not measured, or the measurement failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    #[serde(default)]
    pub nonce_search: Option<f64>,
    #[serde(default)]
    pub bulk_sha1: Option<f64>,
    #[serde(default)]
    pub bulk_sha256: Option<f64>,
}

impl Rates {
    /// The rate for `work`, if it was measured and is a usable number.
    #[must_use]
    pub fn get(&self, work: WorkKind) -> Option<f64> {
        let rate = match work {
            WorkKind::NonceSearch => self.nonce_search,
            WorkKind::BulkSha1 => self.bulk_sha1,
            WorkKind::BulkSha256 => self.bulk_sha256,
        };
        // A hand-edited or half-written cache must not make NaN or a negative rate win.
        rate.filter(|r| r.is_finite() && *r > 0.0)
    }

    pub fn set(&mut self, work: WorkKind, rate: Option<f64>) {
        let slot = match work {
            WorkKind::NonceSearch => &mut self.nonce_search,
            WorkKind::BulkSha1 => &mut self.bulk_sha1,
            WorkKind::BulkSha256 => &mut self.bulk_sha256,
        };
        *slot = rate;
    }

    /// Whether nothing at all was measured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        WorkKind::ALL.iter().all(|&w| self.get(w).is_none())
    }
}
