//! Build events and the reporters that show them (nextest's runner/reporter split): the engine
//! emits [`Event`]s; a terminal, progress-bar or JSON reporter turns them into output.

mod event;
mod json;
mod paint;
mod plain;
mod progress;
mod terminal;

pub use event::{Event, Fanout, Reporter, Summary, TaskRef};
pub use json::JsonReporter;
pub use paint::use_color;
pub(crate) use paint::Paint;
pub use plain::PlainReporter;
pub use progress::{release_screen, retake_screen, ProgressReporter};
