//! Everything orch keeps on disk under the state directory (`.orchestrator/` by default).
//!
//! Durability model: a snapshot (`state.bin`) written atomically (temp file, fsync, rename)
//! plus an append-only journal (`journal.jsonl`) of what happened since. Replaying the journal
//! over the snapshot gives the current state; a torn last line is ignored. A journal line that
//! a power loss drops only makes a task run again, and a recorded success whose outputs were
//! torn fails the output-hash check, so neither can present half-written work as complete.
//!
//! Besides the snapshot and journal: the run [`lock`], the validated-plan cache
//! ([`plan_cache`]), the state files read ahead while the plan loads ([`preload`]), the items of fan-out
//! templates ([`items`]). The file formats are built from
//! [`crate::disk`].

pub mod items;
mod layout;
pub mod lock;
pub mod plan_cache;
pub mod preload;
mod snapshot;
mod store;

pub use layout::{agent_id, StateLayout};
pub use snapshot::{SessionRecord, Snapshot, Status, StatusRecord, TaskRecord};
pub use store::{JournalEntry, StateStore};
