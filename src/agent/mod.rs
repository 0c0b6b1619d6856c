//! Agents: how a prompt reaches an agent CLI at a permission level, and how its reply is read
//! and judged.
//!
//! Agent CLIs fail in odd ways: exit 0 with `"is_error": true` in their JSON, refused tool
//! calls that still exit 0, overload or rate-limit errors, empty replies, hangs. [`reply`]
//! reads each CLI's own output; [`judge`] turns one finished process into a [`Judged`]: the
//! answer or a classified [`Failure`], and what the run cost either way. The runner decides
//! about retries from the class.
//!
//! - `spec`: what an agent is; [`presets`]: the built-in ones;
//! - `call`: the command line of one call; `tuning`: what orch adjusts or refuses up front
//!   (`gemini_defaults`: gemini's retry knob, a settings file);
//! - [`reply`]: each CLI's output read; `judge`: a run judged; `outcome`: what it comes to;
//!   [`limits`]: what a failure says of its provider's limits (refused, a usage limit).

mod call;
mod gemini_defaults;
mod judge;
pub mod limits;
mod outcome;
pub mod presets;
pub mod reply;
pub mod sim;
pub mod spec;
mod tuning;

pub use call::{command_line, invocation, Call};
pub use judge::{judge, Judged};
pub use outcome::{tail, transient_match, Failure, FailureKind, Pushback, Reply, Usage};
pub use reply::{Activity, Denial};
pub use tuning::{budget_args, internal_retry_knobs, refused_as_root, Knobs};

#[cfg(test)]
mod tests;
