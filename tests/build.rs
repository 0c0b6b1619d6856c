//! End-to-end tests of `orch build`: the real binary, temp projects, fake agent CLIs.

mod common;

use std::time::Duration;

use common::*;

/// a -> b -> c, and d independent; each shell task appends its id to ran.log.
const CHAIN: &str = r#"
[settings]
jobs = 2

[tasks.a]
run = "echo a >> ran.log; cat in_a.txt > out_a.txt"
inputs = ["in_a.txt"]
outputs = ["out_a.txt"]

[tasks.b]
run = "echo b >> ran.log; cat out_a.txt in_b.txt > out_b.txt"
inputs = ["in_b.txt"]
outputs = ["out_b.txt"]
deps = ["a"]

[tasks.c]
run = "echo c >> ran.log; cat out_b.txt > out_c.txt"
outputs = ["out_c.txt"]
deps = ["b"]

[tasks.d]
run = "echo d >> ran.log; cat in_d.txt > out_d.txt"
inputs = ["in_d.txt"]
outputs = ["out_d.txt"]
"#;

fn chain() -> Project {
    let p = Project::new(CHAIN);
    for f in ["in_a.txt", "in_b.txt", "in_d.txt"] {
        p.write(f, &format!("{f} v1\n"));
    }
    p
}

/// Sets the completed tasks `ids` to `status` in master_plan.md's table, as a person would.
fn reset_in_status_table(p: &Project, ids: &[&str], status: &str) {
    let mut plan = p.read(".orchestrator/master_plan.md");
    for id in ids {
        let row = plan
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap()
            .to_string();
        plan = plan.replace(&row, &row.replace(" ✅ ", &format!(" {status} ")));
    }
    p.write(".orchestrator/master_plan.md", &plan);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn up_to_date_tasks_are_skipped_and_an_edit_reruns_only_its_cone() {
    let p = chain();
    p.orch(&["build"]).success();
    assert_eq!(sorted(p.lines("ran.log")), ["a", "b", "c", "d"]);
    assert_eq!(p.read("out_c.txt"), "in_a.txt v1\nin_b.txt v1\n");

    p.clear("ran.log");
    let run = p.orch(&["build"]);
    run.success();
    assert!(
        p.lines("ran.log").is_empty(),
        "nothing changed, nothing runs"
    );
    assert!(
        run.stderr().contains("0 ran, 4 up to date"),
        "{}",
        run.stderr()
    );

    p.write("in_b.txt", "in_b.txt v2\n");
    p.orch(&["build"]).success();
    assert_eq!(
        sorted(p.lines("ran.log")),
        ["b", "c"],
        "only b and its dependents"
    );
    assert_eq!(p.read("out_c.txt"), "in_a.txt v1\nin_b.txt v2\n");

    // Restoring the old content after a run counts as a change against the last success...
    p.clear("ran.log");
    p.write("in_b.txt", "in_b.txt v2\n");
    p.orch(&["build"]).success();
    assert!(
        p.lines("ran.log").is_empty(),
        "same content, different mtime: no run"
    );
}

#[test]
fn a_modified_or_deleted_output_is_rebuilt() {
    let p = chain();
    p.orch(&["build"]).success();
    p.clear("ran.log");
    std::fs::remove_file(p.path("out_d.txt")).unwrap();
    p.write("out_a.txt", "tampered\n");
    // From the output cache: the same outputs back, nothing run.
    p.orch(&["build"]).success();
    assert!(p.lines("ran.log").is_empty());
    assert_eq!(p.read("out_a.txt"), "in_a.txt v1\n");
    assert!(p.exists("out_d.txt"));
    // Without it, a and d run again.
    std::fs::remove_file(p.path("out_d.txt")).unwrap();
    p.write("out_a.txt", "tampered\n");
    p.orch(&["build", "--no-cache"]).success();
    // a restored the same content, so its dependents stay up to date (early cutoff).
    assert_eq!(sorted(p.lines("ran.log")), ["a", "d"]);
    assert_eq!(p.read("out_a.txt"), "in_a.txt v1\n");
}

#[test]
fn a_definition_change_reruns_the_task() {
    let p = chain();
    p.orch(&["build"]).success();
    p.clear("ran.log");
    p.write(
        "Orchfile.toml",
        &CHAIN.replace(
            "cat in_d.txt > out_d.txt",
            "cat in_d.txt in_d.txt > out_d.txt",
        ),
    );
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["d"]);
}

