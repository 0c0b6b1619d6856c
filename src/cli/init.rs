//! `orch init`: a commented starter Orchfile.toml, and beside it the JSON Schema that its
//! first line (`#:schema ./orchfile.schema.json`, taplo's directive, which Even Better TOML
//! and other taplo-based editors read) points at.
//!
//! A local file rather than a URL: it is written by the very binary that will read the
//! Orchfile, so it describes exactly the fields this orch accepts, needs no network and no
//! host to keep a versioned copy online; `orch schema -o orchfile.schema.json` refreshes it
//! after an upgrade. Commit it, and every editor of the project gets it.

use std::path::PathBuf;

use clap::Args;
use miette::{miette, Result};

use super::common::Global;
use super::schema::schema_text;
use crate::plan::orchfile::ORCHFILE_NAME;

/// The schema file `orch init` writes beside the Orchfile.
pub const SCHEMA_FILE: &str = "orchfile.schema.json";

#[derive(Args, Debug, Clone, Default)]
pub struct InitArgs {
    /// Overwrite an existing Orchfile.toml (its schema file is always rewritten).
    #[arg(long = "force")]
    pub force: bool,
}

/// A commented starter plan: a shell task and an agent task that uses its output. It runs
/// as it is with `orch build --agent sim`.
pub const STARTER: &str = r#"# Orchfile.toml: the tasks to run, what each reads and writes, and what each needs.
# `orch build` runs every task that is not up to date, in parallel where deps allow.
#
#   orch build --agent sim     try it offline (a simulated agent, no API calls)
#   orch build --dry-run       what would run, in which batches, and why
#   orch explain TASK          why a task would run
#   orch status                the status table; .orchestrator/master_plan.md has it too

# What this plan is for; shown at the top of master_plan.md.
request = "List the project's source files and summarise what the project contains."

[settings]
default_agent = "claude"        # agent for prompt tasks that name none
# jobs = 4                      # tasks running at once (-j overrides)
# keep_going = false            # keep starting independent tasks after a failure (-k)
# state_dir = ".orchestrator"   # results, logs, master_plan.md

# Presets exist for claude, codex, gemini, aider, ollama and llm. A table overrides preset
# fields, or defines an agent of your own from a command (an argv, never a shell string).
[agents.claude]
preset = "claude"
max_parallel = 2                # at most 2 claude tasks at once
timeout = "15m"
retries = 2                     # overload and rate-limit errors are retried with backoff
# command = ["claude", "-p", "--output-format", "json"]
# prompt_via = "stdin"          # stdin | arg | file
# result = "json:result"        # stdout | json:<field> | file:<path>

# A shell task: `run` goes to `sh -c`, no agent. It re-runs when its definition or an input
# file changes, or when an output is missing or was modified.
[tasks.files]
title = "List source files"
run = "mkdir -p reports && (find src -type f 2>/dev/null || true) | sort > reports/files.txt"
inputs = ["src/**/*"]           # globs, relative to this file; their contents are hashed
outputs = ["reports/files.txt"] # files the task must produce
priority = "P0"                 # P0 (critical path) .. P3 (low)

# An agent task: its prompt (with its deps' results appended) goes to the agent.
[tasks.summary]
title = "Summarise the project"
prompt = """
Read reports/files.txt, the list of the project's source files, look at the files that
matter, and write a short summary of what the project contains to reports/summary.md.
"""
deps = ["files"]                # runs after `files`, and again whenever `files` changes
outputs = ["reports/summary.md"]
verify = "test -s reports/summary.md"   # a success check (sh -c) after the outputs exist
estimate = "2m"                 # for the critical path and the dry-run display
# agent = "claude"              # default: settings.default_agent
# retries = 1
# timeout = "10m"

# Merge every result into .orchestrator/final_output.md.
# [aggregate]
# strategy = "concat"           # concat | structured | agent
# title = "Project Summary"
"#;

/// Writes a commented starter `Orchfile.toml` (at `-f FILE`, else in the current directory).
pub fn run(global: &Global, args: &InitArgs) -> Result<i32> {
    let path = global
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(ORCHFILE_NAME));
    if path.exists() && !args.force {
        return Err(miette!(
            help = "use --force to overwrite it",
            "{} already exists",
            path.display()
        ));
    }
    let text = format!("#:schema ./{SCHEMA_FILE}\n{STARTER}");
    std::fs::write(&path, text).map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
    let schema = path.with_file_name(SCHEMA_FILE);
    std::fs::write(&schema, schema_text())
        .map_err(|e| miette!("cannot write {}: {e}", schema.display()))?;
    println!(
        "wrote {} (and {}, its schema for editors); try: orch build --agent sim",
        path.display(),
        schema.display()
    );
    Ok(0)
}
