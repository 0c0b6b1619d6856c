//! The local backend: one child per job, in its own process group, with stdin fed from
//! memory, stdout/stderr captured, a timeout and cancellation that stop the whole group
//! (the signal orch received, or SIGTERM on a timeout; the grace period; SIGKILL), and no
//! member of the group left behind. Every group is listed while it runs, so Ctrl-Z can stop
//! them all ([`procgroup::pause_running`]). With a crash [`Guard`], every group is listed
//! with it too and every child carries `ORCH_RUN_ID`, so not even `kill -9` of orch leaves
//! one running.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::backend::{
    Admission, Backend, Exit, Job, JobEvent, JobRecord, ProcessOutput, ProcessSpec, Stopped,
    ADMISSION_POLL, STRIPPED_ENV,
};
use super::guard::Guard;
use super::procgroup;
use crate::cancel::Cancel;
use crate::clock::{boot_ticks_now, Active, StartWindow};

/// Child processes on this machine, under `guard` when there is one.
pub struct Local {
    guard: Option<Guard>,
}

impl Local {
    pub fn new(guard: Option<Guard>) -> Local {
        Local { guard }
    }
}

impl Local {
    /// Starts a child for a spec made on the spot (a Slurm step's `srun`), which the job
    /// then owns.
    pub(super) fn start_owned(&self, spec: ProcessSpec) -> io::Result<Box<dyn Job + '_>> {
        Ok(Box::new(self.spawn_job(Cow::Owned(spec))?))
    }

    fn spawn_job<'a>(&'a self, spec: Cow<'a, ProcessSpec>) -> io::Result<LocalJob<'a>> {
        // The guard runs before a child exists, so that a child orch dies too soon to list
        // is still found (by its `ORCH_RUN_ID`).
        if let Some(g) = &self.guard {
            g.start_if_needed();
        }
        let started = Active::now();
        let (child, window) = procgroup::start_listed(
            || spawn(&spec, self.guard.as_ref().map(Guard::run_id)),
            |(child, _)| child.id() as i32,
        )?;
        let pgid = child.id() as i32;
        if let Some(g) = &self.guard {
            g.watch(pgid);
        }
        Ok(LocalJob {
            child: Some(child),
            pgid,
            window,
            spec,
            started,
            guard: self.guard.as_ref(),
        })
    }

    /// The crash guard, if this build has one.
    pub(super) fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }
}

impl Backend for Local {
    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> io::Result<Box<dyn Job + 'a>> {
        Ok(Box::new(self.spawn_job(Cow::Borrowed(spec))?))
    }

    fn holds_stdin(&self, _spec: &ProcessSpec) -> bool {
        true
    }

    fn reap_stale(&self, left: &[JobRecord]) -> usize {
        let groups: Vec<(i32, StartWindow)> = left
            .iter()
            .filter_map(|j| match *j {
                JobRecord::Local { pgid, window } => Some((pgid, window)),
                JobRecord::Slurm { .. } => None,
            })
            .collect();
        procgroup::reap_stale(&groups)
    }

    fn finish(&mut self) -> Vec<JobRecord> {
        if let Some(g) = self.guard.take() {
            g.finish();
        }
        Vec::new()
    }
}

/// A running child and its process group.
struct LocalJob<'a> {
    /// Taken by the wait; still here on drop only if nobody waited.
    child: Option<Child>,
    pgid: i32,
    window: StartWindow,
    spec: Cow<'a, ProcessSpec>,
    started: Active,
    guard: Option<&'a Guard>,
}

impl Job for LocalJob<'_> {
    fn wait(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
    ) -> io::Result<ProcessOutput> {
        self.wait_lines(cancel, on_event, &mut |_| {})
    }

    fn wait_lines(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ProcessOutput> {
        self.supervised(cancel, on_event, on_line, None)
    }

    fn wait_lines_admitted(
        self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
        admit: &mut dyn FnMut() -> Admission,
    ) -> io::Result<ProcessOutput> {
        self.supervised(cancel, on_event, on_line, Some(admit))
    }
}

