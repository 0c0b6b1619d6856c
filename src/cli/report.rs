//! `orch report`: the last build's record (or an older one) drawn as report.html.

use std::path::PathBuf;

use clap::Args;
use miette::{miette, Result};

use super::common::Global;
use crate::reporter::record::{runs_dir, KEEP_RUNS};

#[derive(Args, Debug, Clone, Default)]
pub struct ReportArgs {
    /// Which run: 0 the last, 1 the one before, ... (the state directory keeps the last
    /// 20).
    #[arg(
        long = "run",
        value_name = "N",
        default_value_t = 0,
        conflicts_with = "record"
    )]
    pub run: usize,
    /// Draw this run record (a `runs/*.jsonl` file, perhaps copied from elsewhere) instead.
    #[arg(long = "record", value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Write the page here [default: report.html in the state directory].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(global: &Global, args: &ReportArgs) -> Result<i32> {
    let (record, out) = match &args.record {
        Some(r) => {
            let out = match &args.output {
                Some(o) => o.clone(),
                None => r.with_extension("html"),
            };
            (r.clone(), out)
        }
        None => {
            let dir = global.plan()?.state_dir();
            let record = crate::report::pick_run(&dir, args.run).ok_or_else(|| {
                let kept = crate::reporter::record::list_runs(&runs_dir(&dir)).len();
                if kept == 0 {
                    miette!(
                        help = "run `orch build` first: every build records its events there",
                        "no build recorded in {}",
                        runs_dir(&dir).display()
                    )
                } else {
                    miette!(
                        "--run {}: {kept} build(s) recorded (at most {KEEP_RUNS} are kept)",
                        args.run
                    )
                }
            })?;
            let out = args
                .output
                .clone()
                .unwrap_or_else(|| crate::report::default_output(&dir));
            (record, out)
        }
    };
    let run = crate::report::write(&record, &out).map_err(|e| {
        miette!(
            "cannot draw {} into {}: {e}",
            record.display(),
            out.display()
        )
    })?;
    let attempts: usize = run.tasks.values().map(|t| t.attempts.len()).sum();
    println!(
        "{} ({} task(s), {attempts} attempt(s), from {})",
        out.display(),
        run.tasks.len(),
        record.display()
    );
    Ok(0)
}
