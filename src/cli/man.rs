//! `orch man`.

use std::path::PathBuf;

use clap::Args;
use miette::{miette, Result};

use super::common::Global;

#[derive(Args, Debug, Clone, Default)]
pub struct ManArgs {
    /// Write orch.1 and one page per subcommand (orch-build.1, ...) into DIR instead of
    /// printing orch.1.
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the man page (roff), or writes every page into a directory.
pub fn run(_global: &Global, args: &ManArgs, cmd: clap::Command) -> Result<i32> {
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| miette!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| miette!("cannot write man pages to {}: {e}", dir.display()))?;
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| miette!("cannot render the man page: {e}"))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| miette!("cannot write the man page: {e}"))?;
        }
    }
    Ok(0)
}