impl LocalJob<'_> {
    fn supervised(
        mut self: Box<Self>,
        cancel: &Cancel,
        on_event: &mut dyn FnMut(JobEvent),
        on_line: &mut dyn FnMut(&[u8]),
        admit: Option<&mut dyn FnMut() -> Admission>,
    ) -> io::Result<ProcessOutput> {
        on_event(JobEvent::Started(JobRecord::Local {
            pgid: self.pgid,
            window: self.window,
        }));
        let mut child = self.child.take().expect("waited once");
        let supervised = supervise(
            &mut child,
            self.pgid,
            &self.spec,
            cancel,
            self.started,
            on_line,
            admit,
        );
        if supervised.is_err() {
            // Supervision failed midway: stop the group rather than leave it unwatched. (On
            // success, `supervise` stopped what was left of it when the leader exited.)
            procgroup::kill_group(self.pgid, libc::SIGKILL);
        }
        let output = supervised.map(|(exit, stdout, stderr, truncated)| ProcessOutput {
            exit,
            stdout,
            stderr,
            truncated,
            duration: self.started.elapsed(),
        });
        procgroup::unlist(self.pgid);
        if let Some(g) = self.guard {
            g.release(self.pgid);
        }
        output
    }
}

impl Drop for LocalJob<'_> {
    /// A job dropped unwaited (its caller panicked in between) is stopped, not left running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            procgroup::kill_group(self.pgid, libc::SIGKILL);
            let _ = child.wait();
            procgroup::unlist(self.pgid);
            if let Some(g) = self.guard {
                g.release(self.pgid);
            }
        }
    }
}

/// Starts `spec`'s child in a process group of its own; with `run_id`, the child carries it
/// as `ORCH_RUN_ID` (last, so a plan cannot override it). Returns the child and the window
/// its start time falls in.
fn spawn(spec: &ProcessSpec, run_id: Option<&str>) -> io::Result<(Child, StartWindow)> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    // A bare name is looked up on PATH once per run, not by the child on every spawn (each
    // miss is a failed execve). The child's own PATH, if the spec sets one, decides instead.
    let resolved = if spec.env.iter().any(|(k, _)| k == "PATH") {
        None
    } else {
        resolve_program(program)
    };
    let earliest = boot_ticks_now();
    let spawned = match &resolved {
        // argv[0] stays the bare name: some programs (busybox) act on it.
        Some(path) => command(path.as_os_str(), args, spec, run_id)
            .arg0(program)
            .spawn()
            .or_else(|e| match e.kind() {
                // The file found earlier is gone (say, a tool reinstalled): search again.
                io::ErrorKind::NotFound => {
                    forget_program(program);
                    command(program.as_ref(), args, spec, run_id).spawn()
                }
                _ => Err(e),
            }),
        None => command(program.as_ref(), args, spec, run_id).spawn(),
    };
    let child = spawned.map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("command `{program}` not found (is it installed and on PATH?)"),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot start `{program}`: {e}"))
        }
    })?;
    let window = StartWindow {
        earliest,
        latest: boot_ticks_now(),
    };
    Ok((child, window))
}

fn command(
    program: &OsStr,
    args: &[String],
    spec: &ProcessSpec,
    run_id: Option<&str>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for k in STRIPPED_ENV
        .iter()
        .copied()
        .chain(spec.unset.iter().map(String::as_str))
    {
        cmd.env_remove(k);
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    if let Some(id) = run_id {
        cmd.env("ORCH_RUN_ID", id);
    }
    // No pre_exec hook: that would force fork(), which copies orch's page tables for every
    // task. Without one, std spawns with posix_spawn (vfork-like). Orphans if orch is
    // SIGKILLed are the guard's job (see guard.rs).
    cmd
}

/// Programs found on PATH, by name and the PATH they were found on.
static RESOLVED: Mutex<Vec<(String, OsString, PathBuf)>> = Mutex::new(Vec::new());

/// The executable file a bare program name runs, searched on orch's PATH as execvp would.
/// `None` for a name with a slash (used as it is) or one not found (the spawn then reports it).
fn resolve_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') || program.is_empty() {
        return None;
    }
    let path_var = std::env::var_os("PATH")?;
    let mut known = RESOLVED.lock().unwrap();
    if let Some((_, _, found)) = known
        .iter()
        .find(|(name, on, _)| name == program && *on == path_var)
    {
        return Some(found.clone());
    }
    let found = search_path(program, &path_var)?;
    known.push((program.to_string(), path_var, found.clone()));
    Some(found)
}

/// The first executable `dir/program` over the entries of `path_var`, as execvp searches. A
/// relative entry before the match depends on the child's working directory, so from there
/// on the child decides (`None`).
fn search_path(program: &str, path_var: &OsStr) -> Option<PathBuf> {
    for dir in std::env::split_paths(path_var) {
        if !dir.is_absolute() {
            return None;
        }
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Some(candidate);
        }
    }
    None
}

