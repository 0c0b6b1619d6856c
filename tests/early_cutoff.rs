//! Early cutoff (contract v2, "Up to date"): a dependent's fingerprint takes its deps'
//! outputs and results, not their fingerprints. A dep that re-runs and leaves the same bytes
//! does not make its dependents run; one whose outputs change does. Also: what `-n` and
//! `explain` say about it, records of orch before it carried over, and fingerprints that do
//! not depend on where the project is.

mod common;

use std::sync::Arc;

use common::*;
use orchfile::disk::Digest;
use orchfile::state::{Snapshot, StateLayout, StateStore};

/// `a` strips comments from its input, as a compiler would; `b` and `c` use what it made.
const STRIP: &str = r#"
[tasks.a]
run = "echo a >> ran.log; grep -v '^#' src.txt > out_a.txt"
inputs = ["src.txt"]
outputs = ["out_a.txt"]

[tasks.b]
run = "echo b >> ran.log; cat out_a.txt > out_b.txt"
outputs = ["out_b.txt"]
deps = ["a"]

[tasks.c]
run = "echo c >> ran.log; cat out_b.txt > out_c.txt"
outputs = ["out_c.txt"]
deps = ["b"]
"#;

fn strip() -> Project {
    let p = Project::new(STRIP);
    p.write("src.txt", "# v1\nint main;\n");
    p.orch(&["build"]).success();
    p.clear("ran.log");
    p
}

#[test]
fn a_dep_that_reruns_with_the_same_outputs_does_not_rerun_its_dependents() {
    let p = strip();
    p.write("src.txt", "# v2, only a comment changed\nint main;\n");
    let run = p.orch(&["build"]).ok();
    assert_eq!(p.lines("ran.log"), ["a"], "{}", run.stderr());
    assert!(
        run.stderr().contains("1 ran, 2 up to date"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("[b] up to date: dep a re-ran, outputs unchanged"),
        "{}",
        run.stderr()
    );
    // The log of master_plan.md says so too.
    assert!(p
        .read(".orchestrator/master_plan.md")
        .contains("b not run: dep a re-ran and handed over the same outputs and result"));

    // Outputs that do change still reach every dependent.
    p.clear("ran.log");
    p.write("src.txt", "# v2\nint main(void);\n");
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["a", "b", "c"]);
    assert_eq!(p.read("out_c.txt"), "int main(void);\n");
}

#[test]
fn a_task_reset_by_a_person_reruns_alone_when_its_outputs_come_out_the_same() {
    let p = strip();
    let doc = p.read(".orchestrator/master_plan.md");
    let row = doc.lines().find(|l| l.starts_with("| a |")).unwrap();
    p.write(
        ".orchestrator/master_plan.md",
        &doc.replace(row, &row.replace(" ✅ ", " 🟡 ")),
    );
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["a"]);
    // -B runs what it selects, and nothing else more than the same rule allows.
    p.clear("ran.log");
    let run = p.orch(&["build", "-B", "a"]).ok();
    assert_eq!(p.lines("ran.log"), ["a"], "{}", run.stderr());
}

#[test]
fn an_agent_that_gives_the_same_answer_again_costs_its_dependents_nothing() {
    let p = Project::new(
        r#"
[agents.writer]
command = ["sh", "-c", "cat > /dev/null; echo $ORCH_TASK_ID >> calls.log; if [ $ORCH_TASK_ID = summ ]; then echo 'the summary' > summary.md; fi; printf '{\"result\": \"%s done\", \"total_cost_usd\": 0.01}' $ORCH_TASK_ID"]
result = "json:result"
# The test's own bookkeeping, not the agent's work.
allow_undeclared_writes = ["calls.log"]

[tasks.summ]
prompt = "Summarise chapter 2 into summary.md."
agent = "writer"
outputs = ["summary.md"]

[tasks.review]
prompt = "Review {{ deps.summ.result }} and summary.md."
agent = "writer"
inputs = []
deps = ["summ"]
outputs = []
"#,
    );
    p.orch(&["build"]).success();
    assert_eq!(p.lines("calls.log"), ["summ", "review"]);
    // A line appended by hand: summ re-runs and writes the very same file and answer
    // (not restored from the output cache, which would make no call at all).
    p.write("summary.md", "the summary\nmore by hand\n");
    let run = p.orch(&["build", "--json", "--no-cache"]).ok();
    assert_eq!(p.lines("calls.log"), ["summ", "review", "summ"]);
    let events: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let skipped = events
        .iter()
        .find(|e| e["event"] == "task_skipped" && e["task"] == "review")
        .expect("review skipped");
    assert_eq!(skipped["deps_reran"], serde_json::json!(["summ"]));
    let last = events.last().unwrap();
    assert_eq!(last["ran"], 1);
    assert_eq!(last["cost_usd"], 0.01, "only summ was paid for");
}

