//! Inputs orch cannot hash, found while hashing: each is an error that names the file and
//! the task, never a hang or a bare OS message. FIFOs, sockets and devices (or symlinks to
//! them) are never opened; symlink loops, dangling symlinks and unreadable files say what
//! they are. And SIGTERM ends a build that is hashing a huge input, long before the hash could
//! finish.

mod common;

use std::os::unix::fs::symlink;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn one_task(inputs: &str) -> Project {
    Project::new(&format!(
        "[tasks.t]\nrun = \"echo t >> ran.log\"\ninputs = {inputs}\n"
    ))
}

/// Builds with a deadline: a build that hangs fails the test instead of hanging it.
#[track_caller]
fn build_within(p: &Project, limit: Duration) -> Run {
    let mut child = p
        .command(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return Run(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "orch build still running after {limit:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mkfifo(p: &Project, rel: &str) {
    let path = std::ffi::CString::new(p.path(rel).to_str().unwrap()).unwrap();
    std::fs::create_dir_all(p.path(rel).parent().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
}

/// The build fails, naming task `t` and `what` in its failure line.
#[track_caller]
fn fails_naming(run: &Run, what: &str) {
    let err = run.stderr();
    assert_ne!(run.code(), 0, "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("[t]") && l.contains(what) && !l.contains("os error")),
        "expected a line naming [t] and `{what}`:\n{err}"
    );
    // Its inputs were checked before it was handed out: it never started.
    assert!(
        !err.lines().any(|l| l.trim_start().starts_with("start")),
        "a start line for a task that did not start:\n{err}"
    );
}

#[test]
fn a_task_whose_input_check_fails_never_starts_in_the_json_events_either() {
    let p = one_task(r#"["named.md"]"#);
    symlink("gone.md", p.path("named.md")).unwrap();
    let run = p.orch(&["build", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let events: Vec<serde_json::Value> = run.json_lines();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["task"] == "t")
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(kinds, ["task_failed"], "{events:?}");
    assert!(!p.exists("ran.log"));
}

#[test]
fn a_fifo_input_is_an_error_not_a_hang() {
    // Named, it is refused before anything runs (the plan's check against the files).
    let p = one_task(r#"["in.fifo"]"#);
    mkfifo(&p, "in.fifo");
    let run = build_within(&p, Duration::from_secs(20));
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains("in.fifo"), "{}", run.stderr());
    assert!(!p.exists("ran.log"));

    // Matched by a glob, directly or through a symlink, it is found while hashing.
    let p = one_task(r#"["pipes/*"]"#);
    mkfifo(&p, "pipes/p");
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input pipes/p: a FIFO, not a regular file");
    let p = one_task(r#"["links/*"]"#);
    mkfifo(&p, "elsewhere/p");
    std::fs::create_dir_all(p.path("links")).unwrap();
    symlink("../elsewhere/p", p.path("links/p")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input links/p: a FIFO, not a regular file");
}

#[test]
fn a_device_input_is_never_read() {
    let p = one_task(r#"["devs/*"]"#);
    std::fs::create_dir_all(p.path("devs")).unwrap();
    symlink("/dev/zero", p.path("devs/zero")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(
        &run,
        "input devs/zero: a character device, not a regular file",
    );
}

#[test]
fn an_unreadable_input_names_itself() {
    // Write-only even for root (procfs gives root the owner's bits only).
    let target = ["/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory"]
        .into_iter()
        .find(|t| std::path::Path::new(t).exists() && std::fs::read(t).is_err())
        .expect("a write-only sysctl to link to");
    let p = one_task(r#"["secrets/*.txt"]"#);
    std::fs::create_dir_all(p.path("secrets")).unwrap();
    symlink(target, p.path("secrets/env.txt")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input secrets/env.txt: permission denied");
}

#[test]
fn symlink_loops_and_dangling_symlinks_say_what_they_are() {
    let p = one_task(r#"["links/*"]"#);
    std::fs::create_dir_all(p.path("links")).unwrap();
    symlink("loop", p.path("links/loop")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input links/loop: a symlink loop");

    // A directory that contains itself, under a glob.
    let p = one_task(r#"["tree/**/*.md"]"#);
    p.write("tree/a.md", "a\n");
    symlink("..", p.path("tree/up")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input tree/up: a symlink loop");

    // Named: the plan's check warns that it is missing; hashing says where it points.
    let p = one_task(r#"["named.md"]"#);
    symlink("gone.md", p.path("named.md")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(
        &run,
        "input named.md: a symlink to gone.md, which does not exist",
    );

    // Under a glob: one it matches fails the task; one beside what it wants does not.
    let p = one_task(r#"["docs/*.md"]"#);
    p.write("docs/real.md", "real\n");
    symlink("nowhere.md", p.path("docs/broken.md")).unwrap();
    let run = build_within(&p, Duration::from_secs(20));
    fails_naming(&run, "input docs/broken.md: a symlink to nothing");
    std::fs::remove_file(p.path("docs/broken.md")).unwrap();
    symlink("nowhere.txt", p.path("docs/broken.txt")).unwrap();
    build_within(&p, Duration::from_secs(20)).success();
}

/// A sparse file far larger than can be hashed in the test's time: reading it is all zeros.
fn huge_input(p: &Project) {
    let f = std::fs::File::create(p.path("huge.bin")).unwrap();
    f.set_len(200 << 30).unwrap();
}

/// Starts `orch build`, sends SIGTERM once it is hashing, and returns how it ended. Hashing
/// the file would take minutes: an orch still running 15 s after the signal did not stop for
/// it, and is killed so that it does not outlive the test.
fn terminated_while_hashing(p: &Project) -> Run {
    let child = p
        .command(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Hashing starts within moments; the file takes minutes.
    std::thread::sleep(Duration::from_millis(700));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let end = Instant::now() + Duration::from_secs(15);
    while alive(pid) {
        if Instant::now() >= end {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let run = Run(waiter.join().unwrap());
            panic!(
                "orch did not exit within 15 s of SIGTERM (still hashing?): killed\n{}",
                run.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run(waiter.join().unwrap())
}

#[test]
fn sigterm_ends_a_build_that_is_hashing_a_huge_input() {
    let p = one_task(r#"["huge.bin"]"#);
    huge_input(&p);
    let run = terminated_while_hashing(&p);
    assert_eq!(run.code(), 130, "{}", run.stderr());
    assert!(!run.stderr().contains("FAILED"), "{}", run.stderr());
    assert!(!p.exists("ran.log"));

    // The same when the task has a record and the up-to-date check does the hashing.
    let p = one_task(r#"["huge.bin"]"#);
    p.write("huge.bin", "small\n");
    p.orch(&["build"]).success();
    huge_input(&p);
    let run = terminated_while_hashing(&p);
    assert_eq!(run.code(), 130, "{}", run.stderr());
    // Status checks inputs too: a small file, so that it does not hash 200 GB.
    p.write("huge.bin", "small again\n");
    let status = p.orch(&["status", "--json"]).ok().stdout();
    assert!(
        !status.contains("\"failed\""),
        "an interrupt is not a failure: {status}"
    );
}
