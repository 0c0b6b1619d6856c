//! The guard: a small process (`orch __guard`) started once per build that outlives orch only
//! to clean up after it. If orch dies without saying goodbye on the guard's stdin pipe (it
//! was SIGKILLed or crashed), the guard stops every process group orch had listed as running:
//! SIGTERM, a grace period, SIGKILL. So even `kill -9 orch` or an OOM kill leaves no agent
//! running, grandchildren included.
//!
//! The list is a register in memory shared with the guard (a memfd, the guard's stdout): a
//! slot per running group, written in place as groups start and end. The guard reads it only
//! once orch is gone, so listing a group never wakes it: on a busy machine that wake-up,
//! twice per task, cost a context switch next to the build's own processes.
//!
//! A group is listed just after it starts; orch killed in between would leave it unlisted.
//! So every child also carries `ORCH_RUN_ID` in its environment, and the guard also stops the
//! groups of processes it finds in /proc with this run's id.
//!
//! Slurm jobs are listed in the same register (as negative numbers); the guard hands them to
//! the canceller it is given (`scancel`, and a look in `squeue` for a job submitted but not
//! yet listed, by this run's id in its comment: see `slurm::cancel_run`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::procgroup;

/// orch's side of the guard. The guard process starts just before the first child, so a build
/// that starts none (everything up to date) does not pay for it.
pub struct Guard {
    program: PathBuf,
    grace: Duration,
    run_id: String,
    /// The build submits Slurm jobs: a dying orch's are cancelled too.
    slurm: bool,
    running: OnceLock<Option<Running>>,
}

struct Running {
    child: Mutex<Child>,
    pipe: Mutex<Option<ChildStdin>>,
    register: Mutex<Register>,
}

/// The shared list of what runs: [`REGISTER_MAGIC`], then 8-byte little-endian entries, a
/// process group's id or minus a Slurm job's, 0 for a free slot.
struct Register {
    file: File,
    /// Slots by entry: a pid reused before the old group's release holds two.
    slots_of: HashMap<i64, Vec<u64>>,
    free: Vec<u64>,
    next: u64,
}

/// What a register starts with, so the guard never takes other bytes on its stdout (a guard
/// started by hand) for pgids.
const REGISTER_MAGIC: &[u8; 8] = b"orchreg2";

impl Register {
    fn new() -> io::Result<Register> {
        // SAFETY: memfd_create takes a NUL-terminated name; on success we own the descriptor.
        let fd = unsafe { libc::memfd_create(c"orch-guard".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.write_all_at(REGISTER_MAGIC, 0)?;
        Ok(Register {
            file,
            slots_of: HashMap::new(),
            free: Vec::new(),
            next: 0,
        })
    }

    fn offset(slot: u64) -> u64 {
        REGISTER_MAGIC.len() as u64 + slot * 8
    }

    fn list(&mut self, entry: i64) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.slots_of.entry(entry).or_default().push(slot);
        self.file
            .write_all_at(&entry.to_le_bytes(), Self::offset(slot))
    }

    /// Unlists what was listed first as `entry` (groups end in the order they start).
    fn unlist(&mut self, entry: i64) -> io::Result<()> {
        let Some(slots) = self.slots_of.get_mut(&entry) else {
            return Ok(());
        };
        let slot = slots.remove(0);
        if slots.is_empty() {
            self.slots_of.remove(&entry);
        }
        self.free.push(slot);
        self.file
            .write_all_at(&0i64.to_le_bytes(), Self::offset(slot))
    }
}

/// What the register lists: process groups and Slurm jobs.
#[derive(Debug, Default, PartialEq)]
struct Listed {
    groups: Vec<i32>,
    jobs: Vec<u64>,
}

/// In the guard: what the register, its stdout, lists. Anything else on stdout (the guard
/// started by hand) lists nothing.
fn read_register() -> Listed {
    // SAFETY: fd 1 is borrowed, never closed here.
    let stdout = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    registered_groups(&stdout)
}

/// What `register` lists, read from its start whatever its file offset.
fn registered_groups(register: &File) -> Listed {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match register.read_at(&mut chunk, bytes.len() as u64) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Not a file (a pipe, a terminal): no register.
            Err(_) => break,
        }
    }
    listed_groups(&bytes)
}

