use std::process::ExitCode;

use serde::Serialize;

use crate::hash::cpu;
use crate::hash::gpu::{self, AdapterSummary};
use crate::hash::probe::{self, DeviceId, RateSource, Rates, Surveyed};
use crate::hash::WorkKind;

/// List every GPU adapter wgpu sees and the CPU backend with their measured rates, and what
/// `--backend auto` picks for each kind of work.
#[derive(Debug, clap::Args)]
pub struct Devices {
    /// Measure every device again (software adapters such as lavapipe included) and rewrite
    /// the rate cache.
    #[arg(long)]
    probe: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Rates in the units people read: MH/s for the nonce search, MB/s (10^6 bytes) for the rest.
#[derive(Serialize)]
struct RatesReport {
    nonce_search_mhs: Option<f64>,
    bulk_sha1_mbs: Option<f64>,
    bulk_sha256_mbs: Option<f64>,
}

impl RatesReport {
    fn new(rates: &Rates) -> Self {
        let shown = |work: WorkKind| rates.get(work).map(|r| r / work.unit().1);
        Self {
            nonce_search_mhs: shown(WorkKind::NonceSearch),
            bulk_sha1_mbs: shown(WorkKind::BulkSha1),
            bulk_sha256_mbs: shown(WorkKind::BulkSha256),
        }
    }
}

/// What the probe knows of one device.
#[derive(Serialize)]
struct Measured {
    rates: RatesReport,
    /// `measured` (by this run), `cached` or `unmeasured`.
    source: RateSource,
    /// Whether the rates came from the cache file.
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe_error: Option<String>,
}

impl Measured {
    fn new(surveyed: &Surveyed) -> Self {
        Self {
            rates: RatesReport::new(&surveyed.candidate.rates),
            source: surveyed.source,
            cached: surveyed.source == RateSource::Cached,
            probe_error: surveyed.error.clone(),
        }
    }
}

#[derive(Serialize)]
struct AdapterReport {
    #[serde(flatten)]
    summary: AdapterSummary,
    #[serde(flatten)]
    measured: Measured,
}

#[derive(Serialize)]
struct CpuSummary {
    threads: usize,
    sha_ni: bool,
    sha256d_scan: &'static str,
    #[serde(flatten)]
    measured: Measured,
}

/// What `auto` picks for each kind of work (`gpu:N` or `cpu`).
#[derive(Serialize)]
struct AutoPicks {
    nonce_search: String,
    bulk_sha1: String,
    bulk_sha256: String,
}

#[derive(Serialize)]
struct Report {
    adapters: Vec<AdapterReport>,
    cpu: CpuSummary,
    /// What `auto` picks for the nonce search (`scan`, `mine`, `bench`), `gpu:N` or `cpu`.
    auto: String,
    auto_for: AutoPicks,
    /// The rate cache read (and written when something was measured).
    cache_file: Option<String>,
}

impl Devices {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let adapters = gpu::adapters();
        let survey = probe::survey(&adapters, self.probe)?;
        let candidates = survey.candidates();
        let pick = |work: WorkKind| probe::choose(work, &candidates);
        let (cpu_entry, gpu_entries) = survey
            .devices
            .split_last()
            .expect("the survey always lists the CPU last");
        let threads = survey.cpu_threads;
        let report = Report {
            adapters: adapters
                .iter()
                .zip(gpu_entries)
                .enumerate()
                .map(|(i, (a, surveyed))| AdapterReport {
                    summary: gpu::summarize(i, a),
                    measured: Measured::new(surveyed),
                })
                .collect(),
            cpu: CpuSummary {
                threads,
                sha_ni: cpu::has_sha_ni(),
                sha256d_scan: cpu::sha256d::implementation(),
                measured: Measured::new(cpu_entry),
            },
            auto: pick(WorkKind::NonceSearch).to_string(),
            auto_for: AutoPicks {
                nonce_search: pick(WorkKind::NonceSearch).to_string(),
                bulk_sha1: pick(WorkKind::BulkSha1).to_string(),
                bulk_sha256: pick(WorkKind::BulkSha256).to_string(),
            },
            cache_file: survey.cache_file.as_ref().map(|p| p.display().to_string()),
        };
        if self.json {
            super::print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mark = |id: DeviceId| {
            let kinds: Vec<String> = WorkKind::ALL
                .iter()
                .filter(|&&work| pick(work) == id)
                .map(ToString::to_string)
                .collect();
            if kinds.is_empty() {
                String::new()
            } else {
                format!("  <- auto for {}", kinds.join(", "))
            }
        };
        if report.adapters.is_empty() {
            println!(
                "no GPU adapters found (install a Vulkan driver; lavapipe: mesa-vulkan-drivers)"
            );
        }
        for a in &report.adapters {
            let s = &a.summary;
            println!(
                "gpu:{}  {} [{}, {}]{}",
                s.index,
                s.name,
                s.backend,
                s.device_type,
                mark(DeviceId::Gpu(s.index))
            );
            println!(
                "        driver: {}; max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} invocations/workgroup{}",
                if s.driver.is_empty() { "-" } else { &s.driver },
                s.max_storage_buffer_binding_size >> 20,
                s.max_buffer_size >> 20,
                s.max_compute_workgroups_per_dimension,
                s.max_compute_invocations_per_workgroup,
                if s.is_real_gpu { "" } else { "; not a real GPU: used only when asked for" },
            );
            println!("        {}", rates_line(&a.measured));
        }
        let c = &report.cpu;
        println!(
            "cpu    {} threads, SHA-NI {}, sha256d search: {}{}",
            c.threads,
            if c.sha_ni { "yes" } else { "no" },
            c.sha256d_scan,
            mark(DeviceId::Cpu)
        );
        println!("        {}", rates_line(&c.measured));
        Ok(ExitCode::SUCCESS)
    }
}

/// `nonce search 17.01 MH/s, SHA-1 1523.4 MB/s, SHA-256 811.0 MB/s (cached)`, or why not.
fn rates_line(measured: &Measured) -> String {
    let r = &measured.rates;
    let shown: Vec<String> = [
        (WorkKind::NonceSearch, r.nonce_search_mhs),
        (WorkKind::BulkSha1, r.bulk_sha1_mbs),
        (WorkKind::BulkSha256, r.bulk_sha256_mbs),
    ]
    .iter()
    .map(|(work, rate)| match rate {
        Some(rate) => format!("{work} {rate:.1} {}", work.unit().0),
        None => format!("{work} -"),
    })
    .collect();
    let mut line = match measured.source {
        RateSource::Unmeasured => "not measured (`peerhash devices --probe` measures)".to_owned(),
        RateSource::Measured => format!("{} (measured now)", shown.join(", ")),
        RateSource::Cached => format!("{} (cached)", shown.join(", ")),
    };
    if let Some(e) = &measured.probe_error {
        line.push_str(&format!("; probe failed: {e}"));
    }
    line
}
