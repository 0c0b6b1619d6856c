//! What every file orch keeps is made of, below everything that keeps one: the content
//! [`Digest`], the [`FileStamp`] that says a file is unchanged, the checksummed binary
//! encoding of the `.bin` files ([`codec`]), whole-file replacement ([`persist_atomic`],
//! [`replace_unsynced`]), many files synced at once ([`SyncBatch`]) and I/O errors that name their file ([`PathError`]). It imports nothing else of the crate, so the plan cache, the
//! fingerprints and the state store can all use it without reaching into one another.

pub mod codec;
mod digest;
mod path_error;
mod replace;
mod stamp;
mod sync_batch;
pub mod tree;

pub use digest::Digest;
pub use path_error::{names_a_path, IoResultExt, PathError};
pub use replace::{persist_atomic, replace_unsynced, sweep_left_over_temps, Swept, TempFile};
pub use stamp::FileStamp;
pub use sync_batch::SyncBatch;