#[test]
fn targets_build_only_what_they_need() {
    let p = chain();
    p.orch(&["build", "b"]).success();
    assert_eq!(p.lines("ran.log"), ["a", "b"]);
    let run = p.orch(&["build", "nope"]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("no task named `nope`"));
    // Refused before the state is touched: no state directory in a fresh project.
    let fresh = chain();
    assert_eq!(fresh.orch(&["build", "nope"]).code(), 2);
    assert!(!fresh.exists(".orchestrator"));
}

const FAILING: &str = r#"
[settings]
jobs = 1

[tasks.bad]
run = "echo bad >> ran.log; echo 'compiler exploded' >&2; exit 7"
priority = "P0"

[tasks.after_bad]
run = "echo after_bad >> ran.log"
deps = ["bad"]

[tasks.other]
run = "echo other >> ran.log"
priority = "P3"
"#;

#[test]
fn a_failure_stops_new_work_unless_keep_going() {
    let p = Project::new(FAILING);
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        p.lines("ran.log"),
        ["bad"],
        "P0 runs first; nothing starts after the failure"
    );
    assert!(
        run.stderr().contains("exit code 7: compiler exploded"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("1 blocked"), "{}", run.stderr());
    assert!(run.stderr().contains("1 not started"), "{}", run.stderr());
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(plan.contains("| bad | bad | Agent-01 | ❌ |"), "{plan}");
    assert!(plan.contains("| other | other | Agent-03 | 🟡 |"), "{plan}");

    p.clear("ran.log");
    let run = p.orch(&["build", "-k"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        p.lines("ran.log"),
        ["bad", "other"],
        "-k runs independent work"
    );
    assert!(!p.lines("ran.log").contains(&"after_bad".to_string()));
}

#[test]
fn keep_going_from_settings() {
    let p = Project::new(&FAILING.replace("jobs = 1", "jobs = 1\nkeep_going = true"));
    assert_eq!(p.orch(&["build"]).code(), 1);
    assert_eq!(p.lines("ran.log"), ["bad", "other"]);
}

fn agent_project(mode: &str, extra_task: &str) -> Project {
    let fake = fake_claude();
    Project::new(&format!(
        r#"
[settings]
jobs = 2
retry_backoff = "10ms"

[agents.claude]
preset = "claude"
command = ["{fake}"]
retries = 2

[tasks.T-01]
title = "Read code"
prompt = "Count the lines."
env = {{ FAKE_MODE = "{mode}" }}
{extra_task}
"#,
        fake = fake.display()
    ))
}

#[test]
fn overload_is_retried_with_backoff_then_succeeds() {
    let p = agent_project("overload:2", "");
    let run = p.orch(&["build"]);
    run.success();
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        3,
        "two overloads, then success"
    );
    assert!(run.stderr().contains("transient error"), "{}", run.stderr());
    assert!(run.stderr().contains("2 retries"), "{}", run.stderr());
    assert_eq!(
        p.read(".orchestrator/results/agent-01-result.md"),
        "recovered after 2 overloads"
    );
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(
        plan.contains("| T-01 | Read code | Agent-01 | ✅ | P2 | None |"),
        "{plan}"
    );
    assert!(plan.contains("| 2 |\n"), "retries column: {plan}");
    assert!(plan.contains("Agent-01 Retrying"), "{plan}");
}

#[test]
fn overload_beyond_the_retry_budget_fails() {
    let p = agent_project("overload:5", "");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        p.lines(".orchestrator/calls.log").len(),
        3,
        "1 try + 2 retries"
    );
    assert!(!p.exists(".orchestrator/results/agent-01-result.md"));
}

#[test]
fn is_error_with_exit_zero_is_a_failure_and_not_a_result() {
    let p = agent_project("is_error", "retries = 0");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("is_error"), "{}", run.stderr());
    assert!(run.stderr().contains("Execution error: tool failed"));
    assert!(!p.exists(".orchestrator/results/agent-01-result.md"));
    assert!(
        !p.exists(".orchestrator/final_output.md"),
        "no half result presented as complete"
    );
    assert!(p
        .read(".orchestrator/logs/agent-01.log")
        .contains("is_error"));
}

#[test]
fn odd_agent_outputs_are_failures() {
    for (mode, expect) in [
        ("not_json", "expected JSON"),
        ("empty", "empty result"),
        ("crash", "exit code 3: fatal: model not available"),
    ] {
        let p = agent_project(mode, "retries = 0");
        let run = p.orch(&["build"]);
        assert_eq!(run.code(), 1, "{mode}");
        assert!(run.stderr().contains(expect), "{mode}: {}", run.stderr());
    }
}

