//! Built-in agent definitions. A `[agents.NAME]` table starts from one of these and overrides
//! fields. The flags of claude, codex and gemini are those measured against the real CLIs
//! (tests/support/agents/README.md): each streams its events as JSON lines, has one set of
//! flags per permission level, and continues a session by id.

use indexmap::IndexMap;

use super::spec::{
    AgentKind, AgentSpec, LevelArgs, PromptVia, ReplyFormat, ResultSpec, ARGS_PLACEHOLDER,
    PERMISSION_PLACEHOLDER, RESUME_PLACEHOLDER, SESSION_PLACEHOLDER, SIM_AGENT,
};

/// Error messages that mean "try again later" for hosted model APIs; matched against an
/// agent's own error message only (never its whole output, which may echo the prompt).
const TRANSIENT_API_ERRORS: &[&str] = &[
    "overloaded_error",
    "Overloaded",
    "rate_limit",
    "rate limit",
    "429",
    "529",
    "503 Service Unavailable",
    "RESOURCE_EXHAUSTED",
    "Too Many Requests",
];

pub const PRESET_NAMES: &[&str] = &["claude", "codex", "gemini", "aider", "ollama", "llm"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn spec(name: &str, command: &[&str], prompt_via: PromptVia, result: ResultSpec) -> AgentSpec {
    AgentSpec {
        name: name.to_string(),
        kind: AgentKind::Command,
        command: strings(command),
        prompt_via,
        result,
        format: ReplyFormat::Generic,
        args: Vec::new(),
        permission_args: LevelArgs::default(),
        resume_args: Vec::new(),
        permissions: None,
        allow_undeclared_writes: None,
        isolation: None,
        max_parallel: None,
        timeout: None,
        retries: 2,
        retry_on: strings(TRANSIENT_API_ERRORS),
        env: IndexMap::new(),
        placement: Default::default(),
        max_cost_usd: None,
        provider: None,
        start_early: false,
    }
}

/// A CLI with its own reply format, per-level flags and resume.
fn cli(
    name: &str,
    command: &[&str],
    format: ReplyFormat,
    levels: [&[&str]; 3],
    resume: &[&str],
) -> AgentSpec {
    AgentSpec {
        format,
        permission_args: LevelArgs {
            read: strings(levels[0]),
            write: strings(levels[1]),
            full: strings(levels[2]),
        },
        resume_args: strings(resume),
        // Each of these waits at its stdin for EOF once some of the prompt came
        // (tests/early_start_agents.rs); ollama and llm were never checked, so wait for a place.
        start_early: true,
        ..spec(name, command, PromptVia::Stdin, ResultSpec::Reply)
    }
}

impl AgentSpec {
    /// More messages that mean "try again later", for one CLI's own wording.
    fn with_retry_on(mut self, more: &[&str]) -> AgentSpec {
        self.retry_on.extend(strings(more));
        self
    }
}

/// The preset called `name`, if there is one.
pub fn preset(name: &str) -> Option<AgentSpec> {
    const ARGS: &str = ARGS_PLACEHOLDER;
    const LEVEL: &str = PERMISSION_PLACEHOLDER;
    const RESUME: &str = RESUME_PLACEHOLDER;
    const SESSION: &str = SESSION_PLACEHOLDER;
    let mut agent = match name {
        // `claude -p` reads the prompt from stdin; stream-json ends with the `result` object
        // (is_error, subtype, permission_denials, api_error_status, cost, usage).
        "claude" => cli(
            name,
            &[
                "claude",
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                ARGS,
                LEVEL,
                RESUME,
            ],
            ReplyFormat::Claude,
            [
                &["--permission-mode", "default"],
                &["--permission-mode", "acceptEdits"],
                &["--permission-mode", "bypassPermissions"],
            ],
            &["--resume", SESSION],
        ),
        // `codex exec -` reads the prompt from stdin. Its sandbox flag belongs to `exec`, so
        // it comes before the `resume` subcommand.
        "codex" => cli(
            name,
            &[
                "codex",
                "exec",
                LEVEL,
                ARGS,
                "--skip-git-repo-check",
                "--json",
                RESUME,
                "-",
            ],
            ReplyFormat::Codex,
            [
                &["-s", "read-only"],
                &["-s", "workspace-write"],
                &["-s", "danger-full-access"],
            ],
            &["resume", SESSION],
        )
        .with_retry_on(&["high demand", "stream disconnected"]),
        // gemini reads a piped prompt; `--skip-trust` trusts the project for this run only
        // (otherwise it exits 55 in a folder it was not told to trust).
        "gemini" => cli(
            name,
            &[
                "gemini",
                "--output-format",
                "stream-json",
                "--skip-trust",
                ARGS,
                LEVEL,
                RESUME,
            ],
            ReplyFormat::Gemini,
            [
                &["--approval-mode", "default"],
                &["--approval-mode", "auto_edit"],
                &["--approval-mode", "yolo"],
            ],
            &["--resume", SESSION],
        ),
        // aider edits files in place; its message comes from a file to dodge argv limits.
        "aider" => spec(
            name,
            &[
                "aider",
                "--yes-always",
                "--no-pretty",
                "--no-stream",
                "--message-file",
                "{prompt_file}",
            ],
            PromptVia::File,
            ResultSpec::Stdout,
        ),
        "ollama" => AgentSpec {
            retry_on: strings(&["server busy", "connection refused"]),
            ..spec(
                name,
                &["ollama", "run", "llama3.2"],
                PromptVia::Stdin,
                ResultSpec::Stdout,
            )
        },
        "llm" => spec(name, &["llm"], PromptVia::Stdin, ResultSpec::Stdout),
        SIM_AGENT => AgentSpec {
            kind: AgentKind::Sim,
            command: Vec::new(),
            retries: 0,
            retry_on: Vec::new(),
            ..spec(SIM_AGENT, &[], PromptVia::File, ResultSpec::Stdout)
        },
        _ => return None,
    };
    // The API each CLI calls by default, whose limits its agents share.
    agent.provider = match name {
        "claude" => Some("anthropic".into()),
        "codex" => Some("openai".into()),
        "gemini" => Some("google".into()),
        _ => None,
    };
    Some(agent)
}

/// Every built-in agent, presets first, then `sim`.
pub fn builtin_agents() -> IndexMap<String, AgentSpec> {
    PRESET_NAMES
        .iter()
        .chain(std::iter::once(&SIM_AGENT))
        .map(|n| (n.to_string(), preset(n).expect("listed preset exists")))
        .collect()
}
