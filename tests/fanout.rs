//! Fan-out end to end: one task definition over a glob or a list, instance ids, item
//! placeholders (shell-quoted, never injected), map -> map chains, reduce tasks, items that
//! come and go between builds, targets, a person's reset of an instance row, plan errors.

mod common;

use common::Project;

/// A shell fan-out over `src/*.txt`, a sim map -> map chain over the same items, and a
/// reduce task over all of them.
const PLAN: &str = r#"
[tasks.count]
foreach = "src/*.txt"
run = "printf '%s\n' {{ item }} >> ran.log; wc -c < {{ item }} > counts/{{ item.stem }}.n; cat counts/{{ item.stem }}.n"
inputs = ["{{ item }}"]
outputs = ["counts/{{ item.stem }}.n"]

[tasks.review]
foreach = "count"
deps = ["count[{{ item }}]"]
prompt = "Review {{ item.name }} (stem {{ item.stem }}, ext {{ item.ext }}, dir {{ item.dir }}): {{ deps.count.result }}"
outputs = ["reviews/{{ item.stem }}.md"]

[tasks.report]
deps = ["review"]
prompt = "Summarize:\n{{ deps.review.result }}"
"#;

fn project() -> Project {
    let p = Project::new(PLAN);
    p.write("counts/.keep", "");
    p.write("src/a.txt", "a\n");
    p.write("src/b.txt", "bb\n");
    p
}

/// Builds with the sim agent; the lines the tasks appended to ran.log, sorted (tasks run
/// side by side) unless `-j 1` keeps them in the order they ran.
fn build(p: &Project, args: &[&str]) -> Vec<String> {
    let mut all = vec!["build", "--agent", "sim", "--sim-speed", "1000", "-q"];
    all.extend_from_slice(args);
    p.orch(&all).success();
    let mut ran = p.lines("ran.log");
    p.clear("ran.log");
    if !args.contains(&"-j") {
        ran.sort();
    }
    ran
}

/// The ids of the status table's rows in master_plan.md.
fn rows(p: &Project) -> Vec<String> {
    let doc = p.read(".orchestrator/master_plan.md");
    let table = doc
        .split("## Task Status")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Task ID"))
        .map(|l| l.split(" | ").next().unwrap()[2..].to_string())
        .collect()
}

/// The task file an instance's agent got (found by its heading).
fn task_file(p: &Project, id: &str) -> String {
    let dir = p.path(".orchestrator/agent_tasks");
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        if text.starts_with(&format!("# Task {id}:")) {
            return text;
        }
    }
    panic!("no task file for {id}");
}

#[test]
fn a_glob_fans_out_into_instances_and_a_reduce_sees_them_all_in_order() {
    let p = project();
    assert_eq!(build(&p, &[]), ["src/a.txt", "src/b.txt"]);
    assert_eq!(
        rows(&p),
        [
            "count[src/a.txt]",
            "count[src/b.txt]",
            "review[src/a.txt]",
            "review[src/b.txt]",
            "report"
        ]
    );
    assert_eq!(p.read("counts/b.n").trim(), "3");
    assert!(p.exists("reviews/a.md") && p.exists("reviews/b.md"));
    let review = task_file(&p, "review[src/b.txt]");
    assert!(
        review.contains("Review b.txt (stem b, ext txt, dir src): 3"),
        "map -> map gets its partner's result only:\n{review}"
    );
    let report = task_file(&p, "report");
    let a = report.find("#### review[src/a.txt]").expect(&report);
    let b = report.find("#### review[src/b.txt]").expect(&report);
    assert!(a < b, "results in item order:\n{report}");
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("| report | report | "), "{doc}");
    assert!(
        doc.contains("| P2 | review | "),
        "the reduce's deps cell: {doc}"
    );
    assert_eq!(doc.matches("### review[…]: review").count(), 1, "{doc}");
    assert!(doc.contains("- **Foreach**: the items of `count`: 2 instance(s)"));
    // Nothing changed: nothing runs.
    assert!(build(&p, &[]).is_empty());
}

