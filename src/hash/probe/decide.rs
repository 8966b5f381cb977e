//! The pure part of `--backend auto`: given what each device measured, which one does the work.

use std::fmt;

use super::Rates;
use crate::hash::WorkKind;

/// A device `auto` may choose, as `--backend` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceId {
    /// Adapter `N` in the order `peerhash devices` lists.
    Gpu(usize),
    Cpu,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Gpu(i) => write!(f, "gpu:{i}"),
            DeviceId::Cpu => f.write_str("cpu"),
        }
    }
}

/// One device and what is known of its speed.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: DeviceId,
    /// Whether `auto` may pick it: the CPU and real GPUs, never a software adapter (lavapipe),
    /// however fast its probe was.
    pub eligible: bool,
    pub rates: Rates,
}

/// The device `auto` uses for `work`: the eligible candidate with the highest measured rate.
/// A candidate with no rate for `work` (never measured, or its probe failed) is passed over;
/// with none left, the CPU. On an exact tie a GPU beats the CPU (it leaves the cores free for
/// reading files and re-checking nonces) and the GPU listed first beats later ones.
#[must_use]
pub fn choose(work: WorkKind, candidates: &[Candidate]) -> DeviceId {
    let mut best: Option<(DeviceId, f64)> = None;
    for candidate in candidates.iter().filter(|c| c.eligible) {
        let Some(rate) = candidate.rates.get(work) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((id, best_rate)) => {
                rate > best_rate
                    || (rate == best_rate && id == DeviceId::Cpu && candidate.id != DeviceId::Cpu)
            }
        };
        if better {
            best = Some((candidate.id, rate));
        }
    }
    best.map_or(DeviceId::Cpu, |(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(nonce_search: Option<f64>, sha1: Option<f64>, sha256: Option<f64>) -> Rates {
        Rates {
            nonce_search,
            bulk_sha1: sha1,
            bulk_sha256: sha256,
        }
    }

    fn gpu(index: usize, real: bool, rates: Rates) -> Candidate {
        Candidate {
            id: DeviceId::Gpu(index),
            eligible: real,
            rates,
        }
    }

    fn cpu(rates: Rates) -> Candidate {
        Candidate {
            id: DeviceId::Cpu,
            eligible: true,
            rates,
        }
    }

    #[test]
    fn a_gpu_that_mines_faster_but_hashes_sha1_slower_gets_only_the_mining() {
        let candidates = [
            gpu(0, true, rates(Some(400e6), Some(900e6), Some(2e9))),
            cpu(rates(Some(17e6), Some(1.5e9), Some(1.2e9))),
        ];
        assert_eq!(choose(WorkKind::NonceSearch, &candidates), DeviceId::Gpu(0));
        assert_eq!(choose(WorkKind::BulkSha1, &candidates), DeviceId::Cpu);
        assert_eq!(choose(WorkKind::BulkSha256, &candidates), DeviceId::Gpu(0));
    }

    #[test]
    fn with_no_gpu_or_nothing_measured_it_is_the_cpu() {
        for work in WorkKind::ALL {
            assert_eq!(choose(work, &[]), DeviceId::Cpu);
            assert_eq!(choose(work, &[cpu(Rates::default())]), DeviceId::Cpu);
            assert_eq!(
                choose(work, &[cpu(rates(Some(1.0), Some(1.0), Some(1.0)))]),
                DeviceId::Cpu
            );
        }
    }

    #[test]
    fn a_gpu_whose_probe_failed_is_passed_over() {
        let candidates = [
            gpu(0, true, Rates::default()),
            gpu(1, true, rates(Some(50e6), None, Some(3e9))),
            cpu(rates(Some(17e6), Some(1.5e9), Some(1.2e9))),
        ];
        assert_eq!(choose(WorkKind::NonceSearch, &candidates), DeviceId::Gpu(1));
        assert_eq!(choose(WorkKind::BulkSha1, &candidates), DeviceId::Cpu);
        assert_eq!(choose(WorkKind::BulkSha256, &candidates), DeviceId::Gpu(1));
    }

    #[test]
    fn a_software_adapter_is_never_chosen_however_fast() {
        let candidates = [
            gpu(0, false, rates(Some(1e12), Some(1e12), Some(1e12))),
            cpu(rates(Some(17e6), Some(1.5e9), Some(1.2e9))),
        ];
        for work in WorkKind::ALL {
            assert_eq!(choose(work, &candidates), DeviceId::Cpu);
        }
    }

    #[test]
    fn ties_go_to_the_first_gpu_then_to_a_gpu_over_the_cpu() {
        let same = rates(Some(10e6), Some(1e9), Some(1e9));
        let candidates = [gpu(0, true, same), gpu(1, true, same), cpu(same)];
        for work in WorkKind::ALL {
            assert_eq!(choose(work, &candidates), DeviceId::Gpu(0));
        }
        // The order of the list does not matter between the CPU and a GPU.
        let candidates = [cpu(same), gpu(2, true, same)];
        assert_eq!(choose(WorkKind::BulkSha1, &candidates), DeviceId::Gpu(2));
    }

    #[test]
    fn nonsense_rates_from_a_damaged_cache_never_win() {
        let candidates = [
            gpu(
                0,
                true,
                rates(Some(f64::NAN), Some(-5.0), Some(f64::INFINITY)),
            ),
            cpu(rates(Some(17e6), Some(1.5e9), Some(1.2e9))),
        ];
        for work in WorkKind::ALL {
            assert_eq!(choose(work, &candidates), DeviceId::Cpu);
        }
    }
}
