use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::BackendArg;
use crate::hash::{cpu, DeviceStats, ScanJob, ScanOutcome, WorkKind};
use crate::mining::header::{display_hash, BlockHeader};
use crate::mining::target;

/// Search a nonce range of an 80-byte block header for hashes that meet a target.
///
/// Exits 0 when at least one nonce was found, 1 when none was (like grep).
#[derive(Debug, clap::Args)]
pub struct Scan {
    /// The 80-byte header as hex, in wire byte order (as `getblockheader <hash> false` prints it).
    header: String,
    /// First nonce to try.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Nonces to try [default: all the rest of the 32-bit nonce space].
    #[arg(long)]
    count: Option<u64>,
    /// Full target as hex, most significant digit first (as block hashes are shown).
    #[arg(long, conflicts_with = "bits")]
    target: Option<String>,
    /// Compact target (nBits) as 8 hex digits [default: the header's own nBits].
    #[arg(long)]
    bits: Option<String>,
    #[command(flatten)]
    backend: BackendArg,
    /// Restart a GPU whose scan call fails or takes longer than this many seconds, searching
    /// its range again; after 3 restarts in 10 minutes it is dropped (0: no watchdog).
    #[arg(long, value_name = "SECONDS", default_value_t = super::mine::DEFAULT_WATCHDOG_SECS)]
    watchdog_secs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Found {
    nonce: u32,
    hash: String,
}

#[derive(Serialize)]
struct Report {
    found: Vec<Found>,
    hashes: u64,
    seconds: f64,
    backend: String,
    hw_errors: u64,
    /// Per device, when several work together.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    devices: Vec<DeviceStats>,
}

impl Scan {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let header = BlockHeader::from_hex(&self.header).context("HEADER_HEX")?;
        let target = match (&self.target, &self.bits) {
            (Some(text), _) => target::parse_target(text).context("--target")?,
            (None, Some(text)) => target::parse_bits(text).context("--bits")?,
            (None, None) => target::from_bits(header.fields().bits.to_consensus())
                .context("the header's nBits")?,
        };
        let count = self
            .count
            .unwrap_or_else(|| (1u64 << 32).saturating_sub(self.start));
        let job = ScanJob::new(header.bytes(), self.start, count, target.into())?;
        let watchdog = super::mine::watchdog(self.watchdog_secs);
        let backend = self
            .backend
            .open_watched_resilient(WorkKind::NonceSearch, watchdog.as_ref())?;
        let bar = super::progress::bar(
            count,
            self.json,
            "{spinner} [{bar:40}] {percent}% {human_pos}/{human_len} nonces, {per_sec}, ETA {eta}",
        );
        let started = Instant::now();
        let mut total = ScanOutcome::default();
        let mut first = u64::from(job.start);
        let end = first + count;
        while first < end {
            let n = backend.scan_slice().min(end - first);
            let part = job.sub_range(u32::try_from(first).expect("below 2^32"), n);
            let outcome = backend.scan(&part)?;
            for &nonce in &outcome.found {
                bar.println(format!("found nonce {nonce}"));
            }
            total.found.extend(outcome.found);
            total.hashes += outcome.hashes;
            total.hw_errors += outcome.hw_errors;
            bar.inc(n);
            first += n;
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let report = Report {
            found: total
                .found
                .iter()
                .map(|&nonce| Found {
                    nonce,
                    hash: display_hash(&cpu::sha256d_nonce(&job, nonce)),
                })
                .collect(),
            hashes: total.hashes,
            seconds,
            backend: backend.name(),
            hw_errors: total.hw_errors,
            devices: backend.device_stats(),
        };
        if self.json {
            super::print_json(&report)?;
        } else {
            for d in &report.devices {
                #[allow(clippy::cast_precision_loss)]
                let rate = d.hashes as f64 / d.seconds.max(1e-9) / 1e6;
                let failed = if d.failed { ", failed" } else { "" };
                println!(
                    "  {}: {} nonces, {rate:.2} MH/s, {} hardware errors{failed}",
                    d.name, d.hashes, d.hw_errors
                );
            }
            for f in &report.found {
                println!("nonce {} (0x{:08x})  hash {}", f.nonce, f.nonce, f.hash);
            }
            #[allow(clippy::cast_precision_loss)]
            let rate = report.hashes as f64 / seconds.max(1e-9) / 1e6;
            println!(
                "{} found in {} nonces, {seconds:.2} s, {rate:.2} MH/s on {}, {} hardware errors",
                report.found.len(),
                report.hashes,
                report.backend,
                report.hw_errors
            );
        }
        Ok(if report.found.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
