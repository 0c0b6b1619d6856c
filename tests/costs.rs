//! What a build paid for reaches its totals: every agent call counts, the merge of
//! `strategy = "agent"` too, with the real binary and the fake claude (each call costs
//! $0.0021).

mod common;

use common::{fake_claude, Project};

/// An agent task and an agent merge of its result.
fn merged_by_an_agent() -> Project {
    Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}

[tasks.a]
prompt = "Summarise the notes."

[aggregate]
strategy = "agent"
title = "Merged"
"#,
        fake = fake_claude().display()
    ))
}

fn build_finished(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "build_finished")
        .unwrap_or_else(|| panic!("no build_finished in {stdout}"))
}

#[test]
fn the_agent_merge_is_counted_in_the_build_cost() {
    let p = merged_by_an_agent();
    let run = p.orch(&["build", "--json"]);
    run.success();
    let finished = build_finished(&run.stdout());
    let cost = finished["cost_usd"].as_f64().unwrap_or(0.0);
    assert!(
        (cost - 0.0042).abs() < 1e-9,
        "the task's $0.0021 and the merge's: {finished}"
    );

    // Nothing changed: no call, nothing paid.
    let run = p.orch(&["build", "--json"]);
    run.success();
    let cost = build_finished(&run.stdout())["cost_usd"]
        .as_f64()
        .unwrap_or(0.0);
    assert_eq!(cost, 0.0);
}
