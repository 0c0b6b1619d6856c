//! `orch plan` with fake planner agents (good, fenced, invalid, cyclic replies) and
//! `master_plan.md` as the plan's source: write, edit, read, write again.

mod common;

use common::*;

impl Project {
    /// A fake planner: reply number N (1-based) is the file `replyN` (the last one repeats).
    /// Every prompt it gets is kept as `promptN`.
    fn fake_planner(&self, replies: &[&str]) -> String {
        for (i, r) in replies.iter().enumerate() {
            self.write(&format!("replies/reply{}", i + 1), r);
        }
        self.write(
            "planner.sh",
            &format!(
                r#"n=$(( $(cat replies/count 2>/dev/null || echo 0) + 1 ))
echo $n > replies/count
cat > replies/prompt$n
r=$n
if [ $r -gt {last} ]; then r={last}; fi
cat replies/reply$r
"#,
                last = replies.len()
            ),
        );
        r#"["sh", "planner.sh"]"#.to_string()
    }

    fn plan(&self, command: &str, extra: &[&str]) -> Run {
        let mut args = vec!["plan", "--agent-command", command];
        args.extend_from_slice(extra);
        args.push("Review the code and write a report");
        self.orch(&args)
    }
}

const GOOD: &str = r#"{"tasks": [
  {"id": "T-01", "title": "Read code", "prompt": "List the files in src/ with a line each.",
   "inputs": ["src/**/*.rs"], "outputs": ["reports/inventory.md"], "deps": [],
   "priority": "P0", "estimate": "1m"},
  {"id": "T-02", "title": "Security scan", "prompt": "Scan for unsafe code.\nList `file:line`.",
   "outputs": ["reports/security.md"], "deps": ["T-01"], "priority": "P1", "estimate": "2m"},
  {"id": "T-03", "title": "Style check", "prompt": "Check the style.",
   "deps": ["T-01"], "priority": "P1", "verify": "test -s reports/inventory.md"},
  {"id": "T-04", "title": "Write report", "prompt": "Merge the reviews into one report.",
   "outputs": ["reports/final.md"], "deps": ["T-02", "T-03"], "priority": "P2",
   "verify": "test -s reports/final.md"}
]}"#;

const INVALID: &str = r#"{"tasks": [
  {"id": "T-01", "title": "Read", "prompt": "Read.", "outputs": ["a.md"]},
  {"id": "T-02", "title": "Think", "prompt": "Think.", "deps": ["T-09"]}
]}"#;

const CYCLIC: &str = r#"{"tasks": [
  {"id": "A", "title": "A", "prompt": "a", "verify": "true", "deps": ["C"]},
  {"id": "B", "title": "B", "prompt": "b", "verify": "true", "deps": ["A"]},
  {"id": "C", "title": "C", "prompt": "c", "verify": "true", "deps": ["B"]}
]}"#;

