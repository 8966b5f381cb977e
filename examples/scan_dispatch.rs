//! Times single sha256d scan dispatches on the first GPU adapter, for looking into how the
//! kernel's time scales with the dispatch's shape (not a test, not a benchmark suite).
//!
//! `cargo run --release --example scan_dispatch -- BATCH:PER_INVOCATION... [--reps N]`
//! prints, per shape, the median and the fastest wall time of one scan call (one dispatch and
//! its read-back) and the rate that gives.

use std::time::{Duration, Instant};

use peerhash::hash::gpu::{adapters, GpuBackend, ScanShape};
use peerhash::hash::{KernelTarget, NonceSearcher, ScanJob};

fn main() -> anyhow::Result<()> {
    let mut shapes = Vec::new();
    let mut reps = 9usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reps" {
            reps = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("--reps needs a value"))?
                .parse()?;
            continue;
        }
        let (batch, per) = arg
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("shapes are BATCH:PER_INVOCATION, got {arg}"))?;
        shapes.push(ScanShape {
            batch: batch.parse()?,
            per_invocation: per.parse()?,
        });
    }
    let adapters = adapters();
    let adapter = adapters
        .first()
        .ok_or_else(|| anyhow::anyhow!("no GPU adapter"))?;
    let gpu = GpuBackend::open(0, adapter)?;
    for shape in shapes {
        gpu.set_scan_shape(shape);
        let job = ScanJob::new(&[0x5a; 80], 0, u64::from(shape.batch), KernelTarget::ZERO)?;
        gpu.scan(&job)?; // compiles the pipeline and warms the driver
        let mut times: Vec<Duration> = (0..reps.max(1))
            .map(|_| {
                let started = Instant::now();
                gpu.scan(&job).map(|_| started.elapsed())
            })
            .collect::<Result<_, _>>()?;
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "batch {:>9} per_invocation {:>5} workgroups {:>6}: median {:>8.2} ms, min {:>8.2} ms, {:>6.2} MH/s at the median",
            shape.batch,
            shape.per_invocation,
            shape.batch.div_ceil(shape.per_invocation).div_ceil(64),
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            f64::from(shape.batch) / median.as_secs_f64() / 1e6,
        );
    }
    Ok(())
}
