//! `isolation = "worktree"` when a build is killed or a merge fails half way: the next build
//! finishes what was merged or landed (rolls it forward) and records the task's success, so
//! that a task already paid for does not run again; a change kept with a conflict holds its
//! task, in the dry run as in the build. Real git repositories, the real binary.

mod common;

use std::time::Duration;

use common::git_repo::{branches, git, one_line, repo, worktrees};
use common::{wait_for, Project};

/// A worktree task `gen` that writes a.txt and b.txt and removes gone.txt, adding a line to
/// the file returned (outside the project) each time it runs, and `other`, not isolated;
/// with an uncommitted edit of the person's own elsewhere, which no merge may touch.
fn counted_gen() -> (tempfile::TempDir, std::path::PathBuf, Project) {
    let calls_dir = tempfile::tempdir().unwrap();
    let calls = calls_dir.path().join("calls");
    let orchfile = format!(
        r#"
[settings]
isolation = "worktree"
[tasks.gen]
run = "echo one > a.txt; echo two > b.txt; rm -f gone.txt; echo ran >> '{}'"
outputs = ["a.txt", "b.txt"]
[tasks.other]
run = "true"
isolation = "none"
"#,
        calls.display()
    );
    let p = repo(&[
        ("Orchfile.toml", &orchfile),
        ("gone.txt", "x\n"),
        ("a.txt", "0\n"),
    ]);
    p.write("notes.txt", "mine\n");
    (calls_dir, calls, p)
}

/// `orch build` started with the merge pause `env` set, once paused.
fn build_paused_at(p: &Project, env: &str) -> std::process::Child {
    let child = p
        .command(&["build"])
        .env(env, "60")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the merge to pause", Duration::from_secs(30), || {
        p.exists(".orchestrator/merge.paused")
    });
    child
}

