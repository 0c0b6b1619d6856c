//! Process-group helpers: signalling a whole group, stopping groups a crashed run left, and
//! the groups running now, which Ctrl-Z stops and `fg` continues ([`pause_running`]).

use std::sync::{Mutex, RwLock};

use crate::clock::StartWindow;

/// The process groups this process supervises now, and whether orch is stopped (so that a
/// group started meanwhile stops too). Process-wide, as a stop of orch is.
struct Running {
    groups: Vec<i32>,
    paused: bool,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    groups: Vec::new(),
    paused: false,
});

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Held (shared) from a child's spawn until its group is listed, and (alone) by
/// [`pause_running`]: a Ctrl-Z that came while a child was starting waits for it to be listed,
/// so a child whose group is not listed yet cannot run on while orch is stopped.
static STARTING: RwLock<()> = RwLock::new(());

/// Spawns a child with `spawn` and lists its group (`pgid_of`) before a Ctrl-Z can stop orch.
pub(super) fn start_listed<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
    pgid_of: impl FnOnce(&T) -> i32,
) -> std::io::Result<T> {
    let _starting = STARTING.read().unwrap_or_else(|e| e.into_inner());
    let started = spawn()?;
    enlist(pgid_of(&started));
    Ok(started)
}

/// Lists a group that just started; stops it at once if orch is being stopped.
fn enlist(pgid: i32) {
    let mut r = running();
    r.groups.push(pgid);
    if r.paused {
        kill_group(pgid, libc::SIGSTOP);
    }
}

/// Unlists a group whose supervision ended.
pub(super) fn unlist(pgid: i32) {
    let mut r = running();
    if let Some(i) = r.groups.iter().position(|&g| g == pgid) {
        r.groups.swap_remove(i);
    }
}

/// Stops every running group (SIGSTOP: agents have no terminal to restore, and it cannot be
/// caught, so nothing keeps spending while orch is stopped). Returns how many.
pub fn pause_running() -> usize {
    let _no_start = STARTING.write().unwrap_or_else(|e| e.into_inner());
    let mut r = running();
    r.paused = true;
    for &g in &r.groups {
        kill_group(g, libc::SIGSTOP);
    }
    r.groups.len()
}

/// Continues every group [`pause_running`] stopped.
pub fn resume_running() {
    let mut r = running();
    r.paused = false;
    for &g in &r.groups {
        kill_group(g, libc::SIGCONT);
    }
}

/// Asks a group to end with `sig`: a stopped group acts on it only once continued, so it is
/// continued too (unless orch is stopped, which continues it when orch does).
pub fn ask_group_to_end(pgid: i32, sig: i32) {
    kill_group(pgid, sig);
    if !running().paused {
        kill_group(pgid, libc::SIGCONT);
    }
}

/// Sends `sig` to every process in group `pgid`; a group that is gone is fine.
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; a negative pid addresses the group.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    read_stat(pid).is_some_and(|stat| stat_fields(&stat).is_some_and(|f| f.first() != Some(&"Z")))
}

/// Fields of /proc/PID/stat after the `(comm)` field, which may itself hold spaces.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let close = stat.rfind(')')?;
    Some(stat[close + 1..].split_whitespace().collect())
}

/// Start time of `pid` in clock ticks since boot, which tells a pid apart from a later reuse.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = read_stat(pid)?;
    // After comm: state(0) ppid(1) pgrp(2) ... starttime is field 22 overall, index 19 here.
    stat_fields(&stat)?.get(19)?.parse().ok()
}

/// /proc/PID/stat in a stack buffer: `read_to_string` adds a stat call and several growing
/// reads for a line of about 300 bytes, and the reaping scans read it for every process.
fn read_stat(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    // Some 52 numeric fields and a 16-byte comm always fit; refuse a cut line, not misparse.
    if len == buf.len() {
        return None;
    }
    String::from_utf8(buf[..len].to_vec()).ok()
}

fn pgrp_of(stat: &str) -> Option<i32> {
    stat_fields(stat)?.get(2)?.parse().ok()
}

/// Stops what remains of process groups a previous, crashed run started. A group counts as
/// ours only if its leader still started within the recorded window or, with the leader
/// gone, its members started no earlier. Returns how many processes were signalled.
pub fn reap_stale(groups: &[(i32, StartWindow)]) -> usize {
    let mut killed = 0;
    for &(pgid, window) in groups {
        if pgid <= 1 {
            continue;
        }
        let ours = match start_ticks(pgid) {
            Some(t) => window.contains(t),
            None => true,
        };
        if !ours {
            continue;
        }
        let members = members_of(pgid, window.earliest);
        if !members.is_empty() {
            kill_group(pgid, libc::SIGKILL);
            killed += members.len();
        }
    }
    killed
}

fn members_of(pgid: i32, min_ticks: u64) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Some(stat) = read_stat(pid) else {
                return false;
            };
            pgrp_of(&stat) == Some(pgid)
                && stat_fields(&stat)
                    .and_then(|f| f.get(19)?.parse::<u64>().ok())
                    .is_some_and(|t| t >= min_ticks)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::boot_ticks_now;
    use std::os::unix::process::CommandExt;

    #[test]
    fn the_clock_window_around_a_spawn_holds_its_start_time() {
        for _ in 0..20 {
            let earliest = boot_ticks_now();
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let latest = boot_ticks_now();
            let window = StartWindow { earliest, latest };
            let started = start_ticks(child.id() as i32).unwrap();
            child.wait().unwrap();
            assert!(window.contains(started), "{started} not in {window:?}");
            assert!(
                latest - earliest <= 1 + 100,
                "a spawn takes far less than a second"
            );
        }
    }

    #[test]
    fn reaps_a_group_left_behind() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).unwrap();
        assert_eq!(
            reap_stale(&[(pid, StartWindow::exact(ticks + 1))]),
            0,
            "start time differs: not ours"
        );
        assert_eq!(
            Some(ticks),
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s)?.get(19)?.parse().ok()),
            "the short read agrees with a full one"
        );
        assert_eq!(reap_stale(&[(pid, StartWindow::exact(ticks))]), 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
