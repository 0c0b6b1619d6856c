//! Every malformed field, path, glob, placeholder or value in a plan is a diagnostic that
//! names the file and points at the value, exit 2, before anything runs (no state directory,
//! no task started); what may still turn out fine is a warning. How fast a refusal is (well
//! under a second) is measured by `benches/refusals.sh`, not asserted here: a wall-clock bound
//! fails on a loaded machine. Issue #14, items 2, 3, 6, 9 and 15, through the real binary.

mod common;

use common::*;

/// Runs orch and asserts it refused the plan: exit 2 and nothing started. Returns stderr.
#[track_caller]
fn refused(p: &Project, args: &[&str]) -> String {
    let run = p.orch(args);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{args:?}: exit {}\n{err}", run.code());
    assert!(
        !p.exists(".orchestrator"),
        "{args:?} touched the state:\n{err}"
    );
    assert!(!p.exists("ran.log"), "{args:?} ran a task:\n{err}");
    err
}

/// The Orchfile of a project whose tasks record that they ran.
fn orchfile(tasks: &str) -> String {
    format!("{tasks}\n[tasks.zz-marker]\nrun = \"echo ran >> ran.log\"\n")
}

#[test]
fn broken_placeholders_are_plan_errors_with_the_span_and_a_suggestion() {
    // (prompt of task `b`, which depends on `a`; message; help)
    let cases = [
        (
            "Use {{ deps.c.result }}.",
            "`{{ deps.c.result }}` names task `c`, but there is no such task",
            "did you mean `{{ deps.a.result }}`?",
        ),
        (
            "Use {{ dep.a.result }}.",
            "unknown placeholder `{{ dep.a.result }}`",
            "did you mean `{{ deps.a.result }}`?",
        ),
        (
            "Read {{ inptus }}.",
            "unknown placeholder `{{ inptus }}`",
            "did you mean `{{ inputs }}`?",
        ),
        (
            "Use {{ deps.other.result }}.",
            "`{{ deps.other.result }}` names task `other`, which `b` does not depend on",
            "add \"other\" to the deps of `b`",
        ),
        (
            "Use {{ x and more",
            "placeholder `{{ x and more` is not closed",
            "write a literal `{{` as {{ '{{' }}",
        ),
    ];
    for (prompt, message, help) in cases {
        // `prompt = "` is 10 columns.
        let placeholder_at = 10 + prompt.find("{{").unwrap() + 1;
        // Inline in the Orchfile.
        let p = Project::new(&orchfile(&format!(
            "[tasks.a]\nrun = \"true\"\n[tasks.other]\nrun = \"true\"\n\
             [tasks.b]\nprompt = \"{prompt}\"\ndeps = [\"a\"]\n"
        )));
        let err = refused(&p, &["build", "--agent", "sim"]);
        assert!(err.contains(message), "{prompt}: {err}");
        assert!(err.contains(help), "{prompt}: {err}");
        assert!(
            err.contains(&format!("Orchfile.toml:6:{placeholder_at}]")),
            "{prompt}: points at the placeholder: {err}"
        );
        // In a prompt file: read and checked before anything runs.
        let p = Project::new(&orchfile(
            "[tasks.a]\nrun = \"true\"\n[tasks.other]\nrun = \"true\"\n\
             [tasks.b]\nprompt_file = \"prompts/b.md\"\ndeps = [\"a\"]\n",
        ));
        p.write("prompts/b.md", &format!("# B\n\n{prompt}\n"));
        let err = refused(&p, &["build", "--agent", "sim"]);
        assert!(err.contains(message), "{prompt}: {err}");
        assert!(err.contains(help), "{prompt}: {err}");
        assert!(
            err.contains(&format!(
                "prompts/b.md:3:{}]",
                prompt.find("{{").unwrap() + 1
            )),
            "{prompt}: points into the prompt file: {err}"
        );
        // In master_plan.md.
        let p = Project::empty();
        p.write(
            ".orchestrator/master_plan.md",
            &format!(
                "# Master Plan\n\n## Task Status\n\n\
                 | Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |\n\
                 |---|---|---|---|---|---|---|---|---|\n\
                 | a | A | Agent-01 | 🟡 | P2 | None | - | - | 0 |\n\
                 | other | O | Agent-02 | 🟡 | P2 | None | - | - | 0 |\n\
                 | b | B | Agent-03 | 🟡 | P2 | a | - | - | 0 |\n\n\
                 ## Task Details\n\n### b: B\n\n- **Agent**: Agent-03 (sim)\n- **Prompt**: {prompt}\n"
            ),
        );
        let run = p.orch(&["build"]);
        let err = run.stderr();
        assert_eq!(run.code(), 2, "{prompt}: {err}");
        assert!(err.contains(message), "{prompt}: {err}");
        assert!(
            err.contains(&format!(
                "master_plan.md:16:{}]",
                "- **Prompt**: ".len() + prompt.find("{{").unwrap() + 1
            )),
            "{prompt}: points at the placeholder: {err}"
        );
        assert!(!p.exists(".orchestrator/results"), "nothing ran: {err}");
    }
}