#[test]
fn a_dep_without_outputs_still_passes_a_change_on() {
    // Nothing to compare (no declared output, no result): its fingerprint stands in.
    let p = Project::new(
        "[tasks.setup]\nrun = \"echo setup >> ran.log\"\n[tasks.use]\nrun = \"echo use >> ran.log\"\ndeps = [\"setup\"]\n",
    );
    p.orch(&["build"]).success();
    p.clear("ran.log");
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml")
            .replace("echo setup >>", "echo setup v2 >>"),
    );
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["setup v2", "use"]);
}

#[test]
fn dry_run_and_explain_say_a_dependent_only_may_run() {
    let p = strip();
    p.write("src.txt", "# v2\nint main;\n");
    let dry = p.orch(&["build", "-n"]).ok().stdout();
    assert!(dry.contains("  input src.txt changed"), "{dry}");
    assert!(
        dry.contains("may run: dep a will run (input src.txt changed); runs only if"),
        "{dry}"
    );
    assert!(dry.contains("may run: dep b may run;"), "{dry}");
    assert!(
        dry.contains("Would run 1 task(s) (and 2 more only if a dep's outputs change) with"),
        "{dry}"
    );
    let why = p.orch(&["explain", "b"]).ok().stdout();
    assert!(why.contains("b (Agent-02, b): may run"), "{why}");
    assert!(
        why.contains("dep a will run (input src.txt changed)"),
        "{why}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.orch(&["explain", "--json", "b"]).ok().stdout()).unwrap();
    assert_eq!(json[0]["verdict"], "may_run");
    assert_eq!(json[0]["up_to_date"], false);

    // A second apart, so the records' times (in seconds) tell which ran later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.orch(&["build"]).success();
    let why = p.orch(&["explain", "b"]).ok().stdout();
    assert!(why.contains("b (Agent-02, b): up to date"), "{why}");
    assert!(why.contains("dep a re-ran since ("), "{why}");
    assert!(why.contains("outputs unchanged"), "{why}");
}

/// Rewrites the state as orch before early cutoff kept it: snapshot version 1, each dep
/// digest over the dep's fingerprint and outputs, fingerprints taken over those.
fn downgrade_state(p: &Project, order: &[&str]) {
    let layout = StateLayout::new(p.path(".orchestrator"));
    let store = StateStore::open(layout).unwrap();
    let mut snapshot = Snapshot {
        version: 1,
        agent_numbers: store.snapshot.agent_numbers.clone(),
        statuses: store.snapshot.statuses.clone(),
        aggregate_digest: store.snapshot.aggregate_digest,
        ..Default::default()
    };
    for id in order {
        let mut r = (*store.snapshot.records[*id]).clone();
        for (dep, digest) in &mut r.deps {
            let d = &snapshot.records[dep.as_str()];
            *digest = orchfile::fingerprint::dep_digest_v1(&d.fingerprint, &d.outputs);
        }
        r.fingerprint = orchfile::fingerprint::combine(&r.definition, &r.inputs, &r.deps);
        snapshot.records.insert(id.to_string(), Arc::new(r));
    }
    std::fs::write(p.path(".orchestrator/state.bin"), snapshot.encode()).unwrap();
    for f in ["journal.jsonl", "up_to_date.bin", "plan_cache.bin"] {
        p.clear(&format!(".orchestrator/{f}"));
    }
}

#[test]
fn records_of_orch_before_early_cutoff_are_carried_over_and_nothing_reruns() {
    let p = strip();
    downgrade_state(&p, &["a", "b", "c"]);
    let run = p.orch(&["build"]).ok();
    assert!(
        p.lines("ran.log").is_empty(),
        "an upgrade re-runs nothing: {}",
        run.stderr()
    );
    let bytes = std::fs::read(p.path(".orchestrator/state.bin")).unwrap();
    assert_eq!(Snapshot::decode(&bytes).unwrap().version, 2, "written once");
    // And the carried-over records behave as new ones.
    p.write("src.txt", "# v3\nint main;\n");
    p.orch(&["build"]).success();
    assert_eq!(p.lines("ran.log"), ["a"]);
}

#[test]
fn an_old_record_built_on_other_outputs_is_not_carried_over() {
    let p = strip();
    downgrade_state(&p, &["a", "b", "c"]);
    // b's record claims a dep digest that a's current record does not give.
    let bytes = std::fs::read(p.path(".orchestrator/state.bin")).unwrap();
    let mut snapshot = Snapshot::decode(&bytes).unwrap();
    let mut b = (*snapshot.records["b"]).clone();
    b.deps[0].1 = Digest::of(b"some older run of a");
    b.fingerprint = orchfile::fingerprint::combine(&b.definition, &b.inputs, &b.deps);
    // c was built on that b, as the old rules recorded it.
    let mut c = (*snapshot.records["c"]).clone();
    c.deps[0].1 = orchfile::fingerprint::dep_digest_v1(&b.fingerprint, &b.outputs);
    c.fingerprint = orchfile::fingerprint::combine(&c.definition, &c.inputs, &c.deps);
    snapshot.records.insert("b".into(), Arc::new(b));
    snapshot.records.insert("c".into(), Arc::new(c));
    std::fs::write(p.path(".orchestrator/state.bin"), snapshot.encode()).unwrap();
    // Run, not restored from the output cache the first build filled.
    p.orch(&["build", "--no-cache"]).success();
    assert_eq!(
        p.lines("ran.log"),
        ["b"],
        "b re-runs; c gets the same out_b.txt"
    );
}

/// Every task's fingerprint in a project's state.
fn fingerprints(p: &Project, state_dir: &std::path::Path) -> Vec<(String, Digest)> {
    let store = StateStore::open(StateLayout::new(state_dir)).unwrap();
    let mut v: Vec<(String, Digest)> = store
        .snapshot
        .records
        .iter()
        .map(|(id, r)| (id.clone(), r.fingerprint))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}", p.dir.path().display());
    v
}

