//! `ORCH_PROFILE=1`: where a build's fixed cost goes. Prints the time since the build began,
//! orch's own CPU time and the resident memory at each phase boundary on stderr. Off by
//! default, when it costs one environment lookup per build.

use std::sync::OnceLock;
use std::time::Instant;

static STARTED: OnceLock<Option<Instant>> = OnceLock::new();

/// Starts the clock (at most once per process); everything is measured from here.
pub fn init() {
    STARTED.get_or_init(|| {
        std::env::var_os("ORCH_PROFILE")
            .is_some_and(|v| !v.is_empty() && v != "0")
            .then(Instant::now)
    });
}

/// Reports that the phase `name` just ended.
pub fn mark(name: &str) {
    let Some(Some(started)) = STARTED.get() else {
        return;
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let cpu = own_cpu_ms();
    match resident_mb() {
        Some(mb) => eprintln!("[profile] {ms:9.2} ms {cpu:9.2} ms cpu {mb:7.1} MB  {name}"),
        None => eprintln!("[profile] {ms:9.2} ms {cpu:9.2} ms cpu  {name}"),
    }
}

/// CPU time (user + system) of orch's own threads so far, children excluded: what orch
/// itself costs next to the processes it starts.
fn own_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Resident set size, where /proc tells it.
fn resident_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size() as f64 / (1024.0 * 1024.0))
}

fn page_size() -> i64 {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n,
        _ => 4096,
    }
}