#[test]
fn valid_placeholders_and_a_literal_pass() {
    let p = Project::new(
        "[tasks.a]\nrun = \"echo A\"\n\
         [tasks.b]\nprompt = \"{{ deps.a.result }} of {{ inputs }}; write {{ '{{' }} as is\"\n\
         deps = [\"a\"]\ninputs = [\"in.txt\"]\n",
    );
    p.write("in.txt", "x");
    p.orch(&["build", "--agent", "sim"]).success();
    let task = p.read(".orchestrator/agent_tasks/agent-02.md");
    assert!(task.contains("A of in.txt; write {{ as is"), "{task}");
}

#[test]
fn a_glob_that_matches_nothing_is_a_warning_or_under_strict_an_error() {
    let tasks = "[tasks.a]\nrun = \"echo a\"\ninputs = [\"docs/*.mdd\"]\n\
                 [tasks.b]\nrun = \"echo b\"\ninputs = [\"docs/*.mdd\", \"gen/*.txt\"]\n\
                 [tasks.gen]\nrun = \"mkdir -p gen && echo x > gen/x.txt\"\noutputs = [\"gen/x.txt\"]\n";
    let p = Project::new(tasks);
    p.write("docs/a.md", "x");
    let run = p.orch(&["build"]).ok();
    let err = run.stderr();
    assert_eq!(
        err.matches("matches no file").count(),
        1,
        "one warning per glob, naming the glob and the tasks; a glob over a task's outputs \
         is matched: {err}"
    );
    assert!(
        err.contains("input glob `docs/*.mdd` of tasks `a`, `b` matches no file"),
        "{err}"
    );
    assert!(
        err.contains("Orchfile.toml:3:"),
        "points at the glob: {err}"
    );
    assert!(err.contains("settings.strict = true"), "{err}");
    // Said again by every build, up to date ones too: a no-op build that warned leaves no
    // record for the fast path, which would replay it without the warning.
    // (`b` may run once more: `gen` wrote its match after `b` first ran.)
    for _ in 0..3 {
        let err = p.orch(&["build"]).ok().stderr();
        assert_eq!(err.matches("matches no file").count(), 1, "{err}");
    }
    let err = p.orch(&["build"]).ok().stderr();
    assert_eq!(err.matches("matches no file").count(), 1, "{err}");
    assert!(err.contains("0 ran, 3 up to date"), "{err}");

    let p = Project::new(&format!("[settings]\nstrict = true\n{}", orchfile(tasks)));
    let err = refused(&p, &["build"]);
    assert!(err.contains("input glob `docs/*.mdd`"), "{err}");
    assert!(
        err.contains("an error since settings.strict = true"),
        "{err}"
    );
}

