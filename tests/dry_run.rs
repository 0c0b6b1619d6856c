//! `orch build -n` drives the build's own scheduler in virtual time: what it prints (start,
//! slot, order) follows priorities, `max_parallel`, locks and `-j`, and is the order a real
//! build then starts the tasks in.

mod common;

use common::Project;

/// Two sim agents, one limited to a task at a time; priorities, a lock, a chain.
const PLAN: &str = r#"
[agents.solo]
preset = "sim"
max_parallel = 1

[agents.pool]
preset = "sim"

[tasks.design]
agent = "solo"
prompt = "design"
estimate = "40s"
priority = "P0"

[tasks.review]
agent = "solo"
prompt = "review"
estimate = "20s"

[tasks.notes]
agent = "solo"
prompt = "notes"
estimate = "10s"
priority = "P3"

[tasks.migrate]
agent = "pool"
prompt = "migrate"
estimate = "25s"
locks = ["db"]

[tasks.seed]
agent = "pool"
prompt = "seed"
estimate = "10s"
locks = ["db"]
priority = "P1"

[tasks.ship]
agent = "pool"
prompt = "ship"
estimate = "5s"
deps = ["design", "migrate"]
"#;

/// `(start, slot, task)` rows of a dry run's schedule.
fn rows(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .skip_while(|l| !l.trim_start().starts_with("start"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn the_dry_run_is_the_schedule_the_build_follows() {
    let p = Project::new(PLAN);
    let out = p.orch(&["build", "-n", "-j", "2"]).ok().stdout();
    let expected = [
        // P0 first; `seed` (P1) before `migrate` (both want the lock `db`).
        ("0s", "1", "design"),
        ("0s", "2", "seed"),
        // `seed` ends at 10s: the lock goes to `migrate`; `solo` is still `design`'s.
        ("10.0s", "2", "migrate"),
        // `design` ends at 40s: `review` gets `solo` (P2 before `notes`' P3), and `ship`
        // has both its deps (`migrate` ended at 35s).
        ("40.0s", "1", "review"),
        ("40.0s", "2", "ship"),
        // `notes` waits for `solo` (max_parallel 1) although slot 2 is free from 45s.
        ("1m00s", "1", "notes"),
    ];
    let got = rows(&out);
    let want: Vec<(String, String, String)> = expected
        .iter()
        .map(|&(a, b, c)| (a.into(), b.into(), c.into()))
        .collect();
    assert_eq!(got, want, "{out}");
    assert!(
        out.contains("projected wall time 1m10s (longest chain 45.0s)"),
        "{out}"
    );
    assert!(!p.exists(".orchestrator"), "a dry run writes nothing");

    // The real build, in the same time scaled down tenfold (so no two ends are closer than
    // half a second), starts them in the same order.
    let run = p
        .orch(&["build", "-j", "2", "--json", "--sim-speed", "10"])
        .ok();
    let started: Vec<String> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "task_started")
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    let planned: Vec<String> = got.iter().map(|r| r.2.clone()).collect();
    assert_eq!(started, planned);

    // Once built, the up-to-date tasks show as skipped, and only what changed runs.
    let out = p.orch(&["build", "-n", "-B", "review"]).ok().stdout();
    assert_eq!(
        rows(&out),
        [("0s".into(), "1".into(), "review".into())],
        "{out}"
    );
    let out = p.orch(&["build", "-n"]).ok().stdout();
    assert!(rows(&out).iter().all(|r| r.1 == "skip"), "{out}");
    assert!(out.contains("Would run 0 task(s)"), "{out}");
    assert!(out.contains("6 up to date"), "{out}");
}
