//! A remote cache over the Bazel HTTP cache protocol: `GET`/`HEAD`/`PUT` of `/ac/<key>`
//! (an action record) and `/cas/<sha256>` (a blob), under the URL's prefix. bazel-remote
//! (with `--disable_http_ac_validation`, since an orch record is not a Bazel ActionResult),
//! nginx with WebDAV `PUT`, or any server that stores what it is given speaks it.
//!
//! The client is ureq, with its default features off: blocking, plain HTTP, a handful of
//! small crates (no TLS stack, no async runtime), which is all a cache on the local network
//! needs; an https cache is reached through a local TLS proxy. Its connections are kept
//! alive and reused. No request has a limit on its whole duration: there is a connect
//! timeout, and a stall timeout on every read and write (no byte moving for that long), so a
//! multi-GB blob on a slow link takes what it takes while a hung server costs the stall
//! timeout once.
//!
//! A remote is a help, never a dependency: the first request that fails (refused, timed
//! out, a 5xx, an unexpected status) is reported once and the remote is left alone for the
//! rest of the build, which goes on locally; there are no retries to storm a sick server.
//! Every blob read is checked against both its digests before it is used. Uploads go to one
//! background thread through a bounded queue, blobs first and the record last (so a reader
//! never finds a record whose blobs are not there yet); the build drains it at its end, for
//! at most [`DRAIN_LIMIT`].
//!
//! The credentials are read from the environment variable the plan names, kept in memory
//! only and sent as the `Authorization` header; no message here includes them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::blob_io::{CopyError, Hashes};
use super::key::ActionKey;
use super::local::LocalStore;
use super::record::{ActionRecord, CachedFile};
use crate::plan::{AuthScheme, RemoteCache, RemoteMode};

/// How long a build waits at its end for the uploads still queued.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Uploads queued at most; a worker that finds the queue full waits (the server is slower
/// than the build: memory stays bounded).
const QUEUE: usize = 1024;
/// An action record is a few hundred bytes; anything this large is not one.
const RECORD_LIMIT: u64 = 4 << 20;

/// One task's upload: its blobs (in the local store) and then its record.
struct Upload {
    key: ActionKey,
    record: Vec<u8>,
    blobs: Vec<(String, PathBuf)>,
}

struct Shared {
    base: String,
    connect_timeout: Duration,
    stall_timeout: Duration,
    agent: ureq::Agent,
    auth: Option<String>,
    down: AtomicBool,
    notes: Mutex<Vec<String>>,
    uploaded: AtomicU64,
}

pub struct Remote {
    shared: Arc<Shared>,
    mode: RemoteMode,
    queue: Mutex<Option<SyncSender<Upload>>>,
    drained: Mutex<Option<Receiver<()>>>,
}

/// What a `GET` came to.
enum Got {
    Body(Vec<u8>),
    /// A miss (404), or a server that failed (reported once).
    Absent,
    /// A body longer than the entry can be.
    TooLong,
}

/// A blob that could not be used.
#[derive(Debug)]
pub enum BlobError {
    /// Not on the server, or the server failed (already reported).
    Missing,
    /// On the server (or in the local store), but not what its digest says.
    Corrupt(String),
    /// Could not be written where it goes.
    Unwritable(std::io::Error),
}

impl Shared {
    /// The first failure is said once; the remote is not asked again in this build.
    fn failed(&self, what: &str, why: impl std::fmt::Display) {
        if !self.down.swap(true, Ordering::SeqCst) {
            self.note(format!(
                "remote cache {}: {what} failed ({why}); going on without it for this build",
                self.base
            ));
        }
    }

    /// A request that failed, a timeout named by the setting that bounds it.
    fn request_failed(&self, what: &str, e: &ureq::Error) {
        self.failed(what, self.why(e));
    }

    fn why(&self, e: &ureq::Error) -> String {
        use crate::duration::format_exact;
        match e {
            ureq::Error::Timeout(ureq::Timeout::PerRead) => format!(
                "stalled: nothing received for {} (remote_cache_stall_timeout)",
                format_exact(self.stall_timeout)
            ),
            ureq::Error::Timeout(ureq::Timeout::PerWrite) => format!(
                "stalled: nothing sent for {} (remote_cache_stall_timeout)",
                format_exact(self.stall_timeout)
            ),
            ureq::Error::Timeout(ureq::Timeout::Connect) => format!(
                "no connection after {} (remote_cache_connect_timeout)",
                format_exact(self.connect_timeout)
            ),
            other => other.to_string(),
        }
    }

