//! A real remote cache for the output-cache tests: Debian's nginx serving a temp directory over
//! the Bazel HTTP cache protocol (`GET`/`HEAD`/`PUT /ac/<key>` and `/cas/<digest>`), started on
//! 127.0.0.1 with the config the project ships (`tests/support/nginx/remote-cache.conf.in`) and
//! stopped when the [`CacheServer`] is dropped, also on panic.
//!
//! nginx runs as one foreground process (`master_process off`, `daemon off`) of the current user,
//! with every file it writes under the server's temp dir, so parallel tests each get their own.
//! It is started with `PR_SET_PDEATHSIG`, so it also dies when the test process is killed
//! outright; that signal follows the *thread* that spawned it, so start a server on the thread
//! that uses it (a test's own thread), not in a helper thread or a shared static.
//!
//! Nothing here skips: if nginx cannot be installed or started, the test panics and shows why.
//! Also here: [`Unresponsive`], a listener that accepts and never answers (a hung server),
//! [`Stalling`], a proxy that stops passing a response midway (a link that hangs mid-blob),
//! and [`http`], a std-only HTTP/1.1 client for seeding and inspecting the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Starting is ~10 ms; this only bounds a broken start.
const START_LIMIT: Duration = Duration::from_secs(10);
/// SIGTERM stops nginx in a few ms; after this it is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts at a free port: another process can take the probed port before nginx binds it.
const PORT_ATTEMPTS: usize = 5;

/// What the server demands before it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTP basic auth against a generated htpasswd file.
    Basic {
        user: String,
        password: String,
    },
    /// `Authorization: Bearer <token>`, compared literally.
    Bearer(String),
}

impl Auth {
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    pub fn bearer(token: &str) -> Auth {
        Auth::Bearer(token.into())
    }

    /// The `Authorization` header value a client must send, if any.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}

/// How the server answers once a request is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A working cache.
    Normal,
    /// Response bodies trickle at this rate (nginx `limit_rate`): a slow download. Headers and
    /// PUTs are not slowed; for a server that never answers use [`Unresponsive`].
    Slow { bytes_per_sec: u32 },
    /// Every request gets this status (e.g. 500 or 503): a failing server.
    Failing { status: u16 },
}

#[derive(Clone, Debug)]
pub struct Config {
    pub auth: Auth,
    pub behaviour: Behaviour,
}

/// One line of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body_bytes_sent: u64,
}

/// A running nginx; see the module doc.
pub struct CacheServer {
    nginx: PathBuf,
    config: Config,
    /// Holds `root/` (the served blobs) and `state/` (config, pid, logs, temp files).
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl CacheServer {
    /// A working server with this auth.
    pub fn start(auth: Auth) -> CacheServer {
        CacheServer::start_with(Config {
            auth,
            behaviour: Behaviour::Normal,
        })
    }

    pub fn start_with(config: Config) -> CacheServer {
        let dir = tempfile::Builder::new()
            .prefix("orch-nginx-")
            .tempdir()
            .expect("temp dir for nginx");
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let mut server = CacheServer {
            nginx: nginx_binary().to_path_buf(),
            config,
            dir,
            port: 0,
            child: None,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") && attempt < PORT_ATTEMPTS => {}
                Err(log) => panic!("nginx did not start on 127.0.0.1:{}:\n{log}", server.port),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The served directory: `root()/ac/<key>` is what `GET /ac/<key>` returns, so a test can
    /// plant, corrupt or delete blobs behind the client's back.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn auth(&self) -> &Auth {
        &self.config.auth
    }

    /// Every request served so far, in order. The access log is unbuffered, but nginx writes a
    /// request's line just after sending its response: to assert on a request a client has only
    /// just finished, poll (`common::wait_for`) rather than read once.
    pub fn requests(&self) -> Vec<Request> {
        let log = std::fs::read_to_string(self.state("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                Some(Request {
                    method: f.next()?.to_string(),
                    path: f.next()?.to_string(),
                    status: f.next()?.parse().ok()?,
                    body_bytes_sent: f.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// nginx's error log (startup messages, auth refusals, failed opens).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.state("error.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Stops nginx (SIGTERM, then SIGKILL after a grace period); connections are refused after.
    /// The served files stay until the server is dropped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child, not yet reaped, so the pid is still ours.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + STOP_GRACE;
        while Instant::now() < end {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts nginx again on the same port and directory (after [`CacheServer::stop`]): a
    /// server that comes back.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!("nginx did not restart on 127.0.0.1:{}:\n{log}", self.port);
        }
    }

    /// `GET path` with the server's credentials.
    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, b"")
    }

    /// `HEAD path` with the server's credentials.
    pub fn head(&self, path: &str) -> Response {
        self.send("HEAD", path, b"")
    }

    /// `PUT path` with the server's credentials.
    pub fn put(&self, path: &str, body: &[u8]) -> Response {
        self.send("PUT", path, body)
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let auth = self.config.auth.header();
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http(self.addr(), method, path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.url()))
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join("state").join(name)
    }

    /// Writes the config and starts nginx on `self.port`; Err holds the logs when it failed.
    fn spawn(&mut self) -> Result<(), String> {
        let state = self.dir.path().join("state");
        let conf = self.state("nginx.conf");
        std::fs::write(&conf, self.render_config()).unwrap();
        let _ = std::fs::remove_file(self.state("error.log"));
        let stderr = std::fs::File::create(self.state("stderr.log")).unwrap();
        let mut cmd = Command::new(&self.nginx);
        cmd.arg("-p")
            .arg(&state)
            .arg("-e")
            .arg(self.state("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.nginx.display()));
        let pid = child.id().to_string();
        let end = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "nginx exited ({status}) before serving\n{}",
                    self.logs()
                ));
            }
            // The pid file is written after the listening socket is bound, so a connect then
            // reaches this nginx and not whoever else might hold the port.
            let pid_file = std::fs::read_to_string(self.state("nginx.pid")).unwrap_or_default();
            if pid_file.trim() == pid && TcpStream::connect(self.addr()).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nginx not serving after {START_LIMIT:?}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.state(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "--- error.log (tail)\n{}\n--- stderr\n{}",
            tail("error.log"),
            tail("stderr.log")
        )
    }