#[test]
fn every_number_has_a_range_and_one_rule_for_cli_and_file() {
    // (fields, message)
    let cases = [
        ("[tasks.t]\nrun = \"true\"\nretries = 1000000000\n", "retries must be at most 100, not 1000000000"),
        ("[tasks.t]\nrun = \"true\"\nretries = -1\n", "retries must be at least 0, not -1"),
        ("[tasks.t]\nrun = \"true\"\ntimeout = \"0s\"\n", "timeout must be more than 0s"),
        ("[tasks.t]\nprompt = \"\"\n", "the prompt of task `t` is empty"),
        ("[tasks.t]\nrun = \"  \"\n", "the run command of task `t` is empty"),
        ("[tasks.t]\nrun = \"true\"\nverify = \"\"\n", "the verify command of task `t` is empty"),
        ("[tasks.t]\nrun = \"true\"\ninputs = [\"\"]\n", "an input of task `t` is empty"),
        ("[settings]\njobs = 0\n[tasks.t]\nrun = \"true\"\n", "jobs must be at least 1, not 0"),
        ("[settings]\njobs = 5000\n[tasks.t]\nrun = \"true\"\n", "jobs must be at most 1024, not 5000"),
        ("[settings]\nkill_grace = \"2h\"\n[tasks.t]\nrun = \"true\"\n", "kill_grace must be at most 1h, not 2h"),
        (
            "[settings]\nretry_backoff = \"10s\"\nretry_backoff_max = \"5s\"\n[tasks.t]\nrun = \"true\"\n",
            "retry_backoff_max (5s) is less than retry_backoff (10s)",
        ),
        (
            "[settings]\ninline_result_limit = -1\n[tasks.t]\nrun = \"true\"\n",
            "inline_result_limit must be at least 0, not -1",
        ),
        (
            "[agents.my]\ncommand = [\"x\"]\nmax_parallel = 0\nretries = 101\ntimeout = 0\n[tasks.t]\nprompt = \"p\"\nagent = \"my\"\n",
            "max_parallel must be at least 1, not 0",
        ),
    ];
    for (fields, message) in cases {
        let p = Project::new(&orchfile(fields));
        let err = refused(&p, &["build"]);
        assert!(err.contains(message), "{fields}: {err}");
        assert!(
            err.contains("Orchfile.toml:"),
            "{fields}: names the file: {err}"
        );
    }
    // -j 0 is refused as jobs = 0 is, with the same words.
    let p = Project::new(&orchfile("[tasks.t]\nrun = \"true\"\n"));
    let err = refused(&p, &["build", "-j", "0"]);
    assert!(err.contains("jobs must be at least 1, not 0"), "{err}");
    // The same rule in master_plan.md.
    let p = Project::empty();
    p.write(
        ".orchestrator/master_plan.md",
        "# Master Plan\n\n## Task Status\n\n\
         | Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | t | T | Agent-01 | 🟡 | P2 | None | - | - | 0 |\n\n\
         ## Task Details\n\n### t: T\n\n- **Agent**: Agent-01 (shell)\n- **Retries**: 1000000000\n- **Timeout**: 0s\n- **Run**: `true`\n",
    );
    let run = p.orch(&["build"]);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{err}");
    assert!(
        err.contains("retries must be at most 100, not 1000000000"),
        "{err}"
    );
    assert!(err.contains("timeout must be more than 0s"), "{err}");
}

#[test]
fn an_empty_orchfile_is_an_error_with_a_hint() {
    for text in ["", "# nothing yet\n[settings]\njobs = 2\n"] {
        let p = Project::new(text);
        let err = refused(&p, &["build"]);
        assert!(err.contains("Orchfile.toml defines no tasks"), "{err}");
        assert!(err.contains("orch init"), "{err}");
    }
}