#[test]
fn claudecode_is_stripped_so_a_nested_claude_starts() {
    let p = agent_project("ok", "");
    let mut cmd = p.command(&["build"]);
    cmd.env("CLAUDECODE", "1");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let p = agent_project("hang", "retries = 0\ntimeout = \"500ms\"");
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace(
            "retry_backoff = \"10ms\"",
            "retry_backoff = \"10ms\"\nkill_grace = \"200ms\"",
        ),
    );
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("timed out"), "{}", run.stderr());
    let child = read_pid(&p, ".orchestrator/hang-child.pid");
    let parent = read_pid(&p, ".orchestrator/hang-parent.pid");
    assert!(
        !alive(child),
        "the agent's child {child} survived the timeout"
    );
    assert!(!alive(parent), "the agent {parent} survived the timeout");
}

#[test]
fn missing_declared_output_fails_and_verify_is_checked() {
    let p = Project::new(
        r#"
[tasks.forgets]
run = "echo hi"
outputs = ["never.txt"]

[tasks.verified]
run = "echo short > v.txt"
outputs = ["v.txt"]
verify = "test $(wc -c < v.txt) -gt 100"
"#,
    );
    let run = p.orch(&["build", "-k"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(
        err.contains("declared output missing after run: never.txt"),
        "{err}"
    );
    assert!(
        err.contains("verify `test $(wc -c < v.txt) -gt 100` failed"),
        "{err}"
    );
}

#[test]
fn a_shell_task_that_falls_silent_leaves_no_stale_result() {
    let p = Project::new("[tasks.talk]\nrun = \"echo said\"\n\n[tasks.quiet]\nrun = \"true\"\n");
    p.orch(&["build"]).success();
    let result = ".orchestrator/results/agent-01-result.md";
    assert_eq!(p.read(result).trim(), "said");
    assert!(!p.exists(".orchestrator/results/agent-02-result.md"));
    // The next build runs `talk` again, and now it prints nothing.
    p.write(
        "Orchfile.toml",
        "[tasks.talk]\nrun = \"true\"\n\n[tasks.quiet]\nrun = \"true\"\n",
    );
    p.orch(&["build"]).success();
    assert!(
        !p.exists(result),
        "the old result would pass for this run's"
    );
}

#[test]
fn an_output_that_is_not_a_regular_file_counts_as_missing() {
    // Hashing a FIFO would block forever; a directory is not a file either.
    let p = Project::new(
        "[tasks.fifo]\nrun = \"mkfifo out.fifo\"\noutputs = [\"out.fifo\"]\n\n[tasks.dir]\nrun = \"mkdir -p out.d\"\noutputs = [\"out.d\"]\n",
    );
    let run = p.orch(&["build", "-k"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(
        err.contains("declared output missing after run: out.fifo"),
        "{err}"
    );
    assert!(
        err.contains("declared output missing after run: out.d"),
        "{err}"
    );
}

#[test]
fn dep_results_reach_the_dependents_prompt_file() {
    let fake = fake_claude();
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]

[tasks.T-01]
title = "Read code"
prompt = "Inventory the code."
env = {{ FAKE_MODE = "echo" }}
inputs = ["src/*.ts"]

[tasks.T-02]
title = "Style"
prompt = "Check style using this inventory: {{{{ deps.T-01.result }}}} and {{{{ inputs }}}}"
inputs = ["src/*.ts"]
deps = ["T-01"]
env = {{ FAKE_MODE = "echo" }}

[tasks.T-03]
title = "Report"
prompt = "Summarise."
deps = ["T-02"]
outputs = ["report.md"]
env = {{ FAKE_MODE = "ok", FAKE_WRITE = "report.md" }}

[aggregate]
strategy = "concat"
title = "Review"
"#,
        fake = fake.display()
    ));
    p.write("src/a.ts", "let a = 1;\n");
    p.orch(&["build"]).success();
    let t2 = p.read(".orchestrator/agent_tasks/agent-02.md");
    assert!(
        t2.contains("Check style using this inventory: # Task T-01: Read code"),
        "{t2}"
    );
    assert!(
        t2.contains("Inventory the code."),
        "T-01's result (its echoed prompt) is inlined"
    );
    assert!(
        t2.contains("and src/a.ts"),
        "{{ inputs }} in a sentence lists the input files inline: {t2}"
    );
    let t3 = p.read(".orchestrator/agent_tasks/agent-03.md");
    assert!(t3.contains("## Results from dependencies"), "{t3}");
    assert!(t3.contains("### T-02: Style (Agent-02)"), "{t3}");
    assert!(t3.contains("- **Expected outputs** (write these files): report.md"));
    let result = p.read(".orchestrator/results/agent-02-result.md");
    assert_eq!(result, t2.trim_end(), "the agent got exactly the task file");
    let fin = p.read(".orchestrator/final_output.md");
    let (i1, i2, i3) = (
        fin.find("## Agent-01 Output").unwrap(),
        fin.find("## Agent-02 Output").unwrap(),
        fin.find("## Agent-03 Output").unwrap(),
    );
    assert!(i1 < i2 && i2 < i3, "merged in dependency order");
}

#[test]
fn sim_agent_runs_the_code_review_example_offline() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/code-review");
    let p = Project::new(&std::fs::read_to_string(example.join("Orchfile.toml")).unwrap());
    for f in ["src/server.ts", "src/users.ts"] {
        p.write(f, &std::fs::read_to_string(example.join(f)).unwrap());
    }
    let run = p.orch(&["build", "--agent", "sim", "--sim-speed", "1000"]);
    run.success();
    let plan = p.read(".orchestrator/master_plan.md");
    for (id, agent) in [("T-01", "Agent-01"), ("T-05", "Agent-05")] {
        assert!(
            plan.contains(&format!("| {id} |")) && plan.contains(agent),
            "{plan}"
        );
    }
    assert_eq!(plan.matches(" | ✅ | ").count(), 5, "{plan}");
    assert!(plan.contains("## Execution Log"));
    assert!(plan.contains("] Initialization"));
    assert!(plan.contains("Every agent task runs with `sim` (--agent)"));
    assert!(
        plan.contains("] Batch #2 Started\n- Agent-02, Agent-03, Agent-04 launched in parallel"),
        "{plan}"
    );
    assert!(plan.contains("] Result Aggregation Completed"));
    let fin = p.read(".orchestrator/final_output.md");
    assert!(
        fin.starts_with("# Code Review Report\n\n## Overview\n"),
        "{fin}"
    );
    assert!(
        p.exists("reports/security.json"),
        "sim writes declared outputs"
    );

    // Agent ids are stable: a new task gets the next number, old ones keep theirs.
    let more = std::fs::read_to_string(example.join("Orchfile.toml"))
        .unwrap()
        .replace(
            "[tasks.T-05]",
            "[tasks.T-00]\ntitle = \"Extra\"\nprompt = \"x\"\n\n[tasks.T-05]",
        );
    p.write("Orchfile.toml", &more);
    p.orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .success();
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(plan.contains("| T-00 | Extra | Agent-06 |"), "{plan}");
    assert!(
        plan.contains("| T-05 | Generate report | Agent-05 |"),
        "{plan}"
    );
}

