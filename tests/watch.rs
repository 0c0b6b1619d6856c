//! `orch watch` end to end: the real binary on a temp project, files edited under it, and
//! assertions on which tasks ran (each task appends its id to `ran.log`). Every wait is
//! bounded and polls for a marker; nothing asserts on speed.

mod common;

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use common::{alive, Project};

/// Generous: a loaded CI machine may be slow, and a passing run never waits this long.
const DEADLINE: Duration = Duration::from_secs(20);

/// Printed after every finished cycle.
const IDLE: &str = "for changes (Ctrl-C to stop)";

const TWO_TASKS: &str = r#"
[settings]
jobs = 2
[tasks.a]
run = "echo a >> ran.log; cat in_a.txt > out_a.txt"
inputs = ["in_a.txt"]
outputs = ["out_a.txt"]
[tasks.b]
run = "echo b >> ran.log; cat out_a.txt in_b.txt > out_b.txt"
inputs = ["in_b.txt"]
outputs = ["out_b.txt"]
deps = ["a"]
"#;

struct Watch {
    project: Project,
    /// Outside the project, so the watch's own output is never a change.
    logs: tempfile::TempDir,
    child: Child,
}

impl Watch {
    /// Writes `files` (the Orchfile among them) and starts `orch watch ARGS` in the project.
    fn start(files: &[(&str, &str)], args: &[&str]) -> Watch {
        let project = Project::empty();
        for (rel, text) in files {
            project.write(rel, text);
        }
        let logs = tempfile::tempdir().unwrap();
        let mut cmd = project.command(&["watch", "--no-clear"]);
        if !args.contains(&"--debounce") {
            cmd.args(["--debounce", "100ms"]);
        }
        let child = cmd
            .args(args)
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Watch {
            project,
            logs,
            child,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.project.path(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        self.project.write(rel, text);
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    fn lines(&self, rel: &str) -> Vec<String> {
        self.project.lines(rel)
    }

    fn ran(&self) -> Vec<String> {
        self.lines("ran.log")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    fn count(&self, marker: &str) -> usize {
        self.stderr().matches(marker).count()
    }

    /// Polls `cond` until it holds; fails with the watch's output after [`DEADLINE`].
    fn wait_for(&mut self, what: &str, cond: impl Fn(&Watch) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "orch watch exited ({status}) while waiting for {what}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting for {what}\nran.log: {:?}\n--- stderr ---\n{}",
                    self.ran(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` cycles have finished and the watch is idle again.
    fn wait_cycles(&mut self, n: usize) {
        self.wait_for(&format!("{n} finished cycle(s)"), |w| w.count(IDLE) >= n);
    }

    fn wait_ran(&mut self, expected: &[&str]) {
        self.wait_for(&format!("ran.log = {expected:?}"), |w| w.ran() == expected);
    }

    /// Sends SIGINT and waits (bounded) for the watch to exit.
    fn interrupt(&mut self) -> ExitStatus {
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "orch watch did not stop after SIGINT\n--- stderr ---\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A failed test must not leave a watch running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pids(w: &Watch, rel: &str) -> Vec<i32> {
    w.lines(rel)
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn two_tasks() -> Watch {
    Watch::start(
        &[
            ("Orchfile.toml", TWO_TASKS),
            ("in_a.txt", "a1\n"),
            ("in_b.txt", "b1\n"),
        ],
        &[],
    )
}

#[test]
fn builds_then_reruns_only_the_changed_task_and_its_dependents() {
    let mut w = two_tasks();
    w.wait_cycles(1);
    assert_eq!(w.ran(), ["a", "b"], "the first cycle builds everything");

    w.write("in_b.txt", "b2\n");
    w.wait_cycles(2);
    assert_eq!(w.ran(), ["a", "b", "b"], "only b depends on in_b.txt");
    assert!(w.stderr().contains("cycle 2: in_b.txt changed → b"));

    w.write("in_a.txt", "a2\n");
    w.wait_cycles(3);
    assert_eq!(
        w.ran(),
        ["a", "b", "b", "a", "b"],
        "a, then its dependent b"
    );
    assert_eq!(w.read("out_b.txt"), "a2\nb2\n");

    let status = w.interrupt();
    assert_eq!(status.code(), Some(130), "{}", w.stderr());
}

#[test]
fn a_burst_of_edits_makes_one_cycle() {
    // A wider window than the other tests: the burst must not straddle it on a slow machine.
    let mut w = Watch::start(
        &[
            ("Orchfile.toml", TWO_TASKS),
            ("in_a.txt", "a1\n"),
            ("in_b.txt", "b1\n"),
        ],
        &["--debounce", "400ms"],
    );
    w.wait_cycles(1);
    for i in 2..=6 {
        w.write("in_a.txt", &format!("a{i}\n"));
    }
    w.wait_cycles(2);
    assert_eq!(w.ran(), ["a", "b", "a", "b"]);
    assert_eq!(w.read("out_a.txt"), "a6\n", "the cycle saw the last edit");
    // Events arrive in order: once a later edit has been handled, nothing of the burst is
    // left to start another cycle.
    w.write("in_b.txt", "b2\n");
    w.wait_cycles(3);
    assert_eq!(w.ran(), ["a", "b", "a", "b", "b"]);
    assert!(w.stderr().contains("cycle 3: in_b.txt changed"));
    assert!(!w.stderr().contains("cycle 4"), "{}", w.stderr());
    assert_eq!(w.interrupt().code(), Some(130));
}

#[test]
fn restoring_old_content_runs_nothing() {
    let mut w = two_tasks();
    w.wait_cycles(1);
    let up_to_date = "every task is up to date";

    // Same bytes, new mtime.
    w.write("in_a.txt", "a1\n");
    w.wait_for("the no-op notice", |w| w.count(up_to_date) >= 1);
    // Changed and changed back within one burst.
    w.write("in_b.txt", "something else\n");
    w.write("in_b.txt", "b1\n");
    w.wait_for("the second no-op notice", |w| w.count(up_to_date) >= 2);

    assert_eq!(w.ran(), ["a", "b"]);
    assert!(!w.stderr().contains("cycle 2"), "{}", w.stderr());
    assert_eq!(w.interrupt().code(), Some(130));
}

#[test]
fn ignores_outputs_state_dir_gitignored_and_unrelated_files() {
    let orchfile = r#"
[tasks.gen]
run = "echo gen >> ran.log; cat data/*.txt > data/summary.txt; echo scratch > data/scratch.txt"
inputs = ["data/*.txt"]
outputs = ["data/summary.txt"]
"#;
    let mut w = Watch::start(
        &[
            ("Orchfile.toml", orchfile),
            (".gitignore", "data/scratch.txt\n*.tmp\n"),
            ("data/one.txt", "1\n"),
        ],
        &[],
    );
    w.wait_cycles(1);
    assert_eq!(w.ran(), ["gen"]);
    // The task wrote its output and a .gitignore'd file into the watched directory, and the
    // build wrote its state: none of it started a cycle. Neither do these:
    w.write("data/scratch.txt", "edited\n");
    w.write("data/editor.tmp", "swap\n");
    w.write("notes.md", "unrelated\n");
    w.write(".orchestrator/extra", "x\n");
    // A real change, handled after the ones above: the cycle names only it.
    w.write("data/two.txt", "2\n");
    w.wait_cycles(2);
    assert_eq!(w.ran(), ["gen", "gen"]);
    assert!(
        w.stderr().contains("cycle 2: data/two.txt changed → gen"),
        "{}",
        w.stderr()
    );
    assert!(!w.stderr().contains("cycle 3"), "{}", w.stderr());
    assert_eq!(w.interrupt().code(), Some(130));
}

#[test]
fn a_broken_orchfile_is_reported_and_the_watch_goes_on() {
    let mut w = two_tasks();
    w.wait_cycles(1);

    w.write("Orchfile.toml", "[tasks.a\nrun = ");
    w.wait_for("the diagnostic", |w| {
        w.stderr()
            .contains("has errors; still watching with the last good plan")
    });
    assert!(w.stderr().contains("invalid Orchfile"), "{}", w.stderr());

    // Still watching, with the last good plan.
    w.write("in_b.txt", "b2\n");
    w.wait_cycles(2);
    assert_eq!(w.ran(), ["a", "b", "b"]);

    // Fixed, with a new task: reloaded and built.
    let fixed =
        format!("{TWO_TASKS}\n[tasks.c]\nrun = \"echo c >> ran.log\"\ninputs = [\"in_b.txt\"]\n");
    w.write("Orchfile.toml", &fixed);
    w.wait_cycles(3);
    assert_eq!(w.ran(), ["a", "b", "b", "c"]);
    assert!(w.stderr().contains("cycle 3: Orchfile.toml changed → c"));
    assert_eq!(w.interrupt().code(), Some(130));
}

#[test]
fn a_change_during_a_task_lets_it_finish_then_runs_again() {
    // The task holds until the test creates `go` (not an input).
    let orchfile = r#"
[tasks.a]
run = "echo a >> ran.log; while [ ! -f go ]; do sleep 0.02; done; cat in_a.txt > out_a.txt; echo a-done >> ran.log"
inputs = ["in_a.txt"]
outputs = ["out_a.txt"]
"#;
    let mut w = Watch::start(&[("Orchfile.toml", orchfile), ("in_a.txt", "1\n")], &[]);
    w.wait_ran(&["a"]);
    w.write("in_a.txt", "2\n");
    w.wait_for("the change to be queued", |w| {
        w.stderr().contains("in_a.txt changed during the cycle")
    });
    w.write("go", "");
    w.wait_cycles(2);
    assert_eq!(
        w.ran(),
        ["a", "a-done", "a", "a-done"],
        "finished, then ran again"
    );
    assert_eq!(w.read("out_a.txt"), "2\n");
    assert_eq!(w.interrupt().code(), Some(130));
}

/// A task that records its shell's pid and a background child's pid, then waits forever.
const LONG_TASK: &str = r#"
[tasks.long]
run = "echo long >> ran.log; sleep 300 & echo $! >> child.pids; echo $$ >> shell.pids; wait"
inputs = ["in.txt"]
"#;

#[test]
fn restart_mode_stops_the_whole_process_group_before_running_again() {
    let mut w = Watch::start(
        &[("Orchfile.toml", LONG_TASK), ("in.txt", "1\n")],
        &["--on-change", "restart"],
    );
    w.wait_for("the task to start", |w| w.lines("shell.pids").len() == 1);
    let (shell1, child1) = (pids(&w, "shell.pids")[0], pids(&w, "child.pids")[0]);
    assert!(alive(shell1) && alive(child1));

    w.write("in.txt", "2\n");
    w.wait_for("the second run", |w| w.lines("shell.pids").len() == 2);
    // The first run's group was stopped and waited for before the second started.
    assert!(!alive(shell1), "first shell still running");
    assert!(!alive(child1), "first run's background child still running");
    assert!(w.stderr().contains("in.txt changed while long ran"));
    assert_eq!(w.ran(), ["long", "long"]);

    let (shell2, child2) = (pids(&w, "shell.pids")[1], pids(&w, "child.pids")[1]);
    assert_eq!(w.interrupt().code(), Some(130), "{}", w.stderr());
    assert!(
        !alive(shell2) && !alive(child2),
        "Ctrl-C left the task running"
    );
}

#[test]
fn ctrl_c_during_a_task_stops_it_and_exits_130() {
    let mut w = Watch::start(&[("Orchfile.toml", LONG_TASK), ("in.txt", "1\n")], &[]);
    // The task writes child.pids, then shell.pids: wait for both.
    w.wait_for("the task to start", |w| {
        w.lines("child.pids").len() == 1 && w.lines("shell.pids").len() == 1
    });
    let (shell, child) = (pids(&w, "shell.pids")[0], pids(&w, "child.pids")[0]);
    assert_eq!(w.interrupt().code(), Some(130), "{}", w.stderr());
    assert!(!alive(shell), "the task's shell outlived the watch");
    assert!(
        !alive(child),
        "the task's background child outlived the watch"
    );
}

#[test]
fn a_broken_orchfile_at_start_is_watched_until_fixed() {
    let mut w = Watch::start(&[("Orchfile.toml", "[tasks.a\n"), ("in_a.txt", "1\n")], &[]);
    w.wait_for("the diagnostic", |w| {
        w.stderr().contains("invalid Orchfile")
    });
    w.write("Orchfile.toml", TWO_TASKS);
    w.write("in_b.txt", "b\n");
    w.wait_cycles(1);
    assert_eq!(w.ran(), ["a", "b"]);
    assert_eq!(w.interrupt().code(), Some(130));
}

#[test]
fn a_task_rewriting_its_own_input_does_not_loop_forever() {
    // Appends to its own input: every run changes what the next one sees.
    let orchfile = r#"
[tasks.grow]
run = "echo grow >> ran.log; echo more >> in.txt"
inputs = ["in.txt"]
"#;
    let mut w = Watch::start(&[("Orchfile.toml", orchfile), ("in.txt", "1\n")], &[]);
    w.wait_for("the loop warning", |w| {
        w.stderr().contains("orch::watch_loop")
    });
    assert_eq!(w.ran().len(), 3, "{}", w.stderr());
    assert!(w
        .stderr()
        .contains("a task seems to rewrite its own inputs"));
    assert_eq!(w.interrupt().code(), Some(130));
    assert_eq!(w.ran().len(), 3);
}

#[test]
fn a_file_added_to_a_fanout_runs_only_its_instance_and_the_reduce() {
    let plan = r#"
[tasks.each]
foreach = "src/*.txt"
run = "echo {{ item.stem }} >> ran.log; cat {{ item }}"
inputs = ["{{ item }}"]
[tasks.all]
deps = ["each"]
run = "echo all >> ran.log"
"#;
    let mut w = Watch::start(
        &[
            ("Orchfile.toml", plan),
            ("src/a.txt", "a\n"),
            ("src/b.txt", "b\n"),
        ],
        &["-j", "1"],
    );
    w.wait_cycles(1);
    assert_eq!(w.ran(), ["a", "b", "all"]);
    w.write("src/c.txt", "c\n");
    w.wait_cycles(2);
    assert_eq!(w.ran(), ["a", "b", "all", "c", "all"], "{}", w.stderr());
    assert!(w.stderr().contains("src/c.txt changed"), "{}", w.stderr());
    std::fs::remove_file(w.path("src/a.txt")).unwrap();
    w.wait_cycles(3);
    assert_eq!(
        w.ran(),
        ["a", "b", "all", "c", "all", "all"],
        "{}",
        w.stderr()
    );
    let status = w.interrupt();
    assert_eq!(status.code(), Some(130), "{}", w.stderr());
}

#[test]
fn a_new_answer_of_a_dynamic_fanout_runs_its_new_instance_in_the_same_cycle() {
    let plan = r#"
[tasks.plan]
run = "echo plan >> ran.log; cat parts.json"
inputs = ["parts.json"]
[tasks.part]
foreach_from = "plan"
run = "echo part-{{ item }} >> ran.log; cat src/{{ item }}.txt"
inputs = ["src/{{ item }}.txt"]
[tasks.all]
deps = ["part"]
run = "echo all >> ran.log"
"#;
    let mut w = Watch::start(
        &[
            ("Orchfile.toml", plan),
            ("parts.json", r#"["a"]"#),
            ("src/a.txt", "a\n"),
            ("src/b.txt", "b\n"),
        ],
        &["-j", "1"],
    );
    w.wait_cycles(1);
    assert_eq!(w.ran(), ["plan", "part-a", "all"], "{}", w.stderr());
    // The answer names one more part: the source, that part only and the reduce run, in
    // one cycle.
    w.write("parts.json", r#"["a", "b"]"#);
    w.wait_cycles(2);
    assert_eq!(
        w.ran(),
        ["plan", "part-a", "all", "plan", "part-b", "all"],
        "{}",
        w.stderr()
    );
    // The new instance's input is watched from then on.
    w.write("src/b.txt", "b2\n");
    w.wait_cycles(3);
    assert_eq!(
        w.ran(),
        ["plan", "part-a", "all", "plan", "part-b", "all", "part-b", "all"],
        "{}",
        w.stderr()
    );
    let status = w.interrupt();
    assert_eq!(status.code(), Some(130), "{}", w.stderr());
}
