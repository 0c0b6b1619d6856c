//! Renders an HTML file in Debian's headless chromium for the report tests: one browser run
//! gives the DOM after the page's scripts ran (`--dump-dom`), a PNG screenshot, the value of
//! an optional JavaScript probe, and every URL the page tried to fetch (from a net log), so a
//! test can check that a "self-contained" report really is.
//!
//! One render takes about 1 s. Each gets a fresh temp dir holding the profile
//! (`--user-data-dir`) and `XDG_CONFIG_HOME`/`XDG_CACHE_HOME`, where chromium's crash handler
//! otherwise keeps a database in `~/.config/chromium`. Nothing leaves the machine:
//! `--host-resolver-rules="MAP * ~NOTFOUND"` fails every host name and IP literal, because some
//! of the browser's own requests (accounts.google.com/ListAccounts, www.google.com/async/…)
//! cannot be switched off by any flag. The run is bounded; on timeout the process group is
//! SIGKILLed, and after every run any process naming the temp dir is too (the crash handler
//! leaves the group with `setsid`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The probe's output element; a `<script type="application/json">` because `--dump-dom`
/// serializes a script's text unescaped.
const PROBE_ID: &str = "orch-render-probe";

#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Viewport and screenshot size in CSS pixels (device scale factor 1).
    pub window: (u32, u32),
    /// Virtual time the page may run before the DOM is dumped. Timers fire in virtual time,
    /// so this costs no wall time for a page that goes idle; without it the dump is taken at
    /// load and a `setTimeout` callback has not run.
    pub virtual_time_budget_ms: u32,
    /// Wall-clock bound on the whole browser run.
    pub timeout: Duration,
    /// A JavaScript function body, run on `load` after one more task; its `return` value,
    /// JSON-encoded, is [`Rendered::probe`]. A probe that throws fails the render.
    pub probe: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            window: (1400, 900),
            virtual_time_budget_ms: 5000,
            timeout: Duration::from_secs(60),
            probe: None,
        }
    }
}

/// What one browser run saw.
pub struct Rendered {
    /// The serialized DOM after scripts ran (with the probe's element, when there is one).
    pub dom: String,
    /// The viewport as a PNG (`window` pixels; content below the fold is not in it).
    pub screenshot: PathBuf,
    /// The probe's return value.
    pub probe: Option<serde_json::Value>,
    /// URLs the page asked for over the network (not `file:`/`data:`); all failed to resolve.
    pub page_requests: Vec<String>,
    /// Wall time of the browser run.
    pub elapsed: Duration,
    /// The browser's stderr (DBus complaints are normal there).
    pub stderr: String,
    /// Owns the screenshot and the profile.
    dir: tempfile::TempDir,
}

impl Rendered {
    /// How often `needle` occurs in the DOM.
    pub fn count(&self, needle: &str) -> usize {
        self.dom.matches(needle).count()
    }

    /// The screenshot's width and height, read from its PNG header.
    pub fn screenshot_size(&self) -> (u32, u32) {
        png_size(&std::fs::read(&self.screenshot).unwrap())
            .unwrap_or_else(|| panic!("{} is not a PNG", self.screenshot.display()))
    }

