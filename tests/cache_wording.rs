//! A dependent kept from running by early cutoff says how its dep came back: "re-ran" when
//! it ran, "was restored from cache" when the output cache restored it, in the progress
//! line, master_plan.md's log, `--json` (`deps_restored`) and `orch explain`.

mod common;

use common::Project;

/// `a` keeps the first word of its input; `b` reads what `a` wrote.
fn project() -> Project {
    let p = Project::new(
        r#"
[tasks.a]
run = "cut -d' ' -f1 in.txt > a.txt"
inputs = ["in.txt"]
outputs = ["a.txt"]

[tasks.b]
run = "tr a-z A-Z < a.txt > b.txt"
inputs = ["a.txt"]
outputs = ["b.txt"]
deps = ["a"]
"#,
    );
    p.write("in.txt", "one 1\n");
    p
}

/// The lines of `text` that contain `needle`, the date in `since (...)` masked.
fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(|l| match (l.find(" since ("), l.rfind(')')) {
            (Some(i), Some(j)) if j > i => format!("{} since (DATE){}", &l[..i], &l[j + 1..]),
            _ => l.trim_end().to_string(),
        })
        .collect()
}

#[test]
fn a_dependent_says_its_dep_was_restored_from_cache_not_re_run() {
    let p = project();
    p.orch(&["build"]).success();
    // The records' times are in seconds: a second apart, explain can tell which came later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // `a` re-runs and hands over the same output: `b` says it re-ran.
    p.write("in.txt", "one 2\n");
    let reran = p.command(&["build"]).env("NO_COLOR", "1").output().unwrap();
    let reran = String::from_utf8_lossy(&reran.stderr).into_owned();
    // Back to the first input: `a` is restored from the cache, same output again.
    p.write("in.txt", "one 1\n");
    let restored = p
        .command(&["build", "--json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&restored.stdout).into_owned();
    assert!(json.contains(r#""event":"task_restored""#), "{json}");
    p.write("in.txt", "one 2\n");
    p.orch(&["build"]).success();
    p.write("in.txt", "one 1\n");
    let plain = p.command(&["build"]).env("NO_COLOR", "1").output().unwrap();
    let plain = String::from_utf8_lossy(&plain.stderr).into_owned();
    let explain = p.orch(&["explain", "b"]).ok().stdout();
    let skipped: Vec<serde_json::Value> = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "task_skipped")
        .collect();
    let log = p.read(".orchestrator/master_plan.md");
    let report = [
        "progress, dep re-ran:".to_string(),
        lines_with(&reran, "[b] up to date").join("\n"),
        "progress, dep restored:".to_string(),
        lines_with(&plain, "[b] up to date").join("\n"),
        "json:".to_string(),
        skipped
            .iter()
            .map(|e| format!("{} {} {}", e["task"], e["deps_reran"], e["deps_restored"]))
            .collect::<Vec<_>>()
            .join("\n"),
        "master_plan.md:".to_string(),
        lines_with(&log, "b not run:").join("\n"),
        "explain:".to_string(),
        lines_with(&explain, "since (").join("\n"),
    ]
    .join("\n");
    insta::assert_snapshot!("dependent_of_a_restored_dep", report);
}
