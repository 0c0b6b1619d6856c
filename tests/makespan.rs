//! Schedule quality in virtual time: the real `Scheduler` on random DAGs with random task
//! durations, against the lower bound max(critical path, total work / jobs). Deterministic (no
//! clocks, no threads), so the thresholds are not timing assertions. `benches/makespan.rs`
//! reports the full 200-instance numbers against the 1.05 target.

#[path = "../benches/support/mod.rs"]
mod support;

use support::{Estimates, Instance, Stats};

const SEED: u64 = 5;

#[test]
fn makespan_is_close_to_the_lower_bound() {
    for jobs in [2, 4, 8] {
        let runs = support::ratios(SEED, 50, 1000, jobs, Estimates::Exact);
        for (i, (inst, r)) in runs.iter().enumerate() {
            assert!(
                *r >= 1.0 - 1e-9,
                "instance {i} ({} tasks, -j{jobs}) beat the lower bound: {r}",
                inst.len()
            );
        }
        let s = Stats::of(runs.into_iter().map(|r| r.1).collect());
        assert!(
            s.mean <= 1.10,
            "-j{jobs}: mean makespan / lower bound {:.4} > 1.10 ({s:?})",
            s.mean
        );
    }
}

#[test]
fn critical_path_priority_beats_plan_order() {
    // Same instances, same jobs: knowing the critical path must not make schedules worse on
    // average than starting ready tasks in file order.
    let mean = |est| {
        let rs = support::ratios(SEED, 30, 500, 4, est);
        Stats::of(rs.into_iter().map(|r| r.1).collect()).mean
    };
    let (cp, fifo) = (mean(Estimates::Exact), mean(Estimates::PlanOrder));
    assert!(cp <= fifo, "critical path {cp:.4} vs plan order {fifo:.4}");
}

#[test]
fn simulation_is_exact_on_small_cases() {
    // A chain: the makespan is the sum of durations, whatever jobs is.
    let chain = Instance {
        family: "chain",
        deps: vec![vec![], vec![0], vec![1]],
        dur: vec![1.0, 2.0, 3.0],
    };
    assert_eq!(support::simulate(&chain, 4, Estimates::Exact, 0), 6.0);
    // Independent tasks 3, 3, 2, 2, 2 on 2 workers: longest first gives 3+2+2 | 3+2 = 7,
    // which is not optimal (6) but is what critical-path-first list scheduling does.
    let flat = Instance {
        family: "flat",
        deps: vec![vec![]; 5],
        dur: vec![2.0, 3.0, 2.0, 3.0, 2.0],
    };
    assert_eq!(support::simulate(&flat, 2, Estimates::Exact, 0), 7.0);
    assert_eq!(flat.lower_bound(2), 6.0);
    // The diamond the scheduler unit tests use: 0 -> {1, 2, 3} -> 4.
    let diamond = Instance {
        family: "diamond",
        deps: vec![vec![], vec![0], vec![0], vec![0], vec![1, 2, 3]],
        dur: vec![1.0, 1.0, 5.0, 2.0, 1.0],
    };
    assert_eq!(support::simulate(&diamond, 2, Estimates::Exact, 0), 7.0);
    assert_eq!(diamond.lower_bound(2), 7.0);
}
