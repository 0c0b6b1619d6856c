//! What orch shows must be true (issue #14, items 11 to 13): `orch status` and `orch graph`
//! agree with `orch explain` about what is out of date, an edit to master_plan.md that orch
//! will not carry is said, never dropped, and final_output.md comes out the same every run.

mod common;

use common::*;

/// The code-review DAG (T-01 -> T-02/T-03/T-04 -> T-05) with the sim agent, where the tasks
/// finish out of file order (T-04 first, T-02 last), and a silent shell step.
const REVIEW: &str = r#"
[tasks.T-01]
title = "Read code"
prompt = "Read it."
inputs = ["src/a.ts"]
estimate = "10s"
[tasks.T-02]
title = "Check code style"
prompt = "Style."
deps = ["T-01"]
estimate = "60s"
[tasks.T-03]
title = "Security scan"
prompt = "Security."
deps = ["T-01"]
estimate = "30s"
[tasks.T-04]
title = "Performance analysis"
prompt = "Performance."
deps = ["T-01"]
estimate = "1s"
[tasks.mkdir]
run = "mkdir -p reports"
[tasks.T-05]
title = "Generate report"
prompt = "Report."
deps = ["T-02", "T-03", "T-04", "mkdir"]
estimate = "1s"
[aggregate]
strategy = "structured"
title = "Code Review Report"
"#;

#[test]
fn final_output_is_in_dependency_order_and_the_same_every_run() {
    let p = Project::new(REVIEW);
    p.write("src/a.ts", "let a = 1;\n");
    let mut outputs = Vec::new();
    for args in [
        &["build", "--agent", "sim", "--sim-speed", "200", "-j", "4"][..],
        &[
            "build",
            "--agent",
            "sim",
            "--sim-speed",
            "200",
            "-j",
            "4",
            "-B",
        ][..],
    ] {
        p.orch(args).success();
        let out = p.read(".orchestrator/final_output.md");
        let order: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("### ")).collect();
        assert_eq!(
            order,
            [
                "Read code",
                "Check code style",
                "Security scan",
                "Performance analysis",
                "Generate report"
            ],
            "dependency order, ties in file order; the silent shell step has no section:\n{out}"
        );
        outputs.push(out);
    }
    assert_eq!(outputs[0], outputs[1], "the same file every run");
}

#[test]
fn status_and_graph_show_a_task_whose_input_changed_as_out_of_date() {
    let p = Project::new(
        "[tasks.gen]\nrun = \"cat in.txt > gen.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"gen.txt\"]\n\
         [tasks.use]\nrun = \"cat gen.txt > use.txt\"\ninputs = [\"gen.txt\"]\noutputs = [\"use.txt\"]\ndeps = [\"gen\"]\n\
         [tasks.other]\nrun = \"echo o > other.txt\"\noutputs = [\"other.txt\"]\n\
         [tasks.edited]\nrun = \"echo e > edited.txt\"\noutputs = [\"edited.txt\"]\n",
    );
    p.write("in.txt", "one\n");
    p.orch(&["build", "-q"]).success();
    let statuses = |p: &Project| -> Vec<(String, String, String)> {
        let v: serde_json::Value =
            serde_json::from_str(&p.orch(&["status", "--json"]).ok().stdout()).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_string(),
                    t["status"].as_str().unwrap().to_string(),
                    t["start"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect()
    };
    assert!(statuses(&p).iter().all(|(_, s, _)| s == "completed"));

    p.write("in.txt", "two\n");
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml")
            .replace("echo e > edited.txt", "echo E > edited.txt"),
    );
    let now = statuses(&p);
    let of = |id: &str| now.iter().find(|(t, _, _)| t == id).unwrap().clone();
    assert_eq!(of("gen").1, "ready", "its input changed: {now:?}");
    assert_eq!(
        of("gen").2,
        "-",
        "a ready task shows no times of an earlier run"
    );
    assert_eq!(of("edited").1, "ready", "its run command changed: {now:?}");
    assert_eq!(
        of("use").1,
        "completed",
        "what it was built on is unchanged until gen runs (early cutoff): {now:?}"
    );
    assert_eq!(of("other").1, "completed");
    let explain = p.orch(&["explain", "gen"]).ok().stdout();
    assert!(
        explain.contains("would run"),
        "status agrees with explain: {explain}"
    );
    let table = p.orch(&["status"]).ok().stdout();
    assert!(table.contains("2 ready"), "{table}");
    let graph = p.orch(&["graph", "--format", "mermaid"]).ok().stdout();
    assert!(graph.contains("class n0,n3 ready"), "{graph}");

    p.orch(&["build", "-q"]).success();
    assert!(statuses(&p).iter().all(|(_, s, _)| s == "completed"));
}

