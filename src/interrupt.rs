//! The process's [`Cancel`], the one orch's signal handlers set, for work far from any build
//! context that can take long: hashing a huge input, walking a large tree. Those loops look
//! at it between chunks, so SIGINT, SIGTERM and SIGHUP end a build in every phase, not only
//! between tasks.

use std::io;
use std::sync::{Arc, OnceLock};

use crate::cancel::Cancel;

static PROCESS: OnceLock<Arc<Cancel>> = OnceLock::new();

/// Makes `cancel` (set by the signal handlers) the process's; the first call wins.
pub fn watch(cancel: Arc<Cancel>) {
    let _ = PROCESS.set(cancel);
}

/// Whether the process was told to stop.
pub fn requested() -> bool {
    #[cfg(test)]
    if tests::REQUESTED_HERE.get() {
        return true;
    }
    PROCESS.get().is_some_and(|c| c.is_cancelled())
}

/// `Err(Interrupted)` once the process was told to stop: for `?` in long loops.
pub fn check() -> io::Result<()> {
    if requested() {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// A unit test's interrupt: its own thread's, so the tests beside it (one process,
        /// where the real one is global) are not stopped too.
        pub(super) static REQUESTED_HERE: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes [`super::requested`] true on this thread until the guard is dropped.
    pub(crate) fn interrupt_this_thread() -> impl Drop {
        struct Guard;
        impl Drop for Guard {
            fn drop(&mut self) {
                REQUESTED_HERE.set(false);
            }
        }
        REQUESTED_HERE.set(true);
        Guard
    }

    #[test]
    fn a_test_interrupt_is_its_threads_only() {
        let _stop = interrupt_this_thread();
        assert!(super::check().is_err());
        assert!(!std::thread::spawn(|| REQUESTED_HERE.get()).join().unwrap());
    }
}
