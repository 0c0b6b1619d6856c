//! Crash and interrupt reliability of `orch build`, with the real binary: SIGKILL at
//! pseudo-random points of a 200-task run (then resume), and SIGINT/SIGTERM with tasks that
//! leave grandchildren behind. Assertions are on state and on the process table, never on
//! speed; every wait is bounded.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A layered DAG of `tasks` shell tasks, each with two deps in the layer before. Each task
/// records its shell's pid (its process group) in pids.log, appends its id to ran.log, sleeps
/// `sleep`, and writes its output. Every task reads seed.txt, so editing it makes all stale.
/// With `hold`, t000 has no dependents and, while a file `hold` exists, waits on a child
/// `sleep 30` before doing anything: a long task that only the crash guard can stop.
fn dag_orchfile(tasks: usize, layers: usize, jobs: usize, sleep: &str, hold: bool) -> String {
    let per_layer = tasks / layers;
    let mut rng = 0x5eed_u64;
    // Without the output cache: these tests count runs, and a task killed between its run
    // and its journal entry would be restored from the cache instead of run again.
    let mut s = format!("[settings]\njobs = {jobs}\nkill_grace = \"300ms\"\ncache = false\n");
    for i in 0..tasks {
        let layer = i / per_layer;
        let mut deps = BTreeSet::new();
        if layer > 0 {
            let skip = usize::from(hold && layer == 1);
            for _ in 0..2 {
                let k = skip + next(&mut rng) as usize % (per_layer - skip);
                deps.insert((layer - 1) * per_layer + k);
            }
        }
        let deps: Vec<String> = deps.iter().map(|d| format!("\"t{d:03}\"")).collect();
        let wait = if hold && i == 0 {
            "if [ -e hold ]; then sleep 30 & wait; fi; "
        } else {
            ""
        };
        s.push_str(&format!(
            "[tasks.t{i:03}]\nrun = \"echo $$ >> pids.log; {wait}echo t{i:03} >> ran.log; sleep {sleep}; cat seed.txt > out/t{i:03}.txt\"\ninputs = [\"seed.txt\"]\noutputs = [\"out/t{i:03}.txt\"]\ndeps = [{}]\n",
            deps.join(", ")
        ));
    }
    s
}

/// splitmix64: deterministic pseudo-random numbers from a seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:03}")).collect()
}

/// What orch has recorded after a crash: the task ids in state.bin's records, and the
/// successes in journal.jsonl (replayed in order, a torn last line ignored, as orch does).
fn recorded(p: &Project) -> (HashSet<String>, HashSet<String>) {
    let mut snapshot: HashSet<String> = p.snapshot_records().into_iter().collect();
    let mut journal = HashSet::new();
    let text = std::fs::read_to_string(p.path(".orchestrator/journal.jsonl")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            assert_eq!(
                n + 1,
                lines.len(),
                "only the last journal line may be torn: {line}"
            );
            continue;
        };
        let task = e["task"].as_str().map(String::from);
        match (e["event"].as_str(), task) {
            // A cleanly closed run's journal is part of the persisted state, like the
            // snapshot; only what follows the last close is this (killed) run's.
            (Some("closed"), _) => {
                snapshot.extend(journal.drain());
            }
            (Some("succeeded"), Some(t)) => {
                journal.insert(t);
            }
            (Some("invalidated"), Some(t)) => {
                journal.remove(&t);
                snapshot.remove(&t);
            }
            _ => {}
        }
    }
    (snapshot, journal)
}

/// Clock ticks since boot, the unit of a process's start time in /proc/PID/stat.
fn uptime_ticks() -> u64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (secs * hz) as u64 + 1
}

/// Live (non-zombie) processes whose process group is one of `groups` and that started no
/// later than `before` (ticks since boot): a later one would be a reused pid.
fn survivors(groups: &HashSet<i32>, before: u64) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let close = stat.rfind(')').unwrap();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // state(0) ppid(1) pgrp(2) ... starttime(19)
        let (state, pgrp, start) = (
            f[0],
            f[2].parse::<i32>().unwrap(),
            f[19].parse::<u64>().unwrap(),
        );
        if state != "Z" && groups.contains(&pgrp) && start <= before {
            out.push(format!("pid {pid} pgrp {pgrp}: {}", &stat[..close + 1]));
        }
    }
    out
}

