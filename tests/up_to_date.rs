//! The no-op fast path (`.orchestrator/up_to_date.bin`): it must report what the full check
//! would, and step aside for every change the full check would see.

mod common;

use std::time::Duration;

use common::{fake_claude, Project, Run};

const PLAN: &str = r#"
[tasks.a]
run = "echo a >> ran.log; cat src/in.txt > a.txt"
inputs = ["src/in.txt"]
outputs = ["a.txt"]

[tasks.b]
run = "echo b >> ran.log; cat a.txt > b.txt"
inputs = ["a.txt", "notes/**/*.md"]
outputs = ["b.txt"]
deps = ["a"]
"#;

/// A built project of [`PLAN`].
fn project() -> Project {
    let p = Project::new(PLAN);
    p.write("src/in.txt", "one\n");
    p.write("notes/x.md", "x\n");
    p.orch(&["build", "-q"]).success();
    p
}

/// Runs `orch ARGS` with the profile on, so that stderr says whether the fast path ran.
fn build(p: &Project, args: &[&str]) -> Run {
    let mut c = p.command(args);
    c.env("ORCH_PROFILE", "1");
    Run(c.output().unwrap())
}

fn took_fast_path(run: &Run) -> bool {
    run.stderr().contains("up-to-date record holds")
}

/// Lets every file age past the window in which a stamp cannot be trusted (100 ms with
/// nanosecond timestamps, 2 s with whole seconds), has a full check leave the record, and
/// checks that the next build takes the fast path.
#[track_caller]
fn settle(p: &Project, args: &[&str]) {
    let mut waited = Duration::ZERO;
    loop {
        std::thread::sleep(Duration::from_millis(150));
        waited += Duration::from_millis(150);
        p.clear(".orchestrator/up_to_date.bin");
        let full = build(p, args);
        full.success();
        assert!(!took_fast_path(&full), "{}", full.stderr());
        if p.exists(".orchestrator/up_to_date.bin") {
            break;
        }
        assert!(
            waited < Duration::from_secs(3),
            "a build that found all up to date leaves its record:\n{}",
            full.stderr()
        );
    }
    let fast = build(p, args);
    fast.success();
    assert!(took_fast_path(&fast), "{}", fast.stderr());
    p.clear("ran.log");
}

/// Builds after a change: the fast path must not be taken; returns the tasks that ran.
#[track_caller]
fn rebuild(p: &Project) -> Vec<String> {
    rebuild_with(p, &["build", "-q"])
}

/// As [`rebuild`], without the output cache: a change makes its tasks run, not be restored.
fn rebuild_uncached(p: &Project) -> Vec<String> {
    rebuild_with(p, &["build", "-q", "--no-cache"])
}

fn rebuild_with(p: &Project, args: &[&str]) -> Vec<String> {
    let run = build(p, args);
    run.success();
    assert!(
        !took_fast_path(&run),
        "the fast path missed a change:\n{}",
        run.stderr()
    );
    let ran = p.lines("ran.log");
    p.clear("ran.log");
    ran
}

/// The full check's lines, without the profile's and the timing.
fn report_lines(run: &Run) -> Vec<String> {
    run.stderr()
        .lines()
        .filter(|l| !l.starts_with("[profile]"))
        .map(|l| match l.split_once(" in ") {
            Some((head, _)) if l.starts_with("done:") => head.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

fn json_events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("ts_ms");
            o.remove("duration_ms");
            v
        })
        .collect()
}

#[test]
fn the_fast_path_reports_what_the_full_check_does() {
    let p = project();
    for args in [
        &["build"][..],
        &["build", "-v"],
        &["build", "--json"],
        &["build", "-j", "3"],
    ] {
        settle(&p, args);
        p.clear(".orchestrator/up_to_date.bin");
        let full = build(&p, args).ok();
        let fast = build(&p, args).ok();
        assert!(!took_fast_path(&full) && took_fast_path(&fast));
        assert_eq!(report_lines(&full), report_lines(&fast), "{args:?}");
        assert_eq!(json_events(&full), json_events(&fast), "{args:?}");
    }
    // With -v, the plain report names both tasks.
    settle(&p, &["build", "-v"]);
    let fast = build(&p, &["build", "-v"]).ok();
    let lines = report_lines(&fast);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("skip Agent-01 [a] up to date")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("skip Agent-02 [b] up to date")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "done: 0 ran, 2 up to date"),
        "{lines:?}"
    );
}