fn forget_program(program: &str) {
    RESOLVED
        .lock()
        .unwrap()
        .retain(|(name, _, _)| name != program);
}

/// A regular file this process may execute (as execvp checks: `access(X_OK)`, so another
/// user's 0700 file or a noexec mount does not count).
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is NUL-terminated.
    let may_exec = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    } == 0;
    may_exec && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Forgets every program found on PATH: each build looks again, so a long `orch watch`
/// picks up a tool installed meanwhile.
pub fn forget_resolved_programs() {
    RESOLVED.lock().unwrap().clear();
}

/// One pipe being drained into memory, up to a cap.
struct Sink {
    fd: Option<std::os::fd::OwnedFd>,
    kept: Vec<u8>,
    truncated: bool,
    /// Where the next line starts in `kept`, and how far it was searched for a newline.
    line_start: usize,
    scanned: usize,
}

impl Sink {
    fn new(fd: Option<std::os::fd::OwnedFd>) -> Sink {
        Sink {
            fd,
            kept: Vec::new(),
            truncated: false,
            line_start: 0,
            scanned: 0,
        }
    }

    /// Hands each complete line read since the last call to `on_line`; at EOF the rest too.
    fn lines(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        while let Some(i) = self.kept[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + i;
            on_line(&self.kept[self.line_start..end]);
            self.line_start = end + 1;
            self.scanned = end + 1;
        }
        self.scanned = self.kept.len();
        if self.fd.is_none() && self.line_start < self.kept.len() && !self.truncated {
            on_line(&self.kept[self.line_start..]);
            self.line_start = self.kept.len();
        }
    }

    /// Reads what is available; closes the pipe at EOF or error.
    fn drain(&mut self, max: usize) {
        let Some(fd) = &self.fd else { return };
        // Left uninitialised: zeroing 16 KiB per read showed up in profiles of large builds.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
        // SAFETY: reading into a local buffer from a pipe we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let n = n as usize;
            // SAFETY: `read` initialised the first `n` bytes.
            let got = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            let room = max.saturating_sub(self.kept.len());
            self.kept.extend_from_slice(&got[..n.min(room)]);
            self.truncated |= n > room;
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            self.fd = None;
        }
    }
}

type Supervised = (Exit, Vec<u8>, Vec<u8>, bool);

