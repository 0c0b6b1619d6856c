//! Agent makespan: how close orch's scheduler comes to the best possible schedule.
//!
//! `cargo bench --bench makespan` simulates 200 random DAGs (50..2000 tasks, lognormal task
//! durations) in virtual time, driving the real `Scheduler`, for -j 2, 4 and 8, and prints
//! makespan / max(critical path, total work / jobs) as markdown tables. It then runs one small
//! random DAG for real with the `sim` agent through the `orch` binary as a sanity check.
//!
//! Without `--bench` (e.g. `cargo test --benches`) it runs a cheap 12-instance version and
//! skips the real run. Nothing here asserts; `tests/makespan.rs` does.

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use support::{Estimates, Instance, Rng, Stats};

const SEED: u64 = 5;
const JOBS: [usize; 3] = [2, 4, 8];

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (count, max_n) = if full { (200, 2000) } else { (12, 300) };
    let started = Instant::now();

    println!("## Makespan / lower bound\n");
    println!(
        "{count} random DAGs (seed {SEED}), 50..{max_n} tasks, lognormal durations; \
         lower bound = max(critical path, total work / jobs); estimate = true duration.\n"
    );
    println!("| jobs | instances | mean | p50 | p90 | max | share > 1.05 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut exact = Vec::new();
    for jobs in JOBS {
        let runs = support::ratios(SEED, count, max_n, jobs, Estimates::Exact);
        let s = Stats::of(runs.iter().map(|r| r.1).collect());
        println!(
            "| {jobs} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1}% |",
            s.count,
            s.mean,
            s.p50,
            s.p90,
            s.max,
            100.0 * s.over_105
        );
        exact.push((jobs, runs));
    }

    // Where the gap comes from: the bound is tight when one term dominates; when the work per
    // worker is close to the critical path, neither term alone is achievable.
    println!("\n### By regime (exact estimates)\n");
    println!("slack = (total work / jobs) / critical path.\n");
    println!("| jobs | slack < 0.8 (path-bound) | 0.8..1.25 (balanced) | > 1.25 (work-bound) |");
    println!("|---:|---:|---:|---:|");
    for (jobs, runs) in &exact {
        let mut cells = Vec::new();
        for (lo, hi) in [(0.0, 0.8), (0.8, 1.25), (1.25, f64::INFINITY)] {
            let rs: Vec<f64> = runs
                .iter()
                .filter(|(inst, _)| {
                    let s = slack(inst, *jobs);
                    s >= lo && s < hi
                })
                .map(|r| r.1)
                .collect();
            cells.push(if rs.is_empty() {
                "-".to_string()
            } else {
                let s = Stats::of(rs);
                format!("{:.4} mean, {:.4} max (n={})", s.mean, s.max, s.count)
            });
        }
        println!("| {jobs} | {} |", cells.join(" | "));
    }

    println!("\n### By priority order (mean ratio)\n");
    let policies = [
        Estimates::Exact,
        Estimates::Noisy(0.5),
        Estimates::Unset,
        Estimates::PlanOrder,
        Estimates::ExactRandomPriority,
    ];
    println!(
        "| priority | {} |",
        JOBS.map(|j| format!("-j{j}")).join(" | ")
    );
    println!("|---|{}", "---:|".repeat(JOBS.len()));
    for est in policies {
        let cells: Vec<String> = JOBS
            .iter()
            .map(|&jobs| {
                let rs = support::ratios(SEED, count, max_n, jobs, est);
                let s = Stats::of(rs.into_iter().map(|r| r.1).collect());
                format!("{:.4} (max {:.3})", s.mean, s.max)
            })
            .collect();
        println!("| {} | {} |", est.label(), cells.join(" | "));
    }
    println!("\nsimulated in {:.1}s", started.elapsed().as_secs_f64());

    if full {
        real_run();
    }
}

