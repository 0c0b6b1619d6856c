//! Scheduling, apart from execution (ninja's Plan/CommandRunner split).
//!
//! [`Scheduler`] is pure bookkeeping: which tasks are wanted, which are ready, which may start
//! now given per-agent limits and locks, and what a failure blocks. [`drive`] runs it on a rayon
//! pool with any [`Runner`], handing results to a [`Coordinator`] on the calling thread, so
//! tests can drive the real scheduler with a fake runner.
//!
//! The bookkeeping is `queue`'s, the loop `drive`'s.

mod drive;
mod queue;

pub use drive::{drive, Admit, Coordinator, Runner};
pub use queue::{NodeState, SchedTask, Scheduler};
