//! orch's own signals, for the commands that run processes (build, watch, plan).
//!
//! - SIGINT, SIGTERM and SIGHUP cancel with the signal named ([`Cancel`]), so the executor
//!   forwards that very signal to each running process group, then SIGKILLs what is left
//!   after `kill_grace`. A second one ends orch at once (exit 130); the crash guard then stops
//!   what still runs, as it does after `kill -9`.
//! - SIGTSTP (Ctrl-Z) stops every running process group (SIGSTOP) and the active clock (so
//!   no timeout, backoff or reported duration counts the stop), clears the progress bars and
//!   restores the terminal, then stops orch itself. When orch is continued (`fg`, SIGCONT), the groups and the clock go on: nextest's
//!   way. While stopped, orch still holds its lock and the guard's pipe, so neither the next
//!   run nor the crash guard takes a stopped orch for a dead one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use miette::{miette, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGTSTP};

use crate::cancel::{Cancel, CancelReason};
use crate::clock;
use crate::executor::procgroup;
use crate::reporter;

/// Set by the first cancelling signal; the next one exits.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; the returned flag is set by the first SIGINT, SIGTERM or SIGHUP.
pub fn install() -> Result<Arc<Cancel>> {
    let cancel = Arc::new(Cancel::new());
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        let cancel = cancel.clone();
        let action = move || {
            if SIGNALLED.swap(true, Ordering::SeqCst) {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(130) };
            }
            cancel.cancel(CancelReason::Signal(sig));
        };
        // SAFETY: the action does only atomic operations and _exit, all async-signal-safe.
        unsafe { signal_hook::low_level::register(sig, action) }
            .map_err(|e| miette!("cannot install signal handler: {e}"))?;
    }
    start_job_control()?;
    crate::interrupt::watch(cancel.clone());
    Ok(cancel)
}

/// A thread that answers SIGTSTP: it must take locks and signal groups, which a signal
/// handler may not.
fn start_job_control() -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTSTP])
        .map_err(|e| miette!("cannot install signal handler: {e}"))?;
    std::thread::Builder::new()
        .name("orch-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                stop_until_continued();
            }
        })
        .map_err(|e| miette!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Ctrl-Z: stops the clock and every running group, clears the bars, stops orch; returns
/// once orch is continued, having continued the groups and the clock.
fn stop_until_continued() {
    /// Continues the groups and the clock however the stop ends: a group left stopped, or
    /// a clock left standing, would never reach its timeout or its SIGKILL.
    struct Resume;
    impl Drop for Resume {
        fn drop(&mut self) {
            procgroup::resume_running();
            clock::resume_active_clock();
            reporter::retake_screen();
        }
    }
    clock::stop_active_clock();
    let _resume = Resume;
    procgroup::pause_running();
    reporter::release_screen();
    // What SIGTSTP's default action does: stop the whole process, until SIGCONT.
    let _ = signal_hook::low_level::emulate_default_handler(SIGTSTP);
}