#[test]
fn dry_run_prints_the_schedule_and_reasons_without_running() {
    let p = chain();
    let run = p.orch(&["build", "--dry-run"]);
    run.success();
    let out = run.stdout();
    assert_eq!(out.matches("never built").count(), 4, "{out}");
    assert!(
        out.contains("Would run 4 task(s) with up to 2 at once"),
        "{out}"
    );
    assert!(!p.exists("ran.log"), "dry run runs nothing");

    p.orch(&["build"]).success();
    p.write("in_d.txt", "changed\n");
    let out = p.orch(&["build", "-n"]).stdout();
    assert!(out.contains("input in_d.txt changed"), "{out}");
    assert_eq!(out.matches("up to date: skipped").count(), 3, "{out}");
    assert!(out.contains("Would run 1 task(s)"), "{out}");
    assert!(out.contains("3 up to date: "), "{out}");
}

#[test]
fn bad_orchfiles_get_diagnostics_pointing_at_the_problem() {
    let cases = [
        (
            "[tasks.a]\nrun = \"x\"\nruns = 3\n",
            "unknown field `runs`",
            "runs = 3",
        ),
        ("[tasks.a\nrun = \"x\"\n", "invalid Orchfile", "[tasks.a"),
        (
            "[tasks.a]\nrun = \"x\"\ndeps = [\"b\"]\n[tasks.b]\nrun = \"y\"\ndeps = [\"a\"]\n",
            "dependency cycle: ",
            "deps = [\"a\"]",
        ),
        (
            "[tasks.a]\nrun = \"x\"\ndeps = [\"zzz\"]\n",
            "unknown task `zzz`",
            "\"zzz\"",
        ),
        (
            "[tasks.a]\nrun = \"x\"\ntimeout = \"5 fortnights\"\n",
            "invalid timeout",
            "5 fortnights",
        ),
        (
            "[tasks.a]\nrun = \"x\"\ninputs = [\"src/[\"]\n",
            "invalid input glob",
            "src/[",
        ),
    ];
    for (text, message, shown) in cases {
        let p = Project::new(text);
        let run = p.orch(&["build"]);
        assert_eq!(run.code(), 2, "{text}");
        let err = run.stderr();
        assert!(err.contains(message), "{text}: {err}");
        assert!(err.contains("Orchfile.toml"), "names the file: {err}");
        assert!(err.contains(shown), "shows the source line: {err}");
        assert!(!p.exists(".orchestrator"), "a bad plan runs nothing");
    }
}

