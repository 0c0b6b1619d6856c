//! Replacing a file whole, so that readers see the old content or the new, never a mix: a
//! [`TempFile`] beside it, renamed over it once written (the cache streams blobs through one).
//! A kill between the two leaves the temp file; [`sweep_left_over_temps`] removes those whose
//! writer is gone.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// What every temp file's name has between its target's name and its writer's PID.
const MARK: &str = ".orch-tmp.";
/// A temp file whose writer's PID is not running here is left alone this long after its last
/// write: a writer in another PID namespace (a container sharing the directory) may still be
/// at it.
const GONE_WRITER_AGE: Duration = Duration::from_secs(60);
/// A temp file not written for this long is left over whatever runs under its PID now (PIDs
/// are reused): no copy pauses for a day.
const ANY_WRITER_AGE: Duration = Duration::from_secs(24 * 3600);

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix:
/// a temp file beside it, fsync, rename over, fsync the directory.
pub fn persist_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, true)
}

/// As [`persist_atomic`], without the fsyncs: for files that are cheap to redo, whose torn
/// copy after a power loss the output-hash check catches (shell results, the periodic
/// master_plan.md, the plan cache).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file(path, bytes, false)
}

fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut tmp = TempFile::beside_in_place(path)?;
    tmp.file.write_all(bytes)?;
    if sync {
        tmp.file.sync_all()?;
    }
    tmp.persist(path)?;
    if sync {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A file being written under a temp name in the directory it will be renamed within;
/// removed unless [`TempFile::persist`]ed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    pub file: File,
    kept: bool,
}

impl TempFile {
    /// A new temp file in `dir` (created if need be), named after `name`.
    pub fn new_in(dir: &Path, name: &str) -> io::Result<TempFile> {
        std::fs::create_dir_all(dir)?;
        TempFile::open_in(dir, name)
    }

    /// A new temp file in `dir`, which must exist.
    fn open_in(dir: &Path, name: &str) -> io::Result<TempFile> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(format!(
            ".{name}.orch-tmp.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options().write(true).create_new(true).open(&path)?;
        Ok(TempFile {
            path,
            file,
            kept: false,
        })
    }

    /// One beside `path`, so it can be renamed over it (its directory created if need be).
    pub fn beside(path: &Path) -> io::Result<TempFile> {
        let (dir, name) = dir_and_name(path);
        TempFile::new_in(dir, &name)
    }

    /// As [`TempFile::beside`], in a directory that must already exist.
    fn beside_in_place(path: &Path) -> io::Result<TempFile> {
        let (dir, name) = dir_and_name(path);
        TempFile::open_in(dir, &name)
    }

    /// Renames it to `to`: whole or not at all for a reader there.
    pub fn persist(mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What [`sweep_left_over_temps`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Swept) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Removes the temp files in `dir` (not below it) that a killed writer left: named as a
/// [`TempFile`] is, `.NAME.orch-tmp.PID.N`, and either its PID runs no process here and it
/// was not written for a minute, or it was not written for a day. Anything else is left,
/// and so is a directory that cannot be read.
pub fn sweep_left_over_temps(dir: &Path) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return swept;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(writer_pid) else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        let idle = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        let left_over = idle >= ANY_WRITER_AGE || (idle >= GONE_WRITER_AGE && !running(pid));
        if left_over && meta.is_file() && std::fs::remove_file(e.path()).is_ok() {
            swept.files += 1;
            swept.bytes += meta.len();
        }
    }
    swept
}

/// The PID in a temp file's name (`.NAME.orch-tmp.PID.N`), if it is one.
fn writer_pid(name: &str) -> Option<u32> {
    let (head, tail) = name.rsplit_once(MARK)?;
    let (pid, n) = tail.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (name.starts_with('.') && head.len() > 1 && digits(pid) && digits(n))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Whether a process with this PID exists (this one included; one of another user's is).
fn running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists; nothing is sent.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn dir_and_name(path: &Path) -> (&Path, String) {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_atomic_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        persist_atomic(&p, b"first").unwrap();
        persist_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn a_temp_file_names_its_writer() {
        assert_eq!(writer_pid(".out.txt.orch-tmp.4242.7"), Some(4242));
        assert_eq!(writer_pid(".blob.orch-tmp.1.0"), Some(1));
        for not_one in [
            "out.txt.orch-tmp.4242.7",
            ".orch-tmp.4242.7",
            ".out.orch-tmp.42x.7",
            ".out.orch-tmp.4242.",
            ".out.orch-tmp.4242",
            ".notes.txt",
        ] {
            assert_eq!(writer_pid(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn a_sweep_removes_what_a_gone_writer_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // A PID that ran a moment ago and is gone (reaped).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        let plant = |name: &str, mtime: Option<SystemTime>| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"12345").unwrap();
            if let Some(t) = mtime {
                File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
            }
        };
        plant(&format!(".a.txt.orch-tmp.{gone}.0"), Some(hour_ago));
        plant(&format!(".state.bin.orch-tmp.{me}.1"), Some(two_days_ago));
        // Kept: its writer may still be at it (fresh, or running).
        plant(&format!(".b.txt.orch-tmp.{gone}.2"), None);
        plant(&format!(".c.txt.orch-tmp.{me}.3"), Some(hour_ago));
        plant(".notes.txt", Some(two_days_ago));
        assert_eq!(
            sweep_left_over_temps(dir.path()),
            Swept {
                files: 2,
                bytes: 10
            }
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".b.txt.orch-tmp.{gone}.2".replace("{gone}", &gone.to_string()),
                ".c.txt.orch-tmp.{me}.3".replace("{me}", &me.to_string()),
                ".notes.txt".to_string(),
            ]
        );
        assert_eq!(
            sweep_left_over_temps(&dir.path().join("absent")),
            Swept::default()
        );
    }

    #[test]
    fn a_temp_file_is_gone_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.txt");
        let mut t = TempFile::beside(&target).unwrap();
        t.file.write_all(b"x").unwrap();
        drop(t);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
        let mut t = TempFile::beside(&target).unwrap();
        t.file.write_all(b"y").unwrap();
        t.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"y");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
