//! The process's [`Cancel`], the one orch's signal handlers set, for work far from any build
//! context that can take long: hashing a huge input, walking a large tree. Those loops look
//! at it between chunks, so SIGINT, SIGTERM and SIGHUP end a build in every phase, not only
//! between tasks.

use std::io;
use std::sync::{Arc, OnceLock};

use crate::cancel::Cancel;

static PROCESS: OnceLock<Arc<Cancel>> = OnceLock::new();

/// Makes `cancel` (set by the signal handlers) the process's; the first call wins.
pub fn watch(cancel: Arc<Cancel>) {
    let _ = PROCESS.set(cancel);
}

/// Whether the process was told to stop.
pub fn requested() -> bool {
    PROCESS.get().is_some_and(|c| c.is_cancelled())
}

/// `Err(Interrupted)` once the process was told to stop: for `?` in long loops.
pub fn check() -> io::Result<()> {
    if requested() {
        Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
    } else {
        Ok(())
    }
}