#[test]
fn no_orchfile_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(orch_bin())
        .arg("build")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Orchfile.toml"));
}

#[test]
fn json_events_one_per_line() {
    let p = chain();
    let run = p.orch(&["build", "--json"]);
    run.success();
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "build_started");
    assert_eq!(events.last().unwrap()["event"], "build_finished");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "task_finished")
            .count(),
        4
    );
    let a = events
        .iter()
        .find(|e| e["event"] == "task_finished" && e["task"] == "a")
        .unwrap();
    assert_eq!(a["agent_id"], "Agent-01");
    assert!(a["duration_ms"].is_u64());
}

#[test]
fn a_second_build_in_the_same_directory_is_refused() {
    let p = Project::new("[tasks.slow]\nrun = \"sleep 2\"\n");
    let mut first = p.command(&["build"]).spawn().unwrap();
    wait_for(
        "the first run to take the lock",
        Duration::from_secs(10),
        || p.exists(".orchestrator/lock") && !p.read(".orchestrator/lock").is_empty(),
    );
    let second = p.orch(&["build"]);
    assert_eq!(second.code(), 2);
    assert!(
        second.stderr().contains("another orch run"),
        "{}",
        second.stderr()
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn sigint_stops_children_and_exits_130() {
    let p = Project::new(
        "[settings]\njobs = 2\n[tasks.x]\nrun = \"sleep 60 & echo $! > x.pid; wait\"\n[tasks.y]\nrun = \"echo $$ > y.pid; sleep 60\"\n",
    );
    let mut child = p.command(&["build"]).spawn().unwrap();
    wait_for("both tasks to start", Duration::from_secs(10), || {
        p.exists("x.pid") && p.exists("y.pid")
    });
    let (x, y) = (read_pid(&p, "x.pid"), read_pid(&p, "y.pid"));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    wait_for(
        "children to die after SIGINT",
        Duration::from_secs(5),
        || !alive(x) && !alive(y),
    );
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(plan.contains("Build Interrupted"), "{plan}");
}

#[test]
fn sigkill_mid_run_then_resume_reruns_only_unfinished_tasks() {
    // Ten quick independent tasks and one slow one; kill orch while the slow one runs.
    let mut orchfile = String::from("[settings]\njobs = 2\n");
    for i in 0..10 {
        orchfile.push_str(&format!(
            "[tasks.q{i}]\nrun = \"echo q{i} >> ran.log; echo {i} > q{i}.out\"\noutputs = [\"q{i}.out\"]\npriority = \"P0\"\n"
        ));
    }
    orchfile.push_str(
        "[tasks.slow]\nrun = \"echo slow >> ran.log; echo $$ > slow.pid; sleep 30 & echo $! > sleep.pid; wait; echo done > slow.out\"\noutputs = [\"slow.out\"]\npriority = \"P3\"\n[tasks.after]\nrun = \"echo after >> ran.log\"\ndeps = [\"slow\"]\n",
    );
    let p = Project::new(&orchfile);
    let mut child = p.command(&["build"]).spawn().unwrap();
    // With two jobs the slow task can start while the last quick one still runs: wait until
    // that one is recorded too, so the kill finds every quick task done, not just run.
    let finished: Vec<String> = (0..10).map(|i| format!("q{i}")).collect();
    wait_for(
        "the slow task to start and every quick one to be recorded",
        Duration::from_secs(20),
        || {
            p.exists("sleep.pid")
                && !p.read("sleep.pid").is_empty()
                && finished.iter().all(|q| p.recorded_successes().contains(q))
        },
    );
    let (slow, sleep) = (read_pid(&p, "slow.pid"), read_pid(&p, "sleep.pid"));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The crash guard stops the whole process group, grandchildren included.
    wait_for("the orphaned task to die", Duration::from_secs(10), || {
        !alive(slow) && !alive(sleep)
    });
    let first: Vec<String> = p.lines("ran.log");
    for q in &finished {
        assert!(first.contains(q), "{q} ran before the kill: {first:?}");
    }

    // Make the slow task quick, then resume: only it and its dependent run.
    p.write(
        "Orchfile.toml",
        &orchfile.replace("sleep 30 & echo $! > sleep.pid; wait; ", ""),
    );
    p.clear("ran.log");
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["slow", "after"]);
    assert!(p
        .read(".orchestrator/master_plan.md")
        .contains("| slow | slow |"));
}

const STOPPED_EARLY: &str = r#"
[settings]
jobs = 1

[tasks.bad]
title = "Fails"
prompt = "x"
priority = "P0"
env = { FAKE_MODE = "crash" }

[tasks.other]
title = "Independent"
prompt = "y"
priority = "P3"
env = { FAKE_MODE = "ok" }

[aggregate]
strategy = "concat"
"#;

fn stopped_early(on_missing: &str) -> Project {
    let fake = fake_claude();
    Project::new(&format!(
        "{}on_missing = \"{on_missing}\"\n\n[agents.claude]\ncommand = [\"{}\"]\nretries = 0\n",
        STOPPED_EARLY,
        fake.display()
    ))
}

#[test]
fn missing_results_are_rerun_but_failures_are_not() {
    // The failure stops the build before `other` starts; aggregation finds its result missing
    // and runs it, but does not retry the failed task, so the final output is not written.
    let p = stopped_early("rerun");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        p.lines(".orchestrator/calls.log"),
        ["bad", "other"],
        "{}",
        run.stderr()
    );
    assert!(run
        .stderr()
        .contains("results missing for Agent-02; re-running them"));
    assert!(run.stderr().contains("results missing for Agent-01 (bad)"));
    assert!(p.exists(".orchestrator/results/agent-02-result.md"));
    assert!(!p.exists(".orchestrator/final_output.md"));
}