    /// The temp dir the run used (profile, net log, screenshot).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Renders `html` with the default options.
#[track_caller]
pub fn render(html: &Path) -> Rendered {
    render_with(html, &RenderOptions::default())
}

/// Renders `html`. With a probe, a copy of the page with the probe script appended is rendered
/// from the temp dir instead, so the page must not depend on files beside it (a
/// self-contained report does not).
#[track_caller]
pub fn render_with(html: &Path, options: &RenderOptions) -> Rendered {
    let dir = tempfile::Builder::new()
        .prefix("orch-chromium-")
        .tempdir()
        .expect("temp dir for chromium");
    let page = match &options.probe {
        None => std::fs::canonicalize(html).unwrap_or_else(|e| panic!("{}: {e}", html.display())),
        Some(probe) => {
            let text =
                std::fs::read_to_string(html).unwrap_or_else(|e| panic!("{}: {e}", html.display()));
            let copy = dir.path().join("page.html");
            std::fs::write(&copy, with_probe(&text, probe)).unwrap();
            copy
        }
    };
    let screenshot = dir.path().join("screenshot.png");
    let net_log = dir.path().join("netlog.json");
    let stdout_path = dir.path().join("dom.html");
    let stderr_path = dir.path().join("stderr.log");
    let (width, height) = options.window;

    let mut cmd = Command::new(browser());
    cmd.args([
        // The new headless mode: the real browser without a window.
        "--headless",
        // chromium refuses to run as root with its sandbox; the page is our own file.
        "--no-sandbox",
        "--disable-gpu",
        // Docker-sized /dev/shm (64 MB) crashes renderers; /tmp has room.
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-features=NetworkTimeServiceQuerying",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--force-device-scale-factor=1",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile").display()
    ))
    .arg(format!(
        "--virtual-time-budget={}",
        options.virtual_time_budget_ms
    ))
    .arg(format!("--window-size={width},{height}"))
    .arg(format!("--screenshot={}", screenshot.display()))
    .arg(format!("--log-net-log={}", net_log.display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", page.display()))
    .env("XDG_CONFIG_HOME", dir.path().join("config"))
    .env("XDG_CACHE_HOME", dir.path().join("cache"))
    .current_dir(dir.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout_path).unwrap())
    .stderr(std::fs::File::create(&stderr_path).unwrap())
    // Its own group, so a timeout kills the zygote, renderers and GPU process with it.
    .process_group(0);

    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting chromium");
    let pid = child.id() as i32;
    let exited = wait_bounded(pid, options.timeout);
    // The leader is a zombie still (waited with WNOWAIT), so its group id cannot be reused yet.
    // SAFETY: signalling a process group we created.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let elapsed = started.elapsed();
    kill_stragglers(dir.path());

    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail = || {
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    assert!(
        exited,
        "chromium did not finish {} within {:?}; killed. stderr:\n{}",
        html.display(),
        options.timeout,
        tail()
    );
    assert!(
        status.success(),
        "chromium failed ({status}) on {}; stderr:\n{}",
        html.display(),
        tail()
    );
    let dom = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(
        screenshot.is_file(),
        "chromium wrote no screenshot; stderr:\n{}",
        tail()
    );
    let probe = options.probe.as_ref().map(|_| probe_value(&dom));
    let page_requests = page_requests(&net_log);
    Rendered {
        dom,
        screenshot,
        probe,
        page_requests,
        elapsed,
        stderr,
        dir,
    }
}

/// Width and height from a PNG's signature and IHDR chunk; None if it is not a PNG.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 24 || &bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    Some((be(16), be(20)))
}

/// The page with a script appended that runs `probe` after load and writes its result into
/// the DOM, where `--dump-dom` shows it.
fn with_probe(page: &str, probe: &str) -> String {
    let script = format!(
        r#"<script>
window.addEventListener("load", () => setTimeout(() => {{
  let out;
  try {{ out = {{ value: (function () {{ {probe}
  }})() }}; }} catch (e) {{ out = {{ error: String(e && e.stack || e) }}; }}
  const el = document.createElement("script");
  el.type = "application/json";
  el.id = "{PROBE_ID}";
  el.textContent = JSON.stringify(out === undefined ? null : out).replace(/</g, "\\u003c");
  document.body.appendChild(el);
}}, 0));
</script>
"#
    );
    match page.rfind("</body>") {
        Some(at) => format!("{}{script}{}", &page[..at], &page[at..]),
        None => format!("{page}{script}"),
    }
}

fn probe_value(dom: &str) -> serde_json::Value {
    let open = format!(r#"<script type="application/json" id="{PROBE_ID}">"#);
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("the probe never ran (no load event within the budget?)"))
        + open.len();
    let end = start
        + dom[start..]
            .find("</script>")
            .expect("probe element closed");
    let out: serde_json::Value = serde_json::from_str(&dom[start..end]).expect("probe JSON");
    if let Some(error) = out.get("error") {
        panic!("the probe threw: {}", error.as_str().unwrap_or_default());
    }
    out.get("value").cloned().unwrap_or(serde_json::Value::Null)
}

/// URLs requested by web content, from the net log: requests the browser makes for itself
/// carry the initiator "not an origin", a page's (file: pages have an opaque origin) "null".
fn page_requests(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log)
        .unwrap_or_else(|e| panic!("chromium wrote no net log {}: {e}", net_log.display()));
    let log: serde_json::Value = serde_json::from_str(&text).expect("net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("net log names URL_REQUEST_START_JOB");
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .filter(|url| !url.starts_with("file:") && !url.starts_with("data:"))
        .collect();
    urls.dedup();
    urls
}

/// Waits for `pid` to exit, leaving it unreaped (so its group id stays reserved); false on
/// timeout.
fn wait_bounded(pid: i32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        // SAFETY: waitid on our own child with a zeroed siginfo out-parameter.
        let exited = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            ) == 0
                && info.si_pid() != 0
        };
        if exited {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs any process whose command line names `dir` (the crash handler, which left the
/// process group), then waits (bounded) until none is left.
fn kill_stragglers(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut found = false;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                found = true;
                // SAFETY: a process running with our temp dir on its command line is ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found || Instant::now() > end {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The chromium binary, installed by `setup.sh` on first use in this test process.
fn browser() -> &'static Path {
    static BROWSER: OnceLock<PathBuf> = OnceLock::new();
    BROWSER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/chromium/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): chromium is needed to render reports\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}