#[test]
fn a_good_plan_is_written_and_builds() {
    let p = Project::empty();
    p.write("src/lib.rs", "pub fn f() {}\n");
    let cmd = p.fake_planner(&[GOOD]);
    let r = p.plan(&cmd, &[]).ok();
    assert!(r.stdout().contains("Planned 4 task(s)"), "{}", r.stdout());
    assert!(r.stderr().contains("attempt 1/3"), "{}", r.stderr());
    // The planner got the request, the rules, the schema and the project's files.
    let prompt = p.read("replies/prompt1");
    assert!(prompt.contains("Review the code and write a report"));
    assert!(prompt.contains("\"tasks\""));
    assert!(prompt.contains("src/lib.rs"));
    assert!(!p.exists("replies/prompt2"));

    let md = p.read(".orchestrator/master_plan.md");
    assert!(md.contains("## Request\n\nReview the code and write a report"));
    assert!(md.contains("| T-04 | Write report | Agent-04 | ⏸️ | P2 | T-02,T-03 | - | - | 0 |"));
    assert!(md.contains("- **Input**: `src/**/*.rs`"));
    assert!(md.contains("```mermaid"));
    assert!(md.contains("Plan Created"));

    // master_plan.md is now the source: list, build, and everything is up to date after.
    let list = p.orch(&["list", "--json"]).ok().stdout();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[1]["prompt"], "Scan for unsafe code.\nList `file:line`.");
    assert_eq!(v[2]["verify"], "test -s reports/inventory.md");
    assert_eq!(v[0]["estimate"], "1m");
    p.orch(&["build", "-q", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    assert!(p.exists("reports/final.md"));
    let again = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    assert!(
        again.stderr().contains("0 ran, 4 up to date"),
        "{}",
        again.stderr()
    );
}

#[test]
fn a_fenced_reply_with_chatter_is_read() {
    let p = Project::empty();
    let chatty = format!(
        "Sure! I looked at the project. Here is the plan:\n\n```json\n{GOOD}\n```\n\nLet me know [if] you need {{anything}} else."
    );
    let cmd = p.fake_planner(&[&chatty]);
    p.plan(&cmd, &[]).ok();
    assert!(p.read(".orchestrator/master_plan.md").contains("T-04"));
    // Chatter without a fence, too.
    let q = Project::empty();
    let cmd = q.fake_planner(&[&format!("Plan follows. {GOOD} Done.")]);
    q.plan(&cmd, &[]).ok();
}

#[test]
fn an_invalid_plan_is_shown_and_asked_again() {
    let p = Project::empty();
    let cmd = p.fake_planner(&[INVALID, GOOD]);
    let r = p.plan(&cmd, &[]).ok();
    let err = r.stderr();
    assert!(err.contains("attempt 1: the plan is not valid"), "{err}");
    assert!(
        err.contains("task `T-02` depends on unknown task `T-09`"),
        "{err}"
    );
    assert!(
        err.contains("task `T-02` has no `outputs` and no `verify`"),
        "{err}"
    );
    assert!(err.contains("attempt 2/3"), "{err}");
    // The second prompt carried the first reply and its problems back to the agent.
    let second = p.read("replies/prompt2");
    assert!(second.contains("## Problems with it"));
    assert!(second.contains("unknown task `T-09`"));
    assert!(second.contains("\"Think.\""));
    assert!(p
        .read(".orchestrator/master_plan.md")
        .contains("by custom (attempt 2)"));
}

#[test]
fn a_cyclic_plan_fails_after_the_attempts() {
    let p = Project::empty();
    let cmd = p.fake_planner(&[CYCLIC]);
    let r = p.plan(&cmd, &["--attempts", "2"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let err = r.stderr();
    assert!(err.contains("no valid plan after 2 attempt(s)"), "{err}");
    assert!(err.contains("cycle"), "{err}");
    assert_eq!(p.read("replies/count").trim(), "2");
    assert!(!p.exists(".orchestrator/master_plan.md"));
    assert!(p.exists(".orchestrator/logs/planner-attempt-2.log"));
}

#[test]
fn junk_and_a_failing_agent_use_up_attempts() {
    let p = Project::empty();
    let cmd = p.fake_planner(&["I cannot help with that."]);
    let r = p.plan(&cmd, &["--attempts", "1"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("no JSON plan found"), "{}", r.stderr());

    let q = Project::empty();
    q.write(
        "fail.sh",
        "cat >/dev/null; echo 'model exploded' >&2; exit 4\n",
    );
    let r = q.plan(r#"["sh", "fail.sh"]"#, &["--attempts", "2"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("model exploded"), "{}", r.stderr());
    for empty in [r#"[]"#, r#"[""]"#, r#"["  ", "x"]"#] {
        let e = Project::empty();
        let r = e.plan(empty, &[]);
        assert_eq!(r.code(), 2, "{empty}: {}", r.stderr());
        assert!(r.stderr().contains("--agent-command"), "{}", r.stderr());
        assert!(!r.stderr().contains("asking"), "{}", r.stderr());
        assert!(!e.path(".orchestrator").exists(), "refused before anything");
    }
    let missing = q.plan(r#"["definitely-not-an-agent-cli"]"#, &[]);
    assert_eq!(missing.code(), 2);
    assert!(
        missing.stderr().contains("cannot run the planner"),
        "{}",
        missing.stderr()
    );
}

#[test]
fn sim_planner_works_offline() {
    let p = Project::empty();
    let r = p
        .orch(&[
            "plan",
            "--agent",
            "sim",
            "Summarise the README, list open TODOs and draft release notes",
        ])
        .ok();
    assert!(r.stdout().contains("Planned 4 task(s)"), "{}", r.stdout());
    p.orch(&["build", "-q", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    assert!(p.exists("out/summary.md"));
    let status = p.orch(&["status", "--json"]).ok().stdout();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "completed"));
}

#[test]
fn toml_output_and_planning_agents_from_an_orchfile() {
    let p = Project::empty();
    p.fake_planner(&[GOOD]);
    p.write(
        "Orchfile.toml",
        "[settings]\njobs = 2\n\n[agents.planner]\ncommand = [\"sh\", \"planner.sh\"]\nresult = \"stdout\"\n",
    );
    let r = p.orch(&["plan", "--agent", "planner", "--toml", "Review the code"]);
    assert_eq!(r.code(), 2, "an existing Orchfile needs --force");
    assert!(r.stderr().contains("already exists"));
    p.orch(&[
        "plan",
        "--agent",
        "planner",
        "--toml",
        "--force",
        "Review the code",
    ])
    .ok();
    let toml = p.read("Orchfile.toml");
    assert!(toml.contains("[tasks.T-01]"), "{toml}");
    assert!(toml.contains("jobs = 2"), "settings are kept:\n{toml}");
    assert!(
        toml.contains("[agents.planner]"),
        "agents are kept:\n{toml}"
    );
    let list = p.orch(&["list"]).ok().stdout();
    assert!(list.contains("Write report"));
    let v: serde_json::Value =
        serde_json::from_str(&p.orch(&["list", "--json"]).ok().stdout()).unwrap();
    assert_eq!(v[3]["deps"], serde_json::json!(["T-02", "T-03"]));
}

#[test]
fn an_existing_plan_needs_force() {
    let p = Project::empty();
    p.orch(&["plan", "--agent", "sim", "Write a haiku"]).ok();
    let md = p.read(".orchestrator/master_plan.md");
    p.write(
        ".orchestrator/master_plan.md",
        &md.replace(
            "## Execution Log",
            "## Ideas\n\nmine, keep\n\n## Execution Log",
        ),
    );
    let r = p.orch(&[
        "plan",
        "--agent",
        "sim",
        "Write two haiku, and compare them",
    ]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("already has a plan"), "{}", r.stderr());
    p.orch(&[
        "plan",
        "--agent",
        "sim",
        "--force",
        "Write two haiku, and compare them",
    ])
    .ok();
    let md = p.read(".orchestrator/master_plan.md");
    assert!(md.contains("mine, keep"));
    assert!(md.contains("Write two haiku, and compare them"));
    assert_eq!(md.matches("Plan Created").count(), 2, "the log grows");
}

/// The round trip: orch writes master_plan.md, a person edits it, orch reads it and writes it
/// again without losing the edits.
#[test]
fn a_persons_edits_to_master_plan_survive() {
    let p = Project::empty();
    let cmd = p.fake_planner(&[GOOD]);
    p.plan(&cmd, &[]).ok();
    p.orch(&["build", "-q", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    let before = p.read(".orchestrator/master_plan.md");

    // A new row with no details, a changed dep, a status reset to Pending, a retitled task,
    // a new detail field, and a section of the person's own.
    let edited = before
        .replace(
            "| T-03 | Style check | Agent-03 | ✅ | P1 | T-01 |",
            "| T-03 | Style check | Agent-03 | ✅ | P1 | T-01,T-05 |",
        )
        .replace(
            "| T-02 | Security scan | Agent-02 | ✅ |",
            "| T-02 | Security audit | Agent-02 | Pending |",
        )
        .replace("### T-02: Security scan", "### T-02: Security audit")
        .replace(
            "| T-04 | Write report |",
            "| T-05 | Check licences | sim | | P3 | None | | | |\n| T-04 | Write report |",
        )
        .replace(
            "- **Agent**: Agent-04 (claude)",
            "- **Agent**: Agent-04 (claude)\n- **Timeout**: 5m",
        )
        .replace(
            "## Execution Log",
            "## Decisions\n\n- keep the report short\n\n## Execution Log",
        );
    assert_ne!(edited, before);
    p.write(".orchestrator/master_plan.md", &edited);

    let list: serde_json::Value =
        serde_json::from_str(&p.orch(&["list", "--json"]).ok().stdout()).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["T-01", "T-02", "T-03", "T-05", "T-04"]);
    assert_eq!(list[2]["deps"], serde_json::json!(["T-01", "T-05"]));
    assert_eq!(list[1]["title"], "Security audit");
    assert_eq!(list[3]["prompt"], "Check licences");
    assert_eq!(list[3]["agent"], "sim");

    let status: serde_json::Value =
        serde_json::from_str(&p.orch(&["status", "--json"]).ok().stdout()).unwrap();
    assert_eq!(status[1]["status"], "ready", "the reset shows: {status}");
    assert_eq!(status[0]["status"], "completed");

    let why = p
        .orch(&["explain", "--agent", "sim", "T-02", "T-03"])
        .ok()
        .stdout();
    assert!(why.contains("set back to Pending"), "{why}");
    assert!(why.contains("dep T-05 will run (never built)"), "{why}");

    let built = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok()
        .stderr();
    assert!(built.contains("4 ran, 1 up to date"), "{built}");

    // Written again by the build: every edit is still there, in orch's own form.
    let after = p.read(".orchestrator/master_plan.md");
    assert!(after.contains("| T-03 | Style check | Agent-03 | ✅ | P1 | T-01,T-05 |"));
    assert!(after.contains("| T-02 | Security audit | Agent-02 | ✅ |"));
    assert!(after.contains("| T-05 | Check licences | Agent-05 | ✅ | P3 | None |"));
    assert!(after.contains("### T-05: Check licences\n\n- **Agent**: Agent-05 (sim)"));
    assert!(after.contains("- **Timeout**: 5m"));
    assert!(after.contains("## Decisions\n\n- keep the report short"));
    assert!(
        after.contains("n3 --> n2"),
        "the diagram has the new edge:\n{after}"
    );

    // And it reads back as the same plan.
    let again: serde_json::Value =
        serde_json::from_str(&p.orch(&["list", "--json"]).ok().stdout()).unwrap();
    assert_eq!(again, list);
    let quiet = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok()
        .stderr();
    assert!(quiet.contains("0 ran, 5 up to date"), "{quiet}");
}

#[test]
fn dash_f_reads_a_master_plan_anywhere() {
    let p = Project::empty();
    p.write("proj/src/a.txt", "a\n");
    p.orch(&["-C", "proj", "plan", "--agent", "sim", "Write a haiku"])
        .ok();
    let md = p.path("proj/.orchestrator/master_plan.md");
    let md = md.to_str().unwrap();
    p.orch(&[
        "-f",
        md,
        "build",
        "-q",
        "--agent",
        "sim",
        "--sim-speed",
        "1000",
    ])
    .ok();
    // The root is the directory above the state directory: outputs land there.
    assert!(p.exists("proj/out/review.md"));
    assert!(!p.exists("out"));
    let s = p.orch(&["-f", md, "status"]).ok().stdout();
    assert!(s.contains("3 completed"), "{s}");
}

#[test]
fn a_broken_edit_is_a_diagnostic_pointing_at_the_cell() {
    let p = Project::empty();
    p.orch(&["plan", "--agent", "sim", "Write a haiku"]).ok();
    let md = p.read(".orchestrator/master_plan.md");
    p.write(
        ".orchestrator/master_plan.md",
        &md.replace("| P1 | T-01 |", "| P1 | T-0l |").replace(
            "- **Output**: `out/analysis.md`",
            "- **Ouput**: `out/analysis.md`",
        ),
    );
    let r = p.orch(&["list"]);
    assert_eq!(r.code(), 2);
    let err = r.stderr();
    assert!(err.contains("depends on unknown task `T-0l`"), "{err}");
    assert!(err.contains("did you mean `T-01`?"), "{err}");
    assert!(err.contains("unknown field `Ouput`"), "{err}");
    assert!(err.contains("master_plan.md"), "{err}");
    assert!(err.contains("| T-0l |") || err.contains("T-0l"), "{err}");
}

#[test]
fn no_plan_at_all_says_how_to_make_one() {
    let p = Project::empty();
    let r = p.orch(&["status"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("orch init"), "{}", r.stderr());
    assert!(r.stderr().contains("orch plan"), "{}", r.stderr());
}

/// A plan that fans out: a glob fan-out over src/, a task whose answer lists parts, a
/// dynamic fan-out over that answer and a reduce over it.
const FANS_OUT: &str = r#"{"tasks": [
  {"id": "review", "title": "Review {{ item.name }}", "foreach": "src/*.rs",
   "prompt": "Review {{ item }}.", "inputs": ["{{ item }}"],
   "outputs": ["reviews/{{ item.stem }}.md"]},
  {"id": "T-01", "title": "Find the parts", "run": "cat parts.json", "inputs": ["parts.json"],
   "verify": "true"},
  {"id": "part", "title": "Do a part", "foreach_from": "T-01",
   "run": "echo did {{ item }} >> parts.log", "verify": "true"},
  {"id": "sum", "title": "Sum up", "prompt": "Sum up:\n{{ deps.part.result }}",
   "deps": ["part", "review"], "outputs": ["sum.md"]}
]}"#;

#[test]
fn a_plan_can_fan_out_and_builds_in_one_go() {
    let p = Project::empty();
    p.write("src/a.rs", "fn a() {}\n");
    p.write("src/b.rs", "fn b() {}\n");
    p.write("parts.json", r#"["x", "y z"]"#);
    let cmd = p.fake_planner(&[FANS_OUT]);
    let r = p.plan(&cmd, &[]).ok();
    assert!(
        r.stdout()
            .contains("Also written: Orchfile.toml (the plan fans out"),
        "only an Orchfile holds a fan-out: {}",
        r.stdout()
    );
    let prompt = p.read("replies/prompt1");
    assert!(prompt.contains("\"foreach_from\""), "{prompt}");
    let toml = p.read("Orchfile.toml");
    assert!(toml.contains("foreach = \"src/*.rs\""), "{toml}");
    assert!(toml.contains("foreach_from = \"T-01\""), "{toml}");
    let md = p.read(".orchestrator/master_plan.md");
    assert!(md.contains("| review[src/b.rs] |"), "{md}");
    assert!(
        md.contains("- **Foreach**: files matching `src/*.rs`: 2 instance(s)"),
        "{md}"
    );
    // One build asks T-01 and runs each part it named, then the reduce.
    let out = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    let mut parts = p.lines("parts.log");
    parts.sort();
    assert_eq!(parts, ["did x", "did y z"], "{}", out.stderr());
    assert!(out.stderr().contains("6 ran"), "{}", out.stderr());
    assert!(p.exists("sum.md") && p.exists("reviews/a.md"));
}

/// master_plan.md's `## Task Details` section, up to the next section.
fn details_section(md: &str) -> &str {
    let start = md.find("## Task Details").expect("a details section");
    let rest = &md[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 4);
    &rest[..end]
}

#[test]
fn a_dynamic_fan_out_with_no_instances_still_has_its_details_block() {
    let p = Project::empty();
    p.write("src/a.rs", "fn a() {}\n");
    p.write("parts.json", "[]");
    let cmd = p.fake_planner(&[FANS_OUT]);
    p.plan(&cmd, &["--toml", "--force"]).ok();
    // Before T-01 answers, `part` has no instances, yet its block is there, once.
    let md = p.read(".orchestrator/master_plan.md");
    insta::assert_snapshot!("details_zero_instances", details_section(&md));
    // T-01 answered `[]`: still none, still one block.
    let out = p
        .orch(&["build", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    let md = p.read(".orchestrator/master_plan.md");
    assert_eq!(
        md.matches("### part[…]").count(),
        1,
        "{}\n{md}",
        out.stderr()
    );
    assert!(md.contains("the answer of `T-01`: 0 instance(s)"), "{md}");
}

#[test]
fn a_fan_out_against_the_rules_is_asked_again() {
    let p = Project::empty();
    let bad = r#"{"tasks": [
      {"id": "T-01", "title": "List", "prompt": "List the parts as a JSON array.", "verify": "true"},
      {"id": "each", "title": "Each", "foreach_from": "T-09", "prompt": "Do {{ item }}.",
       "outputs": ["out/all.md"]},
      {"id": "lone", "title": "Lone", "prompt": "Look at {{ item }}.", "verify": "true"},
      {"id": "both", "title": "Both", "foreach": ["a"], "foreach_from": "T-01",
       "run": "true", "verify": "true"}
    ]}"#;
    let good = r#"{"tasks": [
      {"id": "T-01", "title": "List", "prompt": "List the parts as a JSON array.", "verify": "true"},
      {"id": "each", "title": "Each", "foreach_from": "T-01", "prompt": "Do {{ item }}.",
       "outputs": ["out/{{ item }}.md"]}
    ]}"#;
    let cmd = p.fake_planner(&[bad, good]);
    let r = p.plan(&cmd, &[]).ok();
    let said = r.stderr();
    for problem in [
        "task `each`: `foreach_from` names unknown task `T-09`",
        "task `each`: output `out/all.md` would be written by every instance",
        "task `lone`: `{{ item }}` is only known in a fan-out task",
        "task `both` sets both `foreach` and `foreach_from`",
    ] {
        assert!(said.contains(problem), "{problem}: {said}");
    }
    assert!(
        p.read("replies/prompt2")
            .contains("names unknown task `T-09`"),
        "the problems go back to the planner"
    );
    assert!(p.read("Orchfile.toml").contains("foreach_from = \"T-01\""));
}