fn slack(inst: &Instance, jobs: usize) -> f64 {
    let g = orchfile::graph::TaskGraph::new(inst.deps.clone(), &inst.dur).unwrap();
    inst.dur.iter().sum::<f64>() / jobs as f64 / g.critical_path_length()
}

/// One small random DAG of `sim` agent tasks, built for real by the binary: wall time against
/// the same lower bound, scaled by `--sim-speed`, and the per-task overhead the JSON events show.
fn real_run() {
    let jobs = 4;
    let mut rng = Rng::new(SEED);
    let deps = support::layered_dag(40, 6, 3, &mut rng);
    let est: Vec<u64> = (0..deps.len())
        .map(|_| (60.0 * rng.lognormal(0.0, 0.8)).round().max(1.0) as u64)
        .collect();
    let inst = Instance {
        family: "layered",
        dur: est.iter().map(|&e| e as f64).collect(),
        deps,
    };
    let lb = inst.lower_bound(jobs);
    let simulated = support::simulate(&inst, jobs, Estimates::Exact, SEED);
    // Scale so the lower bound is 2 s of wall time.
    let speed = lb / 2.0;
    let orchfile = support::agent_orchfile(&inst.deps, &est, "sim");
    let Some(real) = build_sim(&orchfile, jobs, speed) else {
        return;
    };
    // The same build with (almost) zero-length tasks: orch's own cost per task.
    let Some(zero) = build_sim(&orchfile, jobs, 1e9) else {
        return;
    };
    let expected_ms: f64 = est.iter().map(|&e| e as f64 / speed * 1000.0).sum();
    let in_task = (real.task_ms_sum - expected_ms) / est.len() as f64;
    println!("\n### Real run: `orch build --agent sim -j{jobs}` on one random DAG\n");
    println!(
        "40 tasks, 6 layers, fan-in 3, estimates 60 s x lognormal(σ=0.8), --sim-speed {speed:.1} \
         (lower bound scaled to 2 s).\n"
    );
    println!("| | seconds | / lower bound |");
    println!("|---|---:|---:|");
    println!("| lower bound | {:.3} | 1.0000 |", lb / speed);
    println!(
        "| virtual-time simulation | {:.3} | {:.4} |",
        simulated / speed,
        simulated / lb
    );
    println!(
        "| real build, first start to last finish | {:.3} | {:.4} |",
        real.span,
        real.span * speed / lb
    );
    println!(
        "| real build, process wall clock | {:.3} | {:.4} |",
        real.wall,
        real.wall * speed / lb
    );
    println!(
        "| same build with zero-length tasks (`--sim-speed 1e9`), wall clock | {:.3} | |",
        zero.wall
    );
    println!(
        "\nPer task, orch adds {in_task:.1} ms inside the worker (task_finished duration minus \
         estimate / speed); zero-length tasks take {:.1} ms each on average.",
        zero.task_ms_sum / est.len() as f64
    );
}

struct RealBuild {
    /// Process wall clock, seconds.
    wall: f64,
    /// First task_started to last task_finished, seconds.
    span: f64,
    /// Sum of task_finished duration_ms.
    task_ms_sum: f64,
}

fn build_sim(orchfile: &str, jobs: usize, speed: f64) -> Option<RealBuild> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Orchfile.toml"), orchfile).expect("write Orchfile");
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["build", "--agent", "sim", "--json", "-j"])
        .arg(jobs.to_string())
        .arg("--sim-speed")
        .arg(format!("{speed}"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run orch");
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        println!(
            "\nreal run failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let (mut first, mut last, mut task_ms_sum) = (f64::INFINITY, 0.0f64, 0.0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ts = v["ts_ms"].as_f64().unwrap_or(0.0);
        match v["event"].as_str() {
            Some("task_started") => first = first.min(ts),
            Some("task_finished") => {
                last = last.max(ts);
                task_ms_sum += v["duration_ms"].as_f64().unwrap_or(0.0);
            }
            _ => {}
        }
    }
    Some(RealBuild {
        wall,
        span: (last - first) / 1000.0,
        task_ms_sum,
    })
}
