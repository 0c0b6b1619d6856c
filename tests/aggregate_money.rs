//! The aggregation's merge by an agent is a paid call like a task's, with the real binary and
//! the fake claude: the budget refuses it when its projection would pass the limit (exit 3,
//! `stopped_by: "budget"`, final_output.md not written, and why), the dry run counts it,
//! every attempt of a retried merge is paid for, it waits on its provider's retry-after and
//! usage-limit reset as a task does, and unchanged results are never merged again.

mod common;

use common::{fake_claude, Project};
use serde_json::Value;

/// Two agent tasks of `claude` at $0.10 a call (each result its prompt), merged by the agent `merger` (claude's CLI
/// at a provider of its own) whose calls cost $0.05, in `merger_mode`; `aggregate` and `settings` added.
fn project(merger_mode: &str, aggregate: &str, settings: &str) -> Project {
    Project::new(&format!(
        r#"
[settings]
{settings}

[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "echo", FAKE_COST = "0.1" }}

[agents.merger]
preset = "claude"
command = ["{fake}"]
provider = "merger-api"
env = {{ FAKE_MODE = "{merger_mode}", FAKE_COST = "0.05", FAKE_RESET_IN = "2", FAKE_RETRY_AFTER = "2" }}
retries = 2

[tasks.t0]
prompt = "Task 0."
cost_estimate = 0.1

[tasks.t1]
prompt = "Task 1."
cost_estimate = 0.1

[aggregate]
strategy = "agent"
agent = "merger"
title = "Merged"
{aggregate}
"#,
        fake = fake_claude().display()
    ))
}

fn of<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

fn finished(ev: &[Value]) -> &Value {
    of(ev, "build_finished")
        .pop()
        .unwrap_or_else(|| panic!("no build_finished in {ev:?}"))
}

/// The merge's calls: the fake logs `?` for a call without a task id.
fn merge_calls(p: &Project) -> usize {
    p.lines(".orchestrator/calls.log")
        .iter()
        .filter(|l| l.as_str() == "?")
        .count()
}

