use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::BackendArg;
use crate::hash::bulk::{BlockAlgo, BulkItem, BulkReport, Extent, MemorySource};
use crate::hash::{
    Algo, Backend, BackendKind, ScanJob, WorkKind, DEFAULT_DISPATCH, MAX_INTENSITY, MIN_INTENSITY,
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

/// Measure hash rates: sha256d nonce search in MH/s, bulk SHA-1 and SHA-256 in MB/s.
#[derive(Debug, clap::Args)]
pub struct Bench {
    #[command(flatten)]
    backend: BackendArg,
    /// What to measure [default: all three].
    #[arg(long, value_enum)]
    algo: Option<Algo>,
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
    algo: Algo,
    rate: f64,
    /// `MH/s` for sha256d, `MB/s` (10^6 bytes) for the others.
    unit: &'static str,
    /// Nonces or bytes hashed.
    work: u64,
    seconds: f64,
    /// How the GPU was kept busy in bulk hashing; absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<BulkReport>,
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
        // here), the nonce-search choice for all three together.
        let work = match self.algo {
            Some(Algo::Sha256d) | None => WorkKind::NonceSearch,
            Some(algo) => WorkKind::bulk(algo),
        };
        let backend = self.backend.open(work)?;
        let algos = self.algo.map_or_else(
            || vec![Algo::Sha256d, Algo::Sha1, Algo::Sha256],
            |a| vec![a],
        );
        let duration = Duration::from_secs_f64(self.seconds);
        let mut results = Vec::new();
        if !self.json {
            println!("benchmark on {}", backend.name());
        }
        let scan_batch = match self.intensity {
            _ if !algos.contains(&Algo::Sha256d) => None,
            Some(intensity) => {
                backend.set_intensity(intensity);
                (backend.kind() == BackendKind::Gpu).then(|| 1u32 << intensity)
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
        for algo in algos {
            let m = measure(&*backend, algo, duration, self.json)?;
            if !self.json {
                println!(
                    "{:<8} {:>10.2} {}  ({} in {:.2} s)",
                    m.algo.to_string(),
                    m.rate,
                    m.unit,
                    m.work,
                    m.seconds
                );
                if let Some(device) = &m.device {
                    println!("         {}", describe_device(device));
                }
            }
            results.push(m);
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

/// Runs one measurement until `duration` has passed, at least one round.
fn measure(
    backend: &dyn Backend,
    algo: Algo,
    duration: Duration,
    quiet: bool,
) -> anyhow::Result<Measurement> {
    let (unit, scale) = match algo {
        Algo::Sha256d => ("MH/s", 1e6),
        _ => ("MB/s", 1e6),
    };
    let spinner = super::progress::bar(0, quiet, "{spinner} {msg}");
    let mut device = None;
    let mut round = round_fn(backend, algo, &mut device)?;
    let started = Instant::now();
    let mut work = 0u64;
    while work == 0 || started.elapsed() < duration {
        work += round()?;
        #[allow(clippy::cast_precision_loss)]
        let rate = work as f64 / started.elapsed().as_secs_f64().max(1e-9) / scale;
        spinner.set_message(format!("{algo}: {rate:.2} {unit}"));
        spinner.tick();
    }
    spinner.finish_and_clear();
    drop(round);
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = work as f64 / seconds / scale;
    Ok(Measurement {
        algo,
        rate,
        unit,
        work,
        seconds,
        device,
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

type Round<'a> = Box<dyn FnMut() -> anyhow::Result<u64> + 'a>;

/// One round of work for `algo`, returning how much it did.
fn round_fn<'a>(
    backend: &'a dyn Backend,
    algo: Algo,
    device: &'a mut Option<BulkReport>,
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
                let job = ScanJob::new(header.bytes(), start, batch, [0; 8])?;
                start += batch;
                Ok(backend.scan(&job)?.hashes)
            })
        }
        Algo::Sha1 | Algo::Sha256 if backend.kind() == BackendKind::Gpu => {
            gpu_bulk_round(backend, algo, device)
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

/// GPU bulk hashing as `verify` drives it: enough distinct messages for several rounds of the
/// device's lanes (SHA-1 of 256 KiB pieces; v2 16 KiB blocks of 256 KiB pieces), read from
/// one buffer in memory into the device's upload buffers.
fn gpu_bulk_round<'a>(
    backend: &'a dyn Backend,
    algo: Algo,
    device: &'a mut Option<BulkReport>,
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
        let report = backend.hash_items(
            carried,
            &mut items,
            &MemorySource(&sources),
            memory,
            &mut |_| {},
        )?;
        device
            .get_or_insert_with(BulkReport::default)
            .merge(&report);
        Ok(count * piece)
    })
}
