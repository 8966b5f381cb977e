//! Torrent hot paths on the CPU: `verify` of v1, v2 and hybrid torrents over a 256 MiB file in
//! the page cache (read, hash, compare), the path `peerhash verify` runs.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peerhash::hash::cpu::CpuBackend;
use peerhash::hash::BulkHasher;
use peerhash::selftest::XorShift;
use peerhash::torrent::create::{self, CreateOptions};
use peerhash::torrent::metainfo::Version;
use peerhash::torrent::stream::DEFAULT_MEMORY;
use peerhash::torrent::verify;

const SIZE: usize = 256 << 20;
const PIECE: u64 = 1 << 20;

fn verify_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("payload.bin");
    std::fs::write(&path, XorShift::new(7).bytes(SIZE)).expect("writing the payload");
    let (name, files, single) = create::collect(&path).expect("collecting the payload");
    let backend = CpuBackend::new(None).expect("the CPU backend");
    let mut group = c.benchmark_group("verify_cpu_256MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    for (label, version) in [
        ("v1", Version::V1),
        ("v2", Version::V2),
        ("hybrid", Version::Hybrid),
    ] {
        let options = CreateOptions {
            version,
            piece_length: Some(PIECE),
            announce: Vec::new(),
            web_seeds: Vec::new(),
            private: false,
            comment: None,
            source: None,
            creation_date: None,
            memory: DEFAULT_MEMORY,
        };
        let made = create::create(&backend, &name, &files, single, &options, |_| {})
            .expect("creating the torrent");
        let paths = verify::locate(&made.meta, dir.path());
        group.bench_function(label, |b| {
            b.iter(|| {
                let report = verify::verify(
                    &made.meta,
                    &paths,
                    &backend as &dyn BulkHasher,
                    DEFAULT_MEMORY,
                    |_| {},
                )
                .expect("verify runs");
                assert!(report.ok, "the payload verifies");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, verify_benches);
criterion_main!(benches);
