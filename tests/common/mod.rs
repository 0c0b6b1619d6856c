//! Test harness: a temp project with an Orchfile, and the real `orch` binary run inside it.
#![allow(dead_code)]

pub mod agents;
pub mod chromium;
pub mod git_repo;
pub mod nginx;
pub mod shells;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub fn orch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_orch")
}

/// The fake `claude` CLI in tests/fixtures.
pub fn fake_claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-claude")
}

impl Project {
    /// A project with this Orchfile.toml.
    pub fn new(orchfile: &str) -> Project {
        let p = Project::empty();
        p.write("Orchfile.toml", orchfile);
        p
    }

    /// A project directory with nothing in it.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(orch_bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("CLAUDECODE")
            .stdin(Stdio::null());
        c
    }

    pub fn orch(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap())
    }

    /// Task ids with a recorded success in the snapshot file alone (`state.bin`, no journal).
    #[allow(dead_code)]
    pub fn snapshot_records(&self) -> std::collections::BTreeSet<String> {
        match std::fs::read(self.path(".orchestrator/state.bin")) {
            Ok(bytes) => orchfile::state::Snapshot::decode(&bytes)
                .expect("state.bin decodes")
                .records
                .into_keys()
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => panic!("reading state.bin: {e}"),
        }
    }

    /// Task ids with a recorded success, as the next build sees them (snapshot + journal).
    #[allow(dead_code)]
    pub fn recorded_successes(&self) -> std::collections::BTreeSet<String> {
        let layout = orchfile::state::StateLayout::new(self.path(".orchestrator"));
        let store = orchfile::state::StateStore::open(layout).expect("state loads");
        store.snapshot.records.keys().cloned().collect()
    }

    /// Lines of a log file the test's tasks append to, empty when absent.
    pub fn lines(&self, rel: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The agent calls the fake agents logged (`.orchestrator/calls.log`), one a line.
    pub fn agent_calls(&self) -> Vec<String> {
        self.lines(".orchestrator/calls.log")
    }

    pub fn clear(&self, rel: &str) {
        let _ = std::fs::remove_file(self.path(rel));
    }
}

/// An agent that writes report.md only while `write-it` exists.
pub const MAYBE_WRITES: &str = r#"
[agents.maybe]
command = ["sh", "-c", "cat > /dev/null; if [ -f write-it ]; then echo fresh > report.md; fi; echo done"]
result = "stdout"

[tasks.r]
prompt = "write report.md (v1)"
agent = "maybe"
outputs = ["report.md"]
retries = 0
"#;

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// As [`Run::success`], keeping the run for later looks.
    #[track_caller]
    pub fn ok(self) -> Run {
        self.success();
        self
    }
    /// stdout read as JSON lines (`--json`'s events), one value a line.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
    /// Exits with `code`, saying `text` on stderr.
    #[track_caller]
    pub fn fails_with(&self, code: i32, text: &str) -> &Self {
        assert_eq!(self.code(), code, "{}", self.stderr());
        assert!(self.stderr().contains(text), "{}", self.stderr());
        self
    }
    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_ne!(
            self.code(),
            0,
            "expected failure; stderr:\n{}",
            self.stderr()
        );
        self
    }
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
#[track_caller]
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = &s[s.rfind(')').unwrap() + 1..];
            !after.trim_start().starts_with('Z')
        }
        Err(_) => false,
    }
}

pub fn read_pid(p: &Project, rel: &str) -> i32 {
    p.read(rel).trim().parse().unwrap()
}