#[test]
fn the_budget_refuses_a_merge_that_would_pass_it() {
    let p = project("ok", "cost_estimate = 0.2", "");
    let run = p.orch(&["build", "--json", "--max-cost", "0.35"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let ev = run.json_lines();
    let end = finished(&ev);
    assert_eq!(end["stopped_by"], "budget", "{end}");
    assert_eq!(end["ran"], 2, "the tasks ran: {end}");
    assert_eq!(end["not_started"], 0, "{end}");
    assert_eq!(end["not_aggregated"], true, "{end}");
    assert_eq!(end["success"], false, "{end}");
    assert!(
        (end["cost_usd"].as_f64().unwrap() - 0.2).abs() < 1e-9,
        "{end}"
    );
    assert!((end["budget_remaining_usd"].as_f64().unwrap() - 0.15).abs() < 1e-9);
    let reached = of(&ev, "budget_reached");
    assert_eq!(reached.len(), 1, "{ev:?}");
    assert_eq!(reached[0]["task"], "aggregate");
    assert_eq!(reached[0]["projected_usd"], 0.2);
    assert!((reached[0]["spent_usd"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    let failed = of(&ev, "aggregate_failed");
    assert_eq!(failed.len(), 1, "{ev:?}");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("final_output.md not aggregated: the merge by agent `merger`"),
        "{reason}"
    );
    assert_eq!(merge_calls(&p), 0, "never called");
    assert!(!p.exists(".orchestrator/final_output.md"));
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("Budget Reached"), "{doc}");
    assert!(
        doc.contains("final_output.md not aggregated: the merge by agent `merger` (projected $0.2000) does not fit in the budget: $0.2000 spent of $0.3500"),
        "{doc}"
    );
    assert!(doc.contains("stopped by the budget"), "{doc}");

    // The plain output says it in the same words.
    let run = p.orch(&["build", "--max-cost", "0.1"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let stderr = run.stderr();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("budget") || l.contains("aggregation"))
        .map(str::trim)
        // The summary's duration varies.
        .map(|l| {
            if l.starts_with("failed:") {
                l.rsplit_once(" in ").map_or(l, |(said, _)| said)
            } else {
                l
            }
        })
        .collect::<Vec<_>>();
    insta::assert_snapshot!("merge_refused_plain", said.join("\n"));

    // With room for it, the next build merges (the tasks are up to date) and pays for it.
    let run = p.orch(&["build", "--json", "--max-cost", "1"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let end = finished(&run.json_lines()).clone();
    assert!(
        (end["cost_usd"].as_f64().unwrap() - 0.05).abs() < 1e-9,
        "{end}"
    );
    assert_eq!(merge_calls(&p), 1);
    assert!(p.exists(".orchestrator/final_output.md"));
}

#[test]
fn a_merge_of_unknown_cost_runs_while_money_is_left_and_is_then_projected_from_its_last_cost() {
    // No estimate and no history of `merger`: the merge's cost is unknown.
    let p = project("ok", "", "");
    let run = p.orch(&["build", "--json", "--max-cost", "0.2"]);
    assert_eq!(run.code(), 3, "the tasks took it all:\n{}", run.stderr());
    let ev = run.json_lines();
    assert_eq!(of(&ev, "budget_reached")[0]["projected_usd"], Value::Null);
    assert_eq!(merge_calls(&p), 0);
    p.orch(&["build", "--max-cost", "0.25"]).success();
    assert_eq!(merge_calls(&p), 1, "money was left");
    // New results: $0.20 for the tasks (their agent's mean), and the merge projected from its
    // own last cost, its definition unchanged.
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("Task 0.", "Task 0 again."),
    );
    let run = p.orch(&["build", "--json", "--max-cost", "0.14"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let ev = run.json_lines();
    assert_eq!(of(&ev, "budget_reached")[0]["projected_usd"], 0.05);
    assert_eq!(merge_calls(&p), 1);
}

#[test]
fn the_dry_run_counts_the_merge_and_where_the_budget_stops_it() {
    let p = project("ok", "cost_estimate = 0.5", "");
    let out = p.orch(&["build", "-n", "--max-cost", "0.6"]).ok().stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("Projected cost"))
        .unwrap_or_else(|| panic!("{out}"));
    insta::assert_snapshot!("dry_run_with_merge", line);
    p.orch(&["build"]).success();
    // Forced, every projection is its own last cost.
    let out = p.orch(&["build", "-n", "-B"]).ok().stdout();
    assert!(
        out.contains(
            "Projected cost: $0.2000 for 2 agent task(s) (2 from its last run); then $0.0500 \
             for the merge into final_output.md (from its last run) ($0.2500 in all)"
        ),
        "{out}"
    );
    // Nothing would run and the results are those merged: nothing to say about money.
    let out = p.orch(&["build", "-n"]).ok().stdout();
    assert!(!out.contains("Projected cost"), "{out}");
    // A result changed behind orch's back: the merge would run again.
    let result = std::fs::read_dir(p.path(".orchestrator/results"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(result, "edited\n").unwrap();
    let out = p.orch(&["build", "-n"]).ok().stdout();
    assert!(out.contains("for the merge into final_output.md"), "{out}");
}

#[test]
fn every_attempt_of_a_retried_merge_is_paid_for() {
    // The first merge call fails overloaded at $0.001, the retry answers at $0.05.
    let p = project("overload_json:1", "", "retry_backoff = \"0s\"");
    let run = p.orch(&["build", "--json", "--max-cost", "5"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let end = finished(&run.json_lines()).clone();
    let cost = end["cost_usd"].as_f64().unwrap();
    assert!((cost - (0.2 + 0.001 + 0.05)).abs() < 1e-9, "{end}");
    assert_eq!(merge_calls(&p), 2);
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("Result Aggregation Retry"), "{doc}");
    assert!(
        doc.contains("attempt 1 of the merge by `merger` failed ($0.0010)"),
        "{doc}"
    );
    // Both attempts are its last cost.
    let out = p.orch(&["build", "-n", "-B"]).ok().stdout();
    assert!(
        out.contains("then $0.0510 for the merge into final_output.md (from its last run)"),
        "{out}"
    );
}

#[test]
fn the_merge_waits_out_its_providers_retry_after() {
    // A 30 s backoff would show: the retry-after paces the retry instead.
    let p = project("rate_limited:1", "", "retry_backoff = \"30s\"");
    let started = std::time::Instant::now();
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let ev = run.json_lines();
    let waiting = of(&ev, "provider_waiting");
    assert_eq!(waiting.len(), 1, "{ev:?}");
    assert_eq!(waiting[0]["provider"], "merger-api");
    assert_eq!(waiting[0]["quota"], false);
    assert_eq!(waiting[0]["tasks"], serde_json::json!(["aggregate"]));
    // The refusal cut the merge's provider and no other.
    let limits = of(&ev, "provider_limit");
    assert!(!limits.is_empty(), "{ev:?}");
    assert!(
        limits.iter().all(|e| e["provider"] == "merger-api"),
        "{ev:?}"
    );
    assert!(!of(&ev, "provider_resumed").is_empty(), "{ev:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "it waited"
    );
    assert_eq!(merge_calls(&p), 2);
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(
        doc.contains("retrying when its provider takes another call"),
        "paced, not backed off: {doc}"
    );
    assert!(doc.contains("calls paused until"), "{doc}");
    assert!(p
        .read(".orchestrator/final_output.md")
        .contains("after the retry-after"));
}

#[test]
fn the_merge_waits_for_a_usage_limit_reset_without_spending_a_retry() {
    let p = project("quota:1", "", "");
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 0, "stderr:\n{}", run.stderr());
    let ev = run.json_lines();
    let waiting = of(&ev, "provider_waiting");
    assert_eq!(waiting.len(), 1, "{ev:?}");
    assert_eq!(waiting[0]["quota"], true);
    assert_eq!(waiting[0]["tasks"], serde_json::json!(["aggregate"]));
    assert_eq!(of(&ev, "provider_resumed").len(), 1, "{ev:?}");
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("waiting for quota until"), "{doc}");
    assert!(
        !doc.contains("Result Aggregation Retry"),
        "no retry spent: {doc}"
    );
    assert_eq!(merge_calls(&p), 2);
    assert!(p
        .read(".orchestrator/final_output.md")
        .contains("after the usage limit reset"));
}

#[test]
fn a_reset_past_max_quota_wait_stops_the_merge_with_exit_4() {
    let p = project("quota:1", "", "max_quota_wait = \"1s\"");
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 4, "stderr:\n{}", run.stderr());
    let ev = run.json_lines();
    assert_eq!(finished(&ev)["stopped_by"], "quota");
    let failed = of(&ev, "aggregate_failed");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("usage limit resets past max_quota_wait"),
        "{failed:?}"
    );
    assert_eq!(merge_calls(&p), 1);
}

#[test]
fn unchanged_results_are_never_merged_again() {
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}

[tasks.a]
run = "echo alpha"

[aggregate]
strategy = "agent"
prompt = "Be brief."
"#,
        fake = fake_claude().display()
    ));
    p.orch(&["build"]).success();
    assert_eq!(merge_calls(&p), 1);
    // The task runs again and prints the same: the merge is not repeated.
    p.orch(&["build", "-B"]).success();
    assert_eq!(merge_calls(&p), 1, "same results, same prompt");
    // Its prompt changed: merged again.
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("Be brief.", "Be briefer."),
    );
    p.orch(&["build"]).success();
    assert_eq!(merge_calls(&p), 2);
    // A result changed: merged again.
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("echo alpha", "echo beta"),
    );
    p.orch(&["build"]).success();
    assert_eq!(merge_calls(&p), 3);
}

