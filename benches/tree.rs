//! The undeclared-write check's cost on a project of 10,000 files (100 directories of 100):
//! what an agent task pays twice per attempt (a stat walk before and after its run), and the
//! comparison of the two.
//!
//! - `scan`: `Tree::scan` of the whole tree, `.git` and the state directory left out.
//! - `scan + compare, nothing changed`: the after-walk and `changes` against the before.
//! - `scan + compare, 100 files changed`: the same with a hundred files rewritten (untimed).
//!
//! Run: `cargo bench --bench tree`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orchfile::disk::tree::Tree;

const FILES: usize = 10_000;

fn rel(i: usize) -> String {
    format!("src/d{:02}/f{i:05}.txt", i / 100)
}

fn skip(dir: &str) -> bool {
    dir == ".git" || dir == ".orchestrator"
}

fn tree(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in 0..FILES / 100 {
        std::fs::create_dir_all(root.join(format!("src/d{d:02}"))).expect("mkdir");
    }
    for i in 0..FILES {
        std::fs::write(root.join(rel(i)), format!("file {i}\n")).expect("write");
    }
    let before = Tree::scan(root, &skip).expect("scan");
    assert_eq!(before.files.len(), FILES);

    let mut group = c.benchmark_group("undeclared-write check");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(FILES as u64));
    group.bench_function("10k files: scan", |b| {
        b.iter(|| Tree::scan(black_box(root), &skip).expect("scan"))
    });
    group.bench_function("10k files: scan + compare, nothing changed", |b| {
        b.iter(|| {
            let after = Tree::scan(root, &skip).expect("scan");
            assert!(before.changes(&after).is_empty());
        })
    });
    let mut generation = 0;
    group.bench_function("10k files: scan + compare, 100 changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                generation += 1;
                rewrite(root, generation);
                let t = Instant::now();
                let after = Tree::scan(root, &skip).expect("scan");
                black_box(before.changes(&after));
                total += t.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn rewrite(root: &Path, generation: usize) {
    for i in (0..FILES).step_by(FILES / 100) {
        std::fs::write(root.join(rel(i)), format!("file {i} gen {generation}\n")).expect("write");
    }
}

criterion_group!(benches, tree);
criterion_main!(benches);
