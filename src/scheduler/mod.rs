//! Scheduling, apart from execution (ninja's Plan/CommandRunner split).
//!
//! [`Scheduler`] is pure bookkeeping: which tasks are wanted, which are ready, which may start
//! now given per-agent limits and locks, and what a failure blocks. [`drive`] runs it on a rayon
//! pool with any [`Runner`], handing results to a [`Coordinator`] on the calling thread, so
//! tests can drive the real scheduler with a fake runner.
//!
//! The bookkeeping is `queue`'s, the loop `drive`'s. Each provider's calls are paced by a
//! [`Limiter`] (how many at once, adapted to its refusals and resets), shared between the
//! workers and the scheduling thread through the [`Gate`].

mod drive;
mod gate;
mod limiter;
mod queue;

pub use drive::{drive, Admit, Coordinator, Runner};
pub use gate::{CallEnd, Gate, News, Next, NoPermit, Permit};
pub use limiter::{Change, Limiter};
pub use queue::{NodeState, SchedTask, Scheduler};
