//! orch's own signals, with the real binary: Ctrl-Z in a real terminal (tmux) stops every
//! running process group and orch, `fg` continues them and the build finishes; timeouts do
//! not count a stop; each of SIGINT, SIGTERM and SIGHUP reaches the tasks as itself, ends
//! each running task with an `interrupted` event, and is announced at once.

mod common;

use std::time::Duration;

use common::shells::Tmux;
use common::{orch_bin, wait_for, Project};

/// `(state, pgrp, ppid)` of a process from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, i32, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    Some((f[0].chars().next()?, f[2].parse().ok()?, f[1].parse().ok()?))
}

/// Every live process in group `pgid`, with its state.
fn group(pgid: i32) -> Vec<(i32, char)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let (state, pgrp, _) = stat(pid)?;
            (pgrp == pgid && state != 'Z').then_some((pid, state))
        })
        .collect()
}

fn all_in_state(groups: &[i32], stopped: bool) -> bool {
    groups.iter().all(|&g| {
        let members = group(g);
        !members.is_empty() && members.iter().all(|&(_, s)| (s == 'T') == stopped)
    })
}

/// A task that works for about `steps` tenths of a second of its own time (a stopped loop
/// makes no progress, unlike one `sleep`), recording its pid first.
fn stepping_task(id: &str, steps: u32) -> String {
    format!(
        "[tasks.{id}]\nrun = \"echo $$ >> pids.log; i=0; while [ $i -lt {steps} ]; do sleep 0.1; \
         i=$((i+1)); done; echo {id} >> done.log\"\n"
    )
}

fn pids(p: &Project) -> Vec<i32> {
    p.lines("pids.log")
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn ctrl_z_in_a_terminal_stops_every_group_and_fg_resumes_them() {
    let mut orchfile = String::from("[settings]\njobs = 4\n");
    orchfile.push_str(&stepping_task("a", 30));
    orchfile.push_str(&stepping_task("b", 30));
    let p = Project::new(&orchfile);
    let term = Tmux::start(p.dir.path(), &[("NO_COLOR", "1"), ("TERM", "screen")]);
    // orch alone as the job: in a job of several processes (`sh -c 'orch build; ...'`) the
    // shell sees the job stopped as soon as `sh` is, and may print before orch has cleared
    // its bars.
    term.line(&format!("{} build", orch_bin()));
    wait_for("both tasks to start", Duration::from_secs(20), || {
        pids(&p).len() == 2
    });
    let groups = pids(&p);
    term.wait_for_text("Agent-02", Duration::from_secs(10));
    let orch = stat(groups[0]).unwrap().2;
    term.keys(&["C-z"]);
    wait_for("every task group to stop", Duration::from_secs(5), || {
        all_in_state(&groups, true)
    });
    wait_for("orch to stop", Duration::from_secs(5), || {
        stat(orch).is_some_and(|(s, _, _)| s == 'T')
    });
    term.wait_for_text("Stopped", Duration::from_secs(5));
    let screen = term.screen();
    assert!(
        !screen.contains("Agent-0"),
        "the progress bars are cleared before orch stops:\n{screen}"
    );
    // Stopped means stopped: still so a while later, and nothing finished meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        all_in_state(&groups, true),
        "a group ran on while orch was stopped"
    );
    assert!(!p.exists("done.log"));
    term.line("fg");
    wait_for(
        "every task group to run again",
        Duration::from_secs(5),
        || all_in_state(&groups, false),
    );
    term.wait_for_text("done: 2 ran", Duration::from_secs(30));
    // `fg` hands on the job's exit status.
    term.line("echo $? > code.txt");
    wait_for("the exit status", Duration::from_secs(5), || {
        p.exists("code.txt")
    });
    assert_eq!(p.read("code.txt").trim(), "0", "{}", term.screen());
    assert_eq!(p.lines("done.log").len(), 2);
}

