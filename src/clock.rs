//! Time as orch records it: wall-clock stamps in local time for the status table and
//! execution log, the boot-clock window a process started in ([`StartWindow`]), which
//! the journal keeps and the executor reads back after a crash (both sides import it from
//! here, so the state store needs nothing of the executor), and orch's active clock
//! ([`Active`]), which stands still while orch is stopped (Ctrl-Z): timeouts, backoff
//! sleeps and the durations orch reports run on it, so a stop costs no task its time.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::from_unix(unix_now())
    }

    pub fn from_unix(secs: u64) -> Stamp {
        let t = secs as libc::time_t;
        // SAFETY: localtime_r writes into the zeroed struct we pass and reads only `t`.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return Stamp {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
            };
        }
        Stamp {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
        }
    }

    /// `2025-01-12 14:30:00`, the execution log's form.
    pub fn date_time(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `14:30:00`, the status table's form.
    pub fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// `15:00`, a moment in local time as a wait for it is shown (`waiting for quota until
/// 15:00`).
pub fn local_hh_mm(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let s = Stamp::from_unix(secs);
    format!("{:02}:{:02}", s.hour, s.minute)
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When a process started, in clock ticks since boot (as /proc/PID/stat counts it): between
/// `earliest` and `latest`, both included. Read from the clock around the spawn rather than
/// from /proc afterwards, which costs a file read per task; a reused pid would have to fall
/// in the same window of a tick or two to be taken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartWindow {
    pub earliest: u64,
    pub latest: u64,
}

impl StartWindow {
    /// The window of a process started at exactly `ticks` (as older journals record it).
    pub fn exact(ticks: u64) -> StartWindow {
        StartWindow {
            earliest: ticks,
            latest: ticks,
        }
    }

    pub fn contains(&self, ticks: u64) -> bool {
        (self.earliest..=self.latest).contains(&ticks)
    }
}

/// Clock ticks since boot now, on the clock the kernel stamps process start times with.
pub fn boot_ticks_now() -> u64 {
    // SAFETY: clock_gettime fills the zeroed struct we pass; sysconf has no preconditions.
    let (ts, per_second) = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
        (ts, libc::sysconf(libc::_SC_CLK_TCK))
    };
    let per_second = if per_second > 0 {
        per_second as u128
    } else {
        100
    };
    let nanos = ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128;
    // As the kernel converts: whole ticks, rounded down.
    (nanos / (1_000_000_000 / per_second)) as u64
}

/// A moment on orch's active clock: monotonic time less the time orch spent stopped. A stop
/// is of the whole process, so the clock is process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Active(Duration);

struct Stops {
    epoch: Option<Instant>,
    /// When the current stop began, while orch is stopped.
    since: Option<Instant>,
    total: Duration,
}

static STOPS: Mutex<Stops> = Mutex::new(Stops {
    epoch: None,
    since: None,
    total: Duration::ZERO,
});

fn stops() -> std::sync::MutexGuard<'static, Stops> {
    STOPS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Active {
    /// Now; while orch is stopped, the moment it stopped.
    pub fn now() -> Active {
        let mut s = stops();
        let now = s.since.unwrap_or_else(Instant::now);
        let epoch = *s.epoch.get_or_insert(now);
        Active(now.saturating_duration_since(epoch).saturating_sub(s.total))
    }

    /// Active time since this moment.
    pub fn elapsed(self) -> Duration {
        Active::now().0.saturating_sub(self.0)
    }

    /// Active time from now until this moment; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_sub(Active::now().0)
    }

    pub fn has_passed(self) -> bool {
        Active::now() >= self
    }
}

impl std::ops::Add<Duration> for Active {
    type Output = Active;
    fn add(self, d: Duration) -> Active {
        Active(self.0.saturating_add(d))
    }
}

/// orch is about to stop: the active clock stands still from now on.
pub fn stop_active_clock() {
    let mut s = stops();
    if s.since.is_none() {
        s.since = Some(Instant::now());
    }
}

/// orch runs again: the time it was stopped is left out of the active clock.
pub fn resume_active_clock() {
    let mut s = stops();
    if let Some(since) = s.since.take() {
        s.total += since.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_clock_stands_still_while_stopped() {
        let start = Active::now();
        // Short: the clock is process-wide, and other tests run meanwhile.
        let deadline = start + Duration::from_millis(200);
        stop_active_clock();
        let frozen = Active::now();
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(Active::now(), frozen, "no time passes while stopped");
        assert!(!deadline.has_passed());
        resume_active_clock();
        assert!(
            start.elapsed() < Duration::from_millis(150),
            "the stop is not counted"
        );
        assert!(!deadline.has_passed());
        std::thread::sleep(Duration::from_millis(210));
        assert!(deadline.has_passed());
        assert!(deadline.remaining().is_zero());
    }
}
