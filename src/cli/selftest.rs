use std::process::ExitCode;

use serde::Serialize;

use super::BackendArg;
use crate::hash::WorkKind;
use crate::selftest::{self, Check};

/// Check a backend against known answers (NIST SHA-1/SHA-256, real Bitcoin headers) and
/// against the CPU oracle on random inputs of awkward lengths.
///
/// Exits 0 when everything passes, 1 on any mismatch, 2 when the backend is unavailable.
#[derive(Debug, clap::Args)]
pub struct Selftest {
    #[command(flatten)]
    backend: BackendArg,
    /// Seed for the random inputs [default: from the clock; printed so a failure can be replayed].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    seed: u64,
    passed: usize,
    failed: usize,
    checks: Vec<Check>,
}

impl Selftest {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let backend = self.backend.open(WorkKind::NonceSearch)?;
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        let checks = selftest::run(&*backend, seed);
        let failed = checks.iter().filter(|c| !c.ok).count();
        let report = Report {
            backend: backend.name(),
            seed,
            passed: checks.len() - failed,
            failed,
            checks,
        };
        if self.json {
            super::print_json(&report)?;
        } else {
            println!("selftest on {} (seed {seed})", report.backend);
            for check in &report.checks {
                if check.ok {
                    println!("PASS {}", check.name);
                } else {
                    println!("FAIL {}: {}", check.name, check.detail);
                }
            }
            println!(
                "selftest: {} checks passed, {} failed",
                report.passed, report.failed
            );
        }
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}