/// Runs `orch build` with the merge pause `env` set and SIGKILLs it once paused.
fn build_killed_at(p: &Project, env: &str) {
    let mut child = build_paused_at(p, env);
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

/// After the build that finished a killed one's merge: the tree holds the change and the
/// person's edit, nothing is left over, and gen ran once and is up to date.
fn assert_merged_once(p: &Project, calls: &std::path::Path, head: &str) {
    assert!(!p.exists(".orchestrator/merges/gen.json"));
    assert_eq!(p.read("a.txt"), "one\n");
    assert_eq!(p.read("b.txt"), "two\n");
    assert!(!p.exists("gone.txt"));
    assert_ne!(git(p, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(p, &["status", "--porcelain"]), "?? notes.txt\n");
    assert_eq!(p.read("notes.txt"), "mine\n");
    assert_eq!(std::fs::read_to_string(calls).unwrap(), "ran\n");
    let again = p.orch(&["build", "-v"]).ok();
    assert!(
        again.stderr().contains("0 ran, 2 up to date"),
        "{}",
        again.stderr()
    );
    assert_eq!(std::fs::read_to_string(calls).unwrap(), "ran\n");
    // The killed build's worktree was reclaimed; nothing is left over.
    assert_eq!(worktrees(p).len(), 1, "{:?}", worktrees(p));
    assert!(!p.orch(&["status"]).ok().stdout().contains("kept"));
}

#[test]
fn sigkill_during_a_merge_is_finished_by_the_next_build() {
    let (_calls_dir, calls, p) = counted_gen();
    let head = git(&p, &["rev-parse", "HEAD"]);
    build_killed_at(&p, "ORCH_TEST_MERGE_PAUSE");
    // Killed between the record and the files: nothing of the merge is in the tree yet.
    assert!(p.exists(".orchestrator/merges/gen.json"));
    assert_eq!(git(&p, &["rev-parse", "HEAD"]), head);
    assert_eq!(p.read("a.txt"), "0\n");
    assert!(p.exists("gone.txt"));
    // The next build finishes that merge (rolls it forward) before anything else, and
    // records the task's success from the merge's record: it does not run again.
    let run = p.orch(&["build"]).ok();
    assert!(
        run.stderr().contains("finished merging gen into your tree"),
        "{}",
        run.stderr()
    );
    assert_merged_once(&p, &calls, &head);
}

#[test]
fn sigkill_after_a_merge_before_its_success_is_recorded_does_not_run_the_task_again() {
    let (_calls_dir, calls, p) = counted_gen();
    let head = git(&p, &["rev-parse", "HEAD"]);
    build_killed_at(&p, "ORCH_TEST_MERGE_PAUSE_AFTER");
    // Killed with the merge in the tree and HEAD moved, before the journal heard of the
    // success: the record is still there, carrying it.
    assert_ne!(git(&p, &["rev-parse", "HEAD"]), head);
    assert_eq!(p.read("a.txt"), "one\n");
    assert!(p.exists(".orchestrator/merges/gen.json"));
    let run = p.orch(&["build"]).ok();
    assert!(
        run.stderr()
            .contains("the merge of gen an interrupted run made was complete"),
        "{}",
        run.stderr()
    );
    assert_merged_once(&p, &calls, &head);
}

#[test]
fn sigkill_after_the_run_before_its_change_is_committed_lands_it_without_running_again() {
    let (_calls_dir, calls, p) = counted_gen();
    let head = git(&p, &["rev-parse", "HEAD"]);
    build_killed_at(&p, "ORCH_TEST_LAND_PAUSE");
    // Killed with the run done and its worktree holding the change, nothing committed or
    // merged yet: the landing marker says so.
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
    assert!(p.exists(".orchestrator/worktrees/gen.landing"));
    assert!(!p.exists(".orchestrator/merges/gen.json"));
    assert_eq!(git(&p, &["rev-parse", "HEAD"]), head);
    assert_eq!(p.read("a.txt"), "0\n");
    // The next build commits and merges that change instead of reclaiming the worktree.
    let run = p.orch(&["build"]).ok();
    assert!(
        run.stderr()
            .contains("landed gen's change, which an interrupted run had finished, into your tree"),
        "{}",
        run.stderr()
    );
    assert!(
        !run.stderr().contains("removed 1 worktree"),
        "{}",
        run.stderr()
    );
    assert!(!p.exists(".orchestrator/worktrees/gen.landing"));
    assert_merged_once(&p, &calls, &head);
}

#[test]
fn a_change_left_unlanded_by_a_kill_that_no_longer_merges_is_kept_and_not_run_again() {
    let (_calls_dir, calls, p) = counted_gen();
    build_killed_at(&p, "ORCH_TEST_LAND_PAUSE");
    // Meanwhile the person commits their own a.txt: gen's change no longer merges.
    p.write("a.txt", "mine\n");
    git(&p, &["commit", "-qam", "mine"]);
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let said = one_line(&run.stderr());
    assert!(
        said.contains("gen: an interrupted run had finished it; its change is kept, as it does not merge: conflict: a.txt"),
        "{said}"
    );
    assert!(
        said.contains("CONFLICT Agent-01 [gen] not started: its change is kept with a merge conflict (branch orch/gen: a.txt)"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
    assert_eq!(p.read("a.txt"), "mine\n");
    assert!(branches(&p).contains(&"orch/gen".to_string()));
    assert!(!p.exists(".orchestrator/worktrees/gen.landing"));
    assert!(p.read(".orchestrator/worktrees/gen/a.txt").contains("one"));
}

#[test]
fn a_merge_left_by_a_kill_is_finished_by_a_build_of_tasks_that_are_not_isolated() {
    let (_calls_dir, calls, p) = counted_gen();
    let head = git(&p, &["rev-parse", "HEAD"]);
    build_killed_at(&p, "ORCH_TEST_MERGE_PAUSE");
    // No worktree task is wanted; the half-done merge is finished all the same.
    let run = p.orch(&["build", "other"]).ok();
    assert!(
        run.stderr().contains("finished merging gen into your tree"),
        "{}",
        run.stderr()
    );
    assert_merged_once(&p, &calls, &head);
}

#[test]
fn a_merge_that_fails_half_way_keeps_its_record_and_the_next_build_finishes_it() {
    let (_calls_dir, calls, p) = counted_gen();
    let head = git(&p, &["rev-parse", "HEAD"]);
    let child = build_paused_at(&p, "ORCH_TEST_MERGE_PAUSE");
    // Another git holds the index: the merge's checkout fails, with the record written.
    let index_lock = p.path(".git/index.lock");
    std::fs::write(&index_lock, "").unwrap();
    p.write(".orchestrator/merge.resume", "");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("index.lock"), "{stderr}");
    assert!(p.exists(".orchestrator/merges/gen.json"));
    assert_eq!(git(&p, &["rev-parse", "HEAD"]), head);
    std::fs::remove_file(&index_lock).unwrap();
    std::fs::remove_file(p.path(".orchestrator/merge.resume")).unwrap();
    let run = p.orch(&["build"]).ok();
    assert!(
        run.stderr().contains("finished merging gen into your tree"),
        "{}",
        run.stderr()
    );
    assert_merged_once(&p, &calls, &head);
}

/// gen's merge fails half way (another git holds the index: its record is kept, HEAD not
/// moved), then the same build (`-k`) goes on and merges `later`'s change, which moves HEAD
/// past the record's old commit.
fn half_failed_then_merged_past() -> (tempfile::TempDir, std::path::PathBuf, Project) {
    let calls_dir = tempfile::tempdir().unwrap();
    let calls = calls_dir.path().join("calls");
    let orchfile = format!(
        r#"
[settings]
isolation = "worktree"
jobs = 1
[tasks.gen]
run = "echo one > a.txt; echo ran >> '{}'"
outputs = ["a.txt"]
priority = "P0"
[tasks.later]
run = "rm -f \"$(git rev-parse --git-common-dir)/index.lock\"; echo three > c.txt"
outputs = ["c.txt"]
priority = "P3"
"#,
        calls.display()
    );
    let p = repo(&[("Orchfile.toml", &orchfile), ("a.txt", "0\n")]);
    let head = git(&p, &["rev-parse", "HEAD"]);
    let child = p
        .command(&["build", "-k"])
        .env("ORCH_TEST_MERGE_PAUSE", "60")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the merge to pause", Duration::from_secs(60), || {
        p.exists(".orchestrator/merge.paused")
    });
    assert_eq!(p.read(".orchestrator/merge.paused"), "gen");
    std::fs::write(p.path(".git/index.lock"), "").unwrap();
    p.write(".orchestrator/merge.resume", "");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(p.exists(".orchestrator/merges/gen.json"), "{stderr}");
    assert_eq!(p.read("a.txt"), "0\n", "{stderr}");
    assert_eq!(p.read("c.txt"), "three\n", "later merged: {stderr}");
    assert_ne!(git(&p, &["rev-parse", "HEAD"]), head, "{stderr}");
    let _ = std::fs::remove_file(p.path(".git/index.lock"));
    std::fs::remove_file(p.path(".orchestrator/merge.resume")).unwrap();
    (calls_dir, calls, p)
}

#[test]
fn a_later_merge_in_the_same_build_does_not_lose_one_that_failed_half_way() {
    let (_calls_dir, calls, p) = half_failed_then_merged_past();
    let run = p.orch(&["build"]).ok();
    assert!(
        run.stderr().contains(
            "finished merging gen into your tree, onto the merges made since it was started"
        ),
        "{}",
        run.stderr()
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
    assert_eq!(p.read("a.txt"), "one\n");
    assert_eq!(p.read("c.txt"), "three\n");
    assert!(!p.exists(".orchestrator/merges/gen.json"));
    assert_eq!(git(&p, &["status", "--porcelain"]), "");
    let again = p.orch(&["build", "-v"]).ok();
    assert!(
        again.stderr().contains("0 ran, 2 up to date"),
        "{}",
        again.stderr()
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
}

#[test]
fn a_half_failed_merge_that_no_longer_merges_onto_later_ones_is_kept_not_run_again() {
    let (_calls_dir, calls, p) = half_failed_then_merged_past();
    // The person commits their own a.txt meanwhile: gen's change no longer merges.
    p.write("a.txt", "mine\n");
    git(&p, &["commit", "-qam", "mine"]);
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let said = one_line(&run.stderr());
    assert!(
        said.contains(
            "an interrupted merge of gen no longer merges onto your tree: conflict: a.txt"
        ),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
    assert_eq!(p.read("a.txt"), "mine\n");
    assert!(!p.exists(".orchestrator/merges/gen.json"));
    assert!(branches(&p).contains(&"orch/gen".to_string()));
    assert!(p.orch(&["status"]).ok().stdout().contains("kept"));
    // The person takes their edit back: `orch merge` merges the kept change and records
    // gen's success, so that the next build runs nothing.
    p.write("a.txt", "0\n");
    git(&p, &["commit", "-qam", "not mine after all"]);
    let merged = p.orch(&["merge", "gen"]).ok();
    assert_eq!(p.read("a.txt"), "one\n", "{}", merged.stderr());
    let again = p.orch(&["build", "-v"]).ok();
    assert!(
        again.stderr().contains("0 ran, 2 up to date"),
        "{}",
        again.stderr()
    );
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "ran\n");
}

/// The Ctrl-C lands while the merged output (1 MB, so its hash checks for an interrupt)
/// is being hashed: the task was stopped, not failed, and its change is in the tree, so
/// the next build records its success instead of running it again.
#[test]
fn a_ctrl_c_after_the_merge_does_not_lose_the_merged_success() {
    let calls_dir = tempfile::tempdir().unwrap();
    let calls = calls_dir.path().join("calls");
    let orchfile = format!(
        r#"
[settings]
isolation = "worktree"
[tasks.gen]
run = "head -c 1000000 /dev/zero | tr '\\0' x > big.txt; echo ran >> '{}'"
outputs = ["big.txt"]
"#,
        calls.display()
    );
    let p = repo(&[("Orchfile.toml", &orchfile)]);
    let child = p
        .command(&["build"])
        .env("ORCH_TEST_MERGE_PAUSE_AFTER", "60")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the merge to pause", Duration::from_secs(60), || {
        p.exists(".orchestrator/merge.paused")
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The interrupt is seen before the merge resumes (the pause polls for the resume file).
    std::thread::sleep(Duration::from_millis(500));
    p.write(".orchestrator/merge.resume", "");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("first build ({:?}):\n{stderr}", out.status);
    assert_eq!(p.read("big.txt").len(), 1_000_000, "merged into the tree");
    assert!(!stderr.contains("FAILED"), "reported failed: {stderr}");
    assert!(
        p.exists(".orchestrator/merges/gen.json"),
        "the merge record was dropped: {stderr}"
    );
    std::fs::remove_file(p.path(".orchestrator/merge.resume")).unwrap();
    let run = p.orch(&["build"]);
    eprintln!("second build:\n{}", run.stderr());
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "ran\n",
        "gen ran again though its change was merged: {}",
        run.stderr()
    );
    assert_eq!(p.read("big.txt").len(), 1_000_000);
}

/// An agent that replaces `return $FROM` by `return $TO` in lib.py where it runs.
const CODER: &str = r#"
[settings]
isolation = "worktree"
jobs = 1

[agents.coder]
command = ["sh", "-c", 'sed -i "s/return $FROM\$/return $TO/" lib.py; echo "$ORCH_TASK_ID"']
"#;

fn edit(id: &str, from: &str, to: &str, deps: &[&str], extra: &str) -> String {
    format!(
        "\n[tasks.{id}]\nprompt = \"edit\"\nagent = \"coder\"\ndeps = {deps:?}\ncost_estimate = 0.25\n\
         env = {{ FROM = \"{from}\", TO = \"{to}\" }}\n{extra}"
    )
}

/// `b` edits the line `a` (run first) edited from the same start: its change is kept with
/// a conflict. The dry run shows it held and `after_b` blocked, as the build does, and
/// counts neither in the projected cost; `orch explain` says so too.
#[test]
fn the_dry_run_shows_a_task_held_by_a_kept_conflict_and_its_dependents_blocked() {
    let orchfile = CODER.to_string()
        + &edit("a", "1", "10", &[], "priority = \"P0\"\n")
        + &edit("b", "1", "30", &[], "")
        + &edit("after_b", "2", "20", &["b"], "");
    let lib = "def alpha():\n    return 1\n\n\ndef beta():\n    return 2\n";
    let p = repo(&[("Orchfile.toml", &orchfile), ("lib.py", lib)]);
    let run = p.orch(&["build"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("CONFLICT Agent-02 [b]"),
        "{}",
        run.stderr()
    );
    let out = p.orch(&["build", "-n", "--max-cost", "1"]).ok().stdout();
    insta::assert_snapshot!("dry_run_held_by_a_kept_conflict", out);
    let explained = p.orch(&["explain", "after_b"]).ok().stdout();
    assert!(
        explained.contains("blocked: b is kept with a merge conflict"),
        "{explained}"
    );
    let explained = p.orch(&["explain", "b"]).ok().stdout();
    assert!(
        explained.contains("held: kept with a merge conflict: orch merge b"),
        "{explained}"
    );
}
