//! Cache keys do not depend on the machine (contract v2, "Portable keys"): the same project
//! built in two directories of different depth, by different users (HOME, USER, LOGNAME),
//! with the orch binary copied elsewhere (another inode and mtime), stores the same action
//! keys; the records name no path of either machine; and the second clone, given the first
//! one's cache, restores everything and runs nothing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{orch_bin, Project};

/// Every kind of task a key is made of: a shell task over a glob of inputs, a prompt_file
/// task and a fan-out of the sim agent, one with env values, deps between them.
const ORCHFILE: &str = r#"
[settings]
default_agent = "sim"

[tasks.count]
run = "cat src/*.txt | wc -l > count.txt; echo counted"
inputs = ["src/*.txt"]
outputs = ["count.txt"]
env = { WHO = "the same everywhere" }

[tasks.review]
foreach = "src/*.txt"
prompt = "Review {{ item }} given {{ deps.count.result }}"
inputs = ["{{ item }}"]
outputs = ["reviews/{{ item.stem }}.md"]
deps = ["count"]

[tasks.summary]
prompt_file = "prompts/summary.md"
deps = ["review"]
outputs = ["summary.md"]
"#;

fn clone_at(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    std::fs::write(dir.join("Orchfile.toml"), ORCHFILE).unwrap();
    std::fs::write(dir.join("src/a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.join("src/b.txt"), "beta\ngamma\n").unwrap();
    std::fs::write(dir.join("prompts/summary.md"), "Summarize the reviews.\n").unwrap();
}

fn build(orch: &Path, dir: &Path, home: &Path, user: &str) -> String {
    let out = Command::new(orch)
        .args(["build", "--sim-speed", "1000"])
        .current_dir(dir)
        .env("HOME", home)
        .env("USER", user)
        .env("LOGNAME", user)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn keys(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join(".orchestrator/cache/ac"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn two_clones_on_two_machines_store_the_same_keys() {
    let a = Project::empty();
    let b = Project::empty();
    let here = a.path("work/alice/projects/app");
    let there = b.path("x");
    clone_at(&here);
    clone_at(&there);
    // Another "machine": another orch binary file, another home and user.
    let bin: PathBuf = b.path("bin/orch");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(orch_bin(), &bin).unwrap();
    build(Path::new(orch_bin()), &here, &a.path("home/alice"), "alice");
    build(&bin, &there, &b.path("home/bob"), "bob");
    let (ka, kb) = (keys(&here), keys(&there));
    assert_eq!(ka.len(), 4, "count, two reviews, summary: {ka:?}");
    assert_eq!(ka, kb, "the same keys on both machines");
    // No record names a path, a home or a user of either.
    for (dir, home, user) in [(&here, "home/alice", "alice"), (&there, "home/bob", "bob")] {
        for key in keys(dir) {
            let text =
                std::fs::read_to_string(dir.join(".orchestrator/cache/ac").join(&key)).unwrap();
            for bad in [
                dir.to_string_lossy().into_owned(),
                home.to_string(),
                user.to_string(),
                "/tmp".to_string(),
            ] {
                assert!(!text.contains(&bad), "{key} names {bad}: {text}");
            }
        }
    }
}

#[test]
fn a_clone_given_another_clones_cache_runs_nothing() {
    let a = Project::empty();
    let b = Project::empty();
    let here = a.path("one");
    let there = b.path("deeper/two");
    clone_at(&here);
    clone_at(&there);
    build(Path::new(orch_bin()), &here, &a.path("home"), "alice");
    // The first clone's cache, copied as a shared cache would hand it over.
    let copied = Command::new("cp")
        .arg("-a")
        .arg(here.join(".orchestrator/cache"))
        .arg(there.join(".orchestrator-cache"))
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::create_dir_all(there.join(".orchestrator")).unwrap();
    std::fs::rename(
        there.join(".orchestrator-cache"),
        there.join(".orchestrator/cache"),
    )
    .unwrap();
    let stderr = build(Path::new(orch_bin()), &there, &b.path("home"), "bob");
    assert!(
        stderr.contains("0 ran, 4 restored from cache, 0 up to date"),
        "{stderr}"
    );
    for f in ["count.txt", "reviews/a.md", "reviews/b.md", "summary.md"] {
        assert_eq!(
            std::fs::read(here.join(f)).unwrap(),
            std::fs::read(there.join(f)).unwrap(),
            "{f}"
        );
    }
}
