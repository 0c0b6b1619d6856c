//! `orch plan`: ask an agent to break a request into atomic tasks, read its reply however it
//! comes (plain JSON, fenced, wrapped in chatter), check the plan against the seed's
//! atomicity checklist, and ask again with the problems listed until it is valid or the
//! attempts run out. A valid plan becomes `master_plan.md` (and, if asked, `Orchfile.toml`).
//!
//! The question is `prompt`'s, reading and checking the reply `reply`'s (and `check`'s,
//! which also checks a plan that fans out as its Orchfile), the attempts `ask`'s, and what a
//! valid plan becomes `output`'s.

mod ask;
mod check;
mod output;
mod prompt;
mod reply;

pub use ask::{sim_reply, PlanEvent, PlanFailure, Planner};
pub use check::check_reply;
pub use output::{render_toml, to_plan};
pub use prompt::{build_prompt, project_files, SCHEMA};
pub use reply::{extract_json, read_tasks, validate, PlannedTask};
