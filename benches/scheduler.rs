//! Scheduling overhead with a runner that does nothing.
//!
//! - `scheduler/100k`: a 100,000-task layered random DAG (50 layers, fan-in 3, like
//!   `gen_graph.py`), scheduled to completion by the pure `Scheduler` the way `drive` uses it
//!   at -j8: fill the free slots with `next_task`, `finish` the oldest running task, repeat.
//!   `new` is `Scheduler::new` alone; `new+run` is the whole schedule.
//! - `scheduler, half the tasks on an agent with max_parallel 2`: 1k and 10k tasks (the
//!   cost is quadratic, see `agent_limit`), every other task on an agent limited to
//!   `max_parallel = 2`, so `next_task` has to skip held-back tasks.
//! - `drive/10k`: `scheduler::drive` on its rayon pool with a no-op `Runner` and `Coordinator`,
//!   at -j2 and -j8 (thread pool start included).
//!
//! Run: `cargo bench --bench scheduler`.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use orchfile::cancel::Cancel;
use orchfile::graph::TaskGraph;
use orchfile::scheduler::{self, Coordinator, Runner, SchedTask, Scheduler};
use support::Rng;

const JOBS: usize = 8;

fn graph(n: usize, layers: usize) -> TaskGraph {
    let deps = support::layered_dag(n, layers, 3, &mut Rng::new(1));
    TaskGraph::new(deps, &vec![1.0; n]).expect("acyclic")
}

fn pure_scheduler(c: &mut Criterion) {
    let n = 100_000;
    let g = graph(n, 50);
    let tasks = support::sched_tasks(&g);
    let wanted = vec![true; n];

    let mut group = c.benchmark_group("scheduler");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n as u64));
    group.bench_function("100k tasks, -j8, new", |b| {
        b.iter_batched(
            || tasks.clone(),
            |tasks| Scheduler::new(&g, tasks, &wanted, vec![], 0, false),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("100k tasks, -j8, new+run", |b| {
        b.iter_batched(
            || tasks.clone(),
            |tasks| {
                let mut s = Scheduler::new(&g, tasks, &wanted, vec![], 0, false);
                let done = support::run_noop(&mut s, JOBS);
                assert_eq!(done, n);
                s
            },
            BatchSize::PerIteration,
        )
    });

    group.finish();
}

/// Every other task on one agent with `max_parallel = 2`: when that agent is saturated,
/// `next_task` pops every held-back ready task and pushes it back, so the cost grows with the
/// ready set (quadratic overall); hence the smaller graphs.
fn agent_limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler, half the tasks on an agent with max_parallel 2");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for n in [1_000, 10_000] {
        let g = graph(n, 50);
        let wanted = vec![true; n];
        let limited: Vec<SchedTask> = support::sched_tasks(&g)
            .into_iter()
            .enumerate()
            .map(|(i, t)| SchedTask {
                agent_class: (i % 2 == 0).then_some(0),
                ..t
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{}k tasks, -j8, new+run", n / 1000), |b| {
            b.iter_batched(
                || limited.clone(),
                |tasks| {
                    let mut s = Scheduler::new(&g, tasks, &wanted, vec![Some(2)], 0, false);
                    let done = support::run_noop(&mut s, JOBS);
                    assert_eq!(done, n);
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

struct NoopRunner;

impl Runner for NoopRunner {
    type Message = ();
    type Done = ();
    fn run(&self, _task: usize, _send: &dyn Fn(())) {}
}

struct Count(usize);

impl Coordinator<(), ()> for Count {
    fn started(&mut self, _batch: &[usize]) {}
    fn message(&mut self, _msg: ()) {}
    fn finished(&mut self, _task: usize, _done: ()) -> bool {
        self.0 += 1;
        true
    }
    fn blocked(&mut self, _task: usize, _failed_dep: usize) {}
}

fn drive(c: &mut Criterion) {
    let n = 10_000;
    let g = graph(n, 50);
    let tasks = support::sched_tasks(&g);
    let wanted = vec![true; n];
    let cancel = Cancel::new();

    let mut group = c.benchmark_group("drive");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(n as u64));
    for jobs in [2, 8] {
        group.bench_function(format!("10k tasks, -j{jobs}, no-op runner"), |b| {
            b.iter_batched(
                || Scheduler::new(&g, tasks.clone(), &wanted, vec![], 0, false),
                |mut s| {
                    let mut count = Count(0);
                    scheduler::drive(&mut s, &NoopRunner, &mut count, jobs, &cancel);
                    assert_eq!(count.0, n);
                    black_box(s)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, pure_scheduler, agent_limit, drive);
criterion_main!(benches);
