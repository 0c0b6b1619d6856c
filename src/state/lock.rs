//! One orch run per state directory: an exclusive `flock` on `<state_dir>/lock`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Held for the life of a run; the kernel releases it if the process dies.
pub struct RunLock {
    _file: File,
}

pub enum LockWait {
    /// Fail at once when another run holds the lock.
    Refuse,
    /// Block until the other run ends.
    Wait,
}

impl RunLock {
    pub fn acquire(path: &Path, wait: LockWait) -> io::Result<RunLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let fd = file.as_raw_fd();
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            match wait {
                LockWait::Refuse => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another orch run{} is using {}; wait for it to finish, or pass --wait",
                            if holder.is_empty() {
                                String::new()
                            } else {
                                format!(" (pid {holder})")
                            },
                            path.parent().unwrap_or(path).display()
                        ),
                    ))
                }
                LockWait::Wait => {
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "orch: waiting for another run (pid {holder}) to finish..."
                    );
                    // SAFETY: as above, blocking this time.
                    if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
        }
        // The holder's pid, for the message above, in a fixed width written in place:
        // truncating a file that has data makes ext4 flush it when it is closed.
        let line = format!("{:<10}\n", std::process::id());
        file.write_all_at(line.as_bytes(), 0)?;
        if file.metadata()?.len() > line.len() as u64 {
            file.set_len(line.len() as u64)?;
        }
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let first = RunLock::acquire(&p, LockWait::Refuse).unwrap();
        let err = RunLock::acquire(&p, LockWait::Refuse).err().unwrap();
        assert!(err.to_string().contains("another orch run"), "{err}");
        drop(first);
        assert!(RunLock::acquire(&p, LockWait::Refuse).is_ok());
    }

    #[test]
    fn the_lock_file_names_its_holder_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        // What an older holder left, longer than a pid line.
        std::fs::write(&p, "123456789012345678901234567890\n").unwrap();
        let _held = RunLock::acquire(&p, LockWait::Refuse).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
