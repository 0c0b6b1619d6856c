//! `orch status`, `explain`, `graph`, `list`, `clean`, `init`, `completions`, `man` and
//! `build --json`, through the real binary in temp projects with shell tasks and fake agents.

mod common;

use common::*;

/// Replaces wall-clock times and dates with placeholders so snapshots are stable.
fn normalize(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let digits =
        |at: usize, n: usize| b.len() >= at + n && b[at..at + n].iter().all(u8::is_ascii_digit);
    while i < b.len() {
        // YYYY-MM-DD
        if digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
        {
            out.push_str("YYYY-MM-DD");
            i += 10;
            continue;
        }
        // HH:MM:SS
        if digits(i, 2)
            && b.get(i + 2) == Some(&b':')
            && digits(i + 3, 2)
            && b.get(i + 5) == Some(&b':')
            && digits(i + 6, 2)
        {
            out.push_str("HH:MM:SS");
            i += 8;
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

const PIPELINE: &str = r#"
request = "Generate a file, measure it, and say hi."

[tasks.gen]
title = "Generate"
run = "mkdir -p out && cat src/*.txt > out/gen.txt"
inputs = ["src/*.txt"]
outputs = ["out/gen.txt"]
priority = "P0"

[tasks.size]
title = "Measure it"
run = "wc -c < out/gen.txt > out/size.txt"
deps = ["gen"]
outputs = ["out/size.txt"]
priority = "P1"

[tasks.hello]
title = "Say \"hi\""
run = "echo hi"
verify = "true"
priority = "P3"
"#;

fn pipeline() -> Project {
    let p = Project::new(PIPELINE);
    p.write("src/a.txt", "alpha\n");
    p
}

#[test]
fn status_table_before_and_after_a_build() {
    let p = pipeline();
    let before = p.orch(&["status"]).ok().stdout();
    insta::assert_snapshot!("status_before", before);
    p.orch(&["build", "-q"]).ok();
    let after = normalize(&p.orch(&["status"]).ok().stdout());
    insta::assert_snapshot!("status_after", after);
}

#[test]
fn status_shows_failures_and_json_has_every_field() {
    let p = Project::new(
        r#"
[tasks.ok]
run = "true"
[tasks.bad]
title = "Fails"
run = "exit 3"
retries = 1
[tasks.after]
run = "true"
deps = ["bad"]
"#,
    );
    assert_eq!(p.orch(&["build", "-q", "-k"]).code(), 1);
    let table = normalize(&p.orch(&["status"]).ok().stdout());
    insta::assert_snapshot!("status_failed", table);
    let json: serde_json::Value =
        serde_json::from_str(&p.orch(&["status", "--json"]).ok().stdout()).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        for key in [
            "id", "title", "agent_id", "status", "priority", "deps", "start", "end", "retries",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    assert_eq!(rows[1]["id"], "bad");
    assert_eq!(rows[1]["status"], "failed");
    assert_eq!(rows[1]["retries"], 1);
    assert_eq!(rows[1]["agent_id"], "Agent-02");
    assert_eq!(rows[2]["status"], "waiting");
    assert_eq!(rows[2]["deps"], serde_json::json!(["bad"]));
    assert!(rows[0]["start"].is_string());
}

#[test]
fn explain_names_every_reason() {
    let p = pipeline();
    let never = p.orch(&["explain", "size"]).ok().stdout();
    assert!(never.contains("never built"), "{never}");
    p.orch(&["build", "-q"]).ok();
    let fresh = normalize(&p.orch(&["explain"]).ok().stdout());
    insta::assert_snapshot!("explain_up_to_date", fresh);

    // An input changes, an input appears, an output goes missing, a definition changes.
    p.write("src/a.txt", "alpha, changed\n");
    p.write("src/b.txt", "beta\n");
    std::fs::remove_file(p.path("out/size.txt")).unwrap();
    p.write(
        "Orchfile.toml",
        &PIPELINE.replace("run = \"echo hi\"", "run = \"echo hello\""),
    );
    let stale = normalize(&p.orch(&["explain"]).ok().stdout());
    insta::assert_snapshot!("explain_stale", stale);

    // The build agrees: everything explain listed runs, and afterwards all is up to date.
    p.orch(&["build", "-q"]).ok();
    let after = p.orch(&["explain", "--json"]).ok().stdout();
    let v: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["up_to_date"] == true));

    // Only the output changing by hand.
    p.write("out/gen.txt", "tampered\n");
    let tampered = p.orch(&["explain", "gen"]).ok().stdout();
    assert!(
        tampered.contains("output out/gen.txt was modified"),
        "{tampered}"
    );
    assert_eq!(p.orch(&["explain", "nope"]).code(), 2);
}

#[test]
fn explain_names_the_definition_field_that_changed() {
    let p = Project::new("[tasks.t]\nprompt = \"Say hi\"\nagent = \"sim\"\noutputs = [\"o.md\"]\n");
    p.orch(&["build", "-q"]).ok();
    p.write(
        "Orchfile.toml",
        "[tasks.t]\nprompt = \"Say hello\"\nagent = \"sim\"\noutputs = [\"o.md\"]\nverify = \"test -s o.md\"\n",
    );
    let out = p.orch(&["explain", "t"]).ok().stdout();
    assert!(
        out.contains("definition changed: prompt, verify command"),
        "{out}"
    );
    // The agent is part of the definition: explain as a build with --agent would.
    p.orch(&["build", "-q"]).ok();
    let out = p.orch(&["explain", "--agent", "claude", "t"]).ok().stdout();
    assert!(out.contains("definition changed: agent"), "{out}");
    assert!(p
        .orch(&["explain", "t"])
        .ok()
        .stdout()
        .contains("up to date"));
}

#[test]
fn graph_as_dot_and_mermaid() {
    let p = pipeline();
    let dot = p.orch(&["graph", "--no-status"]).ok().stdout();
    insta::assert_snapshot!("graph_dot", dot);
    let mermaid = p
        .orch(&["graph", "--format", "mermaid", "--no-status"])
        .ok()
        .stdout();
    insta::assert_snapshot!("graph_mermaid", mermaid);
    p.orch(&["build", "-q"]).ok();
    let coloured = p.orch(&["graph", "--format", "mermaid"]).ok().stdout();
    insta::assert_snapshot!("graph_mermaid_status", coloured);
    let sub = p.orch(&["graph", "size", "--no-status"]).ok().stdout();
    assert!(sub.contains("\"gen\" -> \"size\""));
    assert!(!sub.contains("hello"));
}

#[test]
fn list_shows_the_tasks() {
    let p = pipeline();
    insta::assert_snapshot!("list", p.orch(&["list"]).ok().stdout());
    let v: serde_json::Value =
        serde_json::from_str(&p.orch(&["list", "--json"]).ok().stdout()).unwrap();
    assert_eq!(v[1]["id"], "size");
    assert_eq!(v[1]["deps"], serde_json::json!(["gen"]));
    assert_eq!(v[0]["run"], "mkdir -p out && cat src/*.txt > out/gen.txt");
}

#[test]
fn clean_removes_state_and_outputs_but_keeps_the_plan() {
    let p = pipeline();
    p.orch(&["build", "-q"]).ok();
    p.write(
        ".orchestrator/master_plan.md",
        &format!(
            "{}\n## My Notes\n\nkeep me\n",
            p.read(".orchestrator/master_plan.md")
        ),
    );
    let dry = p.orch(&["clean", "--dry-run", "--outputs"]).ok().stdout();
    assert!(
        dry.contains("would remove .orchestrator/state.bin"),
        "{dry}"
    );
    assert!(dry.contains("would remove out/gen.txt"), "{dry}");
    assert!(p.exists(".orchestrator/results"));

    let out = p.orch(&["clean"]).ok().stdout();
    assert!(out.contains("removed .orchestrator/results"), "{out}");
    for gone in [
        "results",
        "agent_tasks",
        "state.bin",
        "stat_cache.bin",
        "runs",
    ] {
        assert!(!p.exists(&format!(".orchestrator/{gone}")), "{gone}");
    }
    assert!(p.exists("out/gen.txt"), "outputs stay without --outputs");
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(plan.contains("keep me"));
    assert!(plan.contains("State Cleaned"));
    assert!(!plan.contains("✅"), "status table reset:\n{plan}");
    // Nothing is up to date any more; the output cache, which clean leaves, restores it all.
    let ran = p.orch(&["build", "-q"]).ok().stderr();
    assert!(
        ran.contains("0 ran, 3 restored from cache, 0 up to date"),
        "{ran}"
    );

    p.orch(&["clean", "--outputs"]).ok();
    assert!(!p.exists("out/gen.txt"));
    assert!(!p.exists("out/size.txt"));
}

#[test]
fn clean_refuses_to_delete_outside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious.txt"), "keep").unwrap();
    let p = Project::new("[tasks.t]\nrun = \"true\"\noutputs = [\"link/precious.txt\"]\n");
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    let r = p.orch(&["clean", "--outputs"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains("outside the project root"),
        "{}",
        r.stderr()
    );
    assert!(outside.path().join("precious.txt").exists());
}

#[test]
fn init_writes_a_starter_that_builds() {
    let p = Project::empty();
    p.write("src/main.rs", "fn main() {}\n");
    let out = p.orch(&["init"]).ok().stdout();
    assert!(out.contains("Orchfile.toml"));
    let text = p.read("Orchfile.toml");
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 10
    );
    let again = p.orch(&["init"]);
    assert_eq!(again.code(), 2);
    assert!(again.stderr().contains("already exists"));
    p.orch(&["init", "--force"]).ok();
    p.orch(&["build", "-q", "--agent", "sim", "--sim-speed", "1000"])
        .ok();
    assert!(p.read("reports/files.txt").contains("src/main.rs"));
    assert!(p.exists("reports/summary.md"));
    let list = p.orch(&["list"]).ok().stdout();
    assert!(list.contains("files") && list.contains("summary"), "{list}");
}

#[test]
fn completions_and_man_page() {
    let p = Project::empty();
    let bash = p.orch(&["completions", "bash"]).ok().stdout();
    // The script calls orch back at each TAB (what it offers: tests/completions.rs).
    assert!(
        bash.contains("-F _clap_complete_orch orch") && bash.contains(r#"COMPLETE="bash""#),
        "{bash}"
    );
    let zsh = p.orch(&["completions", "zsh"]).ok().stdout();
    assert!(zsh.contains("#compdef orch"));
    let man = p.orch(&["man"]).ok().stdout();
    assert!(man.contains(".TH orch"), "{man}");
    assert!(man.contains("explain"));
    p.orch(&["man", "--dir", "man"]).ok();
    assert!(p.exists("man/orch.1"));
    assert!(p.exists("man/orch-plan.1"));
}

#[test]
fn build_json_reports_every_event() {
    let p = Project::new(
        r#"
[settings]
retry_backoff = "10ms"

[agents.fake]
command = ["sh", "fake_agent.sh"]
result = "json:result"
retries = 1
retry_on = ["overloaded_error"]

[tasks.agent]
title = "Ask the agent"
prompt = "Say done"
agent = "fake"

[tasks.bad]
run = "echo broken >&2; exit 3"

[tasks.fine]
run = "echo fine"
"#,
    );
    p.write(
        "fake_agent.sh",
        r#"cat > /dev/null
if [ ! -f tried ]; then
  touch tried
  echo '{"type":"result","is_error":true,"result":"API Error: overloaded_error"}'
  exit 0
fi
echo '{"type":"result","is_error":false,"result":"done","total_cost_usd":0.0123,"usage":{"input_tokens":10,"output_tokens":20}}'
"#,
    );
    let r = p.orch(&["build", "--json", "-k", "-j", "1"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let events: Vec<serde_json::Value> = r
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let find = |name: &str, task: &str| -> serde_json::Value {
        events
            .iter()
            .find(|e| e["event"] == name && (task.is_empty() || e["task"] == task))
            .unwrap_or_else(|| panic!("no {name} for {task}: {events:#?}"))
            .clone()
    };
    assert!(events.iter().all(|e| e["ts_ms"].as_u64().is_some()));
    assert_eq!(find("build_started", "")["tasks"], 3);
    let started = find("task_started", "agent");
    assert_eq!(started["agent"], "fake");
    assert_eq!(started["agent_id"], "Agent-01");
    assert_eq!(started["attempt"], 1);
    let retried = find("task_retried", "agent");
    assert!(retried["reason"]
        .as_str()
        .unwrap()
        .contains("overloaded_error"));
    assert!(retried["delay_ms"].is_u64());
    let done = find("task_finished", "agent");
    assert_eq!(done["cost_usd"], 0.0123);
    assert_eq!(done["input_tokens"], 10);
    assert_eq!(done["output_tokens"], 20);
    assert_eq!(done["retries"], 1);
    assert!(done["duration_ms"].is_u64());
    let failed = find("task_failed", "bad");
    assert!(failed["reason"].as_str().unwrap().contains("exit code 3"));
    assert_eq!(failed["agent"], "shell");
    let finished = find("build_finished", "");
    assert_eq!(finished["success"], false);
    assert_eq!(finished["failed"], 1);
    assert_eq!(finished["cost_usd"], 0.0123);

    let again = p.orch(&["build", "--json", "-k"]);
    let skipped: Vec<serde_json::Value> = again
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "task_skipped")
        .collect();
    assert_eq!(skipped.len(), 2, "{}", again.stdout());
    assert_eq!(skipped[0]["reason"], "up to date");
}

#[test]
fn read_only_commands_write_nothing() {
    let p = pipeline();
    for args in [
        &["status"][..],
        &["explain"],
        &["graph"],
        &["list"],
        &["build", "--dry-run"],
    ] {
        p.orch(args).ok();
    }
    assert!(
        !p.exists(".orchestrator"),
        "a read-only command created state"
    );
}
