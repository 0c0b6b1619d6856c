//! The engine's side of reporting. [`Events`] is what the engine emits through; [`Emitter`]
//! stamps each event once and hands it to the reporter. A reporter whose output is gone
//! (`orch build --json | head -1`: the reader closed the pipe) cancels the build, as a
//! reporter error does in nextest: running tasks are stopped, the state is saved and orch
//! exits 141 ([`CancelReason::OutputClosed`]), saying nothing more. Without that, a closed
//! stdout would either panic (`println!`) or leave the build running unseen.

use std::io;

use super::event::{Event, Reporter, Stamped};
use crate::cancel::{Cancel, CancelReason};

/// Where the engine sends its events.
pub trait Events {
    fn emit(&mut self, event: Event);
    /// Asks whether the output is still there (once per scheduling tick).
    fn check_output(&mut self);
}

/// Stamps events, reports them, and cancels the build the first time the output fails; from
/// then on events are dropped.
pub struct Emitter<'r> {
    reporter: &'r mut dyn Reporter,
    cancel: &'r Cancel,
    closed: bool,
}

impl<'r> Emitter<'r> {
    pub fn new(reporter: &'r mut dyn Reporter, cancel: &'r Cancel) -> Self {
        Emitter {
            reporter,
            cancel,
            closed: false,
        }
    }

    fn failed(&mut self, r: io::Result<()>) {
        if r.is_err() {
            self.closed = true;
            self.cancel.cancel(CancelReason::OutputClosed);
        }
    }
}

impl Events for Emitter<'_> {
    fn emit(&mut self, event: Event) {
        if !self.closed {
            let r = self.reporter.report(&Stamped::now(&event));
            self.failed(r);
        }
    }

    fn check_output(&mut self) {
        if !self.closed {
            let r = self.reporter.check();
            self.failed(r);
        }
    }
}

/// Whether the reader of `fd` went away: a pipe whose read end is closed polls as an error,
/// a hung-up terminal or socket as a hangup. A file never does.
pub(crate) fn reader_gone(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(usize);

    impl Reporter for Failing {
        fn report(&mut self, _: &Stamped) -> io::Result<()> {
            self.0 += 1;
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_failed_write_cancels_once_and_drops_what_follows() {
        let cancel = Cancel::new();
        let mut r = Failing(0);
        {
            let mut e = Emitter::new(&mut r, &cancel);
            e.emit(Event::Notice { message: "one" });
            e.emit(Event::Notice { message: "two" });
            e.check_output();
        }
        assert_eq!(cancel.reason(), Some(CancelReason::OutputClosed));
        assert_eq!(r.0, 1, "nothing is written after the first failure");
    }

    /// Records the stamps it gets.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<std::time::SystemTime>>>);

    impl Reporter for Recorder {
        fn report(&mut self, e: &Stamped) -> io::Result<()> {
            self.0.lock().unwrap().push(e.at);
            Ok(())
        }
    }

    #[test]
    fn every_reporter_gets_the_time_the_event_was_made() {
        let (a, b) = (Default::default(), Default::default());
        let mut both = super::super::Fanout(vec![
            Box::new(Recorder(std::sync::Arc::clone(&a))),
            Box::new(Recorder(std::sync::Arc::clone(&b))),
        ]);
        let cancel = Cancel::new();
        let mut e = Emitter::new(&mut both, &cancel);
        for _ in 0..3 {
            e.emit(Event::Notice { message: "x" });
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let (a, b) = (a.lock().unwrap().clone(), b.lock().unwrap().clone());
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "one stamp per event, the same for every reporter");
    }

    #[test]
    fn a_pipe_whose_reader_closed_is_seen_as_gone() {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the two descriptors, which are closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!reader_gone(fds[1]));
        unsafe { libc::close(fds[0]) };
        assert!(reader_gone(fds[1]));
        unsafe { libc::close(fds[1]) };
    }
}
