//! The local output cache with the real binary: a reverted input is restored, not run (0
//! agent calls, the cost saved reported), files come back whole with their modes, `cache =
//! false` and `--no-cache` run, a damaged blob is never restored, failed runs are never
//! kept, `orch cache stats|prune|clear`, and the dry run says what it would restore.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{fake_claude, Project};
use serde_json::Value;

/// A shell task that writes an executable output from its input, and an agent task (the
/// fake claude, $0.0021 a call) over its result.
fn project(extra: &str) -> Project {
    let p = Project::new(&format!(
        r#"
[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}

[tasks.gen]
run = "tr a-z A-Z < in.txt > bin/tool.sh; chmod 755 bin/tool.sh; echo generated"
inputs = ["in.txt"]
outputs = ["bin/tool.sh"]

[tasks.review]
prompt = "Review {{{{ deps.gen.result }}}}"
deps = ["gen"]
{extra}
"#,
        fake = fake_claude().display()
    ));
    p.write("in.txt", "one\n");
    std::fs::create_dir_all(p.path("bin")).unwrap();
    p
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

#[test]
fn a_reverted_input_is_restored_with_no_agent_call_and_its_cost_saved() {
    let p = project("");
    p.orch(&["build"]).success();
    assert_eq!(p.agent_calls(), ["review"]);
    let first = p.read("bin/tool.sh");
    let answer = p.read(".orchestrator/results/agent-02-result.md");
    p.write("in.txt", "two\n");
    p.orch(&["build"]).success();
    assert_eq!(p.agent_calls(), ["review", "review"]);
    // Back to what the agent already answered: nothing runs, everything is as it was.
    p.write("in.txt", "one\n");
    std::fs::set_permissions(
        p.path("bin/tool.sh"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = p.orch(&["build", "--json"]).ok().stdout();
    assert_eq!(p.agent_calls(), ["review", "review"], "no agent call");
    assert_eq!(p.read("bin/tool.sh"), first);
    let mode = std::fs::metadata(p.path("bin/tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "its mode as stored");
    let ev = events(&out);
    let restored = named(&ev, "task_restored");
    let ids: Vec<&str> = restored
        .iter()
        .map(|e| e["task"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gen", "review"]);
    assert_eq!(restored[1]["source"], "local");
    assert_eq!(restored[1]["saved_cost_usd"], 0.0021);
    assert_eq!(restored[1]["session_id"], "fake");
    let done = named(&ev, "build_finished")[0];
    assert_eq!(
        (done["ran"].as_u64(), done["restored"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(done["saved_cost_usd"], 0.0021);
    assert_eq!(done["cost_usd"], 0.0, "nothing spent");
    // The result is the agent's first answer, and the next build finds it all up to date.
    assert_eq!(p.read(".orchestrator/results/agent-02-result.md"), answer);
    let again = p.orch(&["build"]).ok();
    assert!(
        again.stderr().contains("0 ran, 2 up to date"),
        "{}",
        again.stderr()
    );
    // The terminal says it too.
    p.write("in.txt", "two\n");
    let plain = p.orch(&["build"]).ok();
    assert!(
        plain
            .stderr()
            .contains("[review] restored from cache, saved $0.0021"),
        "{}",
        plain.stderr()
    );
    assert!(
        plain
            .stderr()
            .contains("0 ran, 2 restored from cache (saved $0.0021)"),
        "{}",
        plain.stderr()
    );
    assert_eq!(p.agent_calls().len(), 2);
    // master_plan.md's log says where the answer came from.
    assert!(p
        .read(".orchestrator/master_plan.md")
        .contains("restored from the local cache"));
}

#[test]
fn cache_false_and_no_cache_run_again() {
    let p = project("cache = false");
    p.orch(&["build"]).success();
    p.write("in.txt", "two\n");
    p.orch(&["build"]).success();
    p.write("in.txt", "one\n");
    let out = p.orch(&["build"]).ok();
    assert_eq!(
        p.agent_calls(),
        ["review", "review", "review"],
        "cache = false runs"
    );
    assert!(
        out.stderr().contains("1 ran, 1 restored from cache"),
        "{}",
        out.stderr()
    );

    let q = project("");
    q.orch(&["build"]).success();
    q.write("in.txt", "two\n");
    q.orch(&["build"]).success();
    q.write("in.txt", "one\n");
    let out = q.orch(&["build", "--no-cache"]).ok();
    assert_eq!(q.agent_calls().len(), 3, "--no-cache runs");
    assert!(
        out.stderr().contains("2 ran, 0 up to date"),
        "{}",
        out.stderr()
    );

    // Off in the settings: nothing is stored at all.
    let r = Project::new("[settings]\ncache = false\n[tasks.a]\nrun = \"echo hi\"\n");
    r.orch(&["build"]).success();
    assert!(!r.exists(".orchestrator/cache"));
}

#[test]
fn a_damaged_blob_is_not_restored_and_the_task_runs() {
    let p = project("");
    p.orch(&["build"]).success();
    p.write("in.txt", "two\n");
    p.orch(&["build"]).success();
    // Every stored blob damaged (a disk error, an edit): none may come back.
    let blobs = walk(&p.path(".orchestrator/cache/cas"));
    assert!(blobs.len() >= 3, "{blobs:?}");
    for b in &blobs {
        std::fs::write(b, "tampered").unwrap();
    }
    p.write("in.txt", "one\n");
    let out = p.orch(&["build"]).ok();
    assert_eq!(
        p.agent_calls().len(),
        3,
        "ran instead of restoring a damaged answer"
    );
    assert_eq!(p.read("bin/tool.sh"), "ONE\n");
    assert!(!p
        .read(".orchestrator/results/agent-02-result.md")
        .contains("tampered"));
    assert!(
        out.stderr()
            .contains("local cache entry not restored: blob"),
        "reported: {}",
        out.stderr()
    );
}

#[test]
fn failed_runs_are_never_kept() {
    let p =
        Project::new("[tasks.a]\nrun = \"echo out > o.txt; test -f ok\"\noutputs = [\"o.txt\"]\n");
    p.orch(&["build"]).failure();
    assert_eq!(records(&p), 0);
    p.write("ok", "");
    p.orch(&["build"]).success();
    assert_eq!(records(&p), 1);
}

#[test]
fn cache_stats_prune_and_clear() {
    let p = project("");
    p.orch(&["build"]).success();
    let stats = p.orch(&["cache", "stats"]).ok().stdout();
    assert!(
        stats.starts_with("local cache .orchestrator/cache: 2 entries, 3 blobs"),
        "{stats}"
    );
    let pruned = p.orch(&["cache", "prune", "--max-size", "1"]).ok().stdout();
    assert!(pruned.starts_with("pruned 5 files"), "{pruned}");
    p.orch(&["build", "-B"]).success();
    let cleared = p.orch(&["cache", "clear"]).ok().stdout();
    assert!(
        cleared.starts_with("removed 2 entries and 3 blobs"),
        "{cleared}"
    );
    assert!(!p.exists(".orchestrator/cache"));
    // `orch clean` leaves the cache: a clean build after it restores.
    p.orch(&["build", "-B"]).success();
    p.orch(&["clean"]).success();
    let out = p.orch(&["build"]).ok();
    assert!(
        out.stderr().contains("0 ran, 2 restored from cache"),
        "{}",
        out.stderr()
    );
    // A cap the store is over is enforced at the end of a build that stored something.
    let q = Project::new(
        "[settings]\ncache_max_size = 10\n[tasks.a]\nrun = \"echo a long enough result\"\n",
    );
    q.orch(&["build"]).success();
    assert_eq!(records(&q), 0, "pruned to 10 bytes");
}

#[test]
fn the_dry_run_and_explain_say_what_would_be_restored() {
    let p = project("");
    p.orch(&["build"]).success();
    p.write("in.txt", "two\n");
    p.orch(&["build"]).success();
    p.write("in.txt", "one\n");
    let dry = p.orch(&["build", "-n"]).ok().stdout();
    assert!(
        dry.contains("input in.txt changed; would restore from cache"),
        "{dry}"
    );
    let explain = p.orch(&["explain", "gen"]).ok().stdout();
    assert!(explain.contains("would restore from cache"), "{explain}");
    let dry = p.orch(&["build", "-n", "--no-cache"]).ok().stdout();
    assert!(!dry.contains("would restore"), "{dry}");
    assert_eq!(p.agent_calls().len(), 2);
}

fn records(p: &Project) -> usize {
    walk(&p.path(".orchestrator/cache/ac")).len()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A PID that ran a moment ago and is gone.
fn gone_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Writes a temp file as a killed writer leaves one, last written an hour ago.
fn plant_left_over(p: &Project, rel: &str) {
    p.write(rel, "half a copy");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(p.path(rel))
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

#[test]
fn temp_files_a_killed_build_left_are_swept() {
    let p = project("");
    p.orch(&["build"]).success();
    let dead = gone_pid();
    let in_store = format!(".orchestrator/cache/tmp/.blob.orch-tmp.{dead}.0");
    let beside_output = format!("bin/.tool.sh.orch-tmp.{dead}.3");
    let beside_result = format!(".orchestrator/results/.agent-02-result.md.orch-tmp.{dead}.1");
    let beside_record = format!(".orchestrator/cache/ac/.x.json.orch-tmp.{dead}.2");
    for rel in [&in_store, &beside_output, &beside_result, &beside_record] {
        plant_left_over(&p, rel);
    }
    // Not orch's, or still being written: left alone.
    plant_left_over(&p, "bin/.tool.sh.orch-tmp.notes");
    p.write(&format!("bin/.fresh.orch-tmp.{dead}.4"), "being written");
    // A build sweeps its store's temp directory (cheap: one small directory).
    p.orch(&["build"]).success();
    assert!(!p.exists(&in_store));
    assert!(p.exists(&beside_output) && p.exists(&beside_result));
    // `orch cache prune` looks everywhere orch writes temp files.
    let out = p.orch(&["cache", "prune"]).ok().stdout();
    assert!(
        out.contains("removed 3 temp files (33 B) that killed builds left"),
        "{out}"
    );
    for rel in [&beside_output, &beside_result, &beside_record] {
        assert!(!p.exists(rel), "{rel} left");
    }
    assert!(p.exists("bin/.tool.sh.orch-tmp.notes"));
    assert!(p.exists(&format!("bin/.fresh.orch-tmp.{dead}.4")));
    assert_eq!(p.read("bin/tool.sh"), "ONE\n");
    p.orch(&["build"]).success();
    assert_eq!(p.agent_calls(), ["review"]);
}
