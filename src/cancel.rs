//! Why a build stops before its end. [`Cancel`] is the one flag every part of a build polls
//! (the scheduler, the workers, the executor's supervision loop, backoff and sim sleeps), and
//! it carries the reason: the signal orch received, which the executor forwards to every
//! running process group as it is (SIGINT as SIGINT, SIGHUP as SIGHUP: ninja's and
//! nextest's rule, so an agent sees what the person sent), or another reason, for which the
//! children get SIGTERM. A leaf: what sets it (`cli`'s signal handlers, a reporter whose
//! reader went away, `orch watch`) and what reads it know nothing of each other.

use std::sync::atomic::{AtomicU32, Ordering};

/// Why a build was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// orch received this signal (SIGINT, SIGTERM or SIGHUP).
    Signal(i32),
    /// Whoever read orch's output went away (`orch build --json | head -1`).
    OutputClosed,
    /// `orch watch` stops a cycle to start it again on changed inputs.
    Restart,
    /// A bug (a worker panicked): the other tasks are stopped rather than left running.
    Bug,
}

impl CancelReason {
    /// The signal sent to each running process group: the one orch received, else SIGTERM.
    pub fn forwarded_signal(self) -> i32 {
        match self {
            CancelReason::Signal(s) => s,
            _ => libc::SIGTERM,
        }
    }

    /// How a build stopped for this reason exits: 130 for a signal (the shell's 128 + SIGINT,
    /// for every signal, as orch always did); 141 (128 + SIGPIPE) when the reader went away,
    /// what any pipeline member killed by SIGPIPE reports, so `set -o pipefail` sees that the
    /// build did not finish and can still tell it from a failure or a Ctrl-C.
    pub fn exit_code(self) -> i32 {
        match self {
            CancelReason::OutputClosed => 141,
            _ => 130,
        }
    }

    /// `SIGINT`, `output closed`, ...: for messages and the event stream.
    pub fn describe(self) -> String {
        match self {
            CancelReason::Signal(s) => signal_name(s),
            CancelReason::OutputClosed => "output closed".into(),
            CancelReason::Restart => "restart".into(),
            CancelReason::Bug => "internal error".into(),
        }
    }

    fn encode(self) -> u32 {
        match self {
            CancelReason::Signal(s) => s.clamp(1, 999) as u32,
            CancelReason::OutputClosed => 1001,
            CancelReason::Restart => 1002,
            CancelReason::Bug => 1003,
        }
    }

    fn decode(code: u32) -> Option<CancelReason> {
        Some(match code {
            0 => return None,
            1001 => CancelReason::OutputClosed,
            1002 => CancelReason::Restart,
            1003 => CancelReason::Bug,
            s => CancelReason::Signal(s as i32),
        })
    }
}

/// `SIGINT` for 2, and so on for the signals orch handles; `signal N` for others.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGTSTP => "SIGTSTP".into(),
        libc::SIGCONT => "SIGCONT".into(),
        libc::SIGSTOP => "SIGSTOP".into(),
        s => format!("signal {s}"),
    }
}

/// Set once, by the first reason to stop; read by everything that runs.
#[derive(Debug, Default)]
pub struct Cancel(AtomicU32);

impl Cancel {
    pub const fn new() -> Cancel {
        Cancel(AtomicU32::new(0))
    }

    /// Asks the build to stop; the first reason given stays. Only an atomic operation, so
    /// a signal handler may call it. Returns whether this call was the first.
    pub fn cancel(&self, why: CancelReason) -> bool {
        self.0
            .compare_exchange(0, why.encode(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    pub fn reason(&self) -> Option<CancelReason> {
        CancelReason::decode(self.0.load(Ordering::SeqCst))
    }

    /// The signal to send running processes now: the forwarded one once cancelled.
    pub fn forwarded_signal(&self) -> i32 {
        self.reason()
            .map_or(libc::SIGTERM, CancelReason::forwarded_signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_stays_and_its_signal_is_forwarded() {
        let c = Cancel::new();
        assert!(!c.is_cancelled());
        assert_eq!(c.reason(), None);
        assert!(c.cancel(CancelReason::Signal(libc::SIGHUP)));
        assert!(!c.cancel(CancelReason::Signal(libc::SIGINT)));
        assert!(c.is_cancelled());
        assert_eq!(c.reason(), Some(CancelReason::Signal(libc::SIGHUP)));
        assert_eq!(c.forwarded_signal(), libc::SIGHUP);
        assert_eq!(c.reason().unwrap().describe(), "SIGHUP");
    }

    #[test]
    fn other_reasons_forward_sigterm_and_have_their_exit_codes() {
        for (why, code) in [
            (CancelReason::OutputClosed, 141),
            (CancelReason::Restart, 130),
            (CancelReason::Bug, 130),
            (CancelReason::Signal(libc::SIGTERM), 130),
        ] {
            let c = Cancel::new();
            c.cancel(why);
            assert_eq!(c.reason(), Some(why));
            assert_eq!(why.exit_code(), code, "{why:?}");
            if !matches!(why, CancelReason::Signal(_)) {
                assert_eq!(c.forwarded_signal(), libc::SIGTERM);
            }
        }
    }
}
