//! The plan: what `Orchfile.toml` (or `master_plan.md`) describes, resolved and validated.
//!
//! The model is in `model` and re-exported here; [`orchfile`] parses and validates
//! `Orchfile.toml` into it, with span-carrying [`diagnostic`]s. Reading `master_plan.md` as
//! a plan is [`crate::master_plan`]'s, which owns that document. Everything downstream
//! (graph, fingerprint, scheduler, engine) works on these types only, so a plan from either
//! source behaves the same. The plan imports nothing above it: agents, durations and the
//! task graph are below it.

mod cache;
pub mod checks;
pub mod diagnostic;
pub mod fanout;
pub mod limits;
mod model;
pub mod orchfile;
pub mod placeholder;

pub use crate::agent::spec::{
    AgentKind, AgentSpec, AllowWrites, Isolation, LevelArgs, Permission, PromptVia, ReplyFormat,
    ResultSpec, SIM_AGENT,
};
pub use cache::{
    format_size, parse_size, AuthScheme, CacheSettings, RemoteAuth, RemoteCache, RemoteMode,
    DEFAULT_CACHE_MAX_SIZE, DEFAULT_REMOTE_CONNECT_TIMEOUT, DEFAULT_REMOTE_STALL_TIMEOUT,
};
pub use diagnostic::PlanError;
pub use model::{
    normalize, Action, AggregateSpec, AggregateStrategy, Fanout, Foreach, Item, KeptDefinition,
    OnMissing, Plan, Priority, Settings, SlurmSettings, Task,
};
