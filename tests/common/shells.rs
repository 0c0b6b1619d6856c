//! Real shells and a real terminal for the tests: tmux, bash, zsh and fish, installed by
//! `tests/support/shells/setup.sh` on first use in a test process, and [`Tmux`], a terminal
//! session of its own (a private server socket) running one of them, killed on drop, panics
//! included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The path of `tool` (tmux, bash, zsh or fish), installing them all on first use.
pub fn tool(tool: &str) -> PathBuf {
    static TOOLS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/shells/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): tmux, zsh and fish are needed by these tests\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(name, path)| (name.to_string(), PathBuf::from(path)))
            .collect()
    });
    tools
        .get(tool)
        .unwrap_or_else(|| panic!("setup.sh did not report {tool}"))
        .clone()
}

/// A tmux server of its own with one window running a shell (`bash --norc` by default) in
/// `dir`.
pub struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts the session, 120x30, with `env` set in it.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Tmux {
        Tmux::start_shell(
            dir,
            &format!("{} --norc --noprofile", tool("bash").display()),
            env,
        )
    }

    /// As [`Tmux::start`], running `shell` (a command line) instead of bash.
    pub fn start_shell(dir: &Path, shell: &str, env: &[(&str, &str)]) -> Tmux {
        let own = tempfile::tempdir().unwrap();
        let socket = own.path().join("tmux.sock");
        let t = Tmux { socket, _dir: own };
        let mut cmd = t.command();
        cmd.args(["new-session", "-d", "-x", "120", "-y", "30", "-c"])
            .arg(dir)
            .arg(shell);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn command(&self) -> Command {
        let mut c = Command::new(tool("tmux"));
        c.arg("-S").arg(&self.socket).stdin(Stdio::null());
        c
    }

    /// Types `keys` (tmux key names, e.g. `C-z`, `Enter`) into the window.
    pub fn keys(&self, keys: &[&str]) {
        let out = self
            .command()
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "send-keys {keys:?} failed");
    }

    /// Types a line and Enter.
    pub fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    /// What the window shows now.
    pub fn screen(&self) -> String {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the window shows `text`.
    #[track_caller]
    pub fn wait_for_text(&self, text: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.screen().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the terminal never showed {text:?}; it shows:\n{}",
            self.screen()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}