    /// As [`Shared::why`], for what a body reader returned (a ureq error inside).
    fn why_io(&self, e: &std::io::Error) -> String {
        match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            Some(inner) => self.why(inner),
            None => e.to_string(),
        }
    }

    fn note(&self, message: String) {
        self.notes.lock().unwrap().push(message);
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let url = self.url(path);
        let r = match method {
            "HEAD" => self.agent.head(&url),
            _ => self.agent.get(&url),
        };
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// `GET path`: the response of a 200, its body still to read; `None` for a miss (404)
    /// or a server that failed (reported).
    fn open(&self, path: &str) -> Option<ureq::http::Response<ureq::Body>> {
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        match self.request("GET", path).call() {
            Ok(resp) => match resp.status().as_u16() {
                200 => Some(resp),
                404 => None,
                s => {
                    self.failed(&format!("GET /{path}"), format!("HTTP {s}"));
                    None
                }
            },
            Err(e) => {
                self.request_failed(&format!("GET /{path}"), &e);
                None
            }
        }
    }

    /// `GET path`, its body read whole, up to `limit` bytes (a record: small).
    fn get(&self, path: &str, limit: u64) -> Got {
        let Some(mut resp) = self.open(path) else {
            return Got::Absent;
        };
        match resp.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(b) => Got::Body(b),
            // Longer than what is asked for: not the entry, but the server works.
            Err(ureq::Error::BodyExceedsLimit(_)) => Got::TooLong,
            Err(e) => {
                self.request_failed(&format!("GET /{path}"), &e);
                Got::Absent
            }
        }
    }

    /// `HEAD path`: whether it is there (a failure reads as absent, and is reported).
    fn has(&self, path: &str) -> bool {
        match self.request("HEAD", path).call() {
            Ok(resp) => resp.status().as_u16() == 200,
            Err(e) => {
                self.request_failed(&format!("HEAD /{path}"), &e);
                false
            }
        }
    }

    /// `PUT path`: a record's bytes, or a blob's file, streamed with its length.
    fn put(&self, path: &str, body: impl ureq::AsSendBody) -> bool {
        let r = self.agent.put(&self.url(path));
        let r = match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        };
        match r.send(body) {
            Ok(resp) if resp.status().is_success() => true,
            Ok(resp) => {
                self.failed(
                    &format!("PUT /{path}"),
                    format!("HTTP {}", resp.status().as_u16()),
                );
                false
            }
            Err(e) => {
                self.request_failed(&format!("PUT /{path}"), &e);
                false
            }
        }
    }

    fn upload(&self, job: &Upload) {
        for (sha256, file) in &job.blobs {
            if self.down.load(Ordering::SeqCst) {
                return;
            }
            let path = format!("cas/{sha256}");
            if self.has(&path) {
                continue;
            }
            let Ok(file) = std::fs::File::open(file) else {
                // Evicted meanwhile: the record would name a blob nobody has.
                return;
            };
            if !self.put(&path, file) {
                return;
            }
        }
        if !self.down.load(Ordering::SeqCst)
            && self.put(&format!("ac/{}", job.key.hex()), &job.record[..])
        {
            self.uploaded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Remote {
    /// The remote of these settings, its credentials read from the environment now. A
    /// variable that is not set is said once; the remote is then used without them.
    pub fn new(config: &RemoteCache) -> Remote {
        // No global or per-phase deadline: besides costing a resolver thread per request,
        // it would cut off a large blob that is still moving.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.stall_timeout))
            .timeout_per_write(Some(config.stall_timeout))
            .http_status_as_error(false)
            // A cache named by its address is reached directly, not through $http_proxy.
            .proxy(None)
            .build()
            .into();
        let mut notes = Vec::new();
        let auth = config
            .auth
            .as_ref()
            .and_then(|a| match std::env::var(&a.env) {
                Ok(v) if !v.is_empty() => Some(match a.scheme {
                    AuthScheme::Bearer => format!("Bearer {v}"),
                    AuthScheme::Basic => format!("Basic {}", base64(v.as_bytes())),
                }),
                _ => {
                    notes.push(format!(
                        "remote cache {}: ${} is not set; asking it without credentials",
                        config.url, a.env
                    ));
                    None
                }
            });
        let shared = Arc::new(Shared {
            base: config.url.clone(),
            connect_timeout: config.connect_timeout,
            stall_timeout: config.stall_timeout,
            agent,
            auth,
            down: AtomicBool::new(false),
            notes: Mutex::new(notes),
            uploaded: AtomicU64::new(0),
        });
        let (queue, drained) = if config.mode == RemoteMode::ReadWrite {
            let (tx, rx) = sync_channel::<Upload>(QUEUE);
            let (done_tx, done_rx) = sync_channel::<()>(1);
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("cache-upload".into())
                .spawn(move || {
                    for job in rx {
                        s.upload(&job);
                    }
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => (Some(tx), Some(done_rx)),
                Err(_) => (None, None),
            }
        } else {
            (None, None)
        };
        Remote {
            shared,
            mode: config.mode,
            queue: Mutex::new(queue),
            drained: Mutex::new(drained),
        }
    }

    pub fn url(&self) -> &str {
        &self.shared.base
    }

    pub fn mode(&self) -> RemoteMode {
        self.mode
    }

    /// The record under `key`: `Ok(None)` for a miss (or a remote that failed, reported),
    /// `Err` for one that is there but is not a record.
    pub fn record(&self, key: &ActionKey) -> Result<Option<ActionRecord>, String> {
        match self.shared.get(&format!("ac/{}", key.hex()), RECORD_LIMIT) {
            Got::Absent => Ok(None),
            Got::TooLong => Err(format!("longer than {RECORD_LIMIT} bytes")),
            Got::Body(bytes) => ActionRecord::parse(&bytes).map(Some),
        }
    }

    /// Streams the blob `f` names into the local store, through its temp directory: kept
    /// only if what came checks against its SHA-256, its blake3 and its size (a longer body
    /// is cut off at the size). Memory: one buffer, whatever the blob's size.
    pub fn fetch_into(&self, f: &CachedFile, local: &LocalStore) -> Result<(), BlobError> {
        let path = format!("cas/{}", f.sha256);
        let Some(mut resp) = self.shared.open(&path) else {
            return Err(BlobError::Missing);
        };
        let mut body = resp.body_mut().as_reader();
        let staged = match local.stage_blob(&mut body, f.size, Hashes::Both) {
            Ok(s) => s,
            Err(CopyError::TooLong) => {
                return Err(BlobError::Corrupt(format!(
                    "/{path} is longer than its {} bytes",
                    f.size
                )))
            }
            Err(CopyError::Read(e)) => {
                self.shared
                    .failed(&format!("GET /{path}"), self.shared.why_io(&e));
                return Err(BlobError::Missing);
            }
            Err(CopyError::Write(e)) | Err(CopyError::Interrupted(e)) => {
                return Err(BlobError::Unwritable(e))
            }
        };
        let got = &staged.copied;
        if got.digests.sha256 != f.sha256 || got.digests.blake3 != f.blake3 || got.size != f.size {
            return Err(BlobError::Corrupt(format!(
                "/{path} holds {} bytes that do not hash to it",
                got.size
            )));
        }
        local.commit_blob(staged).map_err(BlobError::Unwritable)
    }

    /// Queues a task's upload (read-write only; a remote that failed gets none).
    pub fn upload(&self, key: ActionKey, record: &ActionRecord, blobs: Vec<(String, PathBuf)>) {
        if self.shared.down.load(Ordering::SeqCst) {
            return;
        }
        if let Some(tx) = self.queue.lock().unwrap().as_ref() {
            let _ = tx.send(Upload {
                key,
                record: record.to_json(),
                blobs,
            });
        }
    }

    /// What there is to say (each once): a failure, a missing credential.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.notes.lock().unwrap())
    }

    /// Waits (at most `limit`) for the queued uploads: how many records went up in all.
    pub fn drain(&self, limit: Duration) -> u64 {
        drop(self.queue.lock().unwrap().take());
        if let Some(done) = self.drained.lock().unwrap().take() {
            if done.recv_timeout(limit).is_err() {
                self.shared.note(format!(
                    "remote cache {}: uploads still going after {}s; the rest are left",
                    self.shared.base,
                    limit.as_secs()
                ));
                // The thread holds the rest; it stops at the next failure or the exit.
                self.shared.down.store(true, Ordering::SeqCst);
            }
        }
        self.shared.uploaded.load(Ordering::Relaxed)
    }
}

/// Standard base64 with padding, for a basic-auth header.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::cache::key::BlobDigests;

    /// A server on 127.0.0.1 that answers one request with `body`, then closes.
    fn serve_once(body: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/orch", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body);
        });
        (url, server)
    }

    #[test]
    fn an_interrupt_during_a_fetch_is_not_a_failed_remote() {
        let body = b"a blob on the server";
        let (url, server) = serve_once(body);
        let remote = Remote::new(&RemoteCache {
            url,
            mode: RemoteMode::Read,
            auth: None,
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(5),
        });
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::new(dir.path());
        let d = BlobDigests::of(body);
        let f = CachedFile {
            path: "out".into(),
            blake3: d.blake3.clone(),
            sha256: d.sha256.clone(),
            size: body.len() as u64,
            mode: 0o644,
        };
        {
            let _stop = crate::interrupt::tests::interrupt_this_thread();
            match remote.fetch_into(&f, &local) {
                Err(BlobError::Unwritable(e)) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted)
                }
                other => panic!("an interrupt, not {other:?}"),
            }
        }
        server.join().unwrap();
        // Nothing is said against the server, which the rest of the build may still ask,
        // and nothing half-copied is kept.
        assert!(remote.take_notes().is_empty());
        assert!(!remote.shared.down.load(Ordering::SeqCst));
        assert!(!local.has_blob(&d.blake3));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), coded);
        }
    }
}
