//! An agent task's place at its provider for one attempt (a [`Permit`] of the gate): taken
//! while its CLI, started early, waits at its stdin for its last byte (see
//! `Backend::holds_stdin`: the CLI's own start then costs the provider's places nothing), or
//! before the CLI starts where it cannot wait so; handed back with how the call went.

use std::cell::{Cell, RefCell};

use crate::cancel::Cancel;
use crate::executor::Admission;
use crate::scheduler::{CallEnd, Gate, Next, NoPermit, Permit};

/// Taking the place, as an attempt sees it.
pub(super) trait TakePlace {
    /// Without waiting.
    fn try_take(&self) -> Admission;
    /// Waits for it; false when none will come (cancelled, the provider stopped).
    fn take(&self) -> bool;
    /// Whether the provider takes no calls for a while (a CLI started now would wait long).
    fn held(&self) -> bool;
}

pub(super) struct Place<'a> {
    gate: &'a Gate,
    provider: usize,
    cancel: &'a Cancel,
    permit: RefCell<Option<Permit<'a>>>,
    refused: Cell<Option<NoPermit>>,
    /// Run once the place is taken.
    on_taken: RefCell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl<'a> Place<'a> {
    pub(super) fn new(gate: &'a Gate, provider: usize, cancel: &'a Cancel) -> Place<'a> {
        Place {
            gate,
            provider,
            cancel,
            permit: RefCell::new(None),
            refused: Cell::new(None),
            on_taken: RefCell::new(None),
        }
    }

    /// `f` runs when the place is taken (at once if it is).
    pub(super) fn on_taken(&self, f: Box<dyn FnOnce() + 'a>) {
        *self.on_taken.borrow_mut() = Some(f);
    }

    /// Why no place came, if one was asked for and none did.
    pub(super) fn refused(&self) -> Option<NoPermit> {
        self.refused.get()
    }

    /// Hands the place back, if it was taken, with how the call went.
    pub(super) fn end(self, how: CallEnd) -> Option<Next> {
        self.permit.into_inner().map(|p| p.end(how))
    }

    fn taken(&self, got: Result<Option<Permit<'a>>, NoPermit>) -> Admission {
        match got {
            Ok(Some(permit)) => {
                *self.permit.borrow_mut() = Some(permit);
                if let Some(f) = self.on_taken.borrow_mut().take() {
                    f();
                }
                Admission::Go
            }
            Ok(None) => Admission::Wait,
            Err(why) => {
                self.refused.set(Some(why));
                Admission::GiveUp
            }
        }
    }

    fn settled(&self) -> Option<Admission> {
        if self.permit.borrow().is_some() {
            Some(Admission::Go)
        } else {
            self.refused.get().map(|_| Admission::GiveUp)
        }
    }
}

impl TakePlace for Place<'_> {
    fn try_take(&self) -> Admission {
        self.settled()
            .unwrap_or_else(|| self.taken(self.gate.try_acquire(self.provider, self.cancel)))
    }

    fn take(&self) -> bool {
        let admission = self
            .settled()
            .unwrap_or_else(|| self.taken(self.gate.acquire(self.provider, self.cancel).map(Some)));
        admission == Admission::Go
    }

    fn held(&self) -> bool {
        self.gate.held(self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate() -> Gate {
        Gate::new(vec![("p".into(), 1, Some(1))], Duration::from_secs(60))
    }

    #[test]
    fn a_place_is_taken_once_and_says_so_once() {
        let (g, cancel) = (gate(), Cancel::new());
        let said = Cell::new(0);
        let place = Place::new(&g, 0, &cancel);
        place.on_taken(Box::new(|| said.set(said.get() + 1)));
        let other = Place::new(&g, 0, &cancel);
        assert_eq!(place.try_take(), Admission::Go);
        assert_eq!(place.try_take(), Admission::Go, "already taken");
        assert!(place.take());
        assert_eq!(said.get(), 1);
        assert_eq!(other.try_take(), Admission::Wait, "the one place is out");
        assert_eq!(place.end(CallEnd::Succeeded), Some(Next::AsBefore));
        assert_eq!(other.try_take(), Admission::Go);
    }

    #[test]
    fn a_place_not_taken_hands_nothing_back_and_a_cancel_gives_up() {
        let (g, cancel) = (gate(), Cancel::new());
        assert_eq!(Place::new(&g, 0, &cancel).end(CallEnd::Succeeded), None);
        cancel.cancel(crate::cancel::CancelReason::Signal(libc::SIGINT));
        let place = Place::new(&g, 0, &cancel);
        assert_eq!(place.try_take(), Admission::GiveUp);
        assert!(!place.take());
        assert_eq!(place.refused(), Some(NoPermit::Cancelled));
    }
}