#[test]
fn fingerprints_do_not_depend_on_where_the_project_or_its_state_is() {
    let outside = tempfile::tempdir().unwrap();
    let build = |state: &str| {
        let state_dir = outside.path().join(state);
        // b prints what it made: its result is part of what it hands c.
        let plan = STRIP.replace("cat out_a.txt > out_b.txt", "cat out_a.txt | tee out_b.txt");
        let p = Project::new(&format!(
            "[settings]\nstate_dir = {:?}\nallow_outside_root = true\n\n{plan}\n[tasks.d]\nprompt = \"Summarise {{{{ deps.c.result }}}}\"\nagent = \"sim\"\ndeps = [\"c\"]\noutputs = [\"d.md\"]\n",
            state_dir.to_str().unwrap()
        ));
        p.write("src.txt", "# v1\nint main;\n");
        p.orch(&["build"]).success();
        fingerprints(&p, &state_dir)
    };
    // Two projects in two places, each with its state somewhere else again.
    assert_eq!(build("state-one"), build("state-two"));
}

#[test]
fn past_a_cutoff_inputs_are_still_hashed_after_what_ran_upstream() {
    // Enough tasks that the up-to-date checks are done ahead in parallel. `a` also writes
    // side.txt, which `c` reads: a hash of it taken before `a` re-ran must not decide `c`,
    // though `b` in between stayed up to date.
    let mut orchfile = String::from(STRIP).replace(
        "grep -v '^#' src.txt > out_a.txt",
        "grep -v '^#' src.txt > out_a.txt; cp src.txt side.txt",
    );
    orchfile = orchfile.replace(
        "outputs = [\"out_c.txt\"]",
        "outputs = [\"out_c.txt\"]\ninputs = [\"side.txt\"]",
    );
    for i in 0..80 {
        orchfile.push_str(&format!("[tasks.f{i}]\nrun = \"true\"\n"));
    }
    let p = Project::new(&orchfile);
    p.write("src.txt", "# v1\nint main;\n");
    p.write("side.txt", "# v1\nint main;\n");
    p.orch(&["build"]).success();
    p.clear("ran.log");
    p.write("src.txt", "# v2\nint main;\n");
    let run = p.orch(&["build"]).ok();
    assert_eq!(p.lines("ran.log"), ["a", "c"], "{}", run.stderr());
}
