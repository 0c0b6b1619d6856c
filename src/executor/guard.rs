//! The guard: a small process (`orch __guard`) started once per build that outlives orch only
//! to clean up after it. orch tells it, over a pipe, each process group it starts and reaps.
//! If the pipe closes without a goodbye (orch was SIGKILLed or crashed), the guard stops every
//! group still listed: SIGTERM, a grace period, SIGKILL. So even `kill -9 orch` or an OOM kill
//! leaves no agent running, grandchildren included.
//!
//! A group is listed just after it starts; orch killed in between would leave it unlisted.
//! So every child also carries `ORCH_RUN_ID` in its environment, and the guard also stops the
//! groups of processes it finds in /proc with this run's id.

use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::procgroup;

/// orch's end of the pipe. The guard process starts just before the first child, so a build that
/// starts none (everything up to date) does not pay for it.
pub struct Guard {
    program: PathBuf,
    grace: Duration,
    run_id: String,
    running: OnceLock<Option<Running>>,
}

struct Running {
    child: Mutex<Child>,
    pipe: Mutex<Option<ChildStdin>>,
}

impl Running {
    fn send(&self, line: &str) {
        if let Some(p) = self.pipe.lock().unwrap().as_mut() {
            // A dead guard only costs us the crash cleanup; the build goes on.
            let _ = p.write_all(line.as_bytes());
        }
    }
}

impl Guard {
    pub fn new(program: PathBuf, grace: Duration) -> Guard {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Guard {
            program,
            grace,
            run_id: format!("{}-{nanos}", std::process::id()),
            running: OnceLock::new(),
        }
    }

    /// The value of `ORCH_RUN_ID` in every child's environment.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Starts `program __guard` in its own process group, so a Ctrl-C meant for orch does
    /// not reach it.
    fn start(&self) -> io::Result<Running> {
        let mut child = Command::new(&self.program)
            .arg("__guard")
            .arg(self.grace.as_millis().to_string())
            .arg(&self.run_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Running {
            child: Mutex::new(child),
            pipe: Mutex::new(pipe),
        })
    }

    fn running(&self) -> Option<&Running> {
        self.running
            .get_or_init(|| match self.start() {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("orch: crash guard not started ({e}); running without it");
                    None
                }
            })
            .as_ref()
    }

    /// Starts the guard process if it is not running yet.
    pub fn start_if_needed(&self) {
        self.running();
    }

    /// Registers a process group to stop if orch dies.
    pub fn watch(&self, pgid: i32) {
        if let Some(r) = self.running() {
            r.send(&format!("+{pgid}\n"));
        }
    }

    pub fn release(&self, pgid: i32) {
        if let Some(Some(r)) = self.running.get() {
            r.send(&format!("-{pgid}\n"));
        }
    }

    /// Says goodbye (nothing to clean up) and waits for the guard to exit.
    pub fn finish(self) {
        if let Some(Some(r)) = self.running.into_inner() {
            r.send("exit\n");
            r.pipe.lock().unwrap().take();
            let _ = r.child.lock().unwrap().wait();
        }
    }
}

/// The guard process itself: reads the pipe until goodbye or EOF.
pub fn run_guard(grace: Duration, run_id: Option<&str>) -> i32 {
    // SAFETY: setting signal dispositions to ignore, before any threads exist.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut live: Vec<i32> = Vec::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "exit" {
            return 0;
        }
        if let Some(g) = line.strip_prefix('+').and_then(|n| n.parse().ok()) {
            live.push(g);
        } else if let Some(g) = line.strip_prefix('-').and_then(|n| n.parse::<i32>().ok()) {
            live.retain(|&x| x != g);
        }
    }
    // orch is gone without saying goodbye.
    if let Some(id) = run_id {
        for g in groups_tagged(id) {
            if !live.contains(&g) {
                live.push(g);
            }
        }
    }
    for &g in &live {
        procgroup::kill_group(g, libc::SIGTERM);
    }
    if !live.is_empty() {
        std::thread::sleep(grace);
        for &g in &live {
            procgroup::kill_group(g, libc::SIGKILL);
        }
    }
    0
}

/// Process groups of the processes whose environment has `ORCH_RUN_ID=<run_id>`: children
/// orch started but had not yet listed when it died.
fn groups_tagged(run_id: &str) -> Vec<i32> {
    let tag = format!("ORCH_RUN_ID={run_id}");
    let me = std::process::id() as i32;
    let mut groups = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Processes of other users cannot be read, which is as well.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|&b| b == 0).any(|v| v == tag.as_bytes()) {
            continue;
        }
        // SAFETY: getpgid has no memory-safety preconditions.
        let pgid = unsafe { libc::getpgid(pid) };
        // Never our own group (the guard's) nor init's.
        if pgid > 1 && pgid != unsafe { libc::getpgid(0) } && !groups.contains(&pgid) {
            groups.push(pgid);
        }
    }
    groups
}
