//! Process execution, apart from scheduling: the [`Backend`] seam (start a job, wait for it,
//! stop it, and what survives a crash) and its one implementation today, [`Local`]: child
//! processes in their own process groups, the crash [`guard`], the cleanup of groups a
//! crashed run left and the groups Ctrl-Z stops ([`procgroup`]). It knows nothing of plans:
//! a job is a [`ProcessSpec`].

mod backend;
pub mod guard;
mod local;
pub mod procgroup;

pub use backend::{Backend, Exit, Job, JobRecord, ProcessOutput, ProcessSpec, STRIPPED_ENV};
pub use local::{forget_resolved_programs, Local};
