//! Loading a 10,000-task plan.
//!
//! - `parse, shell tasks`: `orchfile::plan::orchfile::parse` (TOML, validation, cycle check) of
//!   the Orchfile `benches/gen_graph.py` writes for 10,000 tasks (50 layers, fan-in 3): `run`,
//!   `inputs`, `outputs`, `deps` per task.
//! - `parse, agent tasks`: the same graph as prompt tasks with title, priority and estimate.
//! - `baseline: toml::Table`: the same text parsed into a plain `toml::Table`, no spans, no
//!   validation: the share of `parse` that is TOML itself.
//! - `TaskGraph::from_plan`: the DAG, topological order and critical paths of the parsed plan.
//!
//! Run: `cargo bench --bench load`.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orchfile::graph::TaskGraph;
use orchfile::plan::orchfile::parse;
use support::Rng;

const TASKS: usize = 10_000;

fn load(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let deps = support::layered_dag(TASKS, 50, 3, &mut rng);
    let shell = support::shell_orchfile(&deps);
    let estimates: Vec<u64> = (0..TASKS)
        .map(|_| (60.0 * rng.lognormal(0.0, 0.8)).round().max(1.0) as u64)
        .collect();
    let agent = support::agent_orchfile(&deps, &estimates, "claude");
    let path = Path::new("/project/Orchfile.toml");
    let plan = parse(path, &shell).expect("generated Orchfile parses");
    assert_eq!(plan.tasks.len(), TASKS);
    eprintln!(
        "Orchfile sizes: shell tasks {} KiB, agent tasks {} KiB",
        shell.len() / 1024,
        agent.len() / 1024
    );

    let mut group = c.benchmark_group("load");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(TASKS as u64));
    // The plan is returned so its drop (which the process never pays) is not timed; the
    // parser's temporaries are.
    group.bench_function("parse 10k shell tasks", |b| {
        b.iter_with_large_drop(|| parse(path, &shell).expect("parses"))
    });
    group.bench_function("parse 10k agent tasks", |b| {
        b.iter_with_large_drop(|| parse(path, &agent).expect("parses"))
    });
    group.bench_function("baseline: toml::Table of the 10k shell tasks", |b| {
        b.iter_with_large_drop(|| shell.parse::<toml::Table>().expect("valid TOML"))
    });
    group.bench_function("TaskGraph::from_plan 10k", |b| {
        b.iter_with_large_drop(|| TaskGraph::from_plan(&plan).expect("acyclic"))
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
