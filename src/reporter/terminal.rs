//! The terminal while progress bars are drawn on it. indicatif leaves the cursor at the right
//! edge of the last bar line, so the `^Z` or `^C` a terminal echoes wraps onto a new line and
//! the bars' own line count is off by one: the next clear or redraw leaves a stale bar behind
//! (seen on every Ctrl-Z under tmux). So echoing control characters (ECHOCTL) is turned off
//! while the bars are up, and the terminal is restored as it was whenever orch stops (Ctrl-Z)
//! or the bars go away, as nextest restores the terminal before it stops.

use std::sync::Mutex;

/// The terminal's settings before orch changed them, while changed.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

const FD: i32 = libc::STDERR_FILENO;

/// Whether orch's process group owns the terminal: changing its settings from the background
/// would stop orch (SIGTTOU).
fn in_foreground() -> bool {
    // SAFETY: plain calls on a descriptor and the calling process.
    unsafe { libc::isatty(FD) == 1 && libc::tcgetpgrp(FD) == libc::getpgrp() }
}

/// Turns ECHOCTL off, remembering the settings to restore.
pub(crate) fn take() {
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    if saved.is_some() || !in_foreground() {
        return;
    }
    // SAFETY: tcgetattr fills the zeroed struct; tcsetattr reads it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(FD, &mut t) != 0 {
            return;
        }
        let before = t;
        t.c_lflag &= !libc::ECHOCTL;
        if libc::tcsetattr(FD, libc::TCSANOW, &t) == 0 {
            *saved = Some(before);
        }
    }
}

/// Restores the settings [`take`] changed, if it did.
pub(crate) fn restore() {
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = saved.take() {
        if in_foreground() {
            // SAFETY: tcsetattr reads the struct we pass.
            unsafe { libc::tcsetattr(FD, libc::TCSANOW, &t) };
        }
    }
}
