//! Budgets with the real binary and the fake claude (`FAKE_COST` dollars a call): a build
//! stops before a task whose projected cost would pass `max_cost_usd` / `--max-cost`,
//! running tasks finish, and it says so in its summary, `--json`, master_plan.md and exit
//! status 3; projections come from `cost_estimate`, then from what tasks cost before; the
//! dry run shows them; a per-attempt limit reaches claude as `--max-budget-usd`.

mod common;

use common::{fake_claude, Project};
use serde_json::Value;

/// `n` independent agent tasks, each costing `cost` a call, with `extra` in each task.
fn tasks(n: usize, cost: f64, settings: &str, extra: &str) -> Project {
    let mut text = format!(
        r#"
[settings]
{settings}

[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok", FAKE_COST = "{cost}", FAKE_SLEEP = "0.2" }}
"#,
        fake = fake_claude().display()
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[tasks.t{i:02}]\nprompt = \"Task {i}.\"\n{extra}\n"
        ));
    }
    Project::new(&text)
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn finished(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["event"] == "build_finished")
        .expect("build_finished")
}

fn calls(p: &Project) -> usize {
    p.lines(".orchestrator/calls.log").len()
}

#[test]
fn at_a_budget_stop_up_to_date_tasks_not_yet_reached_are_up_to_date_not_unstarted() {
    let p = tasks(6, 0.1, "jobs = 3", "cost_estimate = 0.1");
    assert_eq!(p.orch(&["build", "--json"]).code(), 0);
    // Three tasks change; the budget takes two of them.
    let text = p.read("Orchfile.toml");
    let text = ["Task 0.", "Task 1.", "Task 2."]
        .iter()
        .fold(text, |t, prompt| {
            t.replace(prompt, &format!("{prompt} Again."))
        });
    p.write(
        "Orchfile.toml",
        &text.replace("jobs = 3", "jobs = 3\nmax_cost_usd = 0.25"),
    );
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let end = finished(&ev);
    assert_eq!(end["stopped_by"], "budget", "{end}");
    assert_eq!(end["ran"], 2, "{end}");
    assert_eq!(
        end["skipped"], 3,
        "the unchanged three are up to date: {end}"
    );
    assert_eq!(end["not_started"], 1, "{end}");
}

#[test]
fn the_budget_stops_the_build_before_a_task_that_would_pass_it() {
    let p = tasks(
        6,
        0.1,
        "max_cost_usd = 0.35\njobs = 3",
        "cost_estimate = 0.1",
    );
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let end = finished(&ev);
    assert_eq!(end["stopped_by"], "budget", "{end}");
    assert_eq!(end["ran"], 3, "{end}");
    assert_eq!(end["not_started"], 3, "{end}");
    assert_eq!(end["success"], false);
    let cost = end["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.3).abs() < 1e-9, "{end}");
    assert!((end["budget_remaining_usd"].as_f64().unwrap() - 0.05).abs() < 1e-9);
    assert_eq!(end["max_cost_usd"], 0.35);
    let reached: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event"] == "budget_reached")
        .collect();
    assert_eq!(reached.len(), 1, "said once: {reached:?}");
    assert_eq!(reached[0]["projected_usd"], 0.1);
    assert_eq!(calls(&p), 3, "no call past the budget");
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("Budget Reached"), "{doc}");
    assert!(doc.contains("stopped by the budget"), "{doc}");

    // The summary line of the plain output says it too.
    let p = tasks(4, 0.1, "max_cost_usd = 0.15", "cost_estimate = 0.1");
    let run = p.orch(&["build", "-j", "1"]);
    assert_eq!(run.code(), 3);
    assert!(
        run.stderr()
            .contains("stopped by the budget ($0.1000 of $0.1500 spent"),
        "{}",
        run.stderr()
    );
}

