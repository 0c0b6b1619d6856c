//! What orch adjusts for one run of a CLI it knows, and what it refuses before spending
//! money: each CLI retries failed model requests itself (claude about 11 times over three
//! minutes, codex up to 30 times, gemini 10 times over nearly four), under orch's own retries
//! with backoff; where the CLI has a knob, orch turns that down, unless the person set it. And claude refuses
//! `bypassPermissions` as root, which is worth saying before the build starts.

use std::path::PathBuf;

use super::call::{command_line, Call};
use super::gemini_defaults;
use super::spec::{AgentSpec, Permission, ReplyFormat};

/// Variables and arguments one run gets besides the agent's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Knobs {
    pub env: Vec<(String, String)>,
    /// Beside the permission level's arguments.
    pub args: Vec<String>,
}

/// The knobs that leave retrying to orch, for an agent whose child sees `var` (orch's
/// environment with the agent's and task's `env` over it).
///
/// - claude: `CLAUDE_CODE_MAX_RETRIES=0`, unless set.
/// - codex: `-c model_providers.<id>.request_max_retries=0` and `stream_max_retries=0` for a
///   provider defined in `$CODEX_HOME/config.toml` that does not set them (the built-in
///   `openai` provider cannot be changed that way).
/// - gemini: `general.maxAttempts = 1` in a system-defaults file orch writes
///   (`GEMINI_CLI_SYSTEM_DEFAULTS_PATH`, under the person's settings.json), unless the variable
///   is set; gemini reads that file only when orch runs as root (see [`gemini_defaults`]).
///
/// [`gemini_defaults`]: super::gemini_defaults
pub fn internal_retry_knobs(agent: &AgentSpec, var: &dyn Fn(&str) -> Option<String>) -> Knobs {
    let mut knobs = Knobs::default();
    match agent.format {
        ReplyFormat::Claude if var("CLAUDE_CODE_MAX_RETRIES").is_none() => {
            knobs
                .env
                .push(("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()));
        }
        ReplyFormat::Codex => knobs.args = codex_retry_args(agent, var),
        ReplyFormat::Gemini if var(gemini_defaults::DEFAULTS_VAR).is_none() => {
            if let Some(file) = gemini_defaults::defaults_file(var, running_as_root()) {
                knobs.env.push((
                    gemini_defaults::DEFAULTS_VAR.into(),
                    file.to_string_lossy().into_owned(),
                ));
            }
        }
        _ => {}
    }
    knobs
}

/// The arguments that stop one run at `max_cost_usd`, for a CLI that can: claude's
/// `--max-budget-usd`. Others get none (orch's budget still holds between tasks).
pub fn budget_args(agent: &AgentSpec, max_cost_usd: Option<f64>) -> Vec<String> {
    match (agent.format, max_cost_usd) {
        (ReplyFormat::Claude, Some(usd)) => vec!["--max-budget-usd".into(), format!("{usd}")],
        _ => Vec::new(),
    }
}

fn codex_retry_args(agent: &AgentSpec, var: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let home = var("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".codex")));
    let Some(config) = home
        .and_then(|h| std::fs::read_to_string(h.join("config.toml")).ok())
        .and_then(|t| t.parse::<toml::Table>().ok())
    else {
        return Vec::new();
    };
    // `-c model_provider=...` in the agent's own arguments wins over the file.
    let given = agent
        .command
        .iter()
        .chain(&agent.args)
        .find_map(|a| a.strip_prefix("model_provider="))
        .map(|v| v.trim_matches('"').to_string());
    let Some(id) = given.or_else(|| {
        config
            .get("model_provider")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }) else {
        return Vec::new();
    };
    let Some(provider) = config
        .get("model_providers")
        .and_then(|p| p.get(&id))
        .and_then(|p| p.as_table())
    else {
        return Vec::new();
    };
    let mut args = Vec::new();
    for key in ["request_max_retries", "stream_max_retries"] {
        let dotted = format!("model_providers.{id}.{key}");
        let set_by_person = provider.contains_key(key)
            || agent
                .command
                .iter()
                .chain(&agent.args)
                .any(|a| a.starts_with(&dotted));
        if !set_by_person {
            args.push("-c".into());
            args.push(format!("{dotted}=0"));
        }
    }
    args
}

/// Why the agent cannot run at `level` here, known before it starts: claude exits at once
/// when `bypassPermissions` (its `full`) is asked for by root, unless `IS_SANDBOX` is
/// exactly `1` or `CLAUDE_CODE_BUBBLEWRAP` is set (claude 2.1's own test).
pub fn refused_as_root(
    agent: &AgentSpec,
    level: Permission,
    var: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let sandboxed = var("IS_SANDBOX").as_deref() == Some("1")
        || var("CLAUDE_CODE_BUBBLEWRAP").is_some_and(|v| !v.is_empty());
    if agent.format != ReplyFormat::Claude || !running_as_root() || sandboxed {
        return None;
    }
    let argv = command_line(agent, &Call::at(level));
    let bypass = argv.iter().any(|a| {
        a == "bypassPermissions"
            || a == "--dangerously-skip-permissions"
            || a == "--permission-mode=bypassPermissions"
    });
    bypass.then(|| {
        format!(
            "claude refuses permissions = \"{}\" (--permission-mode bypassPermissions) when run \
             as root, before any request. Run orch as another user; or use permissions = \
             \"write\" (file edits); or, in a container or VM you trust, set IS_SANDBOX = \"1\" \
             in the agent's env; or give the agent permission_args = {{ full = \
             [\"--permission-mode\", \"acceptEdits\", \"--allowedTools\", \"Bash\"] }}",
            level.as_str()
        )
    })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::presets::preset;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn claude_retries_are_turned_down_unless_set() {
        let claude = preset("claude").unwrap();
        let k = internal_retry_knobs(&claude, &vars(&[]));
        assert_eq!(k.env, [("CLAUDE_CODE_MAX_RETRIES".into(), "0".into())]);
        let k = internal_retry_knobs(&claude, &vars(&[("CLAUDE_CODE_MAX_RETRIES", "5")]));
        assert!(k.env.is_empty());
    }

    #[test]
    fn only_claude_is_told_an_attempts_budget() {
        let claude = crate::agent::presets::preset("claude").unwrap();
        let codex = crate::agent::presets::preset("codex").unwrap();
        assert_eq!(budget_args(&claude, Some(0.5)), ["--max-budget-usd", "0.5"]);
        assert!(budget_args(&claude, None).is_empty());
        assert!(budget_args(&codex, Some(0.5)).is_empty());
    }

    #[test]
    fn codex_retries_are_turned_down_for_a_configured_provider_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_string_lossy().into_owned();
        let codex = preset("codex").unwrap();
        let write = |text: &str| std::fs::write(dir.path().join("config.toml"), text).unwrap();
        write("model_provider = \"mock\"\n[model_providers.mock]\nbase_url = \"x\"\n");
        let k = internal_retry_knobs(&codex, &vars(&[("CODEX_HOME", &home)]));
        assert_eq!(
            k.args,
            [
                "-c",
                "model_providers.mock.request_max_retries=0",
                "-c",
                "model_providers.mock.stream_max_retries=0"
            ]
        );
        write("model_provider = \"mock\"\n[model_providers.mock]\nstream_max_retries = 3\n");
        let k = internal_retry_knobs(&codex, &vars(&[("CODEX_HOME", &home)]));
        assert_eq!(k.args, ["-c", "model_providers.mock.request_max_retries=0"]);
        // The built-in provider cannot be overridden: nothing is passed.
        write("model = \"gpt-5\"\n");
        assert!(
            internal_retry_knobs(&codex, &vars(&[("CODEX_HOME", &home)]))
                .args
                .is_empty()
        );
    }

    #[test]
    fn gemini_defaults_file_set_by_the_person_is_left_alone() {
        let gemini = preset("gemini").unwrap();
        let k = internal_retry_knobs(
            &gemini,
            &vars(&[("GEMINI_CLI_SYSTEM_DEFAULTS_PATH", "/etc/mine.json")]),
        );
        assert_eq!(k, Knobs::default());
    }

    #[test]
    fn claude_full_as_root_is_refused_up_front_unless_sandboxed() {
        let claude = preset("claude").unwrap();
        assert_eq!(
            refused_as_root(&claude, Permission::Write, &vars(&[])),
            None
        );
        let full = refused_as_root(&claude, Permission::Full, &vars(&[]));
        assert_eq!(full.is_some(), running_as_root());
        assert_eq!(
            refused_as_root(&claude, Permission::Full, &vars(&[("IS_SANDBOX", "1")])),
            None
        );
        // claude accepts `1` only.
        assert_eq!(
            refused_as_root(&claude, Permission::Full, &vars(&[("IS_SANDBOX", "yes")])).is_some(),
            running_as_root()
        );
        assert_eq!(
            refused_as_root(&preset("codex").unwrap(), Permission::Full, &vars(&[])),
            None
        );
    }
}
