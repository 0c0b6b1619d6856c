//! The values of the variables a task declares are part of its cache key (as Turborepo and
//! Bazel key actions): a run with another `env` value is not up to date and is never
//! restored from an entry stored for the first value; going back to a value restores its
//! own outputs; and the values, hashed, are written nowhere in clear (state, cache, logs).

mod common;

use common::{fake_claude, Project};

/// A shell task whose output is its env value, under a secret-looking name too.
fn orchfile(who: &str, token: &str) -> String {
    format!(
        r#"
[tasks.greet]
run = "printf 'hello %s\n' \"$WHO\" > out.txt; test -n \"$DEPLOY_TOKEN\""
outputs = ["out.txt"]
env = {{ WHO = "{who}", DEPLOY_TOKEN = "{token}" }}
"#
    )
}

fn every_file(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(every_file(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn another_env_value_runs_and_each_value_restores_its_own_outputs() {
    const SECRET: &str = "tok-9f8e7d6c5b4a";
    let p = Project::new(&orchfile("alice", SECRET));
    p.orch(&["build"]).success();
    assert_eq!(p.read("out.txt"), "hello alice\n");

    // Only the value changes: the task is stale, runs, and writes the new value.
    p.write("Orchfile.toml", &orchfile("bob", SECRET));
    let explain = p.orch(&["explain", "greet"]).ok().stdout();
    assert!(explain.contains("definition changed: env"), "{explain}");
    let out = p.orch(&["build"]).ok();
    assert!(out.stderr().contains("1 ran"), "{}", out.stderr());
    assert_eq!(p.read("out.txt"), "hello bob\n", "not alice's output");

    // Back to the first value: its own entry, restored without running.
    p.write("Orchfile.toml", &orchfile("alice", SECRET));
    let out = p.orch(&["build"]).ok();
    assert!(
        out.stderr().contains("0 ran, 1 restored from cache"),
        "{}",
        out.stderr()
    );
    assert_eq!(p.read("out.txt"), "hello alice\n");

    // A rotated secret in the table is a new key too, and no value is written in clear.
    p.write("Orchfile.toml", &orchfile("alice", "tok-rotated-000111"));
    let out = p.orch(&["build", "--json"]).ok();
    assert!(out.stderr().is_empty() || !out.stderr().contains(SECRET));
    for f in every_file(&p.path(".orchestrator")) {
        // The parsed Orchfile, kept to skip parsing it again, holds the table as the
        // Orchfile itself does.
        if f.ends_with("plan_cache.bin") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for value in [SECRET, "tok-rotated-000111"] {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "{} holds {value}",
                f.display()
            );
        }
    }
    assert!(!out.stdout().contains(SECRET));
}

#[test]
fn the_table_order_is_not_part_of_the_key() {
    let p = Project::new(&orchfile("alice", "x"));
    p.orch(&["build"]).success();
    p.write(
        "Orchfile.toml",
        r#"
[tasks.greet]
run = "printf 'hello %s\n' \"$WHO\" > out.txt; test -n \"$DEPLOY_TOKEN\""
outputs = ["out.txt"]
env = { DEPLOY_TOKEN = "x", WHO = "alice" }
"#,
    );
    let out = p.orch(&["build"]).ok();
    assert!(out.stderr().contains("1 up to date"), "{}", out.stderr());
}

#[test]
fn an_agent_env_value_is_part_of_its_tasks_keys() {
    let orchfile = |style: &str| {
        format!(
            r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok", STYLE = "{style}" }}

[tasks.review]
prompt = "Review the code."
"#,
            fake = fake_claude().display()
        )
    };
    let p = Project::new(&orchfile("terse"));
    p.orch(&["build"]).success();
    p.write("Orchfile.toml", &orchfile("verbose"));
    p.orch(&["build"]).success();
    assert_eq!(
        p.lines(".orchestrator/calls.log"),
        ["review", "review"],
        "another agent env value calls the agent again"
    );
    p.write("Orchfile.toml", &orchfile("terse"));
    let out = p.orch(&["build"]).ok();
    assert!(
        out.stderr().contains("0 ran, 1 restored from cache"),
        "{}",
        out.stderr()
    );
    assert_eq!(p.lines(".orchestrator/calls.log").len(), 2);
}