/// Feeds stdin, drains stdout/stderr and waits for exit on the calling thread, with one
/// `poll` over the pipes and a pidfd: no helper threads, and no sleeping on the happy path.
/// The timeout and the grace period are on the active clock: a stop of orch (Ctrl-Z, which
/// stops the group too) does not count. With `admit`, the last byte of stdin waits for its
/// go (asked every [`ADMISSION_POLL`]), and the timeout starts then.
#[allow(clippy::too_many_arguments)]
fn supervise(
    child: &mut Child,
    pgid: i32,
    spec: &ProcessSpec,
    cancel: &Cancel,
    started: Active,
    on_line: &mut dyn FnMut(&[u8]),
    mut admit: Option<&mut dyn FnMut() -> Admission>,
) -> io::Result<Supervised> {
    use std::os::fd::OwnedFd;
    let mut stdin: Option<OwnedFd> = child.stdin.take().map(OwnedFd::from);
    let input = spec.stdin.as_deref().unwrap_or(&[]);
    // What may be written before the go: all but the last byte.
    let mut allowed = match admit {
        Some(_) => input.len().saturating_sub(1),
        None => input.len(),
    };
    let mut gave_up = false;
    let mut written = 0usize;
    if let Some(fd) = &stdin {
        set_nonblocking(fd.as_raw_fd());
    }
    let mut out = Sink::new(child.stdout.take().map(OwnedFd::from));
    let mut err = Sink::new(child.stderr.take().map(OwnedFd::from));
    let pidfd = pidfd_open(child.id() as i32);
    // A job held at its stdin has made no call yet: its timeout starts at the go.
    let mut deadline = match admit {
        Some(_) => None,
        None => spec.timeout.map(|t| started + t),
    };
    let mut stopping: Option<(Exit, Active)> = None;
    let mut status: Option<std::process::ExitStatus> = None;
    // After the leader exits, leaked descendants may hold the pipes; give them this long.
    let mut drain_until: Option<Instant> = None;
    loop {
        if let Some(ask) = admit
            .as_mut()
            .filter(|_| status.is_none() && stopping.is_none())
        {
            match ask() {
                Admission::Wait => {}
                Admission::Go => {
                    admit = None;
                    allowed = input.len();
                    deadline = spec.timeout.map(|t| Active::now() + t);
                }
                Admission::GiveUp => {
                    admit = None;
                    gave_up = true;
                }
            }
        }
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() {
                // Anything still in the group after its leader ended is a leak: stop it so
                // nothing outlives the task.
                procgroup::kill_group(pgid, libc::SIGKILL);
                drain_until = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        let pipes_open = out.fd.is_some() || err.fd.is_some();
        if status.is_some() && (!pipes_open || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut push = |fd: i32, events: i16| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            })
        };
        push(out.fd.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
        push(err.fd.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
        let stdin_wanted = stdin.as_ref().filter(|_| written < allowed);
        push(stdin_wanted.map_or(-1, |f| f.as_raw_fd()), libc::POLLOUT);
        let pid_watch = if status.is_none() {
            pidfd.as_ref()
        } else {
            None
        };
        push(pid_watch.map_or(-1, |f| f.as_raw_fd()), libc::POLLIN);
        // Without a pidfd, exit is noticed by polling; keep that interval short.
        let mut wait = if pidfd.is_some() || status.is_some() {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(5)
        };
        if admit.is_some() {
            wait = wait.min(ADMISSION_POLL);
        }
        if let Some(d) = deadline.filter(|_| stopping.is_none()) {
            wait = wait.min(d.remaining());
        }
        // SAFETY: `fds` is a valid array of pollfd; negative fds are ignored by poll.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as i32,
            )
        };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if fds[0].revents != 0 {
            out.drain(spec.max_output);
            out.lines(on_line);
        }
        if fds[1].revents != 0 {
            err.drain(spec.max_output);
        }
        if fds[2].revents != 0 {
            if fds[2].revents & libc::POLLOUT != 0 && written < allowed {
                let fd = stdin.as_ref().unwrap().as_raw_fd();
                let rest = &input[written..allowed];
                // SAFETY: writing from a live slice to a pipe we own.
                let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                if n > 0 {
                    written += n as usize;
                } else if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    written = input.len(); // the child closed its stdin; not our error
                }
            } else {
                written = input.len();
            }
        }
        if stdin.is_some() && written >= input.len() && admit.is_none() && !gave_up {
            stdin = None; // EOF for the child
        }
        match stopping {
            None => {
                let why = if cancel.is_cancelled() {
                    Some((Exit::Cancelled, cancel.forwarded_signal()))
                } else if gave_up {
                    Some((Exit::Cancelled, libc::SIGTERM))
                } else if deadline.is_some_and(Active::has_passed) {
                    Some((Exit::TimedOut(Stopped::ProcessGroup), libc::SIGTERM))
                } else {
                    None
                };
                if let Some((why, sig)) = why {
                    if status.is_none() {
                        procgroup::ask_group_to_end(pgid, sig);
                        stopping = Some((why, Active::now() + spec.grace));
                    }
                }
            }
            Some((_, kill_at)) if kill_at.has_passed() => {
                procgroup::kill_group(pgid, libc::SIGKILL)
            }
            Some(_) => {}
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    let exit = match stopping {
        Some((why, _)) => why,
        None => match status.code() {
            Some(c) => Exit::Code(c),
            None => Exit::Signal(status.signal().unwrap_or(0)),
        },
    };
    Ok((exit, out.kept, err.kept, out.truncated || err.truncated))
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// A descriptor that polls readable when `pid` exits (Linux 5.3+); `None` on older kernels.
fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; on success we own the returned descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        None
    } else {
        Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    }
}