#[test]
fn a_new_plan_over_old_ids_shows_its_tasks_as_not_built() {
    let p = Project::empty();
    p.orch(&["plan", "--agent", "sim", "Summarise the README"])
        .success();
    p.orch(&["build", "-q", "--agent", "sim", "--sim-speed", "1000"])
        .success();
    let status = p.orch(&["status"]).ok().stdout();
    assert!(status.contains("completed"), "{status}");
    p.orch(&[
        "plan",
        "--agent",
        "sim",
        "--force",
        "List the open TODOs, then draft release notes",
    ])
    .success();
    let v: serde_json::Value =
        serde_json::from_str(&p.orch(&["status", "--json"]).ok().stdout()).unwrap();
    for t in v.as_array().unwrap() {
        assert_ne!(t["status"], "completed", "a new task is not done: {v}");
        assert!(
            t["start"].is_null() && t["end"].is_null(),
            "no old times: {v}"
        );
    }
}

/// master_plan.md's text with `from` replaced by `to` (which must be there).
#[track_caller]
fn edit_master_plan(p: &Project, from: &str, to: &str) {
    let text = p.read(".orchestrator/master_plan.md");
    assert!(text.contains(from), "no `{from}` in:\n{text}");
    p.write(".orchestrator/master_plan.md", &text.replacen(from, to, 1));
}

#[test]
fn with_an_orchfile_an_edit_to_master_plan_md_that_is_not_kept_is_said() {
    let p =
        Project::new("[tasks.a]\nrun = \"echo a\"\n[tasks.b]\nrun = \"echo b\"\ndeps = [\"a\"]\n");
    p.orch(&["build", "-q"]).success();
    // A row a person adds: no such task, so it would never run and vanish unsaid.
    edit_master_plan(
        &p,
        "| b | b |",
        "| c | Write the summary | - | 🟡 | P2 | b | - | - | 0 |\n| b | b |",
    );
    let err = p.orch(&["build"]).ok().stderr();
    assert!(
        err.contains(
            "master_plan.md lists `c`, which Orchfile.toml does not define: it will not run"
        ),
        "{err}"
    );
    assert!(err.contains("add [tasks.c] to Orchfile.toml"), "{err}");
    // And again on every build while the row is there (up to date builds included, which
    // rewrite nothing): never only once.
    for _ in 0..2 {
        let err = p.orch(&["build"]).ok().stderr();
        assert!(err.contains("master_plan.md lists `c`"), "{err}");
    }
    assert_eq!(
        err.matches("is not kept").count(),
        0,
        "only the row is new: {err}"
    );
    // An edit to a task's details, which the Orchfile defines.
    edit_master_plan(&p, "`echo a`", "`echo A`");
    let err = p.orch(&["build"]).ok().stderr();
    assert!(
        err.contains("your edit to `## Task Details` is not kept"),
        "{err}"
    );
    // A reset, which is carried, and a section of one's own, which is kept: nothing to say.
    p.orch(&["build", "-B", "-q"]).success();
    edit_master_plan(&p, "| a | a | Agent-01 | ✅ |", "| a | a | Agent-01 | 🟡 |");
    let doc = p.read(".orchestrator/master_plan.md");
    p.write(
        ".orchestrator/master_plan.md",
        &doc.replace("## Execution Log", "## Notes\n\nmine\n\n## Execution Log"),
    );
    let err = p.orch(&["build"]).ok().stderr();
    assert!(!err.contains("master_plan.md"), "{err}");
    assert!(p.read(".orchestrator/master_plan.md").contains("mine"));
}

#[test]
fn in_master_plan_mode_text_under_the_dependency_graph_is_an_error() {
    let p = Project::new("[tasks.a]\nprompt = \"A\"\n[tasks.b]\nprompt = \"B\"\ndeps = [\"a\"]\n");
    p.orch(&["build", "-q", "--agent", "sim"]).success();
    std::fs::remove_file(p.path("Orchfile.toml")).unwrap();
    edit_master_plan(
        &p,
        "## Dependency Graph\n\n",
        "## Dependency Graph\n\nThe graph needs a review step.\n\n",
    );
    let run = p.orch(&["build", "--agent", "sim"]);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{err}");
    assert!(err.contains("text under Dependency Graph"), "{err}");
    assert!(
        err.contains("The graph needs a review step."),
        "points at it: {err}"
    );
    // An edge drawn into the diagram is not a dep: said, not dropped silently.
    edit_master_plan(&p, "The graph needs a review step.\n\n", "");
    edit_master_plan(&p, "    n0 --> n1\n", "    n0 --> n1\n    n1 --> n0\n");
    let err = p.orch(&["build", "--agent", "sim"]).ok().stderr();
    assert!(
        err.contains("your edit to `## Dependency Graph` is not kept"),
        "{err}"
    );
}
