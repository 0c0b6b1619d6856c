//! What `orch watch` is asked for: the build's options, the quiet time, what to do when an
//! input of a running task changes.

use std::time::Duration;

use crate::engine::BuildOptions;

/// What to do when an input of a running task changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnChange {
    /// Let the running tasks finish, then run a new cycle.
    #[default]
    Finish,
    /// Stop the cycle's running tasks (whole process groups, waited for) and start a new one.
    Restart,
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What every cycle builds; `targets` also select what is watched.
    pub build: BuildOptions,
    /// Quiet time that ends a burst of changes.
    pub debounce: Duration,
    pub on_change: OnChange,
    /// Clear the terminal before each cycle.
    pub clear: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            build: BuildOptions::default(),
            debounce: DEFAULT_DEBOUNCE,
            on_change: OnChange::Finish,
            clear: false,
        }
    }
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// Consecutive self-triggered cycles after which the watch stops re-running on its own.
pub const SELF_LOOP_LIMIT: u32 = 3;

/// How often the interrupt flag is polled while waiting.
pub(super) const POLL: Duration = Duration::from_millis(100);

/// Exit code after Ctrl-C (or SIGTERM/SIGHUP), as for an interrupted `orch build`.
pub const INTERRUPTED: i32 = 130;
