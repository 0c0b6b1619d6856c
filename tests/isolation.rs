//! `isolation = "worktree"` end to end: real git repositories in temp dirs, fake coding
//! agents (shell commands as agent CLIs that edit files in their working directory), the
//! real binary. Each agent proves where it ran by what it leaves; waits are bounded polls.

mod common;

use std::process::Command;
use std::time::Duration;

use common::git_repo::{branches, git, one_line, repo, worktrees};
use common::{wait_for, Project};

const LIB: &str =
    "def alpha():\n    return 1\n\n\ndef middle():\n    return 0\n\n\ndef beta():\n    return 2\n";

/// An agent that replaces `return $FROM` by `return $TO` in lib.py where it runs, once
/// every task named in $TOGETHER has started (so they overlap), and says where it ran.
fn coder(barrier: &std::path::Path) -> String {
    format!(
        r#"
[settings]
isolation = "worktree"
jobs = 4

[agents.coder]
command = ["sh", "-c", '''
touch "{b}/$ORCH_TASK_ID"
n=0
for t in $TOGETHER; do
  while [ ! -e "{b}/$t" ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done
done
sed -i "s/return $FROM\$/return $TO/" lib.py
echo "$ORCH_TASK_ID" >> "{b}/calls"
echo "ran in $(pwd)"
''']
"#,
        b = barrier.display()
    )
}

fn task(id: &str, from: &str, to: &str, together: &str, deps: &[&str]) -> String {
    format!(
        "\n[tasks.{id}]\nprompt = \"edit\"\nagent = \"coder\"\ndeps = {deps:?}\nenv = {{ FROM = \"{from}\", TO = \"{to}\", TOGETHER = \"{together}\" }}\n"
    )
}

