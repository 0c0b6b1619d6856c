//! The git side on its own: real repositories in temp dirs.

use std::path::Path;

use super::worktree::{safe_name, Change};
use super::*;

fn sh(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with `a.txt` committed, and its Repo (state in `.orchestrator`).
fn repo() -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join(".gitignore"), ".orchestrator/\n").unwrap();
    std::fs::write(d.join("a.txt"), "a\n").unwrap();
    sh(d, &["init", "-q"]);
    sh(d, &["add", "-A"]);
    sh(d, &["commit", "-qm", "start"]);
    let state = d.join(".orchestrator");
    std::fs::create_dir_all(&state).unwrap();
    let repo = Repo::open(d, &state).unwrap();
    (dir, repo)
}

#[test]
fn ids_that_are_not_safe_names_get_a_hash() {
    assert_eq!(safe_name("T-01"), "T-01");
    let s = safe_name("review[src/a.ts]");
    assert!(s.starts_with("review_src_a_ts_-"), "{s}");
    assert_ne!(s, safe_name("review[src/a_ts]"));
    assert_ne!(safe_name("x.lock"), "x.lock");
}

#[test]
fn a_change_merges_and_an_interrupted_apply_is_finished_idempotently() {
    let (dir, repo) = repo();
    let base = repo.head().unwrap();
    let mut tree = repo.create("t", &base).unwrap();
    std::fs::write(tree.root.join("a.txt"), "changed\n").unwrap();
    std::fs::write(tree.root.join("new.txt"), "new\n").unwrap();
    let who = worktree::identity("t", "Agent-01");
    let commit = repo
        .commit(&mut tree, &[], "t: change", &who)
        .unwrap()
        .unwrap();
    let change = Change {
        start: base.clone(),
        commit,
    };
    let merged = repo
        .merge(of_t(), &change, Some(&base), "merge t", &|_| None)
        .unwrap();
    let merge::Merged::Clean { commit: new, paths } = merged else {
        panic!("{merged:?}")
    };
    assert_eq!(paths, ["a.txt", "new.txt"]);
    assert_eq!(repo.head().unwrap(), new);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "changed\n"
    );
    // The same change again: already in.
    let again = repo
        .merge(of_t(), &change, Some(&base), "merge t", &|_| None)
        .unwrap();
    assert_eq!(again, merge::Merged::Unchanged);
    // The merge's record stays until the caller has recorded the success; found again, it
    // is complete (HEAD is at its new commit).
    let record = repo.state_dir.join("merges/t.json");
    assert!(record.exists());
    let found = repo.recover().unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].said.contains("was complete"), "{}", found[0].said);
    assert!(record.exists());
    repo.drop_record("t").unwrap();
    assert!(!record.exists());
    assert_eq!(repo.recover().unwrap(), []);
    // A record an older orch left as merge.json is found too, moved under merges/.
    let legacy =
        format!(r#"{{"task":"t","old":"{base}","new":"{new}","write":["a.txt"],"remove":[]}}"#);
    std::fs::write(repo.state_dir.join("merge.json"), &legacy).unwrap();
    let found = repo.recover().unwrap();
    assert_eq!(found.len(), 1);
    assert!(!repo.state_dir.join("merge.json").exists());
    repo.drop_record("t").unwrap();
    assert_eq!(repo.recover().unwrap(), []);
}

#[test]
fn a_conflict_touches_nothing() {
    let (dir, repo) = repo();
    let base = repo.head().unwrap();
    let mut tree = repo.create("t", &base).unwrap();
    std::fs::write(tree.root.join("a.txt"), "theirs\n").unwrap();
    let who = worktree::identity("t", "Agent-01");
    let commit = repo.commit(&mut tree, &[], "t", &who).unwrap().unwrap();
    std::fs::write(dir.path().join("a.txt"), "ours\n").unwrap();
    sh(dir.path(), &["commit", "-qam", "ours"]);
    let head = repo.head().unwrap();
    let merged = repo
        .merge(
            of_t(),
            &Change {
                start: base.clone(),
                commit,
            },
            Some(&base),
            "merge t",
            &|_| None,
        )
        .unwrap();
    assert!(
        matches!(&merged, merge::Merged::Conflict { files, .. } if files == &["a.txt"]),
        "{merged:?}"
    );
    assert_eq!(repo.head().unwrap(), head);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "ours\n"
    );
    assert_eq!(sh(dir.path(), &["status", "--porcelain"]), "");
}

/// Task `t`'s merge, by Agent-01, with no success to record.
fn of_t() -> merge::MergeOf<'static> {
    merge::MergeOf {
        task: "t",
        agent_id: "Agent-01",
        success: None,
    }
}
