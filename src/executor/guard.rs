//! The guard: a small process (`orch __guard`) started once per build that outlives orch only
//! to clean up after it. orch tells it, over a pipe, each process group it starts and reaps.
//! If the pipe closes without a goodbye (orch was SIGKILLed or crashed), the guard stops every
//! group still listed: SIGTERM, a grace period, SIGKILL. So even `kill -9 orch` or an OOM kill
//! leaves no agent running, grandchildren included.

use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::procgroup;

/// orch's end of the pipe.
pub struct Guard {
    child: Mutex<Child>,
    pipe: Mutex<Option<ChildStdin>>,
}

impl Guard {
    /// Starts `program __guard` in its own process group, so a Ctrl-C meant for orch does not
    /// reach it.
    pub fn start(program: &Path, grace: Duration) -> io::Result<Guard> {
        let mut child = Command::new(program)
            .arg("__guard")
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Guard {
            child: Mutex::new(child),
            pipe: Mutex::new(pipe),
        })
    }

    fn send(&self, line: &str) {
        if let Some(p) = self.pipe.lock().unwrap().as_mut() {
            // A dead guard only costs us the crash cleanup; the build goes on.
            let _ = p.write_all(line.as_bytes());
        }
    }

    pub fn watch(&self, pgid: i32) {
        self.send(&format!("+{pgid}\n"));
    }

    pub fn release(&self, pgid: i32) {
        self.send(&format!("-{pgid}\n"));
    }

    /// Says goodbye (nothing to clean up) and waits for the guard to exit.
    pub fn finish(self) {
        self.send("exit\n");
        self.pipe.lock().unwrap().take();
        let _ = self.child.lock().unwrap().wait();
    }
}

/// The guard process itself: reads the pipe until goodbye or EOF.
pub fn run_guard(grace: Duration) -> i32 {
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
