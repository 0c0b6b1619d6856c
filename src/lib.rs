//! orch: a declarative, make-like runner that orchestrates AI agents.
//!
//! The binary is a thin layer over these modules:
//! - [`cancel`]: why a build stops early, carrying the signal that the executor forwards;
//! - [`plan`]: the plan model and `Orchfile.toml` parsing with span-carrying diagnostics;
//! - [`graph`]: the task DAG, cycles, critical paths;
//! - [`fingerprint`]: blake3 content hashes and the stat cache;
//! - [`cache`]: the output cache, local and remote, keyed by fingerprints;
//! - [`disk`]: digests, file stamps, the binary encoding, atomic file replacement and I/O
//!   errors that name their path;
//! - [`interrupt`]: the process's cancel, for long loops outside a build context;
//! - [`state`]: the `.orchestrator/` layout, snapshot, journal, lock and plan cache;
//! - [`workspace`]: git worktrees for `isolation = "worktree"`, and merging their changes back;
//! - [`master_plan`]: `master_plan.md`, read as a plan and kept current;
//! - [`preflight`]: the plan checked against the project's files before a build;
//! - [`executor`]: where processes run: the `Backend` seam and local process groups;
//! - [`agent`]: agent presets, prompt delivery and reply judging;
//! - [`scheduler`]: ready-queue scheduling, apart from execution;
//! - [`engine`]: one build end to end, `final_output.md` included;
//! - [`reporter`]: terminal, progress and JSON views of build events, and the run record;
//! - [`report`]: `orch report`, a run record drawn as one self-contained HTML page;
//! - [`planner`]: `orch plan`, a request decomposed into tasks by an agent;
//! - [`inspect`]: status, explain, graph and list, read-only; [`clean`]: `orch clean`;
//! - [`watch`]: `orch watch`, re-building on file changes;
//! - [`cli`]: the command line.

pub mod agent;
pub mod cache;
pub mod cancel;
pub mod clean;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod duration;
pub mod engine;
pub mod executor;
pub mod fingerprint;
pub mod graph;
pub mod inspect;
pub mod interrupt;
pub mod master_plan;
pub mod plan;
pub mod planner;
pub mod preflight;
pub mod profile;
pub mod redact;
pub mod report;
pub mod reporter;
pub mod scheduler;
pub mod state;
pub mod watch;
pub mod workspace;