#[test]
fn a_new_file_runs_only_its_instances_and_a_removed_one_is_gone() {
    let p = project();
    build(&p, &[]);
    std::thread::sleep(std::time::Duration::from_millis(150));
    build(&p, &[]); // leaves the fast path's record
    let agents_before = p.read(".orchestrator/master_plan.md");
    p.write("src/c.txt", "ccc\n");
    let out = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    let said = out.stderr();
    assert_eq!(p.lines("ran.log"), ["src/c.txt"], "{said}");
    p.clear("ran.log");
    for id in ["count[src/c.txt]", "review[src/c.txt]", "report"] {
        assert!(said.contains(&format!("{id}] in ")), "{said}");
    }
    assert!(!said.contains("ok Agent-01 [count[src/a.txt]]"), "{said}");
    // Agent ids stay with their instance as others come and go.
    let id_of = |doc: &str, id: &str| {
        doc.lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .map(|l| l.split(" | ").nth(2).unwrap().to_string())
    };
    let doc = p.read(".orchestrator/master_plan.md");
    assert_eq!(
        id_of(&doc, "review[src/b.txt]"),
        id_of(&agents_before, "review[src/b.txt]")
    );

    // Removed: the instance leaves the table, its result goes, its outputs are reported
    // and `orch clean --outputs` removes them.
    let c_agent = id_of(&doc, "review[src/c.txt]")
        .unwrap()
        .to_ascii_lowercase();
    std::fs::remove_file(p.path("src/c.txt")).unwrap();
    let out = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    let said = out.stderr();
    assert!(
        said.contains("review[src/c.txt] is gone (its item went away)")
            && said.contains("reviews/c.md are left"),
        "{said}"
    );
    assert!(p.lines("ran.log").is_empty());
    assert!(
        !rows(&p).iter().any(|r| r.contains("c.txt")),
        "{:?}",
        rows(&p)
    );
    assert!(!p.exists(&format!(".orchestrator/results/{c_agent}-result.md")));
    let report = task_file(&p, "report");
    assert!(!report.contains("review[src/c.txt]"), "{report}");
    assert!(p.exists("reviews/c.md"));
    let clean = p.orch(&["clean", "--outputs"]).ok();
    assert!(!p.exists("reviews/c.md"), "{}", clean.stdout());
    assert!(!p.exists("reviews/a.md"));

    // Renamed: the old instance goes, the new one runs.
    build(&p, &[]);
    std::fs::rename(p.path("src/b.txt"), p.path("src/d.txt")).unwrap();
    assert_eq!(build(&p, &[]), ["src/d.txt"]);
    assert_eq!(
        rows(&p),
        [
            "count[src/a.txt]",
            "count[src/d.txt]",
            "review[src/a.txt]",
            "review[src/d.txt]",
            "report"
        ]
    );
}