#[test]
fn on_missing_fail_runs_nothing_more() {
    let p = stopped_early("fail");
    assert_eq!(p.orch(&["build"]).code(), 1);
    assert_eq!(p.lines(".orchestrator/calls.log"), ["bad"]);
    assert!(!p.exists(".orchestrator/final_output.md"));
}

#[test]
fn agent_merge_strategy_sends_every_result_to_the_merging_agent() {
    let fake = fake_claude();
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "echo" }}

[tasks.a]
run = "echo alpha-result"

[tasks.b]
run = "echo beta-result"
deps = ["a"]

[aggregate]
strategy = "agent"
title = "Merged"
prompt = "Keep it short."
"#,
        fake = fake.display()
    ));
    p.orch(&["build"]).success();
    let fin = p.read(".orchestrator/final_output.md");
    // The echoing fake returns the merge prompt itself.
    assert!(
        fin.contains("merge the following 2 subtask results"),
        "{fin}"
    );
    assert!(fin.find("alpha-result").unwrap() < fin.find("beta-result").unwrap());
    assert!(fin.contains("Keep it short."));
    assert_eq!(p.lines(".orchestrator/calls.log").len(), 1);
    // Unchanged results: the (paid) merge is not repeated.
    p.orch(&["build"]).success();
    assert_eq!(p.lines(".orchestrator/calls.log").len(), 1);
}

#[test]
fn a_forced_task_makes_its_dependents_run_only_if_its_outputs_change() {
    let p = chain();
    p.orch(&["build"]).success();
    p.clear("ran.log");
    // Reset `a` to Pending in the status table, as a person would: it runs again and
    // writes the same out_a.txt, so b and c stay up to date (early cutoff).
    reset_in_status_table(&p, &["a"], "Pending");
    let run = p.orch(&["build"]);
    run.success();
    assert_eq!(sorted(p.lines("ran.log")), ["a"], "{}", run.stderr());
    // Reset again with another input: now what a hands over changes.
    p.clear("ran.log");
    reset_in_status_table(&p, &["a"], "Pending");
    p.write("in_a.txt", "in_a.txt v2\n");
    p.orch(&["build"]).success();
    assert_eq!(sorted(p.lines("ran.log")), ["a", "b", "c"]);
}

#[test]
fn a_build_that_stops_early_does_not_force_untouched_tasks_next_time() {
    let p = Project::new(
        "[settings]\njobs = 1\n[tasks.a]\nrun = \"grep -q good in.txt\"\ninputs = [\"in.txt\"]\npriority = \"P0\"\n[tasks.b]\nrun = \"echo b >> ran.log\"\npriority = \"P1\"\n",
    );
    p.write("in.txt", "good\n");
    p.orch(&["build"]).success();
    p.write("in.txt", "bad\n");
    assert_eq!(p.orch(&["build"]).code(), 1, "a fails; b is never reached");
    p.write("in.txt", "good again\n");
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["b"], "b was up to date all along");
}

