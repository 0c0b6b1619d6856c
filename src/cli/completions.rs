//! `orch completions`.

use clap::Args;
use clap_complete::Shell;
use miette::Result;

use super::common::Global;

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints a completion script, e.g. `orch completions bash > ~/.local/share/bash-completion/completions/orch`.
pub fn run(_global: &Global, args: &CompletionsArgs, cmd: clap::Command) -> Result<i32> {
    let mut cmd = cmd;
    clap_complete::generate(args.shell, &mut cmd, "orch", &mut std::io::stdout());
    Ok(0)
}