    fn render_config(&self) -> String {
        let template = std::fs::read_to_string(support_dir().join("remote-cache.conf.in"))
            .expect("tests/support/nginx/remote-cache.conf.in");
        let state = self.dir.path().join("state");
        let auth = match &self.config.auth {
            Auth::None => String::new(),
            Auth::Basic { user, password } => {
                assert_config_safe(user);
                assert_config_safe(password);
                // nginx reads `{PLAIN}` itself: no hashing tool (htpasswd, openssl) needed, and
                // a test checks the client sends the credentials, not the hash's strength.
                let file = state.join("htpasswd");
                std::fs::write(&file, format!("{user}:{{PLAIN}}{password}\n")).unwrap();
                format!(
                    "            auth_basic \"orch remote cache\";\n            auth_basic_user_file {};",
                    file.display()
                )
            }
            Auth::Bearer(token) => {
                assert_config_safe(token);
                format!(
                    "            if ($http_authorization != \"Bearer {token}\") {{\n                return 401;\n            }}"
                )
            }
        };
        let behaviour = match self.config.behaviour {
            Behaviour::Normal => String::new(),
            Behaviour::Slow { bytes_per_sec } => format!("            limit_rate {bytes_per_sec};"),
            Behaviour::Failing { status } => format!("            return {status};"),
        };
        let path = |p: &Path| {
            let s = p.display().to_string();
            assert_config_safe(&s);
            s
        };
        template
            .replace("@STATE@", &path(&state))
            .replace("@ROOT@", &path(&self.root()))
            .replace("@PORT@", &self.port.to_string())
            .replace("@AUTH@", &auth)
            .replace("@BEHAVIOUR@", &behaviour)
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Values spliced into the nginx config unquoted or inside `"…"`: nothing that could end a
/// token or a string.
fn assert_config_safe(s: &str) {
    assert!(
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=~".contains(c)),
        "{s:?} cannot be written into an nginx config as is"
    );
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/nginx")
}

/// The nginx binary, installed by `setup.sh` on first use in this test process.
fn nginx_binary() -> &'static Path {
    static NGINX: OnceLock<PathBuf> = OnceLock::new();
    NGINX.get_or_init(|| {
        let script = support_dir().join("setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): nginx is needed for the remote-cache tests\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A port nothing listened on a moment ago (the kernel's pick for port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers: a hung server.
/// Dropping it closes the listener and every connection it holds.
pub struct Unresponsive {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Unresponsive {
    pub fn start() -> Unresponsive {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => held.push(conn),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        Unresponsive {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Unresponsive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A proxy on 127.0.0.1 in front of a server that passes each connection's requests whole
/// but only the first `pass` bytes of what comes back; the rest it reads and drops, so the
/// server is not held up and the client sees a transfer that stops mid-body and never
/// resumes. Dropping it closes every connection it holds.
pub struct Stalling {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stalling {
    pub fn start(upstream: SocketAddr, pass: usize) -> Stalling {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut sockets = Vec::new();
                let mut pumps = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let server = TcpStream::connect(upstream).expect("connecting upstream");
                    sockets.push(client.try_clone().unwrap());
                    sockets.push(server.try_clone().unwrap());
                    let (mut from_client, mut to_server) =
                        (client.try_clone().unwrap(), server.try_clone().unwrap());
                    pumps.push(std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from_client, &mut to_server);
                        // The client is gone: so is the other pump's server.
                        let _ = to_server.shutdown(std::net::Shutdown::Both);
                    }));
                    let (mut from_server, mut to_client) = (server, client);
                    pumps.push(std::thread::spawn(move || {
                        let mut left = pass;
                        let mut buf = [0u8; 16 << 10];
                        // Ends when the server closes or the socket is shut down.
                        while let Ok(n) = from_server.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            let passed = n.min(left);
                            if passed > 0 && to_client.write_all(&buf[..passed]).is_err() {
                                break;
                            }
                            left -= passed;
                        }
                    }));
                }
                for s in &sockets {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                for p in pumps {
                    let _ = p.join();
                }
            }
        });
        Stalling {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Stalling {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), std only, 10 s timeouts.
/// The body is read to EOF, so responses must not be chunked (nginx's static and DAV answers
/// carry a Content-Length).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head_only {
        Vec::new()
    } else {
        raw[split + 4..].to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Standard base64 with padding (for the basic-auth header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
