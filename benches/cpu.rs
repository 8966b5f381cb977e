//! CPU hot paths: the sha256d nonce search (one core, SHA-NI and portable; all cores) and bulk
//! SHA-1/SHA-256 as BitTorrent v1 pieces and v2 blocks.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use peerhash::hash::cpu::{sha256d, CpuBackend};
use peerhash::hash::{BulkHasher, KernelTarget, NonceSearcher, ScanJob};
use peerhash::selftest::XorShift;

const NONCES: u64 = 1 << 20;

fn job() -> ScanJob {
    // A zero target: nothing wins, every nonce costs the full early-reject path.
    ScanJob::new(&[0x5a; 80], 0, NONCES, KernelTarget::ZERO).expect("in range")
}

fn scan(c: &mut Criterion) {
    let job = job();
    let mut group = c.benchmark_group("sha256d_scan");
    group.throughput(Throughput::Elements(NONCES));
    group.bench_function(
        BenchmarkId::new("one_core", sha256d::implementation()),
        |b| {
            b.iter(|| sha256d::scan_range(&job.midstate, &job.tail, 0, NONCES, &job.target));
        },
    );
    group.bench_function("one_core/portable", |b| {
        b.iter(|| sha256d::scan_range_portable(&job.midstate, &job.tail, 0, NONCES, &job.target));
    });
    let backend = CpuBackend::new(None).expect("cpu backend");
    group.bench_function(BenchmarkId::new("all_cores", backend.threads()), |b| {
        b.iter(|| backend.scan(&job).expect("cpu scan"));
    });
    group.finish();
}

fn bulk(c: &mut Criterion) {
    let backend = CpuBackend::new(None).expect("cpu backend");
    let data = XorShift::new(1).bytes(32 << 20);
    let mut group = c.benchmark_group("bulk_all_cores");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("sha1_pieces_256KiB", |b| {
        b.iter(|| backend.sha1_pieces(&data, 256 << 10).expect("sha1"));
    });
    group.bench_function("sha256_blocks_16KiB", |b| {
        b.iter(|| backend.sha256_pieces(&data, 16 << 10).expect("sha256"));
    });
    group.finish();
    let nodes: Vec<[u8; 32]> = (0..1 << 16)
        .map(|i: u32| [i.to_le_bytes()[0]; 32])
        .collect();
    let mut group = c.benchmark_group("merkle_pairs_all_cores");
    group.throughput(Throughput::Elements(nodes.len() as u64 / 2));
    group.bench_function("65536_nodes", |b| {
        b.iter(|| backend.sha256_pairs(&nodes).expect("pairs"))
    });
    group.finish();
}

criterion_group!(benches, scan, bulk);
criterion_main!(benches);
