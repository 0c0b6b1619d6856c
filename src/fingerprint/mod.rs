//! Content fingerprints: blake3 over a task's definition, its input files and what its deps
//! produced (their outputs' and results' hashes, not their fingerprints: early cutoff).
//!
//! File hashes go through a stat cache keyed by (size, mtime, inode, ctime) so an unchanged file
//! is never read twice across runs; a file modified too recently to trust its mtime is re-read.
//!
//! The definition and the fingerprint are `definition`'s; globs, `glob`'s; the stat cache
//! and hashing files, `stat_cache`'s.

mod definition;
mod glob;
mod stat_cache;

pub use definition::{
    combine, definition_digest, definition_fields, dep_digest_v1, field_name, handoff,
    memoizable_definition, task_definition, Definition, DefinitionFields, FieldName,
    DEFINITION_FIELDS,
};
pub use glob::{compile_glob, expand_inputs, glob_dirs, has_glob_meta, literal_prefix};
pub use stat_cache::{
    hash_file_contents, now_ns, open_regular, racy_window_ns, read_regular, stamp_is_racy,
    FileKind, FxHasher, OpenDir, StatCache,
};
