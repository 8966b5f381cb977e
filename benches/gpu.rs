//! GPU kernels on the best adapter (`gpu` choice): sha256d search, SHA-1 pieces, SHA-256
//! blocks and merkle pairs. On lavapipe these measure correctness plumbing, not speed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peerhash::hash::gpu::{adapters, GpuBackend};
use peerhash::hash::{BulkHasher, KernelTarget, NonceSearcher, ScanJob};
use peerhash::selftest::XorShift;

fn backend() -> GpuBackend {
    let adapters = adapters();
    let adapter = adapters
        .first()
        .expect("no GPU adapter: the GPU benches need one");
    GpuBackend::open(0, adapter).expect("GPU opens")
}

fn kernels(c: &mut Criterion) {
    let gpu = backend();
    let mut group = c.benchmark_group(format!("gpu/{}", gpu.context().info.name));
    group.sample_size(10);
    let nonces = u64::from(gpu.scan_shape().batch) * 4;
    let job = ScanJob::new(&[0x5a; 80], 0, nonces, KernelTarget::ZERO).expect("in range");
    group.throughput(Throughput::Elements(nonces));
    group.bench_function("sha256d_scan", |b| b.iter(|| gpu.scan(&job).expect("scan")));
    let data = XorShift::new(1).bytes(32 << 20);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("sha1_pieces_256KiB", |b| {
        b.iter(|| gpu.sha1_pieces(&data, 256 << 10).expect("sha1"));
    });
    group.bench_function("sha256_blocks_16KiB", |b| {
        b.iter(|| gpu.sha256_pieces(&data, 16 << 10).expect("sha256"));
    });
    let nodes: Vec<[u8; 32]> = (0..1 << 16)
        .map(|i: u32| [i.to_le_bytes()[0]; 32])
        .collect();
    group.throughput(Throughput::Elements(nodes.len() as u64 / 2));
    group.bench_function("merkle_pairs_65536_nodes", |b| {
        b.iter(|| gpu.sha256_pairs(&nodes).expect("pairs"));
    });
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
