//! Real agent CLIs for the conformance tests: installs the pinned `claude`, `codex` and
//! `gemini` from the npm registry (tests/support/agents/install.sh, into the cache outside the
//! clone), starts the loopback model server they talk to (tests/support/agents/model_server.py)
//! and builds each CLI's environment: a temp HOME with the CLI's config files, dummy API keys,
//! the server's base URL, telemetry and update checks off, and every proxy variable pointing
//! at the server's proxy sink so a connection to any other host is refused and logged.
//! Nothing here skips: a CLI that cannot be installed, or a server that cannot start, panics
//! with the reason.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/agents")
}

/// Where install.sh keeps the CLIs (the same rule as the script's).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("ORCH_TEST_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/orch-test"),
    }
}

/// The installed binaries.
#[derive(Debug)]
pub struct Installed {
    pub claude: PathBuf,
    pub codex: PathBuf,
    pub gemini: PathBuf,
}

/// Installs the pinned CLIs once per test process (install.sh itself is idempotent and takes
/// a lock, so parallel test binaries install once too). Panics with install.sh's output when
/// it fails.
pub fn ensure_installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script = support_dir().join("install.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "installing the agent CLIs failed ({}):\n{}\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let path_of = |name: &str| -> PathBuf {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("install.sh printed no path for {name}:\n{stdout}"))
        };
        Installed {
            claude: path_of("claude"),
            codex: path_of("codex"),
            gemini: path_of("gemini"),
        }
    })
}

/// The loopback model server, stopped on drop (and by itself once our end of its stdin
/// closes, so even a test killed with SIGKILL leaves no server behind).
pub struct ModelServer {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ModelServer {
    pub fn start() -> ModelServer {
        let dir = tempfile::tempdir().unwrap();
        let script = support_dir().join("model_server.py");
        let mut child = Command::new("python3")
            .arg("-B") // no __pycache__ in the source tree
            .arg(&script)
            .arg("--port-file")
            .arg(dir.path().join("port"))
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the model server did not start (said {line:?})");
        };
        ModelServer {
            child,
            _stdin: stdin,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("requests.jsonl")
    }