#[cfg(test)]
mod admitted_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIGKILLed process may take a moment to finish exiting.
    fn gone_soon(pid: i32) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if !procgroup::alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn run(spec: &ProcessSpec) -> ProcessOutput {
        Local::new(None)
            .run(spec, &Cancel::new(), &mut |_| {})
            .unwrap()
    }

    #[test]
    fn captures_output_and_exit_code() {
        let mut spec = ProcessSpec::shell("cat; echo err >&2; exit 3", std::env::temp_dir());
        spec.stdin = Some(b"hello".to_vec());
        let out = run(&spec);
        assert_eq!(out.exit, Exit::Code(3));
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let mut spec = ProcessSpec::shell(&script, dir.path().to_path_buf());
        spec.timeout = Some(Duration::from_millis(300));
        spec.grace = Duration::from_millis(200);
        let out = run(&spec);
        assert_eq!(out.exit, Exit::TimedOut(Stopped::ProcessGroup));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone_soon(pid), "background sleep {pid} survived");
    }

    #[test]
    fn leaked_background_process_is_stopped_when_the_leader_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}", pidfile.display());
        let out = run(&ProcessSpec::shell(&script, dir.path().to_path_buf()));
        assert!(out.exit.success());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone_soon(pid));
    }

    #[test]
    fn output_is_capped() {
        let mut spec = ProcessSpec::shell("head -c 100000 /dev/zero", std::env::temp_dir());
        spec.max_output = 1000;
        let out = run(&spec);
        assert!(out.exit.success());
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.truncated);
    }

    #[test]
    fn stdout_lines_arrive_as_they_are_written_and_within_the_cap() {
        let mut spec = ProcessSpec::shell(
            "printf 'one\\ntw'; sleep 0.2; printf 'o\\n\\nlast'; echo err >&2",
            std::env::temp_dir(),
        );
        let mut lines: Vec<(String, Duration)> = Vec::new();
        let start = Instant::now();
        let out = Local::new(None)
            .run_lines(&spec, &Cancel::new(), &mut |_| {}, &mut |l| {
                lines.push((String::from_utf8_lossy(l).into_owned(), start.elapsed()))
            })
            .unwrap();
        let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(texts, ["one", "two", "", "last"]);
        assert!(
            lines[0].1 < lines[1].1,
            "the first line came before the sleep"
        );
        assert_eq!(out.stdout, b"one\ntwo\n\nlast", "the capture is unchanged");
        // Past the cap, lines are not seen, and nothing half-kept is passed on.
        spec.argv[2] = "printf 'abc\\ndefghij\\nk\\n'".into();
        spec.max_output = 6;
        let mut seen = Vec::new();
        let out = Local::new(None)
            .run_lines(&spec, &Cancel::new(), &mut |_| {}, &mut |l| {
                seen.push(String::from_utf8_lossy(l).into_owned())
            })
            .unwrap();
        assert!(out.truncated);
        assert_eq!(seen, ["abc"]);
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let mut spec = ProcessSpec::shell("", std::env::temp_dir());
        spec.argv = vec!["definitely-not-a-real-agent-cli".into()];
        let err = Local::new(None)
            .run(&spec, &Cancel::new(), &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn bare_names_resolve_to_the_first_executable_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let make = |dir: &Path, mode: u32| {
            let p = dir.join("tool");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        make(a.path(), 0o644); // not executable: skipped
        let wanted = make(b.path(), 0o755);
        let path_var = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(search_path("tool", &path_var), Some(wanted));
        assert_eq!(search_path("missing", &path_var), None);
        // A relative entry first: it depends on the child's working directory, where a
        // `tool` may exist, so the child searches (even though orch's cwd has none).
        let rel_first = std::env::join_paths([Path::new("no-such-dir"), b.path()]).unwrap();
        assert_eq!(search_path("tool", &rel_first), None);
    }

    #[test]
    fn a_resolved_program_that_vanished_is_searched_again() {
        // A name no other test runs, so nothing else touches its entry meanwhile.
        let path_var = std::env::var_os("PATH").unwrap();
        let gone = PathBuf::from("/nonexistent/orch-test/printf");
        {
            let mut known = RESOLVED.lock().unwrap();
            known.retain(|(n, _, _)| n != "printf");
            known.push(("printf".into(), path_var, gone.clone()));
        }
        assert_eq!(resolve_program("printf"), Some(gone.clone()));
        let mut spec = ProcessSpec::shell("", std::env::temp_dir());
        spec.argv = vec!["printf".into(), "still".into()];
        let out = run(&spec);
        assert!(out.exit.success());
        assert_eq!(out.stdout, b"still");
        assert_ne!(resolve_program("printf"), Some(gone));
    }

    #[test]
    fn strips_claudecode_from_the_environment() {
        std::env::set_var("CLAUDECODE", "1");
        let out = run(&ProcessSpec::shell(
            "echo \"[${CLAUDECODE:-unset}]\"",
            std::env::temp_dir(),
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[unset]");
    }
}