/// A remote cache on 127.0.0.1 that answers every lookup "not there" at once and never
/// answers an upload: the build's end then waits on the uploads (the stall timeout), after
/// final_output.md is written and before the state is closed. Its listener lives as long as
/// the test process.
fn cache_that_never_takes_uploads() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut header = String::new();
                    while reader.read_line(&mut header).unwrap_or(0) > 2 {
                        header.clear();
                    }
                    if request.starts_with("PUT") {
                        // Hold the upload until the client goes away.
                        let _ = reader.read_to_end(&mut Vec::new());
                        return;
                    }
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    format!("http://{addr}/orch")
}

#[test]
fn a_kill_after_the_merge_does_not_pay_for_it_again() {
    let url = cache_that_never_takes_uploads();
    let p = project(
        "ok",
        "",
        &format!("remote_cache = \"{url}\"\nremote_cache_stall_timeout = \"60s\""),
    );
    let log = std::fs::File::create(p.path("orch.err")).unwrap();
    let mut child = p.command(&["build"]).stderr(log).spawn().unwrap();
    // final_output.md is written before the uploads are waited for: kill orch there.
    let limit = std::time::Duration::from_secs(30);
    let written = (0..limit.as_millis() / 50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        p.exists(".orchestrator/final_output.md")
    });
    let alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(written, "no final_output.md:\n{}", p.read("orch.err"));
    assert!(
        alive,
        "orch had ended before the kill: the test proves nothing"
    );
    assert_eq!(merge_calls(&p), 1);
    p.orch(&["build"]).success();
    assert_eq!(
        merge_calls(&p),
        1,
        "the merge agent was called again after the kill"
    );
}