#[test]
fn inputs_knowable_to_be_wrong_are_plan_errors_naming_the_input_and_task() {
    let p = Project::empty();
    std::fs::create_dir_all(p.path("adir")).unwrap();
    std::os::unix::fs::symlink("loop", p.path("loop")).unwrap();
    std::os::unix::fs::symlink("/dev/null", p.path("null")).unwrap();
    // Write-only even for root: reading it is refused.
    std::os::unix::fs::symlink("/proc/sys/vm/drop_caches", p.path("secret")).unwrap();
    let fifo = std::ffi::CString::new(p.path("fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    // (input, message, help)
    let cases = [
        (
            "adir",
            "input `adir` of task `t` is a directory",
            "write \"adir/**\"",
        ),
        (
            "adir/",
            "input `adir/` of task `t` is a directory",
            "write \"adir/**\"",
        ),
        ("loop", "input `loop` of task `t` is a symlink loop", ""),
        (
            "null",
            "input `null` of task `t` is a device (through a symlink)",
            "",
        ),
        (
            "fifo",
            "input `fifo` of task `t` is a FIFO (named pipe)",
            "",
        ),
        (
            "secret",
            "input `secret` of task `t` cannot be read: Permission denied",
            "",
        ),
    ];
    for (input, message, help) in cases {
        p.write(
            "Orchfile.toml",
            &orchfile(&format!(
                "[tasks.t]\nrun = \"cat {input}\"\ninputs = [\"{input}\"]\n"
            )),
        );
        let err = refused(&p, &["build"]);
        assert!(err.contains(message), "{input}: {err}");
        assert!(err.contains(help), "{input}: {err}");
        assert!(
            err.contains("Orchfile.toml:3:11]"),
            "{input}: points at it: {err}"
        );
    }
    p.write(
        "Orchfile.toml",
        &orchfile("[tasks.t]\nprompt_file = \"prompts/t.md\"\n"),
    );
    let err = refused(&p, &["build", "--agent", "sim"]);
    assert!(
        err.contains("prompt_file `prompts/t.md` of task `t` does not exist"),
        "{err}"
    );
    assert!(err.contains("Orchfile.toml:2:15]"), "{err}");
}

#[test]
fn a_plan_from_the_plan_cache_is_checked_against_the_files_too() {
    let p = Project::new("[tasks.t]\nprompt_file = \"p.md\"\n");
    p.write("p.md", "Say hi.\n");
    p.orch(&["build", "--agent", "sim"]).success();
    // The Orchfile is unchanged (its plan comes from plan_cache.bin); the prompt file is not.
    p.write("p.md", "Say {{ inptus }}.\n");
    let run = p.orch(&["build", "--agent", "sim"]);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{err}");
    assert!(err.contains("unknown placeholder `{{ inptus }}`"), "{err}");
    assert!(err.contains("p.md:1:5]"), "{err}");
}

#[test]
fn help_and_suggestions_say_the_right_thing() {
    let p = Project::new("[tasks.index]\nrun = \"true\"\n");
    let help = p.orch(&["build", "--help"]).ok().stdout();
    let (options, global) = help.split_once("Global options:").expect(&help);
    assert!(
        global.contains("-C, --directory") && global.contains("-f, --file"),
        "{help}"
    );
    assert!(
        !options.contains("--directory") && !options.contains("--file"),
        "{help}"
    );
    let init = p.orch(&["init", "--help"]).ok().stdout();
    assert!(
        init.contains("For `orch init`, the file to write"),
        "{init}"
    );

    let err = p.orch(&["build", "idnex"]).stderr();
    assert!(err.contains("did you mean `index`?"), "{err}");

    let p = Project::new(&orchfile(
        "[tasks.build]\nrun = \"true\"\nouputs = [\"x\"]\n",
    ));
    let err = refused(&p, &["build"]);
    assert!(err.contains("did you mean `outputs`?"), "{err}");

    let p = Project::new(&orchfile(
        "[tasks.build]\nrun = \"true\"\ndeps = [\"biuld\"]\n",
    ));
    let err = refused(&p, &["build"]);
    assert!(err.contains("unknown task `biuld`"), "{err}");
    assert!(
        !err.contains("did you mean `build`"),
        "never suggests the task itself: {err}"
    );

    let p = Project::new(&orchfile(
        "[agents.mine]\npreset = \"claud\"\n[tasks.t]\nprompt = \"p\"\nagent = \"mine\"\n",
    ));
    let err = refused(&p, &["build"]);
    assert!(err.contains("unknown agent preset `claud`"), "{err}");
    assert!(err.contains("did you mean `claude`?"), "{err}");
    assert!(
        !err.contains("unknown agent `mine`"),
        "one error, not two: {err}"
    );

    let p = Project::new(&orchfile("[tasks.\"tâche\"]\nrun = \"true\"\n"));
    let err = refused(&p, &["build"]);
    assert!(err.contains("ASCII letters, digits"), "{err}");
}

#[test]
fn one_retry_and_a_verify_that_prints_nothing_read_well() {
    let p = Project::new(
        "[tasks.flaky]\nrun = \"test -e once || { touch once; exit 1; }\"\nretries = 1\n\
         [tasks.checked]\nrun = \"true\"\nverify = \"false\"\n",
    );
    let run = p.orch(&["build", "-k"]);
    let err = run.stderr();
    assert!(err.contains(", 1 retry"), "{err}");
    assert!(!err.contains("1 retries"), "{err}");
    assert!(
        err.contains("verify `false` failed (exit code 1) and printed nothing"),
        "{err}"
    );
}

#[test]
fn more_malformed_values_are_plan_errors_with_their_span() {
    // (fields, message, where it points)
    let cases = [
        ("[settings]\nstate_dir = \"\"\n[tasks.t]\nrun = \"true\"\n", "state_dir `` is the project directory itself", "Orchfile.toml:2:13]"),
        ("[settings]\nstate_dir = \"./\"\n[tasks.t]\nrun = \"true\"\n", "state_dir `./` is the project directory itself", "Orchfile.toml:2:13]"),
        ("[tasks.t]\nrun = \"true\"\nenv = { \"A=B\" = \"x\" }\n", "environment variable name `A=B` of task `t` holds `=`", "Orchfile.toml:3:9]"),
        ("[tasks.t]\nrun = \"true\"\nenv = { \"\" = \"x\" }\n", "environment variable name `` of task `t` is empty", "Orchfile.toml:3:9]"),
        (
            "[agents.my]\ncommand = [\"cat\"]\nenv = { \"\" = \"x\" }\nretry_on = [\"\"]\n[tasks.t]\nprompt = \"p\"\nagent = \"my\"\n",
            "environment variable name `` of agent `my` is empty",
            "Orchfile.toml:3:9]",
        ),
        (
            "[agents.my]\ncommand = [\"cat\"]\nretry_on = [\"overloaded\", \"\"]\n[tasks.t]\nprompt = \"p\"\nagent = \"my\"\n",
            "a retry_on pattern of agent `my` is empty",
            "Orchfile.toml:3:27]",
        ),
        ("[tasks.t]\nrun = \"true\"\noutputs = [\"adir/\"]\n", "output `adir/` of task `t` is a directory", "Orchfile.toml:3:12]"),
        ("[tasks.t]\nrun = \"true\"\n[aggregate]\ntitle = \"\"\n", "the [aggregate] title is empty", "Orchfile.toml:4:9]"),
        ("[tasks.t]\nrun = \"true\"\n[aggregate]\nstrategy = \"agent\"\nprompt = \" \"\n", "the [aggregate] prompt is empty", "Orchfile.toml:5:10]"),
        (
            "[tasks.t]\nrun = \"true\"\n[aggregate]\nstrategy = \"agent\"\nprompt = \"Merge {{ inputs }}.\"\n",
            "the [aggregate] prompt takes no placeholders, and has `{{ inputs }}`",
            "Orchfile.toml:5:17]",
        ),
        (
            "[tasks.t]\nrun = \"true\"\n[aggregate]\nstrategy = \"structured\"\ncost_estimate = 0.1\n",
            "[aggregate] cost_estimate applies to the `agent` strategy only",
            "Orchfile.toml:5:17]",
        ),
        (
            "[tasks.t]\nrun = \"true\"\n[aggregate]\nstrategy = \"agent\"\ncost_estimate = -2\n",
            "cost_estimate must be",
            "Orchfile.toml:5:17]",
        ),
        ("[tasks.t]\nprompt = \"Say {{ }}.\"\n", "empty placeholder `{{ }}`", "Orchfile.toml:2:15]"),
        ("[tasks.t]\nrun = \"true\"\nretries = 1.5\n", "invalid type: decimal number `1.5`, expected a whole", "Orchfile.toml:3:11]"),
        ("[tasks.t]\nrun = \"true\"\ninputs = \"a.txt\"\n", "expected a list", "Orchfile.toml:3:10]"),
        // An allocation whose id salloc would not print is one orch could not release.
        (
            "[settings.slurm]\nallocation = [\"--nodes=1\", \"--quiet\"]\n[tasks.t]\nrun = \"true\"\n",
            "allocation may not set `--quiet`",
            "Orchfile.toml:2:28]",
        ),
    ];
    for (fields, message, at) in cases {
        let p = Project::new(&orchfile(fields));
        let err = refused(&p, &["build", "--agent", "sim"]);
        assert!(err.contains(message), "{fields}: {err}");
        assert!(err.contains(at), "{fields}: points at it: {err}");
    }
    // An output that is a directory on disk, as the build would find it after the run.
    let p = Project::new(&orchfile(
        "[tasks.t]\nrun = \"touch adir/x\"\noutputs = [\"adir\"]\n",
    ));
    std::fs::create_dir(p.path("adir")).unwrap();
    let err = refused(&p, &["build"]);
    assert!(
        err.contains("output `adir` of task `t` is a directory"),
        "{err}"
    );
    assert!(err.contains("Orchfile.toml:3:12]"), "{err}");
    // The same in master_plan.md.
    let p = Project::empty();
    p.write(
        ".orchestrator/master_plan.md",
        "# Master Plan\n\n## Task Status\n\n\
         | Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | t | T | Agent-01 | 🟡 | P2 | None | - | - | 0 |\n\n\
         ## Task Details\n\n### t: T\n\n- **Agent**: Agent-01 (shell)\n- **Outputs**: `adir/`\n- **Run**: `true`\n",
    );
    let run = p.orch(&["build"]);
    let err = run.stderr();
    assert_eq!(run.code(), 2, "{err}");
    assert!(
        err.contains("output `adir/` of task `t` is a directory"),
        "{err}"
    );
    // Did-you-mean for a placeholder in another case or naming a dep another way.
    for (written, meant) in [
        ("{{ INPUTS }}", "{{ inputs }}"),
        ("{{ deps.a }}", "{{ deps.a.result }}"),
        ("{{ a.result }}", "{{ deps.a.result }}"),
        ("{{ deps.a.output }}", "{{ deps.a.result }}"),
        ("{{ result }}", "{{ deps.a.result }}"),
    ] {
        let p = Project::new(&orchfile(&format!(
            "[tasks.a]\nrun = \"true\"\n[tasks.b]\nprompt = \"Use {written}.\"\ndeps = [\"a\"]\n"
        )));
        let err = refused(&p, &["build", "--agent", "sim"]);
        assert!(
            err.contains(&format!("did you mean `{meant}`?")),
            "{written}: {err}"
        );
    }
    // A literal in the merge prompt is written as the literal.
    let p = Project::new(
        "[tasks.t]\nrun = \"echo x\"\n[aggregate]\nstrategy = \"agent\"\nagent = \"sim\"\n\
         prompt = \"Keep {{ '{{' }} as is.\"\n",
    );
    p.orch(&["build"]).success();
    let merge = p.read(".orchestrator/agent_tasks/aggregate.md");
    assert!(merge.contains("Keep {{ as is."), "{merge}");
}