/// The issue's bound: with every cost unknown at first, the build never spends more than
/// one in-flight task's cost past the budget (the first task runs alone; the rest are
/// projected from what it cost).
#[test]
fn a_budget_is_passed_by_at_most_one_tasks_cost_when_costs_are_unknown() {
    let p = tasks(20, 0.1, "", "");
    let run = p.orch(&["build", "--json", "-j", "8", "--max-cost", "1.05"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    let ev = events(&run.stdout());
    let cost = finished(&ev)["cost_usd"].as_f64().unwrap();
    assert!(cost <= 1.05 + 0.1 + 1e-9, "spent {cost}");
    assert!(cost >= 1.05 - 0.1 - 1e-9, "the budget is used: {cost}");
    // The first task ran alone: the second started after it ended.
    let first_end = ev
        .iter()
        .position(|e| e["event"] == "task_finished")
        .unwrap();
    let starts = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "task_started")
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    assert!(starts[1] > first_end, "{ev:?}");
    assert_eq!(calls(&p), finished(&ev)["ran"].as_u64().unwrap() as usize);

    // The next build projects each task from its own last cost: forced, with a budget for
    // three, it runs three.
    p.clear(".orchestrator/calls.log");
    let run = p.orch(&["build", "-B", "-j", "8", "--max-cost", "0.3", "--json"]);
    assert_eq!(run.code(), 3, "stderr:\n{}", run.stderr());
    assert_eq!(calls(&p), 3);
}

#[test]
fn without_a_budget_nothing_is_held_back_and_the_exit_is_0() {
    let p = tasks(3, 0.1, "", "");
    p.orch(&["build", "-j", "3"]).success();
    assert_eq!(calls(&p), 3);
}

#[test]
fn the_dry_run_shows_the_projected_cost_and_where_the_budget_stops() {
    let p = tasks(4, 0.1, "", "cost_estimate = 0.25");
    let out = p.orch(&["build", "-n", "--max-cost", "0.6"]).ok().stdout();
    assert!(
        out.contains("Projected cost: $1.0000 for 4 agent task(s) (4 from cost_estimate)"),
        "{out}"
    );
    assert!(
        out.contains("budget $0.6000: the build would stop before t02 (2 task(s) not started)"),
        "{out}"
    );
    // After a run, each task's own cost is known.
    p.orch(&["build", "-j", "4"]).success();
    let out = p.orch(&["build", "-n", "-B"]).ok().stdout();
    assert!(
        out.contains("Projected cost: $0.4000 for 4 agent task(s) (4 from its last run)"),
        "{out}"
    );
    // Nothing to run, nothing to say about money.
    let out = p.orch(&["build", "-n"]).ok().stdout();
    assert!(!out.contains("Projected cost"), "{out}");
}

#[test]
fn an_attempts_limit_reaches_claude_as_max_budget_usd() {
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}
max_cost_usd = 0.5

[tasks.a]
prompt = "A."

[tasks.b]
prompt = "B."
max_cost_usd = 0.05
"#,
        fake = fake_claude().display()
    ));
    p.orch(&["build"]).success();
    let args = p.lines(".orchestrator/args.log");
    assert_eq!(args.len(), 2, "{args:?}");
    let mut budgets: Vec<&str> = args
        .iter()
        .map(|a| {
            a.split("--max-budget-usd ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or_else(|| panic!("no --max-budget-usd in {a}"))
        })
        .collect();
    budgets.sort();
    assert_eq!(budgets, ["0.05", "0.5"]);
}

#[test]
fn bad_money_fields_are_refused_with_their_span() {
    let p = Project::new(
        "[settings]\nmax_cost_usd = -1\n\n[tasks.a]\nrun = \"true\"\ncost_estimate = 0.1\n",
    );
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 2);
    let err = run.stderr();
    assert!(
        err.contains("max_cost_usd must be a number of US dollars"),
        "{err}"
    );
    assert!(
        err.contains("task `a` runs a shell command: cost_estimate applies to agent tasks"),
        "{err}"
    );
    let run = p.orch(&["build", "--max-cost", "lots"]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("not a number of US dollars"));
}
