use std::process::ExitCode;

use serde::Serialize;

use crate::hash::cpu::{self, CpuBackend};
use crate::hash::gpu::{self, AdapterSummary};
use crate::hash::BackendChoice;

/// List every GPU adapter wgpu sees and the CPU backend, marking what `--backend auto` picks.
#[derive(Debug, clap::Args)]
pub struct Devices {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct CpuSummary {
    threads: usize,
    sha_ni: bool,
    sha256d_scan: &'static str,
}

#[derive(Serialize)]
struct Report {
    adapters: Vec<AdapterSummary>,
    cpu: CpuSummary,
    /// `gpu:N` or `cpu`.
    auto: String,
}

impl Devices {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let adapters = gpu::adapters();
        let auto = match BackendChoice::Auto.adapter_index(&adapters)? {
            Some(i) => format!("gpu:{i}"),
            None => "cpu".to_owned(),
        };
        let report = Report {
            adapters: adapters
                .iter()
                .enumerate()
                .map(|(i, a)| gpu::summarize(i, a))
                .collect(),
            cpu: CpuSummary {
                threads: CpuBackend::new(None)?.threads(),
                sha_ni: cpu::has_sha_ni(),
                sha256d_scan: cpu::sha256d::implementation(),
            },
            auto,
        };
        if self.json {
            super::print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mark = |name: &str| if report.auto == name { "  <- auto" } else { "" };
        if report.adapters.is_empty() {
            println!(
                "no GPU adapters found (install a Vulkan driver; lavapipe: mesa-vulkan-drivers)"
            );
        }
        for a in &report.adapters {
            println!(
                "gpu:{}  {} [{}, {}]{}",
                a.index,
                a.name,
                a.backend,
                a.device_type,
                mark(&format!("gpu:{}", a.index))
            );
            println!(
                "        driver: {}; max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} invocations/workgroup{}",
                if a.driver.is_empty() { "-" } else { &a.driver },
                a.max_storage_buffer_binding_size >> 20,
                a.max_buffer_size >> 20,
                a.max_compute_workgroups_per_dimension,
                a.max_compute_invocations_per_workgroup,
                if a.is_real_gpu { "" } else { "; not a real GPU: used only when asked for" },
            );
        }
        let c = &report.cpu;
        println!(
            "cpu    {} threads, SHA-NI {}, sha256d search: {}{}",
            c.threads,
            if c.sha_ni { "yes" } else { "no" },
            c.sha256d_scan,
            mark("cpu")
        );
        Ok(ExitCode::SUCCESS)
    }
}
