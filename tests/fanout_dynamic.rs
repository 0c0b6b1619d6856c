//! Dynamic fan-out (`foreach_from`): a task's answer, a JSON array, becomes the items of a
//! fan-out in the same build; a bad answer fails the task with the parse error; the items
//! are recorded, so a build killed while the instances run resumes without asking again.

mod common;

use std::time::Duration;

use common::{wait_for, Project};

const PLAN: &str = r#"
[tasks.plan]
run = "echo plan >> ran.log; cat parts.json"
inputs = ["parts.json"]

[tasks.part]
foreach_from = "plan"
run = "echo part-{{ item }} >> ran.log; echo did {{ item }}"

[tasks.sum]
deps = ["part"]
prompt = "Sum up:\n{{ deps.part.result }}"
"#;

fn build(p: &Project) -> (Vec<String>, String) {
    let out = p.orch(&["build", "--agent", "sim", "--sim-speed", "1000", "-j", "1"]);
    let ran = p.lines("ran.log");
    p.clear("ran.log");
    (ran, format!("{}{}", out.stdout(), out.stderr()))
}

#[test]
fn an_answer_becomes_instances_in_the_same_build() {
    let p = Project::new(PLAN);
    p.write("parts.json", r#"["a", {"item": "b c", "note": "x"}]"#);
    let (ran, said) = build(&p);
    assert_eq!(ran, ["plan", "part-a", "part-b c"], "{said}");
    assert!(
        said.contains("sum] in "),
        "the reduce ran after them: {said}"
    );
    let doc = p.read(".orchestrator/master_plan.md");
    assert!(doc.contains("| part[b c] |"), "{doc}");
    assert!(
        doc.contains("- **Foreach**: the answer of `plan`: 2 instance(s)"),
        "{doc}"
    );
    // Nothing changed: nothing runs, and the second part's skips of the first's tasks are
    // not reported twice.
    let (ran, said) = build(&p);
    assert!(ran.is_empty(), "{ran:?}");
    assert!(said.matches("[plan]").count() <= 1, "{said}");
    assert!(said.contains("0 ran, 4 up to date"), "{said}");
    // A new answer: only the new item's instance (and the reduce) run.
    p.write("parts.json", r#"["a", "d"]"#);
    let (ran, said) = build(&p);
    assert_eq!(ran, ["plan", "part-d"], "{said}");
    assert!(said.contains("part[b c] is gone"), "{said}");
    // An empty answer: no instances.
    p.write("parts.json", "[]");
    let (ran, said) = build(&p);
    assert_eq!(ran, ["plan"], "{said}");
    assert!(!p.read(".orchestrator/master_plan.md").contains("| part["));
}

#[test]
fn an_answer_that_is_not_a_list_fails_its_task() {
    let p = Project::new(PLAN);
    for (answer, says) in [
        ("Sure! Here is the list: [\"a\"", "the answer is not JSON"),
        ("{\"item\": \"a\"}", "the answer is not a JSON array"),
        ("[1, 2]", "element 0 of the answer is 1"),
    ] {
        p.write("parts.json", answer);
        let out = p.orch(&["build", "--agent", "sim"]);
        assert_eq!(out.code(), 1, "{}", out.stderr());
        assert!(out.stderr().contains(says), "{}", out.stderr());
        assert!(out.stderr().contains("FAILED"), "{}", out.stderr());
        assert!(!p.lines("ran.log").iter().any(|l| l.starts_with("part-")));
        p.clear("ran.log");
    }
    assert!(p
        .orch(&["build", "--agent", "sim"])
        .stderr()
        .contains("it begins: \"[1, 2]\""));
}

#[test]
fn a_large_answer_fans_out_as_far() {
    let p = Project::new(
        r#"
[tasks.plan]
run = "seq 1 3000 | sed 's/.*/\"&\"/' | paste -sd, | sed 's/.*/[&]/'"

[tasks.part]
foreach_from = "plan"
run = "echo {{ item }}"

[tasks.sum]
deps = ["part"]
run = "echo done"
"#,
    );
    let out = p.orch(&["build", "-q"]).ok();
    assert!(out.stderr().contains("3002 ran"), "{}", out.stderr());
    let out = p.orch(&["build", "-q"]).ok();
    assert!(
        out.stderr().contains("0 ran, 3002 up to date"),
        "{}",
        out.stderr()
    );
}

#[test]
fn killed_while_the_instances_run_resumes_without_asking_again() {
    let p = Project::new(
        r#"
[tasks.plan]
run = "echo plan >> ran.log; seq 1 12 | sed 's/.*/\"&\"/' | paste -sd, | sed 's/.*/[&]/'"

[tasks.part]
foreach_from = "plan"
run = "echo start-{{ item }} >> ran.log; sleep 0.2; echo {{ item }} >> done.log"
"#,
    );
    let mut child = p
        .command(&["build", "-q", "-j", "2"])
        .spawn()
        .expect("orch starts");
    wait_for("some instances done", Duration::from_secs(30), || {
        p.lines("done.log").len() >= 3
    });
    // SAFETY: plain syscall on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    child.wait().unwrap();
    p.orch(&["build", "-q", "-j", "2"]).success();
    let ran = p.lines("ran.log");
    assert_eq!(
        ran.iter().filter(|l| *l == "plan").count(),
        1,
        "the recorded answer is used: {ran:?}"
    );
    let done = p.lines("done.log");
    for i in 1..=12 {
        let n = done.iter().filter(|l| **l == i.to_string()).count();
        assert!((1..=2).contains(&n), "item {i} done {n} times: {done:?}");
    }
    p.orch(&["build", "-q"]).success();
    assert_eq!(p.lines("ran.log").len(), ran.len(), "nothing more runs");
}

#[test]
fn a_source_that_needs_its_own_fanout_is_a_cycle() {
    let p = Project::new(
        "[tasks.plan]\nrun = \"true\"\ndeps = [\"part\"]\n[tasks.part]\nforeach_from = \"plan\"\nrun = \"true\"\n",
    );
    let out = p.orch(&["build"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(
        out.stderr().contains("dependency cycle"),
        "{}",
        out.stderr()
    );
}

#[test]
fn answered_items_are_quoted_for_the_shell_never_run() {
    // An agent's answer is the least trusted text there is: every item stays one word.
    let items = [
        "with space",
        "ünïcødé ✓",
        "$(touch pwned)",
        "a;touch pwned2",
        "q'uote\"s`touch pwned3`",
        "--flag",
        "glob[1]*",
    ];
    let answer = serde_json::to_string(&items).unwrap();
    let p = Project::new(
        r#"
[tasks.plan]
run = "cat parts.json"
inputs = ["parts.json"]

[tasks.part]
foreach_from = "plan"
run = "printf '%s\n' {{ item }} >> ran.log"
verify = "test -n {{ item }}"
"#,
    );
    p.write("parts.json", &answer);
    p.orch(&["build", "-q", "-j", "1"]).success();
    assert_eq!(p.lines("ran.log"), items, "one line an item, in order");
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!p.exists(f), "{f}: an item ran as shell");
    }
    let listed = p.orch(&["list"]).ok().stdout();
    assert!(listed.contains("part[ünïcødé ✓]"), "{listed}");
}

#[test]
fn killed_once_the_answer_is_recorded_resumes_with_every_instance() {
    let p = Project::new(
        r#"
[tasks.plan]
run = "echo plan >> ran.log; cat parts.json"
inputs = ["parts.json"]

[tasks.part]
foreach_from = "plan"
run = "sleep 0.1; echo {{ item }} >> done.log"

[tasks.sum]
deps = ["part"]
run = "wc -l < done.log > sum.txt"
"#,
    );
    let items: Vec<String> = (1..=8).map(|i| format!("p{i}")).collect();
    p.write("parts.json", &serde_json::to_string(&items).unwrap());
    let mut child = p
        .command(&["build", "-q", "-j", "1"])
        .spawn()
        .expect("orch starts");
    // Killed as soon as the source's items are on disk: the expansion and the instances'
    // start are what it interrupts.
    wait_for("the answer recorded", Duration::from_secs(30), || {
        p.exists(".orchestrator/fanout/plan.json")
    });
    // SAFETY: plain syscall on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    child.wait().unwrap();
    let out = p.orch(&["build", "-j", "1"]).ok();
    let done = p.lines("done.log");
    for i in &items {
        let n = done.iter().filter(|l| *l == i).count();
        assert!((1..=2).contains(&n), "{i} done {n} times: {done:?}");
    }
    assert!(p.lines("ran.log").len() <= 2, "{:?}", p.lines("ran.log"));
    assert!(p.exists("sum.txt"), "{}", out.stderr());
    let again = p.orch(&["build", "-j", "1"]).ok();
    assert!(again.stderr().contains("0 ran"), "{}", again.stderr());
}
