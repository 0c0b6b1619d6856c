//! Shell completion: `orch completions SHELL` prints the script a shell sources, and
//! [`complete_if_asked`] answers that script at each TAB. The script calls orch back
//! (clap_complete's `CompleteEnv` protocol: `COMPLETE=SHELL orch -- WORDS...`) rather than
//! listing everything once, because task ids and agent names belong to the plan in the
//! directory the TAB is pressed in, not to the binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Args;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
use clap_complete::{CompletionCandidate, Shell};
use miette::{miette, Result};

use super::common::Global;
use crate::plan::Plan;

/// The environment variable that turns a run of orch into a completion request.
const COMPLETE_VAR: &str = "COMPLETE";

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for a shell. It calls this orch back at each TAB, so load it
/// anew at shell start (`source <(orch completions bash)`) rather than saving it: a script
/// from another version of orch may not match the binary.
pub fn run(_global: &Global, args: &CompletionsArgs, cmd: clap::Command) -> Result<i32> {
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Elvish => &Elvish,
        Shell::Fish => &Fish,
        Shell::PowerShell => &Powershell,
        Shell::Zsh => &Zsh,
        other => return Err(miette!("no completion for {other}")),
    };
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    shell
        .write_registration(COMPLETE_VAR, &name, &name, &completer(), &mut script)
        .map_err(|e| miette!("{e}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| miette!("cannot write the script: {e}"))?;
    Ok(0)
}

/// The program the script calls back: the one named on this command line, as clap's own
/// `COMPLETE=bash orch` would, so `orch` stays a PATH look-up and `./target/debug/orch`
/// becomes absolute.
fn completer() -> String {
    let arg0 = PathBuf::from(std::env::args_os().next().unwrap_or_else(|| "orch".into()));
    let path = if arg0.components().count() > 1 {
        std::path::absolute(&arg0).unwrap_or(arg0)
    } else {
        arg0
    };
    path.to_string_lossy().into_owned()
}

/// Answers a completion request and exits, when this run is one (`COMPLETE` set by the
/// script); returns otherwise.
pub fn complete_if_asked(cmd: fn() -> clap::Command) {
    clap_complete::CompleteEnv::with_factory(cmd)
        .var(COMPLETE_VAR)
        .complete();
}

/// Every task id of the plan the completed command line would build, each with its title,
/// and each fan-out's name (which builds all its instances) before its instances.
pub fn task_ids() -> Vec<CompletionCandidate> {
    let Some(plan) = plan_of_command_line() else {
        return Vec::new();
    };
    candidates(&plan)
}

fn candidates(plan: &Plan) -> Vec<CompletionCandidate> {
    let template = |f: &crate::plan::Fanout| {
        let n = f.instances.len();
        CompletionCandidate::new(&f.template.id).help(Some(
            format!("fan-out: {n} instance{}", if n == 1 { "" } else { "s" }).into(),
        ))
    };
    let mut out = Vec::with_capacity(plan.tasks.len() + plan.fanouts.len());
    for (i, t) in plan.tasks.iter().enumerate() {
        if let Some(f) = plan
            .fanouts
            .iter()
            .find(|f| f.instances.first() == Some(&i))
        {
            out.push(template(f));
        }
        // A task without a title is titled by its id: nothing to add.
        let title = (t.title != t.id).then(|| t.title.clone().into());
        out.push(CompletionCandidate::new(&t.id).help(title));
    }
    // A fan-out with no instances yet (a `foreach_from` source that has not answered).
    out.extend(
        plan.fanouts
            .iter()
            .filter(|f| f.instances.is_empty())
            .map(template),
    );
    out
}

/// Every agent name of that plan.
pub fn agent_names() -> Vec<CompletionCandidate> {
    let Some(plan) = plan_of_command_line() else {
        return Vec::new();
    };
    plan.agents.keys().map(CompletionCandidate::new).collect()
}

/// The plan the words being completed name with `-C DIR` and `-f FILE`, else the one found
/// from the shell's directory; `None` when there is none or it does not load (a TAB
/// prints no error).
fn plan_of_command_line() -> Option<Plan> {
    let words: Vec<OsString> = std::env::args_os().collect();
    let after = words.iter().position(|w| w == "--")? + 1;
    // The last word is the one being completed, not yet an argument.
    let typed = &words[after..words.len().saturating_sub(1).max(after)];
    let (dir, file) = directory_and_file(typed);
    let dir = match dir {
        Some(d) => std::env::current_dir().ok()?.join(d),
        None => std::env::current_dir().ok()?,
    };
    let file = file.map(|f| dir.join(f));
    with_directory(&dir, || {
        super::common::locate_plan(file.as_deref())
            .ok()?
            .load()
            .ok()
    })
}

/// The values of `-C`/`--directory` and `-f`/`--file` among the typed words (the last of
/// each, as clap takes it), in any of the forms clap accepts.
fn directory_and_file(words: &[OsString]) -> (Option<PathBuf>, Option<PathBuf>) {
    let (mut dir, mut file) = (None, None);
    let mut words = words.iter().map(|w| w.to_string_lossy().into_owned());
    while let Some(w) = words.next() {
        let (slot, inline) = match w.as_str() {
            "-C" | "--directory" => (&mut dir, None),
            "-f" | "--file" => (&mut file, None),
            "--" => break,
            _ => match (
                w.strip_prefix("--directory=").or(w.strip_prefix("-C")),
                w.strip_prefix("--file=")
                    .or(w.strip_prefix("-f").filter(|_| !w.starts_with("--"))),
            ) {
                (Some(v), _) => (&mut dir, Some(v.to_string())),
                (_, Some(v)) => (&mut file, Some(v.to_string())),
                _ => continue,
            },
        };
        if let Some(v) = inline.or_else(|| words.next()) {
            *slot = Some(PathBuf::from(v));
        }
    }
    (dir, file)
}

/// Runs `f` with `dir` as the working directory, as `-C` makes it for the command itself
/// (a plan's paths are read relative to it), then goes back.
fn with_directory<T>(dir: &Path, f: impl FnOnce() -> Option<T>) -> Option<T> {
    let back = std::env::current_dir().ok()?;
    std::env::set_current_dir(dir).ok()?;
    let out = f();
    let _ = std::env::set_current_dir(back);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_file(words: &[&str]) -> (Option<PathBuf>, Option<PathBuf>) {
        let words: Vec<OsString> = words.iter().map(OsString::from).collect();
        directory_and_file(&words)
    }

    #[test]
    fn reads_directory_and_file_in_every_form() {
        let both = (Some(PathBuf::from("d")), Some(PathBuf::from("p.toml")));
        assert_eq!(
            dir_file(&["orch", "-C", "d", "build", "-f", "p.toml"]),
            both
        );
        assert_eq!(dir_file(&["orch", "-Cd", "build", "-fp.toml"]), both);
        assert_eq!(
            dir_file(&["orch", "--directory=d", "build", "--file=p.toml"]),
            both
        );
        assert_eq!(
            dir_file(&["orch", "--directory", "d", "--file", "p.toml"]),
            both
        );
        assert_eq!(dir_file(&["orch", "build", "a", "b"]), (None, None));
        // A flag that only starts like one is not it.
        assert_eq!(dir_file(&["orch", "build", "--format", "x"]), (None, None));
        assert_eq!(dir_file(&["orch", "build", "--", "-C", "d"]), (None, None));
    }
}
