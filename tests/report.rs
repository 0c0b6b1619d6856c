//! `orch report` and `orch build --report`: a real build (the fake claude, a flaky agent that
//! is retried twice, the sim agent, a shell task and an agent merge) is recorded in
//! `.orchestrator/runs/`, drawn into report.html, and rendered in Debian's headless chromium
//! (tests/common/chromium.rs): one bar per attempt, the totals equal to `build_finished` of the
//! same build's `--json` stream, every task in the graph, nothing fetched. The screenshot is
//! kept with `ORCH_KEEP_SCREENSHOT=path` (docs/report.png was made so).

mod common;

use common::chromium::{render_with, RenderOptions};
use common::{fake_claude, Project};
use serde_json::Value;

/// design -> api (fails twice with a 529 that costs, then succeeds) and ui; lint (sim) and
/// docs (shell) beside them; review needs all four; an agent merges the results.
fn project() -> Project {
    Project::new(&format!(
        r#"
[settings]
jobs = 3
retry_backoff = "200ms"
retry_backoff_max = "400ms"

[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok", FAKE_SLEEP = "0.3" }}

[agents.flaky]
preset = "claude"
command = ["{fake}"]
env = {{ FAKE_MODE = "overload_json:2", FAKE_SLEEP = "0.2" }}
retries = 3
# A provider of its own: alone there, its overloads back off (beside the other claude tasks
# they would cut the shared limit, and the limiter, not a backoff, would pace the retries).
provider = "flaky-api"

[tasks.design]
title = "Sketch the design"
prompt = "Sketch the design."

[tasks.api]
title = "Write the API"
agent = "flaky"
prompt = "Write the API."
deps = ["design"]

[tasks.ui]
title = "Write the UI"
prompt = "Write the UI."
deps = ["design"]

[tasks.lint]
title = "Lint (simulated)"
agent = "sim"
estimate = "30s"
prompt = "Lint."

[tasks.docs]
title = "Build the docs"
run = "sleep 0.4; echo docs built"

[tasks.review]
title = "Review it all"
prompt = "Review."
deps = ["api", "ui", "docs", "lint"]

[aggregate]
strategy = "agent"
title = "Merged"
"#,
        fake = fake_claude().display()
    ))
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the page says about itself, computed in the browser.
const PROBE: &str = r##"
    const bars = [...document.querySelectorAll("#timeline rect.attempt")];
    const per = {};
    for (const b of bars) per[b.dataset.task] = (per[b.dataset.task] || 0) + 1;
    const value = id => document.getElementById(id)?.dataset.value ?? null;
    return {
      bars: bars.length,
      per_task: per,
      retried: document.querySelectorAll("#timeline rect.attempt.retried").length,
      widths_ok: bars.every(b => b.getBoundingClientRect().width >= 2),
      backoffs: document.querySelectorAll("#timeline rect.span.backoff").length,
      cost: value("total-cost"),
      input_tokens: value("total-input-tokens"),
      output_tokens: value("total-output-tokens"),
      retries: value("total-retries"),
      ran: value("total-ran"),
      sum_build: document.querySelector("#sum-build td[data-cost]")?.dataset.cost ?? null,
      sum_tasks: document.querySelector("#sum-tasks td[data-cost]")?.dataset.cost ?? null,
      sum_other: document.querySelector("#sum-other td[data-cost]")?.dataset.cost ?? null,
      nodes: [...document.querySelectorAll("#dag g.node")].map(g => [g.dataset.task, g.classList[1]]),
      edges: document.querySelectorAll("#dag path.edge").length,
      slowest: document.querySelectorAll("#slowest tr[data-task]").length,
      dearest: document.querySelector("#most-expensive tr[data-task]")?.dataset.task ?? null,
      outcome: document.getElementById("outcome").textContent,
      settings: document.getElementById("settings").textContent,
      page_height: document.documentElement.scrollHeight,
    };"##;

#[test]
fn the_report_shows_every_attempt_and_the_totals_of_the_json_stream() {
    let p = project();
    let run = p.orch(&["build", "--json", "--report"]);
    run.success();
    assert!(
        run.stderr().contains("report written to"),
        "{}",
        run.stderr()
    );
    let stream = events(&run.stdout());
    let finished = stream
        .iter()
        .find(|e| e["event"] == "build_finished")
        .expect("build_finished");
    let mut starts = std::collections::BTreeMap::<String, u64>::new();
    for e in stream.iter().filter(|e| e["event"] == "task_started") {
        *starts
            .entry(e["task"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(starts["api"], 3, "two 529s, then the answer: {starts:?}");
    assert_eq!(starts.len(), 6);

    // The record is the stream, line for line, after its header.
    let runs: Vec<_> = std::fs::read_dir(p.path(".orchestrator/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let record = std::fs::read_to_string(&runs[0]).unwrap();
    let recorded = events(&record);
    assert_eq!(recorded[0]["record"], "run");
    assert_eq!(recorded.len(), stream.len() + 1);
    assert_eq!(recorded[1..], stream[..]);

    let html = p.path(".orchestrator/report.html");
    let r = render_with(
        &html,
        &RenderOptions {
            window: (1280, 1500),
            probe: Some(PROBE.into()),
            ..RenderOptions::default()
        },
    );
    eprintln!("render: {:?}", r.elapsed);
    assert!(r.page_requests.is_empty(), "{:?}", r.page_requests);
    let probe = r.probe.clone().expect("probe");
    eprintln!("{probe:#}");

    // One bar per attempt, each task's as many as it started.
    let total_starts: u64 = starts.values().sum();
    assert_eq!(probe["bars"], total_starts);
    for (task, n) in &starts {
        assert_eq!(probe["per_task"][task], *n, "{task}: {probe}");
    }
    assert_eq!(probe["retried"], 2);
    assert_eq!(probe["backoffs"], 2);
    assert_eq!(probe["widths_ok"], true);

    // The totals are build_finished's.
    let num = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert_eq!(num(&probe["cost"]), finished["cost_usd"].as_f64().unwrap());
    assert_eq!(
        num(&probe["sum_build"]),
        finished["cost_usd"].as_f64().unwrap()
    );
    assert_eq!(
        num(&probe["input_tokens"]),
        finished["input_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        num(&probe["output_tokens"]),
        finished["output_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        num(&probe["retries"]),
        finished["retries"].as_f64().unwrap()
    );
    assert_eq!(num(&probe["ran"]), finished["ran"].as_f64().unwrap());
    // The tasks' own costs and the merge's add up to it: 4 answers and 2 failed calls, then
    // the merge's answer.
    let tasks_cost: f64 = stream
        .iter()
        .filter(|e| e["event"] == "task_finished")
        .filter_map(|e| e["cost_usd"].as_f64())
        .sum();
    assert!(
        (num(&probe["sum_tasks"]) - tasks_cost).abs() < 1e-9,
        "{probe}"
    );
    assert!((tasks_cost - (4.0 * 0.0021 + 2.0 * 0.001)).abs() < 1e-9);
    assert!((num(&probe["sum_other"]) - 0.0021).abs() < 1e-9, "{probe}");

    // The graph: every task, coloured by status, an edge per dep.
    let nodes = probe["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6, "{probe}");
    assert!(nodes.iter().all(|n| n[1] == "succeeded"), "{probe}");
    assert_eq!(probe["edges"], 6);
    assert_eq!(probe["slowest"], 5);
    assert_eq!(probe["dearest"], "api", "two failed calls and the answer");
    assert_eq!(probe["outcome"], "succeeded");
    let settings = probe["settings"].as_str().unwrap();
    assert!(
        settings.contains("settings.retry_backoff200ms"),
        "{settings}"
    );
    assert!(settings.contains("settings.jobs3"), "{settings}");

    // A picture a person can look at: bars and text make a far bigger PNG than a blank page.
    let png = std::fs::read(&r.screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(r.screenshot_size(), (1280, 1500));
    assert!(png.len() > 40_000, "{} bytes", png.len());
    if let Ok(keep) = std::env::var("ORCH_KEEP_SCREENSHOT") {
        std::fs::copy(&r.screenshot, keep).unwrap();
    }
}

#[test]
fn orch_report_draws_the_last_run_or_an_older_one() {
    let p = project();
    let no_run = p.orch(&["report"]);
    assert_eq!(no_run.code(), 2);
    assert!(
        no_run.stderr().contains("no build recorded"),
        "{}",
        no_run.stderr()
    );

    p.orch(&["build", "-q"]).success();
    // Nothing to do: that build is recorded too, with its skips.
    p.orch(&["build", "-q"]).success();
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        7,
        "no call the second time"
    );

    let last = p.orch(&["report"]).ok();
    assert!(
        last.stdout().contains("6 task(s), 0 attempt(s)"),
        "{}",
        last.stdout()
    );
    let page = p.read(".orchestrator/report.html");
    assert_eq!(page.matches(r#"<g class="node up-to-date""#).count(), 6);

    let first = p.orch(&["report", "--run", "1", "-o", "first.html"]).ok();
    assert!(
        first.stdout().contains("6 task(s), 8 attempt(s)"),
        "{}",
        first.stdout()
    );
    let page = p.read("first.html");
    assert_eq!(page.matches(r#"<rect class="attempt "#).count(), 8);
    assert_eq!(page.matches(r#"<g class="node succeeded""#).count(), 6);

    let too_far = p.orch(&["report", "--run", "2"]);
    assert_eq!(too_far.code(), 2);
    assert!(
        too_far.stderr().contains("2 build(s) recorded"),
        "{}",
        too_far.stderr()
    );

    // Another no-op, on the fast path when the last one left its record (not recorded then:
    // it replays that one), or a full check: either way `--report` draws the last record.
    std::fs::remove_file(p.path(".orchestrator/report.html")).unwrap();
    let again = p.orch(&["build", "-q", "--report"]).ok();
    assert!(
        again.stderr().contains("report written to"),
        "{}",
        again.stderr()
    );
    let page = p.read(".orchestrator/report.html");
    assert_eq!(page.matches(r#"<g class="node up-to-date""#).count(), 6);
}

#[test]
fn events_of_kinds_added_later_are_drawn_not_refused() {
    // A record as later orch versions may write it: quota waits, a cache restore, a budget
    // stop, and a torn last line.
    let p = Project::empty();
    p.write(
        "run.jsonl",
        r#"{"record":"run","record_version":1,"command":"build","tasks":[{"id":"a","title":"A","agent":"claude","deps":[]},{"id":"b","title":"B","agent":"claude","deps":["a"]},{"id":"c","title":"C","agent":"claude","deps":["a"]}]}
{"event":"build_started","format_version":1,"tasks":3,"jobs":2,"ts_ms":1000}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":1,"ts_ms":1000}
{"event":"task_finished","task":"a","agent_id":"Agent-01","agent":"claude","duration_ms":500,"retries":0,"cost_usd":0.5,"input_tokens":10,"output_tokens":2,"ts_ms":1500}
{"event":"task_restored","task":"b","agent_id":"Agent-02","cost_saved_usd":0.25,"ts_ms":1510}
{"event":"quota_wait_started","provider":"anthropic","until":"15:00","ts_ms":1520}
{"event":"task_waiting_for_quota","task":"c","agent_id":"Agent-03","until_ms":1900,"ts_ms":1520}
{"event":"quota_wait_ended","provider":"anthropic","ts_ms":1900}
{"event":"budget_stopped","spent_usd":0.5,"remaining":["c"],"ts_ms":1950}
{"event":"build_finished","success":false,"ran":1,"cost_usd":0.5,"input_tokens":10,"output_tokens":2,"duration_ms":1000,"ts_ms":2000}
{"event":"task_sta"#,
    );
    let out = p.orch(&["report", "--record", "run.jsonl"]).ok();
    assert!(out.stdout().contains("run.html"), "{}", out.stdout());
    let page = p.read("run.html");
    assert!(
        page.contains(r#"<g class="node restored" data-task="b""#),
        "{page}"
    );
    assert!(page.contains(r#"<rect class="attempt restored" data-task="b""#));
    assert!(page.contains(r#"<rect class="span quota_wait" data-lane="build""#));
    assert!(page.contains(r#"<rect class="span task_waiting_for_quota" data-lane="c""#));
    assert!(page.contains(r#"<circle class="mark budget_stopped" data-lane="build""#));
    assert!(page.contains("1 event(s) budget_stopped"));
    assert!(page.contains("1 line(s) of the record were not events"));
}

#[test]
fn budget_stops_provider_waits_and_cache_restores_as_their_events_say() {
    // The shapes the budget, limiter and cache work emit: a provider's wait until a time,
    // over the tasks it holds, ended early by its resume; a task the budget kept from
    // starting; a restore (its duration is the restored run's, not this build's).
    let p = Project::empty();
    p.write(
        "run.jsonl",
        r#"{"record":"run","record_version":1,"command":"build","tasks":[{"id":"a","title":"A","agent":"claude","deps":[]},{"id":"b","title":"B","agent":"claude","deps":[]},{"id":"c","title":"C","agent":"claude","deps":["a"]}]}
{"event":"build_started","format_version":1,"tasks":3,"jobs":2,"ts_ms":1000}
{"event":"task_restored","task":"b","agent_id":"Agent-02","agent":"claude","duration_ms":90000,"source":"local","why":"never built","saved_cost_usd":0.25,"ts_ms":1010}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":1,"ts_ms":1020}
{"event":"provider_limit","provider":"anthropic","limit":1,"max":4,"reason":"429","ts_ms":1100}
{"event":"provider_waiting","provider":"anthropic","until_ms":9000,"until":"15:00","quota":true,"reason":"limit reached","tasks":["a"],"ts_ms":1200}
{"event":"provider_resumed","provider":"anthropic","quota":true,"ts_ms":1600}
{"event":"task_finished","task":"a","agent_id":"Agent-01","agent":"claude","duration_ms":900,"retries":0,"cost_usd":0.5,"ts_ms":1900}
{"event":"budget_reached","task":"c","agent_id":"Agent-03","projected_usd":0.5,"spent_usd":0.5,"running_usd":0,"max_cost_usd":0.75,"ts_ms":1910}
{"event":"build_finished","success":false,"ran":1,"restored":1,"saved_cost_usd":0.25,"not_started":1,"stopped_by":"budget","max_cost_usd":0.75,"cost_usd":0.5,"duration_ms":1000,"ts_ms":2000}
"#,
    );
    p.orch(&["report", "--record", "run.jsonl"]).ok();
    let page = p.read("run.html");
    assert!(
        page.contains(r#"id="outcome">stopped by the budget<"#),
        "{page}"
    );
    // The restore: a moment at its event, not a 90 s bar.
    let width_after = |needle: &str| -> f64 {
        let at = page
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {page}"));
        page[at..]
            .split("width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let w = width_after(r#"<rect class="attempt restored" data-task="b""#);
    assert_eq!(w, 2.0, "the narrowest bar");
    assert!(page.contains(r#"<g class="node restored" data-task="b""#));
    // The wait, on the build's lane and on the lane of the task it held, both cut at the
    // resume (1200..1600 of 1000..2000: 40% of the plot, about 364 px), not at 9000.
    for lane in ["build", "a"] {
        let w = width_after(&format!(
            r#"<rect class="span provider_waiting" data-lane="{lane}""#
        ));
        assert!((w - 364.0).abs() < 2.0, "{lane}: width {w}");
    }
    assert!(page.contains(r#"<circle class="mark provider_limit" data-lane="build""#));
    assert!(page.contains(r#"<circle class="mark budget_reached" data-lane="c""#));
    assert!(
        !page.contains(r#"class="mark provider_resumed""#),
        "it ended the wait"
    );
}

#[test]
fn the_task_table_of_a_fixed_record() {
    let p = Project::empty();
    p.write(
        "run.jsonl",
        r#"{"record":"run","record_version":1,"command":"build","tasks":[{"id":"a","title":"A <b>","agent":"claude","deps":[]},{"id":"b","title":"B","agent":"shell","deps":["a"]}]}
{"event":"build_started","format_version":1,"tasks":2,"jobs":2,"ts_ms":1000}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":1,"ts_ms":1000}
{"event":"task_retried","task":"a","agent_id":"Agent-01","attempt":1,"reason":"529","delay_ms":100,"cost_usd":0.001,"input_tokens":5,"output_tokens":null,"ts_ms":1200}
{"event":"task_started","task":"a","agent_id":"Agent-01","agent":"claude","attempt":2,"ts_ms":1300}
{"event":"task_finished","task":"a","agent_id":"Agent-01","agent":"claude","duration_ms":800,"retries":1,"cost_usd":0.0031,"input_tokens":105,"cache_read_tokens":7,"output_tokens":20,"ts_ms":1800}
{"event":"task_started","task":"b","agent_id":"Agent-02","agent":"shell","attempt":1,"ts_ms":1800}
{"event":"task_failed","task":"b","agent_id":"Agent-02","agent":"shell","duration_ms":200,"retries":0,"reason":"exit 3","cost_usd":null,"ts_ms":2000}
{"event":"aggregate_failed","reason":"results missing","ts_ms":2000}
{"event":"build_finished","success":false,"ran":1,"failed":1,"retries":1,"cost_usd":0.0052,"input_tokens":205,"cache_read_tokens":7,"output_tokens":40,"duration_ms":1000,"ts_ms":2000}
"#,
    );
    p.orch(&["report", "--record", "run.jsonl", "-o", "r.html"])
        .ok();
    let page = p.read("r.html");
    let start = page.find(r#"<table id="task-table">"#).unwrap();
    let end = start + page[start..].find("</table>").unwrap() + "</table>".len();
    let table = page[start..end].replace("<tr", "\n<tr");
    insta::assert_snapshot!(table);
}
