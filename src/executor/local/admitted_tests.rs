//! A job started before its turn: its stdin, all but the last byte, waits for the go.

use std::path::Path;
use std::time::Duration;

use super::Local;
use crate::cancel::Cancel;
use crate::executor::{Admission, Backend, Exit, ProcessOutput, ProcessSpec};

/// `script` with `stdin`, its go after `waits` asks (the last answer `last`); `on_wait`
/// looks at the directory at each ask before the last.
fn run_admitted(
    dir: &Path,
    script: &str,
    stdin: &str,
    waits: usize,
    last: Admission,
    on_wait: &mut dyn FnMut(usize),
    timeout: Option<Duration>,
) -> ProcessOutput {
    let mut spec = ProcessSpec::shell(script, dir.to_path_buf());
    spec.stdin = Some(stdin.as_bytes().to_vec());
    spec.timeout = timeout;
    spec.grace = Duration::from_millis(500);
    let local = Local::new(None);
    assert!(local.holds_stdin(&spec));
    let mut asked = 0;
    local
        .start(&spec)
        .unwrap()
        .wait_lines_admitted(&Cancel::new(), &mut |_| {}, &mut |_| {}, &mut || {
            asked += 1;
            if asked > waits {
                return last;
            }
            on_wait(asked);
            Admission::Wait
        })
        .unwrap()
}

/// Waits (bounded) until `path` holds `want`.
fn reads_soon(path: &Path, want: &str) -> bool {
    for _ in 0..500 {
        if std::fs::read_to_string(path).is_ok_and(|s| s == want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_held_job_reads_all_but_the_last_byte_and_its_end_only_after_the_go() {
    let dir = tempfile::tempdir().unwrap();
    let (got, eof) = (dir.path().join("got"), dir.path().join("eof"));
    let script = "dd bs=1 of=got 2>/dev/null; touch eof; echo done";
    let mut seen_prefix = false;
    let out = run_admitted(
        dir.path(),
        script,
        "hello",
        30,
        Admission::Go,
        &mut |asked| {
            assert!(!eof.exists(), "stdin ended before the go");
            if asked == 20 {
                seen_prefix = reads_soon(&got, "hell");
            }
        },
        None,
    );
    assert!(seen_prefix, "all but the last byte before the go");
    assert_eq!(out.exit, Exit::Code(0));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "hello");
    assert_eq!(out.stdout, b"done\n");
}

#[test]
fn a_held_job_that_gets_no_go_is_stopped_without_its_stdin_ending() {
    let dir = tempfile::tempdir().unwrap();
    let eof = dir.path().join("eof");
    let out = run_admitted(
        dir.path(),
        "cat >/dev/null; touch eof",
        "hello",
        5,
        Admission::GiveUp,
        &mut |_| {},
        None,
    );
    assert_eq!(out.exit, Exit::Cancelled);
    assert!(!eof.exists(), "the job went on as if its input had ended");
}

#[test]
fn a_held_jobs_timeout_runs_from_its_go() {
    let dir = tempfile::tempdir().unwrap();
    // 350 asks of 10 ms at least (each ask sleeps): past the 3 s timeout before the go, which
    // leaves the job 3 s after it (1 s was seen to run out on a loaded machine).
    let out = run_admitted(
        dir.path(),
        "cat >/dev/null; echo ran",
        "hello",
        350,
        Admission::Go,
        &mut |_| std::thread::sleep(Duration::from_millis(10)),
        Some(Duration::from_secs(3)),
    );
    assert_eq!(out.exit, Exit::Code(0), "{out:?}");
    assert_eq!(out.stdout, b"ran\n");
}