#[test]
fn every_change_the_full_check_sees_ends_the_fast_path() {
    let p = project();
    type Change = (&'static str, fn(&Project), &'static [&'static str]);
    let changes: [Change; 9] = [
        (
            "input edited",
            |p| p.write("src/in.txt", "two\n"),
            &["a", "b"],
        ),
        (
            "input rewritten with the same size and its old mtime",
            |p| {
                let path = p.path("src/in.txt");
                let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
                std::fs::write(&path, "ONE\n").unwrap();
                let f = std::fs::File::options().write(true).open(&path).unwrap();
                f.set_modified(mtime).unwrap();
            },
            &["a", "b"],
        ),
        ("output deleted", |p| p.clear("b.txt"), &["b"]),
        (
            "output modified",
            |p| p.write("a.txt", "tampered\n"),
            // a restores what b was built on: b stays up to date (early cutoff).
            &["a"],
        ),
        (
            "file added to a globbed directory",
            |p| p.write("notes/y.md", "y\n"),
            &["b"],
        ),
        (
            "file added to a new subdirectory",
            |p| p.write("notes/deep/z.md", "z\n"),
            &["b"],
        ),
        ("globbed file removed", |p| p.clear("notes/y.md"), &["b"]),
        (
            "Orchfile edited",
            |p| {
                let plan = PLAN.replace("cat a.txt > b.txt", "cat a.txt a.txt > b.txt");
                p.write("Orchfile.toml", &plan);
            },
            &["b"],
        ),
        (
            "task reset to Pending in master_plan.md",
            |p| {
                let doc = p.read(".orchestrator/master_plan.md");
                let row = doc
                    .lines()
                    .find(|l| l.starts_with("| a |"))
                    .unwrap_or_else(|| panic!("no row for a:\n{doc}"));
                // The Status cell, the fourth, says Pending.
                let mut cells: Vec<&str> = row.split('|').collect();
                cells[4] = " 🟡 ";
                let reset = cells.join("|");
                assert_ne!(row, reset, "{row}");
                p.write(".orchestrator/master_plan.md", &doc.replace(row, &reset));
            },
            &["a"],
        ),
    ];
    for (what, change, expected) in changes {
        settle(&p, &["build", "-q"]);
        change(&p);
        assert_eq!(rebuild_uncached(&p), expected, "{what}");
    }
    // A journal an interrupted run left: the state changed, so the full check decides.
    settle(&p, &["build", "-q"]);
    let journal = p.path(".orchestrator/journal.jsonl");
    let mut lines = std::fs::read_to_string(&journal).unwrap_or_default();
    lines.push_str("{\"event\":\"status\",\"task\":\"a\",\"status\":{\"status\":\"completed\",\"start\":null,\"end\":null,\"retries\":0}}\n");
    std::fs::write(&journal, lines).unwrap();
    assert!(
        rebuild(&p).is_empty(),
        "nothing changed that a task depends on"
    );
}

#[test]
fn force_and_targets_have_records_of_their_own() {
    let p = project();
    settle(&p, &["build", "-q"]);
    let one = build(&p, &["build", "-q", "a"]).ok();
    assert!(!took_fast_path(&one), "another target list is another key");
    assert!(
        one.stderr().contains("0 ran, 1 up to date"),
        "{}",
        one.stderr()
    );
    let forced = build(&p, &["build", "-q", "-B"]).ok();
    assert!(!took_fast_path(&forced));
    assert_eq!(p.lines("ran.log"), ["a", "b"], "--force runs everything");
}

#[test]
fn a_run_holding_the_lock_is_reported_as_without_the_fast_path() {
    let p = project();
    settle(&p, &["build", "-q"]);
    let lock = orchfile::state::lock::RunLock::acquire(
        &p.path(".orchestrator/lock"),
        orchfile::state::lock::LockWait::Refuse,
    )
    .unwrap();
    let run = build(&p, &["build", "-q"]);
    run.failure();
    assert!(
        run.stderr().contains("another orch run"),
        "{}",
        run.stderr()
    );
    drop(lock);
    assert!(took_fast_path(&build(&p, &["build", "-q"]).ok()));
}

#[test]
fn agent_results_prompt_files_and_the_merge_are_covered() {
    let fake = fake_claude();
    // Without the output cache: each change must make its task run, not be restored.
    let p = Project::new(&format!(
        r#"
[settings]
cache = false

[agents.claude]
command = ["{fake}"]

[tasks.a]
prompt_file = "prompts/a.md"
env = {{ FAKE_MODE = "ok" }}

[tasks.b]
run = "echo b >> ran.log"
"#,
        fake = fake.display()
    ));
    p.write("prompts/a.md", "Review the code.");
    p.orch(&["build", "-q"]).success();
    settle(&p, &["build", "-v"]);
    let fast = build(&p, &["build", "-v"]).ok();
    assert!(
        fast.stderr().contains("final_output.md"),
        "the merge is reported as up to date too:\n{}",
        fast.stderr()
    );
    let ran = |p: &Project| {
        let run = build(p, &["build", "-q"]).ok();
        assert!(!took_fast_path(&run), "{}", run.stderr());
        run.stderr()
    };

    settle(&p, &["build", "-q"]);
    p.write("prompts/a.md", "Review the code, carefully.");
    assert!(ran(&p).contains("done: 1 ran"), "an edited prompt file");

    settle(&p, &["build", "-q"]);
    p.write(".orchestrator/results/agent-01-result.md", "edited by hand");
    assert!(ran(&p).contains("done: 1 ran"), "an edited agent result");

    settle(&p, &["build", "-q"]);
    let sim = build(
        &p,
        &["build", "-q", "--agent", "sim", "--sim-speed", "1000"],
    )
    .ok();
    assert!(!took_fast_path(&sim), "--agent has a record of its own");
    assert!(sim.stderr().contains("done: 1 ran"), "{}", sim.stderr());
    assert!(
        ran(&p).contains("done: 1 ran"),
        "and back to the plan's agent"
    );

    settle(&p, &["build", "-q"]);
    p.clear(".orchestrator/final_output.md");
    ran(&p);
    assert!(
        p.exists(".orchestrator/final_output.md"),
        "the merge is redone"
    );

    settle(&p, &["build", "-q"]);
    p.write(".orchestrator/results/agent-02-result.md", "appeared");
    assert!(
        ran(&p).contains("done: 0 ran"),
        "a result file where a quiet shell task had none changes only the merge"
    );
    assert!(p.read(".orchestrator/final_output.md").contains("appeared"));
    // No stamp stands for what the merge read from it: every build checks in full.
    std::thread::sleep(Duration::from_millis(150));
    ran(&p);
    ran(&p);
}

#[test]
fn a_glob_over_the_whole_project_is_covered() {
    let p = Project::new(
        r#"
[tasks.count]
run = "echo count >> ran.log; ls *.cfg > count.txt"
inputs = ["*.cfg"]
outputs = ["count.txt"]
"#,
    );
    p.write("a.cfg", "a");
    p.orch(&["build", "-q"]).success();
    settle(&p, &["build", "-q"]);
    p.write("b.cfg", "b");
    assert_eq!(rebuild(&p), ["count"], "a file added at the root");
    settle(&p, &["build", "-q"]);
    p.write("unrelated.txt", "x");
    // The root's stamp changed, so the full check decides; it finds nothing to run.
    assert!(rebuild(&p).is_empty());
}

#[test]
fn a_symlink_in_a_globbed_directory_is_followed_for_changes() {
    let p = project();
    std::fs::write(p.path("ext"), "data").unwrap();
    std::os::unix::fs::symlink("../ext", p.path("notes/ext")).unwrap();
    p.orch(&["build", "-q"]).success();
    settle(&p, &["build", "-q"]);
    // The link now leads to a directory holding a file the glob matches.
    std::fs::remove_file(p.path("ext")).unwrap();
    p.write("ext/new.md", "new\n");
    assert_eq!(rebuild(&p), ["b"]);
}

#[test]
fn an_edited_master_plan_without_resets_still_gets_a_record() {
    let p = project();
    settle(&p, &["build", "-q"]);
    let doc = p.read(".orchestrator/master_plan.md");
    p.write(
        ".orchestrator/master_plan.md",
        &format!("{doc}\n## My notes\n\nNothing to reset.\n"),
    );
    assert!(rebuild(&p).is_empty(), "the full check reads the table");
    // The next record vouches for the edited file: the fast path is back.
    settle(&p, &["build", "-q"]);
    assert!(p
        .read(".orchestrator/master_plan.md")
        .contains("## My notes"));
}

#[test]
fn a_no_op_build_prints_its_summary_not_a_line_per_task() {
    let mut plan = String::new();
    for i in 0..300 {
        plan.push_str(&format!("[tasks.t{i}]\nrun = \"echo {i}\"\n"));
    }
    plan.push_str("[aggregate]\nstrategy = \"concat\"\n");
    let p = Project::new(&plan);
    p.orch(&["build", "-q"]).success();
    for args in [&["build", "-j", "2"][..], &["build", "-j", "2"]] {
        // The full check, then the fast path: the same two lines.
        let run = p.orch(args).ok();
        let lines: Vec<&str> = run
            .0
            .stderr
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "orch: 300 tasks with up to 2 at once");
        assert!(
            lines[1].starts_with("done: 0 ran, 300 up to date in "),
            "{lines:?}"
        );
    }
    let verbose = p.orch(&["build", "-j", "2", "-v"]).ok().stderr();
    assert_eq!(verbose.matches("   skip Agent-").count(), 300, "{verbose}");
    assert!(
        verbose.contains("skip .orchestrator/final_output.md up to date"),
        "{verbose}"
    );
}