/// What the bytes of a register list; nothing if they are not one.
fn listed_groups(bytes: &[u8]) -> Listed {
    let mut listed = Listed::default();
    let Some(slots) = bytes.strip_prefix(REGISTER_MAGIC) else {
        return listed;
    };
    for b in slots.chunks_exact(8) {
        let entry = i64::from_le_bytes(b.try_into().expect("8 bytes"));
        if entry > 1 && entry <= i64::from(i32::MAX) {
            listed.groups.push(entry as i32);
        } else if entry < 0 {
            listed.jobs.push(entry.unsigned_abs());
        }
    }
    listed
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
            slurm: false,
            running: OnceLock::new(),
        }
    }

    /// A guard that also cancels this run's Slurm jobs when orch dies.
    pub fn with_slurm(mut self) -> Guard {
        self.slurm = true;
        self
    }

    /// The value of `ORCH_RUN_ID` in every child's environment.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Starts `program __guard` in its own process group, so a Ctrl-C meant for orch does
    /// not reach it.
    fn start(&self) -> io::Result<Running> {
        let register = Register::new()?;
        let mut command = Command::new(&self.program);
        command
            .arg("__guard")
            .arg(self.grace.as_millis().to_string())
            .arg(&self.run_id);
        if self.slurm {
            command.arg("slurm");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::from(register.file.try_clone()?))
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Running {
            child: Mutex::new(child),
            pipe: Mutex::new(pipe),
            register: Mutex::new(register),
        })
    }

    fn running(&self) -> Option<&Running> {
        self.running
            .get_or_init(|| match self.start() {
                Ok(r) => Some(r),
                Err(e) => {
                    let _ = writeln!(
                        io::stderr(),
                        "orch: crash guard not started ({e}); running without it"
                    );
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
        self.list(i64::from(pgid));
    }

    pub fn release(&self, pgid: i32) {
        self.unlist(i64::from(pgid));
    }

    /// Registers a Slurm job to cancel if orch dies.
    pub fn watch_job(&self, job: u64) {
        self.list(-(job.min(i64::MAX as u64) as i64));
    }

    pub fn release_job(&self, job: u64) {
        self.unlist(-(job.min(i64::MAX as u64) as i64));
    }

    fn list(&self, entry: i64) {
        if let Some(r) = self.running() {
            // A failed write costs only the crash cleanup of this entry; the build goes on.
            let _ = r.register.lock().unwrap().list(entry);
        }
    }

    fn unlist(&self, entry: i64) {
        if let Some(Some(r)) = self.running.get() {
            let _ = r.register.lock().unwrap().unlist(entry);
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

/// What cancels a dead orch's batch jobs, given the ids it had listed.
pub type CancelJobs<'a> = &'a dyn Fn(&[u64]);

/// The guard process itself: waits on stdin for goodbye or EOF; the register is its stdout.
/// With `cancel_jobs`, the run's Slurm jobs (those listed) are handed to it too.
pub fn run_guard(grace: Duration, run_id: Option<&str>, cancel_jobs: Option<CancelJobs>) -> i32 {
    // SAFETY: setting signal dispositions to ignore, before any threads exist.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut said = Vec::new();
    let _ = io::Read::read_to_end(&mut io::stdin().lock(), &mut said);
    if said.starts_with(b"exit") {
        return 0;
    }
    // orch is gone without saying goodbye: what it listed is what it left running.
    let Listed {
        groups: mut live,
        jobs,
    } = read_register();
    if let Some(cancel) = cancel_jobs {
        // First, so the batch system starts stopping them while the groups get their grace.
        cancel(&jobs);
    }
    if let Some(id) = run_id {
        for g in groups_tagged(id) {
            if !live.contains(&g) {
                live.push(g);
            }
        }
    }
    // A group orch had stopped (Ctrl-Z, then orch killed) acts on SIGTERM only once
    // continued, which this also does.
    for &g in &live {
        procgroup::ask_group_to_end(g, libc::SIGTERM);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The groups the guard would read.
    fn listed(r: &Register) -> Vec<i32> {
        registered_groups(&r.file).groups
    }

    #[test]
    fn the_register_lists_running_groups_and_reuses_free_slots() {
        let mut r = Register::new().unwrap();
        for g in [101, 102, 103] {
            r.list(g).unwrap();
        }
        r.unlist(102).unwrap();
        assert_eq!(listed(&r), [101, 103]);
        r.list(104).unwrap();
        assert_eq!(listed(&r), [101, 104, 103], "slot of 102 reused");
        r.unlist(999).unwrap(); // never listed: nothing changes
        r.unlist(101).unwrap();
        r.unlist(104).unwrap();
        r.unlist(103).unwrap();
        assert!(listed(&r).is_empty());
        assert_eq!(
            r.file.metadata().unwrap().len(),
            REGISTER_MAGIC.len() as u64 + 24,
            "three slots, no more"
        );
    }

    #[test]
    fn a_pid_reused_before_its_release_keeps_both_listings() {
        let mut r = Register::new().unwrap();
        r.list(200).unwrap();
        r.list(200).unwrap(); // the old group's release has not run yet
        r.unlist(200).unwrap();
        assert_eq!(listed(&r), [200], "the new group stays listed");
        r.unlist(200).unwrap();
        assert!(listed(&r).is_empty());
    }

    #[test]
    fn bytes_without_the_magic_list_nothing() {
        assert_eq!(
            listed_groups(b"\x05\x00\x00\x00\x00\x00\x00\x00"),
            Listed::default()
        );
        let mut bytes = REGISTER_MAGIC.to_vec();
        bytes.extend_from_slice(&77i64.to_le_bytes());
        assert_eq!(listed_groups(&bytes).groups, [77]);
    }

    #[test]
    fn slurm_jobs_share_the_register_with_groups() {
        let mut r = Register::new().unwrap();
        r.list(300).unwrap();
        r.list(-4_000_000_000).unwrap();
        r.list(-17).unwrap();
        r.unlist(-17).unwrap();
        let listed = registered_groups(&r.file);
        assert_eq!(listed.groups, [300]);
        assert_eq!(listed.jobs, [4_000_000_000], "job ids past i32 fit");
    }
}
