use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::BackendArg;
use crate::hash::bulk::{BlockAlgo, BulkItem, BulkJob, BulkReport, Extent, MemorySource};
use crate::hash::gpu::copy_rate::{CopyMethod, HostUpload};
use crate::hash::gpu::{self, GpuContext};
use crate::hash::{
    Algo, Backend, BackendChoice, BackendKind, KernelTarget, ScanJob, WorkKind, DEFAULT_DISPATCH,
    MAX_INTENSITY, MIN_INTENSITY,
};
use crate::mining::header::BlockHeader;
use crate::selftest::{XorShift, KNOWN_HEADERS};

/// Distinct bytes behind the bulk benchmarks' messages on a GPU (messages reuse them).
const BULK_BYTES: usize = 64 << 20;
/// Pieces per lane in one GPU bulk measurement round.
const GPU_ROUNDS: u64 = 4;
/// CPU bulk data per core: within a core's L2 cache, as `verify`'s chunks are.
const CPU_BULK_BYTES_PER_CORE: usize = 2 << 20;
/// BitTorrent v1 piece size for the SHA-1 benchmark, v2 block size for SHA-256.
const SHA1_PIECE: usize = 256 << 10;
const SHA256_BLOCK: usize = 16 << 10;

/// What `bench` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Measure {
    Sha256d,
    Sha1,
    Sha256,
    /// The host-to-device copy rate of each GPU (queue.write_buffer and a mapped staging
    /// buffer).
    Copy,
}

