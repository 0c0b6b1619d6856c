//! `orch schema`: the JSON Schema of Orchfile.toml (see `plan::orchfile::schema`).

use std::path::PathBuf;

use clap::Args;
use miette::{miette, Result};

use super::common::Global;
use crate::plan::orchfile::schema::orchfile_schema;

#[derive(Args, Debug, Clone, Default)]
pub struct SchemaArgs {
    /// Write it to FILE instead of printing it (e.g. the `orchfile.schema.json` that
    /// `orch init` names in its `#:schema` line).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The schema as a file holds it: pretty, with a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&orchfile_schema()).expect("a JSON value");
    text.push('\n');
    text
}

pub fn run(_global: &Global, args: &SchemaArgs) -> Result<i32> {
    let text = schema_text();
    match &args.output {
        Some(path) => crate::disk::persist_atomic(path, text.as_bytes())
            .map_err(|e| miette!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}
