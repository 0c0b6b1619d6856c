//! Input fingerprinting over 10,000 small files (100 directories of 100, ~60 bytes each).
//!
//! - `unchanged, stat-cache hit`: `StatCache::hash_file` on every file with a warm cache; the
//!   files are older than the 2 s racy window (the setup waits it out: `ctime` cannot be set
//!   back, so backdating `mtime` alone would not make them cacheable).
//! - `unchanged, glob + hash + combine`: a task's whole input fingerprint for
//!   `inputs = ["src/**/*.txt"]`: `expand_inputs` (walk + glob), the cached hashes, `combine`.
//! - `changed, content rewritten`: every file gets new content before each iteration (untimed),
//!   so every stamp differs and every file is read and hashed again.
//! - `cold cache`: a fresh `StatCache` each iteration on unchanged files: every file is read
//!   and hashed, and the hashes are inserted.
//! - `stat_cache.bin load`: `StatCache::load` of the 10,000-entry cache a build starts with.
//!
//! Run: `cargo bench --bench fingerprint`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use orchfile::disk::Digest;
use orchfile::fingerprint::{combine, expand_inputs, StatCache};

const FILES: usize = 10_000;

fn rel(i: usize) -> String {
    format!("src/d{:02}/f{i:05}.txt", i / 100)
}

fn write_all(root: &Path, generation: u64) {
    for i in 0..FILES {
        std::fs::write(
            root.join(rel(i)),
            format!("file {i} generation {generation}: some small input content\n"),
        )
        .expect("write input");
    }
}

fn hash_all(cache: &StatCache, paths: &[PathBuf]) -> usize {
    let mut n = 0;
    for p in paths {
        n += cache.hash_file(p).expect("hash").expect("exists").0[0] as usize;
    }
    n
}

fn fingerprint(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in 0..FILES / 100 {
        std::fs::create_dir_all(root.join(format!("src/d{d:02}"))).expect("mkdir");
    }
    write_all(root, 0);
    // Past the racy window, so the first pass caches every hash.
    std::thread::sleep(Duration::from_millis(2200));
    let paths: Vec<PathBuf> = (0..FILES).map(|i| root.join(rel(i))).collect();
    let warm = StatCache::default();
    hash_all(&warm, &paths);
    let state_dir = root.join(".orchestrator");
    std::fs::create_dir_all(&state_dir).expect("mkdir");
    let cache_file = state_dir.join("stat_cache.bin");
    warm.save(&cache_file).expect("save stat cache");

    let mut group = c.benchmark_group("fingerprint");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(FILES as u64));

    group.bench_function("10k unchanged files, stat-cache hit", |b| {
        b.iter(|| hash_all(&warm, &paths))
    });

    let patterns = vec!["src/**/*.txt".to_string()];
    group.bench_function("10k unchanged files, glob + hash + combine", |b| {
        b.iter(|| {
            let files = expand_inputs(root, &patterns, &state_dir).expect("expand");
            assert_eq!(files.len(), FILES);
            let inputs: Vec<(String, Digest)> = files
                .into_iter()
                .map(|f| {
                    let h = warm
                        .hash_file(&root.join(&f))
                        .expect("hash")
                        .expect("exists");
                    (f, h)
                })
                .collect();
            combine::<&str>(&Digest::of(b"definition"), &inputs, &[])
        })
    });

    group.bench_function("10k unchanged files, cold cache", |b| {
        b.iter(|| {
            let cold = StatCache::default();
            hash_all(&cold, &paths);
            cold
        })
    });

    group.bench_function("stat_cache.bin load, 10k entries", |b| {
        b.iter(|| StatCache::load(black_box(&cache_file)))
    });

    // Rewriting 10k files is slow, so fewer, shorter samples here.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(3));
    let mut generation = 0;
    group.bench_function("10k changed files, content rewritten", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                generation += 1;
                write_all(root, generation);
                let t = Instant::now();
                black_box(hash_all(&warm, &paths));
                total += t.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, fingerprint);
criterion_main!(benches);
