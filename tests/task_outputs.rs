//! What a task leaves behind and what is shown of it: a declared output counts only if the
//! attempt wrote it, however soon after an earlier run it comes; a shell task's stderr is
//! shown (bounded) when it succeeds, both its streams are kept in its log when it fails or
//! warns.

mod common;

use common::*;

#[test]
fn an_output_left_untouched_fails_however_soon_the_rebuild_comes() {
    let p = Project::new(MAYBE_WRITES);
    p.write("write-it", "");
    p.orch(&["build"]).success();
    // At once, within the file clock's tick: the agent writes nothing this time.
    std::fs::remove_file(p.path("write-it")).unwrap();
    p.write("Orchfile.toml", &MAYBE_WRITES.replace("(v1)", "(v2)"));
    p.orch(&["build"]).fails_with(
        1,
        "not written by this run (left from an earlier one): report.md",
    );
}

#[test]
fn a_retry_does_not_take_credit_for_what_the_failed_attempt_wrote() {
    // The first attempt writes report.md and fails; the retry, at once, writes nothing.
    let p = Project::new(
        r#"
[agents.flaky]
command = ["sh", "-c", "cat > /dev/null; if [ ! -f tried ]; then touch tried; echo draft > report.md; exit 1; fi; echo done"]
result = "stdout"

[tasks.r]
prompt = "write report.md"
agent = "flaky"
outputs = ["report.md"]
retries = 1
"#,
    );
    p.orch(&["build"]).fails_with(
        1,
        "not written by this run (left from an earlier one): report.md",
    );
}

#[test]
fn an_output_rewritten_at_once_with_the_same_bytes_counts_as_written() {
    let p = Project::new("[tasks.t]\nrun = \"printf same > out.txt\"\noutputs = [\"out.txt\"]\n");
    for round in 0..5 {
        p.write(
            "Orchfile.toml",
            &format!(
                "[tasks.t]\nrun = \"printf same > out.txt # {round}\"\noutputs = [\"out.txt\"]\n"
            ),
        );
        let run = p.orch(&["build"]);
        assert_eq!(run.code(), 0, "round {round}: {}", run.stderr());
    }
}

#[test]
fn a_shell_tasks_warnings_are_shown_under_its_line_and_kept_in_its_log() {
    let p = Project::new(
        "[tasks.cc]\nrun = \"echo 'main.c:3: warning: unused variable x' >&2; echo built\"\n",
    );
    let run = p.orch(&["build"]).ok();
    let err = run.stderr();
    let ok_line = err
        .lines()
        .position(|l| l.contains("ok Agent-01 [cc]"))
        .unwrap();
    assert_eq!(
        err.lines().nth(ok_line + 1).map(str::trim),
        Some("main.c:3: warning: unused variable x"),
        "{err}"
    );
    let log = p.read(".orchestrator/logs/agent-01.log");
    assert!(log.contains("--- stdout ---\nbuilt"), "{log}");
    assert!(log.contains("--- stderr ---\nmain.c:3: warning"), "{log}");
    assert_eq!(
        p.read(".orchestrator/results/agent-01-result.md"),
        "built\n"
    );

    // --quiet still shows them; --json has them as a field.
    p.write(
        "Orchfile.toml",
        "[tasks.cc]\nrun = \"echo 'main.c:4: warning: again' >&2\"\n",
    );
    let quiet = p.orch(&["build", "-q"]).ok().stderr();
    assert!(quiet.contains("warn Agent-01 [cc]"), "{quiet}");
    assert!(quiet.contains("main.c:4: warning: again"), "{quiet}");
    p.write(
        "Orchfile.toml",
        "[tasks.cc]\nrun = \"echo 'main.c:5: warning: json' >&2\"\n",
    );
    let json = p.orch(&["build", "--json"]).ok().stdout();
    let finished: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "task_finished")
        .unwrap();
    assert_eq!(finished["warnings"], "main.c:5: warning: json");

    // A quiet task has no warnings.
    p.write("Orchfile.toml", "[tasks.cc]\nrun = \"true\"\n");
    let json = p.orch(&["build", "--json"]).ok().stdout();
    assert!(json.contains("\"warnings\":null"), "{json}");
}

#[test]
fn a_flood_on_stderr_is_cut_for_the_terminal_but_kept_in_the_log() {
    let p = Project::new("[tasks.noisy]\nrun = \"seq 1 200000 >&2\"\n");
    let run = p.orch(&["build"]).ok();
    let err = run.stderr();
    assert!(err.len() < 4000, "{} bytes on the terminal", err.len());
    assert!(
        err.contains("… 199980 more line(s) in .orchestrator/logs/agent-01.log"),
        "{err}"
    );
    assert!(p
        .read(".orchestrator/logs/agent-01.log")
        .contains("\n200000\n"));
}

#[test]
fn a_failed_shell_task_keeps_both_streams_in_its_log() {
    let p = Project::new(
        "[tasks.t]\nrun = \"echo progress on stdout; echo the real error >&2; exit 3\"\n[tasks.u]\nrun = \"echo only stdout says why; exit 4\"\n",
    );
    let run = p.orch(&["build", "-k"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(err.contains("exit code 3: the real error"), "{err}");
    assert!(
        err.contains("exit code 4: only stdout says why"),
        "stdout when stderr is empty: {err}"
    );
    let log = p.read(".orchestrator/logs/agent-01.log");
    assert!(log.contains("progress on stdout"), "{log}");
    assert!(log.contains("the real error"), "{log}");
    assert!(p
        .read(".orchestrator/logs/agent-02.log")
        .contains("only stdout says why"));
}