#[test]
fn interrupted_tasks_do_not_block_their_dependents() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo $$ > a.pid; sleep 30\"\n[tasks.b]\nrun = \"echo b\"\ndeps = [\"a\"]\n",
    );
    let child = p
        .command(&["build", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("a to start", Duration::from_secs(10), || p.exists("a.pid"));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(!events.contains("task_blocked"), "{events}");
    let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["failed"], 0);
    assert_eq!(last["blocked"], 0);
    // `a` was running: interrupted, not "not started" (only `b` never started).
    assert_eq!(last["interrupted_tasks"], 1);
    assert_eq!(last["not_started"], 1);
    assert_eq!(last["interrupted"], true);
}

#[test]
fn an_output_left_from_an_earlier_run_does_not_count_as_written() {
    let p = Project::new(MAYBE_WRITES);
    p.write("write-it", "");
    p.orch(&["build"]).success();
    // Age the output, so its stamp is settled, then make the agent write nothing.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(p.path("report.md"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::remove_file(p.path("write-it")).unwrap();
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("(v1)", "(v2)"),
    );
    p.orch(&["build"]).fails_with(
        1,
        "not written by this run (left from an earlier one): report.md",
    );
}

#[test]
fn file_results_are_per_task_and_inside_the_project() {
    let p = Project::new(
        r#"
[settings]
jobs = 2

[agents.filer]
command = ["sh", "-c", "cat > /dev/null; mkdir -p out; echo answer-of-$ORCH_TASK_ID > out/$ORCH_TASK_ID.md"]
result = "file:out/{task_id}.md"

[tasks.a]
prompt = "a"
agent = "filer"

[tasks.b]
prompt = "b"
agent = "filer"
"#,
    );
    p.orch(&["build"]).success();
    assert_eq!(
        p.read(".orchestrator/results/agent-01-result.md"),
        "answer-of-a\n"
    );
    assert_eq!(
        p.read(".orchestrator/results/agent-02-result.md"),
        "answer-of-b\n"
    );

    let outside = Project::new(
        "[agents.x]\ncommand = [\"x\"]\nresult = \"file:../../etc/passwd\"\n[tasks.a]\nprompt = \"a\"\nagent = \"x\"\n",
    );
    let run = outside.orch(&["build"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("outside the project"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_plan_cache_never_hides_an_edit() {
    let p = chain();
    p.orch(&["build"]).success();
    p.orch(&["build"]).success(); // writes the cache: the state dir exists now
    assert!(p.exists(".orchestrator/plan_cache.bin"));
    p.orch(&["build"]).success(); // served from the cache
    p.write(
        "Orchfile.toml",
        &format!("{CHAIN}\n[tasks.e]\nrun = \"x\"\nbogus = 1\n"),
    );
    let run = p.orch(&["build"]);
    assert_eq!(
        run.code(),
        2,
        "the edited file is parsed again: {}",
        run.stderr()
    );
    assert!(run.stderr().contains("unknown field `bogus`"));
}

#[test]
fn an_input_made_by_a_dep_is_hashed_after_the_dep_ran() {
    // Enough tasks that the up-to-date checks are done ahead in parallel: `b`'s input is
    // `a`'s output, so a hash of it taken before `a` re-ran must not be what `b` records.
    let mut orchfile = String::from(
        "[tasks.a]\nrun = \"echo a >> ran.log; cat in_a.txt > out_a.txt\"\ninputs = [\"in_a.txt\"]\noutputs = [\"out_a.txt\"]\n\
         [tasks.b]\nrun = \"echo b >> ran.log; cat out_a.txt > out_b.txt\"\ninputs = [\"out_a.txt\"]\noutputs = [\"out_b.txt\"]\ndeps = [\"a\"]\n",
    );
    for i in 0..80 {
        orchfile.push_str(&format!("[tasks.f{i}]\nrun = \"true\"\n"));
    }
    let p = Project::new(&orchfile);
    p.write("in_a.txt", "v1\n");
    p.orch(&["build"]).success();
    p.clear("ran.log");
    p.write("in_a.txt", "v2\n");
    p.orch(&["build"]).success();
    assert_eq!(sorted(p.lines("ran.log")), ["a", "b"]);
    assert_eq!(p.read("out_b.txt"), "v2\n");
    p.clear("ran.log");
    let run = p.orch(&["build"]);
    run.success();
    assert!(
        p.lines("ran.log").is_empty(),
        "nothing changed since: {}",
        run.stderr()
    );
}

#[test]
fn a_reset_the_build_did_not_get_to_is_kept_for_the_next_one() {
    let p = Project::new(
        "[settings]\njobs = 1\n[tasks.a]\nrun = \"echo a >> ran.log; grep -q good in.txt\"\ninputs = [\"in.txt\"]\npriority = \"P0\"\n[tasks.b]\nrun = \"echo b >> ran.log\"\npriority = \"P1\"\n",
    );
    p.write("in.txt", "good\n");
    p.orch(&["build"]).success();
    // A person resets both; `a` then fails, so the build stops before `b`.
    reset_in_status_table(&p, &["a", "b"], "🟡");
    p.write("in.txt", "bad\n");
    p.clear("ran.log");
    assert_eq!(p.orch(&["build"]).code(), 1);
    assert_eq!(p.lines("ran.log"), ["a"], "b never started");
    p.write("in.txt", "good\n");
    p.clear("ran.log");
    // (a would be restored from the output cache otherwise: it is back to its first input.)
    let run = p.orch(&["build", "--no-cache"]);
    run.success();
    assert_eq!(
        sorted(p.lines("ran.log")),
        ["a", "b"],
        "b's reset still stands: {}",
        run.stderr()
    );
}

#[test]
fn a_large_plan_reruns_exactly_the_cone_of_a_change() {
    // 100 tasks in a chain, each output made of its input and its dep's output: enough
    // tasks that the up-to-date checks are done ahead in parallel.
    let mut orchfile = String::new();
    for i in 0..100 {
        let dep_output = if i > 0 {
            format!(" out/{}.txt", i - 1)
        } else {
            String::new()
        };
        orchfile.push_str(&format!(
            "[tasks.t{i:03}]\nrun = \"echo t{i:03} >> ran.log; cat in/{i}.txt{dep_output} > out/{i}.txt\"\ninputs = [\"in/{i}.txt\"]\noutputs = [\"out/{i}.txt\"]\n"
        ));
        if i > 0 {
            orchfile.push_str(&format!("deps = [\"t{:03}\"]\n", i - 1));
        }
    }
    let p = Project::new(&orchfile);
    std::fs::create_dir_all(p.path("out")).unwrap();
    for i in 0..100 {
        p.write(&format!("in/{i}.txt"), &format!("{i}\n"));
    }
    p.orch(&["build"]).success();
    let cone = |from: usize| (from..100).map(|i| format!("t{i:03}")).collect::<Vec<_>>();
    // Without the output cache, which would restore a tampered output instead of running.
    let rerun = |p: &Project| {
        p.clear("ran.log");
        p.orch(&["build", "--no-cache"]).success();
        sorted(p.lines("ran.log"))
    };
    assert!(rerun(&p).is_empty(), "a second build is a no-op");
    p.write("in/50.txt", "changed\n");
    assert_eq!(
        rerun(&p),
        cone(50),
        "an input change reruns its task and what follows"
    );
    p.write("out/10.txt", "tampered\n");
    assert_eq!(
        rerun(&p),
        ["t010"],
        "a modified output reruns its task, which restores it: nothing follows"
    );
    std::fs::remove_file(p.path("out/97.txt")).unwrap();
    assert_eq!(rerun(&p), ["t097"], "a missing output too");
    assert!(rerun(&p).is_empty());
}

#[test]
fn a_plan_from_the_cache_still_sees_prompt_file_edits_and_agent_overrides() {
    let fake = fake_claude();
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]

[tasks.a]
prompt_file = "prompts/a.md"
env = {{ FAKE_MODE = "ok" }}

[tasks.b]
prompt = "Summarise."
env = {{ FAKE_MODE = "ok" }}
"#,
        fake = fake.display()
    ));
    p.write("prompts/a.md", "Review the code.");
    let ran = |args: &[&str]| {
        let err = p.orch(args).ok().stderr();
        let done = err.lines().last().unwrap_or_default().to_string();
        assert!(done.starts_with("done: "), "{err}");
        done.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    let sim = ["build", "-q", "--agent", "sim", "--sim-speed", "1000"];
    assert_eq!(ran(&["build", "-q"]), 2);
    // The cache is written once the state directory exists: from here on plans come from it.
    assert_eq!(ran(&["build", "-q"]), 0);
    assert!(p.exists(".orchestrator/plan_cache.bin"));
    assert_eq!(ran(&["build", "-q"]), 0, "the cached plan is up to date");
    p.write("prompts/a.md", "Review the code, carefully.");
    assert_eq!(
        ran(&["build", "-q"]),
        1,
        "an edited prompt file reruns its task"
    );
    assert_eq!(ran(&sim), 2, "another agent reruns both agent tasks");
    assert_eq!(
        ran(&["build", "-q", "--no-cache"]),
        2,
        "and so does going back to their own (their earlier answers not restored)"
    );
    assert_eq!(ran(&["build", "-q"]), 0);
}
