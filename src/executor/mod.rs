//! Process execution, apart from scheduling: one child per call, in its own process group, with
//! stdin fed from memory, stdout/stderr captured, a timeout and cancellation that stop the
//! whole group (SIGTERM, grace period, SIGKILL), and no member of the group left behind.

pub mod procgroup;

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variables never passed to children. `CLAUDECODE` makes a nested `claude`
/// refuse to start.
pub const STRIPPED_ENV: &[&str] = &["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"];

#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    /// Bytes of stdout (and separately stderr) kept; the rest is read and dropped.
    pub max_output: usize,
}

impl ProcessSpec {
    pub fn shell(script: &str, cwd: PathBuf) -> ProcessSpec {
        ProcessSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd,
            env: Vec::new(),
            stdin: None,
            timeout: None,
            grace: Duration::from_secs(5),
            max_output: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::TimedOut => write!(f, "timed out"),
            Exit::Cancelled => write!(f, "cancelled"),
        }
    }
}

#[derive(Debug)]
pub struct ProcessOutput {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub duration: Duration,
}

/// Runs one process to completion. `on_spawn` gets the new process group id (for crash
/// recovery bookkeeping); `cancel` is polled while waiting.
pub fn run_process(
    spec: &ProcessSpec,
    cancel: &AtomicBool,
    on_spawn: &mut dyn FnMut(i32),
) -> io::Result<ProcessOutput> {
    let started = Instant::now();
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for k in STRIPPED_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If orch dies (even by SIGKILL) the direct child goes with it; the next run stops
            // whatever else is left of the group (see procgroup::reap_stale).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("command `{program}` not found (is it installed and on PATH?)"),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot start `{program}`: {e}"))
        }
    })?;
    let pgid = child.id() as i32;
    on_spawn(pgid);

    let stdin_writer = match (child.stdin.take(), spec.stdin.clone()) {
        (Some(mut pipe), Some(bytes)) => Some(thread::spawn(move || {
            // A child that exits without reading its stdin is not an error here.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let out_reader = spawn_reader(child.stdout.take(), spec.max_output);
    let err_reader = spawn_reader(child.stderr.take(), spec.max_output);

    let exit = wait_with_deadline(child, pgid, spec, cancel, started)?;
    // Anything still in the group after its leader ended is a leak: stop it so the pipes close
    // and nothing outlives the task.
    procgroup::kill_group(pgid, libc::SIGKILL);

    let (stdout, t1) = out_reader.join().unwrap_or_default();
    let (stderr, t2) = err_reader.join().unwrap_or_default();
    if let Some(w) = stdin_writer {
        let _ = w.join();
    }
    Ok(ProcessOutput {
        exit,
        stdout,
        stderr,
        truncated: t1 || t2,
        duration: started.elapsed(),
    })
}

fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    max: usize,
) -> thread::JoinHandle<(Vec<u8>, bool)> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut truncated = false;
        if let Some(mut p) = pipe {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match p.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = max.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                        truncated |= n > room;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        (kept, truncated)
    })
}

fn wait_with_deadline(
    mut child: Child,
    pgid: i32,
    spec: &ProcessSpec,
    cancel: &AtomicBool,
    started: Instant,
) -> io::Result<Exit> {
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = spec.timeout.map(|t| started + t);
    let mut stopping: Option<(Exit, Instant)> = None;
    let status = loop {
        let now = Instant::now();
        let mut wait = Duration::from_millis(50);
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(status) => break status?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("process waiter vanished"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        match stopping {
            None => {
                let why = if cancel.load(Ordering::Relaxed) {
                    Some(Exit::Cancelled)
                } else if deadline.is_some_and(|d| now >= d) {
                    Some(Exit::TimedOut)
                } else {
                    None
                };
                if let Some(why) = why {
                    procgroup::kill_group(pgid, libc::SIGTERM);
                    stopping = Some((why, now + spec.grace));
                }
            }
            Some((_, kill_at)) if now >= kill_at => {
                procgroup::kill_group(pgid, libc::SIGKILL);
            }
            Some(_) => {}
        }
    };
    let _ = waiter.join();
    Ok(match stopping {
        Some((why, _)) => why,
        None => match status.code() {
            Some(c) => Exit::Code(c),
            None => Exit::Signal(status.signal().unwrap_or(0)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &ProcessSpec) -> ProcessOutput {
        run_process(spec, &AtomicBool::new(false), &mut |_| {}).unwrap()
    }

    #[test]
    fn captures_output_and_exit_code() {
        let mut spec = ProcessSpec::shell("cat; echo err >&2; exit 3", std::env::temp_dir());
        spec.stdin = Some(b"hello".to_vec());
        let out = run(&spec);
        assert_eq!(out.exit, Exit::Code(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let mut spec = ProcessSpec::shell(&script, dir.path().to_path_buf());
        spec.timeout = Some(Duration::from_millis(300));
        spec.grace = Duration::from_millis(200);
        let out = run(&spec);
        assert_eq!(out.exit, Exit::TimedOut);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!procgroup::alive(pid), "background sleep {pid} survived");
    }

    #[test]
    fn leaked_background_process_is_stopped_when_the_leader_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}", pidfile.display());
        let out = run(&ProcessSpec::shell(&script, dir.path().to_path_buf()));
        assert!(out.exit.success());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!procgroup::alive(pid));
    }

    #[test]
    fn output_is_capped() {
        let mut spec = ProcessSpec::shell("head -c 100000 /dev/zero", std::env::temp_dir());
        spec.max_output = 1000;
        let out = run(&spec);
        assert!(out.exit.success());
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.truncated);
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let mut spec = ProcessSpec::shell("", std::env::temp_dir());
        spec.argv = vec!["definitely-not-a-real-agent-cli".into()];
        let err = run_process(&spec, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn strips_claudecode_from_the_environment() {
        std::env::set_var("CLAUDECODE", "1");
        let out = run(&ProcessSpec::shell(
            "echo \"[${CLAUDECODE:-unset}]\"",
            std::env::temp_dir(),
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[unset]");
    }
}
