//! Git repositories for the isolation tests: a committed project, git run in it, and what
//! its worktrees and branches are.

use std::process::Command;

use super::Project;

/// `git ARGS` in the project, with an identity of its own; stdout.
pub fn git(p: &Project, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=person",
            "-c",
            "user.email=person@example.com",
        ])
        .args(args)
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository holding `files` (the Orchfile among them), committed, with the state
/// directory ignored.
pub fn repo(files: &[(&str, &str)]) -> Project {
    let p = Project::empty();
    p.write(".gitignore", ".orchestrator/\n");
    for (rel, text) in files {
        p.write(rel, text);
    }
    git(&p, &["init", "-q", "-b", "main"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-q", "-m", "start"]);
    p
}

/// A diagnostic as one line: miette wraps it at the terminal's width.
pub fn one_line(s: &str) -> String {
    s.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn worktrees(p: &Project) -> Vec<String> {
    git(p, &["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(str::to_string)
        .collect()
}

pub fn branches(p: &Project) -> Vec<String> {
    git(p, &["branch", "--format=%(refname:short)"])
        .lines()
        .map(str::to_string)
        .collect()
}