    /// Every request answered so far, one JSON object each (see model_server.py).
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("request log line is JSON"))
            .collect()
    }

    /// The model requests (side calls and proxy attempts left out) whose directive is `line`.
    pub fn requests_for(&self, line: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["directive"].as_str() == Some(line))
            .collect()
    }

    /// Panics if any CLI tried to reach a host other than this server.
    #[track_caller]
    pub fn assert_no_escapes(&self) {
        let escapes: Vec<Value> = self
            .requests()
            .into_iter()
            .filter(|r| r["api"] == "escape" || r["api"] == "unknown")
            .collect();
        assert!(
            escapes.is_empty(),
            "requests that were not model calls: {escapes:#?}"
        );
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cli {
    Claude,
    Codex,
    Gemini,
}

/// One CLI's isolated environment: a temp HOME with its config, and the variables that point
/// it at the server. Build a command with [`AgentEnv::command`], or copy the variables onto
/// an `orch` command with [`AgentEnv::apply`] so the presets find the CLI by name on PATH.
pub struct AgentEnv {
    pub cli: Cli,
    pub home: tempfile::TempDir,
    pub bin: PathBuf,
    vars: Vec<(String, String)>,
}

pub const DUMMY_ANTHROPIC_KEY: &str = "sk-ant-mock-0000000000000000";
pub const DUMMY_OPENAI_KEY: &str = "sk-mock-0000000000000000";
pub const DUMMY_GEMINI_KEY: &str = "mock-gemini-key-0000000000";

impl AgentEnv {
    pub fn new(cli: Cli, server: &ModelServer) -> AgentEnv {
        let installed = ensure_installed();
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let url = server.url();
        let bin = match cli {
            Cli::Claude => installed.claude.clone(),
            Cli::Codex => installed.codex.clone(),
            Cli::Gemini => installed.gemini.clone(),
        };
        for sub in ["tmp", ".config", ".cache", ".local/share", ".local/state"] {
            std::fs::create_dir_all(h.join(sub)).unwrap();
        }
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
        );
        let mut vars: Vec<(String, String)> = vec![
            ("PATH".into(), path),
            ("HOME".into(), s(h)),
            // codex refuses to set up its helper binaries when CODEX_HOME lies under TMPDIR.
            ("TMPDIR".into(), s(&h.join("tmp"))),
            ("XDG_CONFIG_HOME".into(), s(&h.join(".config"))),
            ("XDG_CACHE_HOME".into(), s(&h.join(".cache"))),
            ("XDG_DATA_HOME".into(), s(&h.join(".local/share"))),
            ("XDG_STATE_HOME".into(), s(&h.join(".local/state"))),
            ("LANG".into(), "C.UTF-8".into()),
            ("NO_COLOR".into(), "1".into()),
        ];
        // The proxy sink: whatever a CLI sends to another host reaches the server, which
        // refuses it and logs it as an escape. The server itself is reached directly.
        for var in [
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
        ] {
            vars.push((var.into(), url.clone()));
        }
        for var in ["NO_PROXY", "no_proxy"] {
            vars.push((var.into(), "127.0.0.1,localhost".into()));
        }
        match cli {
            Cli::Claude => {
                std::fs::create_dir_all(h.join(".claude")).unwrap();
                vars.extend(
                    [
                        ("ANTHROPIC_BASE_URL", url.as_str()),
                        ("ANTHROPIC_API_KEY", DUMMY_ANTHROPIC_KEY),
                        ("CLAUDE_CONFIG_DIR", &s(&h.join(".claude"))),
                        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                        ("DISABLE_AUTOUPDATER", "1"),
                        ("DISABLE_TELEMETRY", "1"),
                        ("DISABLE_ERROR_REPORTING", "1"),
                    ]
                    .map(|(k, v)| (k.to_string(), v.to_string())),
                );
            }
            Cli::Codex => {
                let codex_home = h.join(".codex");
                std::fs::create_dir_all(&codex_home).unwrap();
                std::fs::write(codex_home.join("config.toml"), codex_config(&url)).unwrap();
                vars.push(("CODEX_HOME".into(), s(&codex_home)));
                vars.push(("OPENAI_API_KEY".into(), DUMMY_OPENAI_KEY.into()));
            }
            Cli::Gemini => {
                std::fs::create_dir_all(h.join(".gemini")).unwrap();
                std::fs::write(h.join(".gemini/settings.json"), GEMINI_SETTINGS).unwrap();
                vars.push(("GEMINI_API_KEY".into(), DUMMY_GEMINI_KEY.into()));
                vars.push(("GOOGLE_GEMINI_BASE_URL".into(), url.clone()));
            }
        }
        AgentEnv {
            cli,
            home,
            bin,
            vars,
        }
    }

    /// Sets one more variable (or replaces one).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.into(), value.into()));
        self
    }

    /// Clears `cmd`'s environment and gives it this one.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env_clear();
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
    }

    /// The CLI with `args`, run in `cwd`, stdin closed.
    pub fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        self.apply(&mut cmd);
        cmd.args(args).current_dir(cwd).stdin(Stdio::null());
        cmd
    }

    /// Merges `json` (an object) into gemini's settings.json, e.g. `{"general":{"maxAttempts":1}}`.
    pub fn gemini_settings(&self, json: &str) {
        let path = self.home.path().join(".gemini/settings.json");
        let mut settings: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        merge(&mut settings, serde_json::from_str(json).unwrap());
        std::fs::write(&path, serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    }
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// codex's config: the server as a custom Responses provider (the built-in `openai` provider
/// ignores OPENAI_BASE_URL in 0.171 and tries a WebSocket first), and the update check,
/// curated-plugin sync (github.com, chatgpt.com) and analytics (ab.chatgpt.com) off.
fn codex_config(url: &str) -> String {
    format!(
        r#"model_provider = "mock"
check_for_update_on_startup = false

[features]
plugins = false

[analytics]
enabled = false

[model_providers.mock]
name = "mock"
base_url = "{url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = false
"#
    )
}

/// gemini's settings: API-key auth (with GOOGLE_GEMINI_BASE_URL set, 0.61 otherwise picks its
/// `gateway` auth type, which headless mode rejects: "Invalid auth method selected.", exit 41),
/// usage statistics, telemetry and auto-update off.
const GEMINI_SETTINGS: &str = r#"{
  "security": { "auth": { "selectedType": "gemini-api-key" } },
  "privacy": { "usageStatisticsEnabled": false },
  "telemetry": { "enabled": false },
  "general": { "enableAutoUpdate": false, "enableAutoUpdateNotification": false }
}
"#;

/// A finished child: exit code (-1 when killed by a signal), output, wall time.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Finished {
    /// stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The last JSON object printed on stderr, starting a line (gemini prints its `-o json`
    /// error object there, among its log lines; at max turns twice, the second after
    /// `[ERROR] `).
    #[track_caller]
    pub fn stderr_json(&self) -> Value {
        let text = &self.stderr;
        text.match_indices('{')
            .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
            .filter_map(|(i, _)| {
                serde_json::Deserializer::from_str(&text[i..])
                    .into_iter::<Value>()
                    .next()?
                    .ok()
            })
            .next_back()
            .unwrap_or_else(|| panic!("no JSON object on stderr:\n{text}"))
    }

    /// stdout as JSON lines (blank and non-JSON lines left out).
    pub fn jsonl(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Runs `cmd` to the end or until `limit`, then kills its whole process group.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Finished {
    use std::os::unix::process::CommandExt;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawning the agent CLI");
    let pgid = child.id() as i32;
    let readers = [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ];
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            timed_out = true;
            // SAFETY: plain kill(2) on the group this child leads.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    // Whatever the CLI left running in its group must not outlive the test.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let [out, err] = readers.map(|r| r.join().unwrap());
    Finished {
        code: status.code().unwrap_or(-1),
        stdout: out,
        stderr: err,
        elapsed,
        timed_out,
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