#[test]
fn a_stop_does_not_count_against_a_timeout() {
    // `sleep 2` counts wall time, stopped or not: it ends at once when continued after a 3s
    // stop. On the wall clock its 2.5s timeout would pass during the stop; on orch's active
    // clock it does not.
    let p = Project::new(
        "[tasks.t]\nrun = \"echo $$ >> pids.log; sleep 2; echo t >> done.log\"\ntimeout = \"2500ms\"\n",
    );
    let mut cmd = p.command(&["build"]);
    cmd.stderr(std::process::Stdio::piped());
    // orch in a group of its own, whose parent (this test) is in another: a group whose
    // parents are all gone or in it is orphaned, and the kernel ignores a SIGTSTP to it
    // (POSIX), as it would to the tests' own group when whatever started them has exited.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().unwrap();
    wait_for("the task to start", Duration::from_secs(20), || {
        pids(&p).len() == 1
    });
    let groups = pids(&p);
    let orch = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(orch, libc::SIGTSTP) };
    wait_for("the task and orch to stop", Duration::from_secs(5), || {
        all_in_state(&groups, true) && stat(orch).is_some_and(|(s, _, _)| s == 'T')
    });
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(orch, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the task timed out during the stop:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.lines("done.log"), ["t"]);
}

/// A task that logs which signal it got (and exits), behind which `later` waits.
fn trapping_project(grace: &str, ignore: bool) -> Project {
    let action = |sig: &str| {
        if ignore {
            format!("trap 'echo {sig} >> got.log' {sig}; ")
        } else {
            format!("trap 'echo {sig} >> got.log; exit 1' {sig}; ")
        }
    };
    let traps: String = ["INT", "TERM", "HUP"].iter().map(|s| action(s)).collect();
    Project::new(&format!(
        "[settings]\nkill_grace = \"{grace}\"\n\
         [tasks.slow]\nrun = \"{traps}echo started >> started.log; while :; do sleep 0.1; done\"\n\
         [tasks.later]\nrun = \"echo later >> ran.log\"\ndeps = [\"slow\"]\n"
    ))
}

fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn each_signal_reaches_the_tasks_as_itself_and_ends_them_interrupted() {
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
    ] {
        let p = trapping_project("5s", false);
        let mut cmd = p.command(&["build", "--json"]);
        cmd.stdout(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        wait_for("the task to start", Duration::from_secs(20), || {
            p.exists("started.log")
        });
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "SIG{name}");
        assert_eq!(p.lines("got.log"), [name], "the task got SIG{name} itself");
        let events = events(&String::from_utf8_lossy(&out.stdout));
        let find = |kind: &str| {
            events
                .iter()
                .find(|e| e["event"] == kind)
                .unwrap_or_else(|| panic!("no {kind} event for SIG{name}: {events:?}"))
        };
        let stop = find("build_interrupted");
        assert_eq!(stop["reason"], format!("SIG{name}"));
        assert_eq!(stop["signal"], format!("SIG{name}"));
        assert_eq!(stop["stopping"], serde_json::json!(["slow"]));
        assert_eq!(stop["grace_ms"], 5000);
        let ended = find("task_interrupted");
        assert_eq!(ended["task"], "slow");
        assert!(
            !events.iter().any(|e| e["event"] == "task_failed"),
            "interrupted, not failed: {events:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(last["event"], "build_finished");
        assert_eq!(last["interrupted"], true);
        assert_eq!(last["interrupted_tasks"], 1, "{last}");
        assert_eq!(last["not_started"], 1, "only `later` never started: {last}");
        assert_eq!(last["failed"], 0);
        assert!(!p.exists("ran.log"));
    }
}

#[test]
fn the_stop_is_announced_at_once_not_after_the_grace_period() {
    // The task ignores the signal, so only the SIGKILL after kill_grace ends it; what orch is
    // stopping is said as soon as the signal arrives.
    let p = trapping_project("3s", true);
    let mut child = p
        .command(&["build"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    wait_for("the task to start", Duration::from_secs(20), || {
        p.exists("started.log")
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // Not timed (a loaded machine may take seconds): the announcement comes while orch still
    // waits out the grace period, before the SIGKILL's "stopped" line.
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("orch announced nothing within 60 s of SIGINT: hung?");
        assert!(
            !line.contains("stopped Agent-01"),
            "stopped before announcing: {line}"
        );
        if line.contains("stopping") {
            break line;
        }
    };
    assert!(
        line.contains("SIGINT: stopping 1 running task (slow) with SIGINT, SIGKILL after 3.0s"),
        "{line}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "orch waits out the grace period"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = rx.try_iter().collect();
    let all = rest.join("\n");
    assert!(all.contains("stopped Agent-01 [slow]"), "{all}");
    assert!(
        all.contains("interrupted: 0 ran, 0 up to date, 1 interrupted, 1 not started"),
        "{all}"
    );
    assert_eq!(p.lines("got.log"), ["INT"]);
}