#[test]
fn parallel_edits_of_different_functions_both_merge() {
    let barrier = tempfile::tempdir().unwrap();
    let orchfile = coder(barrier.path())
        + &task("a", "1", "10", "a b", &[])
        + &task("b", "2", "20", "a b", &[]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    let head_before = git(&p, &["rev-parse", "HEAD"]);
    p.orch(&["build"]).success();
    let lib = p.read("lib.py");
    assert!(
        lib.contains("return 10") && lib.contains("return 20"),
        "{lib}"
    );
    // Each ran in its own worktree, not in the project.
    for id in ["Agent-01", "Agent-02"] {
        let result = p.read(&format!(
            ".orchestrator/results/{}-result.md",
            id.to_lowercase()
        ));
        assert!(result.contains(".orchestrator/worktrees/"), "{result}");
    }
    // Merged as commits on the person's branch, each naming its task and agent; the
    // worktrees and branches of succeeded tasks are gone; the tree is clean.
    let log = git(
        &p,
        &[
            "log",
            "--format=%an|%s",
            &format!("{}..HEAD", head_before.trim()),
        ],
    );
    assert!(log.contains("orch (a, Agent-01)|orch: merge a"), "{log}");
    assert!(log.contains("orch (b, Agent-02)|orch: merge b"), "{log}");
    assert_eq!(worktrees(&p).len(), 1, "{:?}", worktrees(&p));
    assert_eq!(branches(&p), ["main"]);
    assert_eq!(git(&p, &["status", "--porcelain"]), "");
    // Each merge's record went once its task's success was in the journal.
    let records = std::fs::read_dir(p.path(".orchestrator/merges")).unwrap();
    assert_eq!(records.count(), 0);
}

#[test]
fn edits_of_the_same_lines_conflict_and_keep_the_branch() {
    let barrier = tempfile::tempdir().unwrap();
    let orchfile = coder(barrier.path())
        + &task("a", "1", "10", "a b", &[])
        + &task("b", "1", "30", "a b", &[])
        + &task("after_b", "2", "20", "", &["b"])
        + &task("other", "0", "5", "", &[]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    let run = p.orch(&["build", "-k", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let events: Vec<serde_json::Value> = run.json_lines();
    let failed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "task_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    let loser = failed[0]["task"].as_str().unwrap().to_string();
    let winner = if loser == "a" { "b" } else { "a" };
    assert_eq!(failed[0]["status"], "conflict");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("conflict: lib.py"), "{reason}");
    assert!(reason.contains(&format!("orch/{loser}")), "{reason}");
    let finished = events.last().unwrap();
    assert_eq!(finished["conflicts"], 1, "{finished}");
    // The winner's change is in; the loser's is on its branch, its worktree kept; the
    // independent task went on.
    let lib = p.read("lib.py");
    let want = if winner == "a" {
        "return 10"
    } else {
        "return 30"
    };
    assert!(lib.contains(want) && lib.contains("return 5"), "{lib}");
    assert!(branches(&p).contains(&format!("orch/{loser}")));
    assert_eq!(worktrees(&p).len(), 2);
    assert_eq!(
        git(&p, &["status", "--porcelain"]),
        "",
        "the tree is left clean"
    );
    if loser == "b" {
        assert!(events
            .iter()
            .any(|e| e["event"] == "task_blocked" && e["task"] == "after_b"));
    }
    // The status table says conflict, and lists the kept worktree.
    let status = p.orch(&["status"]).ok().stdout();
    assert!(status.contains("🔀 conflict"), "{status}");
    let json = p.orch(&["status", "--json"]).ok().stdout();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == loser.as_str())
        .unwrap();
    assert_eq!(row["status"], "conflict");
    // It lists the kept worktree too, on the task's object.
    assert_eq!(row["worktree"]["branch"], format!("orch/{loser}"), "{row}");
    assert_eq!(
        row["worktree"]["path"],
        format!(".orchestrator/worktrees/{loser}"),
        "{row}"
    );
    assert_eq!(row["worktree"]["kept_as"], "conflict", "{row}");
    assert_eq!(
        row["worktree"]["files"],
        serde_json::json!(["lib.py"]),
        "{row}"
    );
    let merged = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == winner)
        .unwrap();
    assert!(merged["worktree"].is_null(), "{merged}");
}

#[test]
fn a_dependent_sees_its_deps_change() {
    let barrier = tempfile::tempdir().unwrap();
    // b turns a's 10 into 100: it can only if it starts from a's change.
    let orchfile = coder(barrier.path())
        + &task("a", "1", "10", "", &[])
        + &task("b", "10", "100", "", &["a"]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    p.orch(&["build"]).success();
    assert!(
        p.read("lib.py").contains("return 100"),
        "{}",
        p.read("lib.py")
    );
    assert_eq!(git(&p, &["status", "--porcelain"]), "");
}

#[test]
fn an_up_to_date_task_needs_no_worktree() {
    let barrier = tempfile::tempdir().unwrap();
    let orchfile = coder(barrier.path()) + &task("a", "1", "10", "", &[]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    p.orch(&["build"]).success();
    let head = git(&p, &["rev-parse", "HEAD"]);
    let run = p.orch(&["build", "-v"]).ok();
    assert!(
        run.stderr().contains("0 ran, 1 up to date"),
        "{}",
        run.stderr()
    );
    assert_eq!(git(&p, &["rev-parse", "HEAD"]), head);
    assert!(!p.exists(".orchestrator/worktrees/a"));
}

#[test]
fn a_dirty_file_the_plan_writes_is_refused_before_anything_runs() {
    let orchfile = r#"
[settings]
isolation = "worktree"
[tasks.gen]
run = "echo new > report.md; echo ran > ran.txt"
outputs = ["report.md"]
"#;
    let p = repo(&[("Orchfile.toml", orchfile), ("report.md", "old\n")]);
    p.write("report.md", "my own edit\n");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    let err = one_line(&run.stderr());
    assert!(
        err.contains("uncommitted changes to 1 file(s) that worktree tasks write: report.md"),
        "{err}"
    );
    assert!(err.contains("git stash"), "{err}");
    assert_eq!(p.read("report.md"), "my own edit\n");
    assert!(!p.exists("ran.txt"));
    // Committed, the same build runs, and its output arrives as a merge.
    git(&p, &["commit", "-q", "-am", "mine"]);
    p.orch(&["build"]).success();
    assert_eq!(p.read("report.md"), "new\n");
    assert_eq!(
        p.read("ran.txt"),
        "ran\n",
        "ran.txt came as part of the change"
    );
}

#[test]
fn a_project_that_is_not_a_git_repository_is_refused() {
    let p = Project::new("[settings]\nisolation = \"worktree\"\n[tasks.a]\nrun = \"touch x\"\n");
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 2);
    let err = one_line(&run.stderr());
    assert!(err.contains("needs a git repository"), "{err}");
    assert!(err.contains("git init"), "{err}");
    assert!(!p.exists("x"));
}

/// a then b, one at a time (b starts from the base, not from a's change): both turn
/// `return 1` into something else, so b's change conflicts; `after_b` depends on b.
fn one_conflict() -> (tempfile::TempDir, Project) {
    let barrier = tempfile::tempdir().unwrap();
    let orchfile = coder(barrier.path()).replace("jobs = 4", "jobs = 1")
        + &task("a", "1", "10", "", &[]).replace("agent = ", "priority = \"P0\"\nagent = ")
        + &task("b", "1", "30", "", &[])
        + &task("after_b", "2", "20", "", &["b"]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("CONFLICT Agent-02 [b]"),
        "{}",
        run.stderr()
    );
    (barrier, p)
}

#[test]
fn a_conflict_is_shown_resolved_and_merged_with_orch_diff_and_orch_merge() {
    let (_barrier, p) = one_conflict();
    assert!(p.read("lib.py").contains("return 10"));
    // orch status lists the kept worktree; orch diff shows b's own change.
    let status = p.orch(&["status"]).ok().stdout();
    assert!(
        status.contains("b  .orchestrator/worktrees/b  branch orch/b  conflict: lib.py"),
        "{status}"
    );
    let diff = p.orch(&["diff", "b"]).ok().stdout();
    assert!(diff.contains("-    return 1\n+    return 30"), "{diff}");
    // Unresolved, orch merge says it still conflicts and changes nothing.
    let run = p.orch(&["merge", "b"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("still conflicts: lib.py"),
        "{}",
        run.stderr()
    );
    assert!(p.read("lib.py").contains("return 10"));
    // The person resolves it in the kept worktree (both: 40), commits there.
    let wt = p.path(".orchestrator/worktrees/b");
    let in_wt = |args: &[&str]| {
        Command::new("git")
            .args(["-c", "user.name=person", "-c", "user.email=p@example.com"])
            .args(args)
            .current_dir(&wt)
            .output()
            .unwrap()
    };
    assert!(
        !in_wt(&["merge", "-q", "main"]).status.success(),
        "conflicts"
    );
    std::fs::write(wt.join("lib.py"), LIB.replace("return 1\n", "return 40\n")).unwrap();
    assert!(in_wt(&["commit", "-qam", "resolved"]).status.success());
    let run = p.orch(&["merge", "b"]).ok();
    assert!(
        run.stdout().contains("merged b into your tree"),
        "{}",
        run.stdout()
    );
    assert!(
        p.read("lib.py").contains("return 40"),
        "{}",
        p.read("lib.py")
    );
    assert_eq!(git(&p, &["status", "--porcelain"]), "");
    assert!(!branches(&p).contains(&"orch/b".to_string()));
    assert!(!p.exists(".orchestrator/merges/b.json"));
    // b counts as done: the next build runs only what it blocked.
    let run = p.orch(&["build", "-v"]).ok();
    assert!(
        run.stderr().contains("1 ran, 2 up to date"),
        "{}",
        run.stderr()
    );
    assert!(p.read("lib.py").contains("return 20"));
}

/// How many times the coder agent was called for `task`.
fn calls_of(barrier: &std::path::Path, task: &str) -> usize {
    std::fs::read_to_string(barrier.join("calls"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == task)
        .count()
}

#[test]
fn a_kept_conflict_is_not_run_again_until_merged_or_discarded() {
    let (barrier, p) = one_conflict();
    let barrier = barrier.path();
    assert_eq!(calls_of(barrier, "b"), 1);
    // A task added since, independent of b: it runs though b does not (no -k).
    let orchfile = p.read("Orchfile.toml");
    p.write(
        "Orchfile.toml",
        &format!(
            "{orchfile}\n[tasks.other]\nrun = \"echo other >> '{}/calls'\"\nisolation = \"none\"\n",
            barrier.display()
        ),
    );
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let said: Vec<String> = run
        .stderr()
        .lines()
        .filter(|l| l.contains("[b]") || l.contains("[after_b]"))
        .map(one_line)
        .collect();
    insta::assert_snapshot!("kept_conflict_not_started", said.join("\n"));
    assert_eq!(calls_of(barrier, "b"), 1, "the agent is not called again");
    assert_eq!(calls_of(barrier, "other"), 1, "{}", run.stderr());
    assert_eq!(calls_of(barrier, "after_b"), 0);
    // Its change stays where orch merge finds it.
    assert!(branches(&p).contains(&"orch/b".to_string()));
    assert!(p.exists(".orchestrator/worktrees/b/lib.py"));
    assert!(p
        .read(".orchestrator/worktrees/b/lib.py")
        .contains("return 30"));
    // The same in the event stream, with -B too.
    let run = p.orch(&["build", "--json", "-B"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let events = run.json_lines();
    let failed = events
        .iter()
        .find(|e| e["event"] == "task_failed" && e["task"] == "b")
        .expect("b's task_failed");
    assert_eq!(failed["status"], "conflict", "{failed}");
    assert_eq!(failed["not_started"], true, "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("its change is kept with a merge conflict (branch orch/b: lib.py)"),
        "{reason}"
    );
    assert!(events
        .iter()
        .any(|e| e["event"] == "task_blocked" && e["task"] == "after_b"));
    assert_eq!(events.last().unwrap()["conflicts"], 1);
    assert_eq!(calls_of(barrier, "b"), 1);
    // b's prompt changed: still kept (the change is the person's to drop), and said.
    let orchfile = p.read("Orchfile.toml");
    p.write(
        "Orchfile.toml",
        &orchfile.replace(
            "[tasks.b]\nprompt = \"edit\"",
            "[tasks.b]\nprompt = \"edit it\"",
        ),
    );
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        one_line(&run.stderr()).contains(
            "b's definition or inputs changed since that run: to run it as it is now, discard \
             the kept change"
        ),
        "{}",
        run.stderr()
    );
    assert_eq!(calls_of(barrier, "b"), 1);
    // Discarded on purpose: gone, and the next build runs b (and after_b).
    let run = p.orch(&["merge", "--discard", "b"]).ok();
    assert!(
        one_line(&run.stdout()).starts_with("discarded b's kept change (branch orch/b, commit "),
        "{}",
        run.stdout()
    );
    assert!(!branches(&p).contains(&"orch/b".to_string()));
    assert!(!p.exists(".orchestrator/worktrees/b"));
    assert!(!p.exists(".orchestrator/worktrees/b.json"));
    let run = p.orch(&["merge", "--discard", "b"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run
        .stderr()
        .contains("task b has no kept change to discard"));
    p.orch(&["build"]).success();
    assert_eq!(calls_of(barrier, "b"), 2);
    assert_eq!(calls_of(barrier, "after_b"), 1);
}

#[test]
fn deps_whose_changes_conflict_keep_a_record_that_orch_merge_clears() {
    // a then b, one at a time, both turning `return 1` into something else; before b
    // merges, the person commits b's value over a's, so b merges into their tree (its
    // change is already there) while a's and b's changes conflict with each other: c, which
    // depends on both, cannot start from them.
    let barrier = tempfile::tempdir().unwrap();
    let orchfile = coder(barrier.path()).replace("jobs = 4", "jobs = 1")
        + &task("a", "1", "10", "", &[]).replace("agent = ", "priority = \"P0\"\nagent = ")
        + &task("b", "1", "30", "release", &[])
        + &task("c", "2", "20", "", &["a", "b"]);
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", LIB)]);
    let child = p
        .command(&["build"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // b's agent started, so a's change is merged (one job at a time).
    wait_for("b to start", Duration::from_secs(60), || {
        barrier.path().join("b").exists()
    });
    assert!(p.read("lib.py").contains("return 10"));
    p.write("lib.py", &LIB.replace("return 1\n", "return 30\n"));
    git(&p, &["commit", "-qam", "mine"]);
    std::fs::write(barrier.path().join("release"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        one_line(&stderr).contains("its deps' changes do not merge with each other: lib.py"),
        "{stderr}"
    );
    // Recorded for orch status (and --json) and orch merge, not as a worktree.
    let status = p.orch(&["status"]).ok().stdout();
    assert!(
        status.contains("c  (not started)  its deps' changes conflict: lib.py ("),
        "{status}"
    );
    let json = p.orch(&["status", "--json"]).ok().stdout();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "c")
        .unwrap();
    assert_eq!(row["status"], "conflict", "{row}");
    assert_eq!(row["worktree"]["kept_as"], "deps_conflict", "{row}");
    assert_eq!(row["worktree"]["files"], serde_json::json!(["lib.py"]));
    assert!(row["worktree"]["path"].is_null(), "{row}");
    let mut deps: Vec<&str> = row["worktree"]["deps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    deps.sort();
    assert_eq!(deps, ["a", "b"], "{row}");
    assert!(!p.exists(".orchestrator/worktrees/c"));
    // The person's tree is right as it is: orch merge clears the record and says what next.
    let run = p.orch(&["merge", "c"]).ok();
    assert!(
        one_line(&run.stdout()).contains("c had not run: its deps' changes"),
        "{}",
        run.stdout()
    );
    assert!(!p.orch(&["status"]).ok().stdout().contains("not started"));
    assert!(!p.exists(".orchestrator/worktrees/c.json"));
    // The next build runs c alone, from the person's tree.
    let run = p.orch(&["build", "-v"]).ok();
    assert!(
        run.stderr().contains("1 ran, 2 up to date"),
        "{}",
        run.stderr()
    );
    let lib = p.read("lib.py");
    assert!(
        lib.contains("return 30") && lib.contains("return 20"),
        "{lib}"
    );
}

#[test]
fn orch_clean_removes_kept_worktrees_and_their_branches() {
    let (_barrier, p) = one_conflict();
    assert!(branches(&p).contains(&"orch/b".to_string()));
    let dry = p.orch(&["clean", "-n"]).ok().stdout();
    assert!(
        dry.contains("would remove .orchestrator/worktrees/b"),
        "{dry}"
    );
    assert!(p.exists(".orchestrator/worktrees/b"));
    p.orch(&["clean"]).success();
    assert!(!p.exists(".orchestrator/worktrees/b"));
    assert_eq!(branches(&p), ["main"]);
    assert_eq!(worktrees(&p).len(), 1);
}

#[test]
fn a_failed_task_keeps_its_worktree_and_orch_diff_shows_how_far_it_got() {
    let orchfile = r#"
[settings]
isolation = "worktree"
[tasks.half]
run = "echo started > half.txt; exit 3"
"#;
    let p = repo(&[("Orchfile.toml", orchfile)]);
    p.orch(&["build"]).failure();
    assert!(
        !p.exists("half.txt"),
        "a failed task's change is not merged"
    );
    let status = p.orch(&["status"]).ok().stdout();
    assert!(
        status.contains("half  .orchestrator/worktrees/half  branch orch/half  failed"),
        "{status}"
    );
    let diff = p.orch(&["diff", "half"]).ok().stdout();
    assert!(diff.contains("+started"), "{diff}");
    let run = p.orch(&["merge", "half"]);
    assert_eq!(run.code(), 2);
    assert!(
        one_line(&run.stderr()).contains("task half failed; it did not conflict"),
        "{}",
        run.stderr()
    );
}

#[test]
fn two_worktree_tasks_may_write_one_file_and_a_guarded_output_is_a_conflict() {
    // One writer per file does not hold between worktree tasks: the merge decides. A
    // worktree task's change to a file a non-isolated task declares is a conflict.
    let orchfile = r#"
[settings]
jobs = 1
[tasks.one]
isolation = "worktree"
run = "echo one > shared.txt"
outputs = ["shared.txt"]
priority = "P0"
[tasks.two]
isolation = "worktree"
run = "echo one > shared.txt; echo two > log.txt"
outputs = ["shared.txt"]
priority = "P1"
[tasks.writer]
run = "echo plain > log.txt"
outputs = ["log.txt"]
priority = "P0"
"#;
    let p = repo(&[("Orchfile.toml", orchfile)]);
    let run = p.orch(&["build", "-k"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let err = one_line(&run.stderr());
    assert!(err.contains("CONFLICT Agent-02 [two]"), "{err}");
    assert!(
        err.contains("log.txt (a declared output of writer)"),
        "{err}"
    );
    assert_eq!(p.read("shared.txt"), "one\n");
    assert_eq!(p.read("log.txt"), "plain\n");
}

#[test]
fn worktree_include_copies_files_and_links_directories() {
    let orchfile = r#"
[settings]
isolation = "worktree"
worktree_include = [".env", "node_modules", "cache/*.bin"]
[tasks.use]
run = "cat .env node_modules/pkg/index.js cache/a.bin > seen.txt; echo changed > .env; test -L node_modules && echo linked >> seen.txt; test -L .env || echo copied >> seen.txt"
outputs = ["seen.txt"]
"#;
    let p = repo(&[("Orchfile.toml", orchfile)]);
    p.write(
        ".gitignore",
        ".orchestrator/\n.env\nnode_modules/\ncache/\n",
    );
    git(&p, &["commit", "-qam", "ignore"]);
    p.write(".env", "SECRET=1\n");
    p.write("node_modules/pkg/index.js", "module\n");
    p.write("cache/a.bin", "bin\n");
    p.orch(&["build"]).success();
    assert_eq!(
        p.read("seen.txt"),
        "SECRET=1\nmodule\nbin\nlinked\ncopied\n"
    );
    // The copy was the worktree's: the person's .env is untouched, and nothing included
    // became part of the change.
    assert_eq!(p.read(".env"), "SECRET=1\n");
    let files = git(&p, &["show", "--name-only", "--format=", "HEAD^2"]);
    assert_eq!(files.trim(), "seen.txt");
}

#[test]
fn watch_mode_reruns_a_worktree_task_on_an_input_change_and_settles() {
    let orchfile = r#"
[settings]
isolation = "worktree"
[tasks.copy]
run = "cat in.txt > out.txt"
inputs = ["in.txt"]
outputs = ["out.txt"]
"#;
    let p = repo(&[("Orchfile.toml", orchfile), ("in.txt", "one\n")]);
    let logs = tempfile::tempdir().unwrap();
    let stderr = logs.path().join("stderr");
    let mut child = p
        .command(&["watch", "--no-clear", "--debounce", "100ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let idle = |n: usize| said().matches("for changes (Ctrl-C to stop)").count() >= n;
    let limit = Duration::from_secs(30);
    wait_for("the first cycle", limit, || idle(1));
    assert_eq!(p.read("out.txt"), "one\n");
    // An uncommitted edit to an input: the task runs in a new worktree that has it.
    p.write("in.txt", "two\n");
    wait_for("the second cycle", limit, || idle(2));
    assert_eq!(p.read("out.txt"), "two\n", "{}", said());
    // The merge's own writes (out.txt, .git/) start no cycle of their own.
    std::thread::sleep(Duration::from_millis(600));
    assert!(!idle(3), "{}", said());
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut status = None;
    wait_for("the watch to stop", limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(130), "{}", said());
    assert_eq!(git(&p, &["status", "--porcelain"]), " M in.txt\n");
    assert_eq!(git(&p, &["show", "HEAD:out.txt"]), "two\n");
}