impl Measure {
    fn hash(self) -> Option<Algo> {
        match self {
            Measure::Sha256d => Some(Algo::Sha256d),
            Measure::Sha1 => Some(Algo::Sha1),
            Measure::Sha256 => Some(Algo::Sha256),
            Measure::Copy => None,
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.hash() {
            Some(algo) => algo.fmt(f),
            None => f.write_str("copy"),
        }
    }
}

/// Measure hash rates (sha256d nonce search in MH/s, bulk SHA-1 and SHA-256 in MB/s) and, on
/// GPUs, the host-to-device copy rate in MB/s.
#[derive(Debug, clap::Args)]
pub struct Bench {
    #[command(flatten)]
    backend: BackendArg,
    /// What to measure [default: the three hashes, and copy on GPU backends].
    #[arg(long, value_enum)]
    algo: Option<Measure>,
    /// Seconds to run each measurement.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Nonces per GPU dispatch as a power of two (12-31) [default: tuned so a dispatch takes
    /// about 30 ms].
    #[arg(long, value_parser = clap::value_parser!(u8).range(i64::from(MIN_INTENSITY)..=i64::from(MAX_INTENSITY)))]
    intensity: Option<u8>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

#[derive(Serialize)]
struct Measurement {
    algo: Measure,
    /// For `copy`: how the bytes were uploaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<CopyMethod>,
    /// For `copy`: the adapter measured (a list of backends may hold several).
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    rate: f64,
    /// `MH/s` for sha256d, `MB/s` (10^6 bytes) for the others.
    unit: &'static str,
    /// Nonces hashed, bytes hashed or bytes copied.
    work: u64,
    seconds: f64,
    /// For GPU bulk hashing: how the device was kept busy.
    #[serde(skip_serializing_if = "Option::is_none")]
    bulk: Option<BulkReport>,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    /// Nonces per sha256d scan call (on a GPU, per dispatch), tuned or set by --intensity.
    #[serde(skip_serializing_if = "Option::is_none")]
    scan_batch: Option<u32>,
    results: Vec<Measurement>,
}

impl Bench {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        // `auto` picks for what is measured: per algo with --algo (sha256d is the nonce search
        // here), the nonce-search choice for all of them together.
        let work = match self.algo.and_then(Measure::hash) {
            Some(Algo::Sha256d) | None => WorkKind::NonceSearch,
            Some(algo) => WorkKind::bulk(algo),
        };
        let backend = self.backend.open(work)?;
        let is_gpu = backend.kind() == BackendKind::Gpu;
        let measures = match self.algo {
            Some(Measure::Copy) if !is_gpu => anyhow::bail!(
                "--algo copy measures a GPU's host-to-device copy rate: choose a GPU backend (--backend gpu)"
            ),
            Some(m) => vec![m],
            None if is_gpu => vec![
                Measure::Sha256d,
                Measure::Sha1,
                Measure::Sha256,
                Measure::Copy,
            ],
            None => vec![Measure::Sha256d, Measure::Sha1, Measure::Sha256],
        };
        let duration = Duration::from_secs_f64(self.seconds);
        let mut results = Vec::new();
        if !self.json {
            println!("benchmark on {}", backend.name());
        }
        let scan_batch = match self.intensity {
            _ if !measures.contains(&Measure::Sha256d) => None,
            Some(intensity) => {
                backend.set_intensity(intensity);
                is_gpu.then(|| 1u32 << intensity)
            }
            None => backend.tune(DEFAULT_DISPATCH)?,
        };
        if let (Some(batch), false) = (scan_batch, self.json) {
            let how = match self.intensity {
                Some(i) => format!("--intensity {i}"),
                None => format!("tuned for {DEFAULT_DISPATCH:?}"),
            };
            println!("sha256d: {batch} nonces per scan call ({how})");
        }
        for measure in measures {
            let batch = match measure.hash() {
                Some(algo) => vec![hash_rate(&*backend, algo, duration, self.json)?],
                None => copy_rates(&self.backend.backend, duration, self.json)?,
            };
            for m in batch {
                if !self.json {
                    print_measurement(&m);
                }
                results.push(m);
            }
        }
        if self.json {
            super::print_json(&Report {
                backend: backend.name(),
                scan_batch,
                results,
            })?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_measurement(m: &Measurement) {
    let how = match (m.method, &m.device) {
        (Some(method), Some(device)) => format!("; {method} to {device}"),
        _ => String::new(),
    };
    println!(
        "{:<8} {:>10.2} {}  ({} in {:.2} s{how})",
        m.algo.to_string(),
        m.rate,
        m.unit,
        m.work,
        m.seconds
    );
    if let Some(bulk) = &m.bulk {
        println!("         {}", describe_device(bulk));
    }
}

/// The GPU adapters a backend choice hashes on: the one it names, each GPU of a list, every
/// real GPU for `all`; none for the CPU.
fn chosen_adapters(
    choice: &BackendChoice,
    adapters: &[wgpu::Adapter],
) -> anyhow::Result<Vec<usize>> {
    Ok(match choice {
        BackendChoice::All => adapters
            .iter()
            .enumerate()
            .filter(|(_, a)| gpu::context::is_real_gpu(a.get_info().device_type))
            .map(|(i, _)| i)
            .collect(),
        BackendChoice::List(choices) => {
            let mut indices = Vec::new();
            for choice in choices {
                if let Some(i) = choice.adapter_index(adapters)? {
                    if !indices.contains(&i) {
                        indices.push(i);
                    }
                }
            }
            indices
        }
        choice => choice.adapter_index(adapters)?.into_iter().collect(),
    })
}

/// The host-to-device copy rate of each chosen GPU, both ways. The measurement opens its own
/// device on the adapter: the hashing backend's buffers stay as they are.
fn copy_rates(
    choice: &BackendChoice,
    duration: Duration,
    quiet: bool,
) -> anyhow::Result<Vec<Measurement>> {
    let adapters = gpu::adapters();
    let mut results = Vec::new();
    for index in chosen_adapters(choice, &adapters)? {
        let ctx = GpuContext::open(index, &adapters[index])?;
        let device = format!("gpu:{index} ({}, {})", ctx.info.name, ctx.info.backend);
        let upload = HostUpload::new(Arc::clone(&ctx), HostUpload::DEFAULT_BYTES)?;
        for method in CopyMethod::ALL {
            // The first upload pays for first-use costs (wgpu's staging allocation, page
            // faults in the mapping), which later rounds of a hashing run do not.
            upload.upload(method)?;
            let label = format!("copy ({method})");
            let (work, seconds) = run_rounds(&label, "MB/s", 1e6, duration, quiet, &mut || {
                Ok(upload.upload(method)?)
            })?;
            results.push(Measurement {
                algo: Measure::Copy,
                method: Some(method),
                device: Some(device.clone()),
                rate: rate(work, seconds, 1e6),
                unit: "MB/s",
                work,
                seconds,
                bulk: None,
            });
        }
    }
    Ok(results)
}

#[allow(clippy::cast_precision_loss)]
fn rate(work: u64, seconds: f64, scale: f64) -> f64 {
    work as f64 / seconds.max(1e-9) / scale
}

/// Calls `round` until `duration` has passed, at least once, with a live rate on a terminal;
/// returns the work done and the seconds it took.
fn run_rounds(
    label: &str,
    unit: &str,
    scale: f64,
    duration: Duration,
    quiet: bool,
    round: &mut dyn FnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<(u64, f64)> {
    let spinner = super::progress::bar(0, quiet, "{spinner} {msg}");
    let started = Instant::now();
    let mut work = 0u64;
    while work == 0 || started.elapsed() < duration {
        work += round()?;
        let now = rate(work, started.elapsed().as_secs_f64(), scale);
        spinner.set_message(format!("{label}: {now:.2} {unit}"));
        spinner.tick();
    }
    spinner.finish_and_clear();
    Ok((work, started.elapsed().as_secs_f64()))
}

/// Runs one hash measurement until `duration` has passed, at least one round.
fn hash_rate(
    backend: &dyn Backend,
    algo: Algo,
    duration: Duration,
    quiet: bool,
) -> anyhow::Result<Measurement> {
    let (unit, scale) = match algo {
        Algo::Sha256d => ("MH/s", 1e6),
        _ => ("MB/s", 1e6),
    };
    let mut bulk = None;
    let mut round = round_fn(backend, algo, &mut bulk)?;
    let (work, seconds) = run_rounds(&algo.to_string(), unit, scale, duration, quiet, &mut round)?;
    drop(round);
    let algo = match algo {
        Algo::Sha256d => Measure::Sha256d,
        Algo::Sha1 => Measure::Sha1,
        Algo::Sha256 => Measure::Sha256,
    };
    Ok(Measurement {
        algo,
        method: None,
        device: None,
        rate: rate(work, seconds, scale),
        unit,
        work,
        seconds,
        bulk,
    })
}

type Round<'a> = Box<dyn FnMut() -> anyhow::Result<u64> + 'a>;

/// One round of work for `algo`, returning how much it did.
fn round_fn<'a>(
    backend: &'a dyn Backend,
    algo: Algo,
    bulk: &'a mut Option<BulkReport>,
) -> anyhow::Result<Round<'a>> {
    Ok(match algo {
        Algo::Sha256d => {
            let header = BlockHeader::from_hex(KNOWN_HEADERS[0].hex)?;
            // A zero target: nothing is ever found, so this is pure hashing.
            let batch = backend.scan_slice();
            let mut start = 0u64;
            Box::new(move || {
                if start + batch > 1 << 32 {
                    start = 0;
                }
                let job = ScanJob::new(header.bytes(), start, batch, KernelTarget::ZERO)?;
                start += batch;
                Ok(backend.scan(&job)?.hashes)
            })
        }
        Algo::Sha1 | Algo::Sha256 if backend.kind() == BackendKind::Gpu => {
            gpu_bulk_round(backend, algo, bulk)
        }
        Algo::Sha1 | Algo::Sha256 => {
            // A GPU needs a large batch to fill; on the CPU a cache-sized buffer per core
            // measures hashing the way `verify` feeds it (and the way `openssl speed` does).
            let bytes = match backend.kind() {
                BackendKind::Gpu => BULK_BYTES,
                BackendKind::Cpu => {
                    CPU_BULK_BYTES_PER_CORE
                        * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }
            };
            let data = XorShift::new(42).bytes(bytes);
            Box::new(move || {
                if algo == Algo::Sha1 {
                    backend.sha1_pieces(&data, SHA1_PIECE)?;
                } else {
                    backend.sha256_pieces(&data, SHA256_BLOCK)?;
                }
                Ok(data.len() as u64)
            })
        }
    })
}
/// One line on how the device was kept busy.
#[must_use]
pub fn describe_device(device: &BulkReport) -> String {
    let lanes = if device.block_lanes_per_dispatch > 0 && device.lanes_per_dispatch > 0 {
        format!(
            "{} piece lanes + {} v2 block lanes",
            device.lanes_per_dispatch, device.block_lanes_per_dispatch
        )
    } else {
        format!(
            "{} lanes",
            device
                .lanes_per_dispatch
                .max(device.block_lanes_per_dispatch)
        )
    };
    format!(
        "device: {lanes} per dispatch, {} KiB slices, {} MiB in flight, {} rounds ({} overlapped)",
        device.slice_bytes >> 10,
        device.bytes_in_flight >> 20,
        device.rounds,
        device.rounds_overlapped
    )
}
/// GPU bulk hashing as `verify` drives it: enough distinct messages for several rounds of the
/// device's lanes (SHA-1 of 256 KiB pieces; v2 16 KiB blocks of 256 KiB pieces), read from
/// one buffer in memory into the device's upload buffers.
fn gpu_bulk_round<'a>(
    backend: &'a dyn Backend,
    algo: Algo,
    bulk: &'a mut Option<BulkReport>,
) -> Round<'a> {
    let piece = SHA1_PIECE as u64;
    let memory = crate::hash::gpu::DEFAULT_GPU_MEMORY;
    let lanes = backend
        .bulk_shape(piece, memory)
        .map_or(256, |s| u64::from(s.lanes));
    let data = XorShift::new(42).bytes(BULK_BYTES);
    let pieces_in_data = (BULK_BYTES as u64 / piece).max(1);
    let count = lanes * GPU_ROUNDS;
    Box::new(move || {
        let (carried, block_bytes) = match algo {
            Algo::Sha1 => (Some(BlockAlgo::Sha1), 0),
            _ => (None, piece),
        };
        let mut items = (0..count).map(|i| BulkItem {
            id: i,
            extents: vec![Extent {
                source: Some(0),
                offset: (i % pieces_in_data) * piece,
                length: piece,
            }],
            block_bytes,
        });
        let sources = [data.as_slice()];
        let job = BulkJob {
            algo: carried,
            source: &MemorySource(&sources),
            memory,
        };
        let report = backend.hash_items(&job, &mut items, &mut |_| {})?;
        bulk.get_or_insert_with(BulkReport::default).merge(&report);
        Ok(count * piece)
    })
}