#[test]
fn targets_name_one_instance_or_all_of_them() {
    let p = project();
    assert_eq!(build(&p, &["count[src/b.txt]"]), ["src/b.txt"]);
    assert_eq!(build(&p, &["review"]), ["src/a.txt"]);
    assert!(p.exists("reviews/a.md") && !p.exists(".orchestrator/final_output.md"));
    let out = p.orch(&["build", "revew"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("no task named `revew`"),
        "{}",
        out.stderr()
    );
    let explained = p.orch(&["explain", "count[src/a.txt]"]).ok();
    assert!(
        explained.stdout().contains("count[src/a.txt]"),
        "{}",
        explained.stdout()
    );
}

#[test]
fn items_are_quoted_for_the_shell_never_run() {
    let p = Project::new(
        r#"
[tasks.echo]
foreach = "in/*"
run = "printf '%s\n' {{ item.name }} >> ran.log"
verify = "test -f {{ item }}"
inputs = ["{{ item }}"]
"#,
    );
    let names = [
        "with space.txt",
        "ünïcødé ✓.txt",
        "$(touch pwned).txt",
        "a;touch pwned2",
        "q'uote\"s`x`.txt",
        "glob[1]*.txt",
    ];
    for n in names {
        p.write(&format!("in/{n}"), n);
    }
    let ran = build(&p, &[]);
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(ran, want);
    assert!(!p.exists("pwned") && !p.exists("in/pwned") && !p.exists("pwned2"));
    // An input escaped as a glob names just its file: a new `glob1x.txt` is another item,
    // not an input of `echo[in/glob[1]*.txt]`.
    p.write("in/glob1x.txt", "x");
    assert_eq!(build(&p, &[]), ["glob1x.txt"]);
}

#[test]
fn a_list_fans_out_in_its_order_and_a_person_can_reset_an_instance() {
    let p = Project::new(
        r#"
[tasks.translate]
foreach = ["fr", "de", "ja"]
title = "Translate to {{ item }}"
run = "echo {{ item }} >> ran.log; echo bonjour-{{ item }}"
env = { LANG_CODE = "{{ item }}" }

[tasks.check]
foreach = "translate"
deps = ["translate[{{ item }}]"]
run = "echo check-$LANG_CODE >> ran.log"
env = { LANG_CODE = "{{ item }}" }
"#,
    );
    assert_eq!(
        build(&p, &["-j", "1"]),
        ["fr", "de", "ja", "check-fr", "check-de", "check-ja"]
    );
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(
        doc.contains("| translate[de] | Translate to de | "),
        "{doc}"
    );
    let reset = doc.replace(
        "| translate[de] | Translate to de | Agent-02 | ✅ |",
        "| translate[de] | Translate to de | Agent-02 | Pending |",
    );
    assert_ne!(reset, doc);
    p.write(".orchestrator/master_plan.md", &reset);
    assert_eq!(build(&p, &[]), ["de"]);
}

#[test]
fn two_items_writing_one_file_and_items_outside_a_fanout_are_plan_errors() {
    let p = Project::new(
        r#"
[tasks.t]
foreach = ["a/x.md", "b/x.md"]
run = "true"
outputs = ["out/{{ item.name }}"]
"#,
    );
    let out = p.orch(&["build"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr()
            .contains("tasks `t[a/x.md]` and `t[b/x.md]` both write `out/x.md`"),
        "{}",
        out.stderr()
    );
    let p = Project::new("[tasks.t]\nrun = \"cat {{ item }}\"\n");
    let out = p.orch(&["build"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("only known in a fan-out task"),
        "{}",
        out.stderr()
    );
    let p = Project::new("[tasks.a]\nrun = \"true\"\n[tasks.b]\nforeach = \"a\"\nrun = \"true\"\n");
    let out = p.orch(&["build"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("foreach_from = \"a\""),
        "{}",
        out.stderr()
    );
}

#[test]
fn dry_run_and_graph_group_instances_unless_expanded() {
    let p = project();
    let dry = p.orch(&["build", "-n", "--agent", "sim"]).ok().stdout();
    assert!(dry.contains("count[…] ×2"), "{dry}");
    assert!(dry.contains("review[…] ×2"), "{dry}");
    assert!(!dry.contains("count[src/a.txt]"), "{dry}");
    let dry = p
        .orch(&["build", "-n", "--expand", "--agent", "sim"])
        .ok()
        .stdout();
    assert!(
        dry.contains("count[src/a.txt]") && dry.contains("count[src/b.txt]"),
        "{dry}"
    );
    let graph = p.orch(&["graph", "--no-status"]).ok().stdout();
    assert!(
        graph.contains("\"count[…] ×2\" -> \"review[…] ×2\""),
        "{graph}"
    );
    assert!(graph.contains("\"review[…] ×2\" -> \"report\""), "{graph}");
    assert_eq!(graph.matches(" -> ").count(), 2, "{graph}");
    let graph = p.orch(&["graph", "--no-status", "--expand"]).ok().stdout();
    assert_eq!(graph.matches(" -> ").count(), 4, "{graph}");
}