/// The crash guard (`orch __guard`) of a run in `dir`, if it is still around.
fn guards_in(dir: &std::path::Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_guard = cmd.split(|&b| b == 0).any(|a| a == b"__guard");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        if is_guard && cwd.as_deref() == Some(dir) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn pids(p: &Project) -> HashSet<i32> {
    p.lines("pids.log")
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// After orch died: bounded wait until nothing of its run is left, the guard included.
#[track_caller]
fn assert_nothing_survives(p: &Project, killed_at: u64) {
    let groups = pids(p);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let left = survivors(&groups, killed_at);
        let guards = guards_in(&p.dir.path().canonicalize().unwrap());
        if left.is_empty() && guards.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "processes of the killed run survive: {left:?}, guards {guards:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_build(p: &Project) -> Child {
    p.command(&["build", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts a build and SIGKILLs orch after `delay`. Returns the ticks at the kill.
fn build_and_kill(p: &Project, delay: Duration) -> u64 {
    let mut child = spawn_build(p);
    std::thread::sleep(delay);
    let at = uptime_ticks();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    at
}

/// ran.log of the run that just ended, moved aside for the next one.
fn take_ran(p: &Project) -> Vec<String> {
    let ran = p.lines("ran.log");
    p.clear("ran.log");
    ran
}

/// The end state of a finished plan: every output, every record, one ✅/⏭️ row per task.
#[track_caller]
fn assert_plan_complete(p: &Project, n: usize) {
    for id in ids(n) {
        assert_eq!(p.read(&format!("out/{id}.txt")), p.read("seed.txt"), "{id}");
    }
    let (snapshot, journal) = recorded(p);
    assert!(journal.is_empty(), "a finished run closes its journal");
    assert_eq!(snapshot.len(), n, "every task recorded");
    let text = std::fs::read_to_string(p.path(".orchestrator/journal.jsonl")).unwrap_or_default();
    assert!(
        text.is_empty() || text.trim_end().ends_with(r#"{"event":"closed"}"#),
        "a finished run compacts or closes the journal"
    );
    let plan = p.read(".orchestrator/master_plan.md");
    assert!(
        plan.contains(
            "| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |"
        ),
        "{plan}"
    );
    for id in ids(n) {
        let rows: Vec<&str> = plan
            .lines()
            .filter(|l| l.starts_with(&format!("| {id} |")))
            .collect();
        assert_eq!(rows.len(), 1, "one row for {id}");
        assert!(
            rows[0].contains("| ✅ |") || rows[0].contains("| ⏭️ |"),
            "{}",
            rows[0]
        );
    }
}

/// Kills orch at several pseudo-random points of one plan (all of whose tasks are stale),
/// resumes after each kill, and checks that no task recorded as done ever runs again and
/// that nothing outlives orch. Returns how many tasks were recorded before the last resume.
fn kill_and_resume(p: &Project, n: usize, rng: &mut u64, kills: usize) -> usize {
    // Successes journaled by the killed runs: these, and only these, must not run again.
    let mut done: HashSet<String> = HashSet::new();
    for kill in 0..kills {
        p.write("hold", "");
        // Now and then a resume is killed at once, before it has replayed the journal.
        let delay = if kill > 0 && next(rng) % 2 == 0 {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(50 + next(rng) % 650)
        };
        let killed_at = build_and_kill(p, delay);
        assert_nothing_survives(p, killed_at);
        let ran = take_ran(p);
        let again: Vec<&String> = ran.iter().filter(|t| done.contains(*t)).collect();
        assert!(
            again.is_empty(),
            "killed after {delay:?}: tasks recorded as done ran again: {again:?}"
        );
        let (snapshot, journal) = recorded(p);
        let lost: Vec<&String> = done
            .iter()
            .filter(|t| !snapshot.contains(*t) && !journal.contains(*t))
            .collect();
        assert!(lost.is_empty(), "recorded successes lost: {lost:?}");
        // What an earlier killed run journaled stays in the journal until this run has
        // replayed it and compacted (the first thing a resume does, but a kill can come
        // sooner, as under load it did): only what is new is this run's.
        for t in journal.iter().filter(|t| !done.contains(*t)) {
            assert!(ran.contains(t), "{t} journaled without running in this run");
            assert!(
                p.exists(&format!("out/{t}.txt")),
                "{t} recorded without its output"
            );
        }
        done.extend(journal);
    }
    p.clear("hold");
    let resumed = p.orch(&["build"]);
    resumed.success();
    let ran = take_ran(p);
    let again: Vec<&String> = ran.iter().filter(|t| done.contains(*t)).collect();
    assert!(
        again.is_empty(),
        "the resumed run re-ran recorded tasks: {again:?}"
    );
    let mut seen = HashMap::new();
    for t in &ran {
        *seen.entry(t).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "a task ran twice in one run"
    );
    let everything: HashSet<&String> = ran.iter().chain(done.iter()).collect();
    assert_eq!(everything.len(), n, "each stale task ran to success once");
    assert_plan_complete(p, n);
    done.len()
}

#[test]
fn sigkill_at_random_points_then_resume_finishes_without_rerunning_done_work() {
    const N: usize = 200;
    let mut rng = 0xC0FFEE_u64;
    let orchfile = dag_orchfile(N, 10, 4, "0.01", true);
    let mut progress = Vec::new();
    for _rep in 0..3 {
        let p = Project::new(&orchfile);
        p.write("seed.txt", "v1\n");
        std::fs::create_dir_all(p.path("out")).unwrap();
        // Two kills in a row (the second one during the resume), then a run to the end.
        progress.push(kill_and_resume(&p, N, &mut rng, 2));
    }
    eprintln!("tasks recorded before each final resume: {progress:?}");
    // The delays must have hit mid-run at least once, or the test proved nothing.
    assert!(
        progress.iter().any(|&done| done > 0 && done < N),
        "no kill landed mid-run: {progress:?}"
    );
}

#[test]
fn sigkill_during_a_rebuild_after_an_edit_keeps_the_new_successes() {
    // A finished build leaves ✅ rows and "completed" statuses behind. A rebuild after an
    // edit is killed; master_plan.md, rewritten only now and then, may still show 🟡 for
    // tasks the killed run finished. Those must not be taken for a person's reset (which
    // forces a re-run): the resume keeps every success the killed run recorded.
    const N: usize = 40;
    let mut rng = 0xBADC0DE_u64;
    let p = Project::new(&dag_orchfile(N, 1, 2, "0.05", false));
    p.write("seed.txt", "v1\n");
    std::fs::create_dir_all(p.path("out")).unwrap();
    p.orch(&["build"]).success();
    take_ran(&p);
    for round in 0..3 {
        p.write("seed.txt", &format!("v{}\n", round + 2));
        kill_and_resume(&p, N, &mut rng, 1);
    }
}

/// A task whose shell records its pid, starts grandchildren (one double-forked, so it is
/// re-parented away from the task), ignores SIGTERM if asked, and waits.
fn long_task(id: &str, ignore_term: bool) -> String {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    format!(
        "[tasks.{id}]\nrun = \"{trap}echo $$ >> pids.log; sleep 60 & (sleep 60 &) ; sh -c 'sleep 60' & echo {id} >> started.log; wait\"\n"
    )
}

fn interrupt_project() -> Project {
    let mut s = String::from("[settings]\njobs = 4\nkill_grace = \"300ms\"\n");
    s.push_str(&long_task("a", false));
    s.push_str(&long_task("b", false));
    s.push_str(&long_task("stubborn", true));
    s.push_str("[tasks.later]\nrun = \"echo later >> ran.log\"\ndeps = [\"a\"]\n");
    Project::new(&s)
}

#[test]
fn sigint_and_sigterm_stop_every_process_of_the_run_and_exit_130() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let p = interrupt_project();
        let mut child = p.command(&["build"]).spawn().unwrap();
        wait_for("all three tasks to start", Duration::from_secs(20), || {
            p.lines("started.log").len() == 3
        });
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "signal {sig}");
        let groups = pids(&p);
        assert_eq!(groups.len(), 3);
        // orch waited for its tasks, so nothing may be left now; allow a moment for the
        // kernel to finish reaping re-parented grandchildren.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let left = survivors(&groups, u64::MAX);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < end, "signal {sig}: survivors {left:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(guards_in(&p.dir.path().canonicalize().unwrap()).is_empty());
        assert!(!p.exists("ran.log"), "nothing new starts after the signal");
        let plan = p.read(".orchestrator/master_plan.md");
        assert!(plan.contains("Build Interrupted"), "{plan}");
        assert!(p.recorded_successes().is_empty());
    }
}

#[test]
fn a_second_sigint_exits_at_once_and_the_guard_still_cleans_up() {
    // With a 2s grace, the first SIGINT leaves `stubborn` (which ignores SIGTERM) running
    // until its SIGKILL; the second SIGINT ends orch before that, and the crash guard, which
    // outlives orch, must stop what is left.
    let p = interrupt_project();
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml")
            .replace("kill_grace = \"300ms\"", "kill_grace = \"2s\""),
    );
    let mut child = p.command(&["build"]).spawn().unwrap();
    wait_for("all three tasks to start", Duration::from_secs(20), || {
        p.lines("started.log").len() == 3
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let groups = pids(&p);
    assert_eq!(groups.len(), 3);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let left = survivors(&groups, u64::MAX);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "survivors after a double SIGINT: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_guard_stops_children_it_was_not_yet_told_about() {
    // orch lists each process group with the guard just after starting it; killed in
    // between, it would leave that group unlisted. The guard also finds children by the
    // ORCH_RUN_ID in their environment.
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let sleeper = |run_id: &str| {
        Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .env("ORCH_RUN_ID", run_id)
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut ours = sleeper("test-run-1");
    let mut other = sleeper("test-run-2");
    let mut guard = Command::new(orch_bin())
        .args(["__guard", "200", "test-run-1"])
        .stdin(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(guard.stdin.take()); // orch "dies": EOF without a goodbye
    guard.wait().unwrap();
    wait_for(
        "the unlisted child of this run to be stopped",
        Duration::from_secs(10),
        || ours.try_wait().unwrap().is_some(),
    );
    assert!(
        alive(other.id() as i32),
        "another run's child is left alone"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn groups_left_when_orch_and_its_guard_both_die_are_stopped_by_the_next_build() {
    // `pkill -9 orch` takes the guard too. Then only the journal knows the task's process
    // group, and the next build must stop it before running anything.
    let p = Project::new(
        "[tasks.hold]\nrun = \"if [ -f second ]; then echo done >> ran.log; else echo $$ >> pids.log; sleep 60 & wait; fi\"\n",
    );
    let mut orch = spawn_build(&p);
    wait_for("the task to start", Duration::from_secs(10), || {
        !pids(&p).is_empty()
            && std::fs::read_to_string(p.path(".orchestrator/journal.jsonl"))
                .is_ok_and(|j| j.contains("\"spawned\""))
    });
    let dir = p.dir.path().canonicalize().unwrap();
    let guards = guards_in(&dir);
    assert_eq!(guards.len(), 1, "one guard per build");
    // SAFETY: signalling our own child and the guard it started. The guard is stopped
    // first: woken by orch's death before its own SIGKILL, it would stop the task itself.
    unsafe {
        libc::kill(guards[0], libc::SIGSTOP);
        libc::kill(orch.id() as i32, libc::SIGKILL);
        libc::kill(guards[0], libc::SIGKILL);
    }
    orch.wait().unwrap();
    let killed_at = uptime_ticks();
    let groups = pids(&p);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !survivors(&groups, killed_at).is_empty(),
        "with orch and its guard gone, the task is still running"
    );
    p.write("second", "");
    let run = p.orch(&["build"]);
    run.success();
    assert!(
        run.stderr().contains("left running by an interrupted run"),
        "{}",
        run.stderr()
    );
    assert_eq!(p.lines("ran.log"), ["done"]);
    assert_nothing_survives(&p, killed_at);
}

#[test]
fn the_guard_stops_the_groups_listed_with_it_and_only_those() {
    // Processes without ORCH_RUN_ID: only the guard's register can name them.
    use orchfile::executor::guard::Guard;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let sleeper = || {
        Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .env_remove("ORCH_RUN_ID")
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut listed, mut released, mut unlisted) = (sleeper(), sleeper(), sleeper());
    let guard = Guard::new(orch_bin().into(), Duration::from_millis(200));
    guard.watch(listed.id() as i32);
    guard.watch(released.id() as i32);
    guard.release(released.id() as i32);
    drop(guard); // orch "dies": the guard's stdin closes without a goodbye
    wait_for(
        "the listed group to be stopped",
        Duration::from_secs(10),
        || listed.try_wait().unwrap().is_some(),
    );
    std::thread::sleep(Duration::from_millis(400));
    for (what, child) in [("released", &mut released), ("unlisted", &mut unlisted)] {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the {what} group was stopped"
        );
        // SAFETY: signalling the group of our own child.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        child.wait().unwrap();
    }
}
