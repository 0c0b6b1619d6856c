//! Build events and the reporters that show them (nextest's runner/reporter split): the engine
//! emits [`Event`]s through an [`Emitter`], which stamps each once; a terminal, progress-bar
//! or JSON reporter turns them into output, and an output that fails cancels the build. The
//! [`record`] reporter keeps every build's events in the state directory for `orch report`.

mod emit;
mod event;
mod json;
mod paint;
mod plain;
mod progress;
pub mod record;
mod terminal;

pub use emit::{Emitter, Events};
pub use event::{Event, Fanout, JobState, Reporter, Stamped, Stop, Summary, TaskRef, MERGE_ID};
pub use json::{stamped_json, JsonReporter, FORMAT_VERSION};
pub use paint::use_color;
pub(crate) use paint::Paint;
pub use plain::{how_deps_came, PlainReporter};
pub use progress::{release_screen, retake_screen, ProgressReporter};
