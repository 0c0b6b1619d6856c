//! Shell completion of task ids and agent names, in real shells: the script
//! `orch completions SHELL` prints, loaded into bash, fish and zsh, asked what follows
//! `orch build ` and the like, answers from the plan of the directory the shell is in (or
//! the one `-C`/`-f` name on the line). bash and fish are asked through their own
//! completion entry points; zsh, whose completion runs only in an interactive line editor,
//! in a real terminal (tmux), with a TAB.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::shells::{tool, Tmux};
use common::{orch_bin, Project};

const PLAN: &str = r#"
[agents.writer]
preset = "sim"

[tasks.alpha]
title = "The first"
run = "true"

[tasks.beta]
title = "The second"
run = "true"
deps = ["alpha"]

[tasks.bench-1]
run = "true"
"#;

const OTHER_PLAN: &str = r#"
[tasks.elsewhere]
run = "true"
"#;

/// A project with [`PLAN`], another plan in `sub/`, and a third at `alt.toml`.
fn project() -> Project {
    let p = Project::new(PLAN);
    p.write("sub/Orchfile.toml", OTHER_PLAN);
    p.write("alt.toml", "[tasks.from-alt]\nrun = \"true\"\n");
    p
}

fn script(p: &Project, shell: &str) -> String {
    p.orch(&["completions", shell]).ok().stdout()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn run_shell(mut cmd: Command, dir: &Path) -> String {
    let out = cmd
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the shell failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // A TAB that prints onto the command line being edited would garble it.
    assert!(
        out.stderr.is_empty(),
        "the completion printed on stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bash's completion function offers for `line` (its last word is the one completed;
/// a line ending in a space completes an empty word), as bash itself calls it at a TAB,
/// without the flags clap offers beside the values of an empty word.
fn bash_complete(p: &Project, line: &str) -> Vec<String> {
    all_bash_complete(p, line)
        .into_iter()
        .filter(|w| !w.starts_with('-') || !line.ends_with(' '))
        .collect()
}

/// Everything [`bash_complete`] is offered.
fn all_bash_complete(p: &Project, line: &str) -> Vec<String> {
    p.write("completion.bash", &script(p, "bash"));
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if line.ends_with(' ') {
        words.push("");
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let program = format!(
        "source ./completion.bash\n\
         COMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT={point}\n\
         COMP_TYPE=9\n\
         _clap_complete_orch orch '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = quoted.join(" "),
        point = line.len(),
        cur = words[cword],
        prev = words[cword - 1],
    );
    let mut cmd = Command::new(tool("bash"));
    cmd.args(["--norc", "--noprofile", "-c", &program]);
    let out = run_shell(cmd, p.dir.path());
    sorted(
        out.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

#[test]
fn bash_completes_the_task_ids_of_the_plan_here() {
    let p = project();
    assert_eq!(
        bash_complete(&p, "orch build "),
        ["alpha", "bench-1", "beta"]
    );
    assert_eq!(bash_complete(&p, "orch build be"), ["bench-1", "beta"]);
    assert_eq!(
        bash_complete(&p, "orch build alpha b"),
        ["bench-1", "beta"],
        "a second target too"
    );
    for cmd in ["watch", "explain", "graph"] {
        assert_eq!(
            bash_complete(&p, &format!("orch {cmd} al")),
            ["alpha"],
            "orch {cmd}"
        );
    }
    assert_eq!(bash_complete(&p, "orch build --agent w"), ["writer"]);
    // What clap knew before still completes.
    assert_eq!(bash_complete(&p, "orch bu"), ["build"]);
    assert_eq!(bash_complete(&p, "orch build --ke"), ["--keep-going"]);
    // Beside the ids, an empty word is offered the flags, as clap offers them.
    assert!(all_bash_complete(&p, "orch build ").contains(&"--jobs".to_string()));
}

#[test]
fn bash_completes_from_the_plan_that_dash_c_and_dash_f_name() {
    let p = project();
    assert_eq!(bash_complete(&p, "orch -C sub build "), ["elsewhere"]);
    assert_eq!(
        bash_complete(&p, "orch --directory=sub explain "),
        ["elsewhere"]
    );
    assert_eq!(bash_complete(&p, "orch -f alt.toml build "), ["from-alt"]);
    assert_eq!(bash_complete(&p, "orch build -f alt.toml f"), ["from-alt"]);
    // Upward, as orch finds its plan.
    let deep = project();
    deep.write("src/deeper/x.txt", "");
    let mut cmd = Command::new(tool("bash"));
    deep.write("completion.bash", &script(&deep, "bash"));
    cmd.args([
        "--norc",
        "--noprofile",
        "-c",
        "source ../../completion.bash; COMP_WORDS=(orch build ''); COMP_CWORD=2; \
         COMP_TYPE=9; _clap_complete_orch orch '' build; printf '%s\\n' \"${COMPREPLY[@]}\"",
    ]);
    let out = run_shell(cmd, &deep.path("src/deeper"));
    assert_eq!(
        sorted(
            out.split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .map(String::from)
                .collect()
        ),
        ["alpha", "bench-1", "beta"]
    );
}

#[test]
fn no_plan_or_a_broken_one_completes_nothing_and_says_nothing() {
    let p = Project::empty();
    assert!(bash_complete(&p, "orch build ").is_empty());
    p.write("Orchfile.toml", "[tasks.a]\nrun = \n");
    assert!(bash_complete(&p, "orch build ").is_empty());
}

#[test]
fn fish_completes_task_ids_with_their_titles() {
    let p = project();
    p.write("completion.fish", &script(&p, "fish"));
    let mut cmd = Command::new(tool("fish"));
    cmd.args([
        "--no-config",
        "-c",
        "source ./completion.fish; complete --do-complete 'orch build '; \
         echo ---; complete --do-complete 'orch -C sub explain e'",
    ]);
    let out = run_shell(cmd, p.dir.path());
    let (here, sub) = out.split_once("---\n").expect("both answers");
    let values = here.lines().filter(|l| !l.starts_with('-'));
    assert_eq!(
        sorted(values.map(String::from).collect()),
        ["alpha\tThe first", "bench-1", "beta\tThe second"],
        "{out}"
    );
    assert_eq!(sub.trim(), "elsewhere");
}

#[test]
fn zsh_lists_the_task_ids_at_a_tab() {
    let p = project();
    p.write("completion.zsh", &script(&p, "zsh"));
    let bin_dir = Path::new(orch_bin()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let term = Tmux::start_shell(
        p.dir.path(),
        &format!("{} -f", tool("zsh").display()),
        &[("PATH", &path), ("PS1", "zsh> "), ("TERM", "screen")],
    );
    term.line("autoload -Uz compinit && compinit -u && source ./completion.zsh && echo ready");
    term.wait_for_text("ready", Duration::from_secs(10));
    term.keys(&["-l", "orch build "]);
    term.keys(&["Tab"]);
    term.wait_for_text("bench-1", Duration::from_secs(10));
    let screen = term.screen();
    for (id, title) in [("alpha", "The first"), ("beta", "The second")] {
        assert!(screen.contains(id), "{id} offered:\n{screen}");
        assert!(screen.contains(title), "{id}'s title shown:\n{screen}");
    }
    // One candidate left: TAB writes it into the line.
    term.keys(&["C-u"]);
    term.keys(&["-l", "orch explain al"]);
    term.keys(&["Tab"]);
    term.wait_for_text("orch explain alpha", Duration::from_secs(10));
}

#[test]
fn a_fanout_completes_its_name_and_its_instances() {
    let p = Project::new(
        r#"
[tasks.review]
foreach = "src/*.ts"
run = "true"
inputs = ["{{ item }}"]

[tasks.plan]
run = "echo '[]'"

[tasks.part]
foreach_from = "plan"
run = "true"
"#,
    );
    p.write("src/a.ts", "");
    p.write("src/b.ts", "");
    assert_eq!(
        bash_complete(&p, "orch build re"),
        ["review", "review[src/a.ts]", "review[src/b.ts]"]
    );
    // A dynamic fan-out whose source has not answered has no instances, only its name.
    assert_eq!(bash_complete(&p, "orch build pa"), ["part"]);
    p.write("completion.fish", &script(&p, "fish"));
    let mut cmd = Command::new(tool("fish"));
    cmd.args([
        "--no-config",
        "-c",
        "source ./completion.fish; complete --do-complete 'orch build r'",
    ]);
    let out = run_shell(cmd, p.dir.path());
    assert!(
        out.lines().any(|l| l == "review\tfan-out: 2 instances"),
        "{out}"
    );
}
