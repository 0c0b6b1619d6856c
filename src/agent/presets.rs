//! Built-in agent definitions. A `[agents.NAME]` table starts from one of these and overrides
//! fields; the values follow each CLI's non-interactive mode.

use indexmap::IndexMap;

use super::spec::{AgentKind, AgentSpec, PromptVia, ResultSpec, SIM_AGENT};

/// Output fragments that mean "try again later" for hosted model APIs.
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

fn spec(
    name: &str,
    command: &[&str],
    prompt_via: PromptVia,
    result: ResultSpec,
    retry_on: &[&str],
) -> AgentSpec {
    AgentSpec {
        name: name.to_string(),
        kind: AgentKind::Command,
        command: command.iter().map(|s| s.to_string()).collect(),
        prompt_via,
        result,
        max_parallel: None,
        timeout: None,
        retries: 2,
        retry_on: retry_on.iter().map(|s| s.to_string()).collect(),
        env: IndexMap::new(),
        placement: Default::default(),
    }
}

/// The preset called `name`, if there is one.
pub fn preset(name: &str) -> Option<AgentSpec> {
    let json = |f: &str| ResultSpec::JsonField(f.to_string());
    Some(match name {
        // `claude -p` reads the prompt from stdin; JSON output carries `is_error` and cost.
        "claude" => spec(
            name,
            &["claude", "-p", "--output-format", "json"],
            PromptVia::Stdin,
            json("result"),
            TRANSIENT_API_ERRORS,
        ),
        // `codex exec -` reads the prompt from stdin and prints the final message on stdout.
        "codex" => spec(
            name,
            &["codex", "exec", "--skip-git-repo-check", "-"],
            PromptVia::Stdin,
            ResultSpec::Stdout,
            TRANSIENT_API_ERRORS,
        ),
        "gemini" => spec(
            name,
            &["gemini", "--output-format", "json"],
            PromptVia::Stdin,
            json("response"),
            TRANSIENT_API_ERRORS,
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
            TRANSIENT_API_ERRORS,
        ),
        "ollama" => spec(
            name,
            &["ollama", "run", "llama3.2"],
            PromptVia::Stdin,
            ResultSpec::Stdout,
            &["server busy", "connection refused"],
        ),
        "llm" => spec(
            name,
            &["llm"],
            PromptVia::Stdin,
            ResultSpec::Stdout,
            TRANSIENT_API_ERRORS,
        ),
        SIM_AGENT => AgentSpec {
            name: SIM_AGENT.to_string(),
            kind: AgentKind::Sim,
            command: Vec::new(),
            prompt_via: PromptVia::File,
            result: ResultSpec::Stdout,
            max_parallel: None,
            timeout: None,
            retries: 0,
            retry_on: Vec::new(),
            env: IndexMap::new(),
            placement: Default::default(),
        },
        _ => return None,
    })
}

/// Every built-in agent, presets first, then `sim`.
pub fn builtin_agents() -> IndexMap<String, AgentSpec> {
    PRESET_NAMES
        .iter()
        .chain(std::iter::once(&SIM_AGENT))
        .map(|n| (n.to_string(), preset(n).expect("listed preset exists")))
        .collect()
}
