//! Process execution, apart from scheduling: the [`Backend`] seam (start a job, wait for it,
//! stop it, and what survives a crash) and its implementations: [`Local`], child processes in
//! their own process groups, with the crash [`guard`], the cleanup of groups a crashed run
//! left and the groups Ctrl-Z stops ([`procgroup`]); and [`slurm`], jobs and steps of a Slurm
//! cluster. [`Executors`]
//! routes each job to one of them. It knows nothing of plans: a job is a [`ProcessSpec`].

mod backend;
mod executors;
pub mod guard;
mod local;
mod placement;
pub mod procgroup;
pub mod slurm;

pub use backend::{
    Admission, Backend, Exit, Job, JobEnd, JobEvent, JobRecord, ProcessOutput, ProcessSpec,
    Stopped, STRIPPED_ENV,
};
pub use executors::Executors;
pub use local::{forget_resolved_programs, Local};
pub use placement::{whole_minutes, ExecutorKind, Placement, SlurmOptions};
pub use slurm::{AllocationSpec, Launch, SlurmConfig, SlurmJobSpec};
