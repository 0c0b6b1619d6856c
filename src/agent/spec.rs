//! What an agent is: the command it runs, how its prompt reaches it, what it may do to the
//! tree at each permission level, and how its reply is read. A plan's `[agents.NAME]` tables
//! become these; they need nothing of the plan, so the plan can use them (and the
//! [presets](super::presets)) without the agent module needing the plan back.

use indexmap::IndexMap;
use std::time::Duration;

/// Name of the built-in simulated agent.
pub const SIM_AGENT: &str = "sim";

/// Command placeholders that stand for whole arguments: each is replaced by zero or more of
/// them (the agent's `args`, its arguments for the permission level, and those that resume
/// a session). A command without one gets those arguments at its end, in this order.
pub const ARGS_PLACEHOLDER: &str = "{args}";
pub const PERMISSION_PLACEHOLDER: &str = "{permission_args}";
pub const RESUME_PLACEHOLDER: &str = "{resume_args}";
/// Inside `resume_args`: the session to continue.
pub const SESSION_PLACEHOLDER: &str = "{session_id}";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PromptVia {
    Stdin,
    Arg,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ResultSpec {
    /// The reply text as the agent's [`ReplyFormat`] reads it (the presets of claude, codex
    /// and gemini).
    Reply,
    Stdout,
    /// A field of the JSON document on stdout, dotted for nesting (`json:result`).
    JsonField(String),
    /// A file the agent writes, relative to the project root.
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AgentKind {
    /// The built-in simulated agent.
    Sim,
    /// An external CLI launched from `command`.
    Command,
}

/// What an agent may do to the project tree. Ordered: each level allows what the one
/// before it does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Permission {
    /// Read files, change nothing.
    Read,
    /// Edit files in the project.
    Write,
    /// Edit files and run any command.
    Full,
}

impl Permission {
    pub const NAMES: [&'static str; 3] = ["read", "write", "full"];

    pub fn parse(s: &str) -> Option<Permission> {
        match s {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            "full" => Some(Permission::Full),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Permission::NAMES[self as usize]
    }
}

/// Where a task's edits are made (`isolation`): in the project tree itself, or in a git
/// worktree of its own whose commit is merged back (see `crate::workspace`). Here, beside
/// [`Permission`], because an agent carries it as it carries its level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Isolation {
    #[default]
    None,
    Worktree,
}

impl Isolation {
    pub const NAMES: [&'static str; 2] = ["none", "worktree"];

    pub fn parse(s: &str) -> Option<Isolation> {
        match s {
            "none" => Some(Isolation::None),
            "worktree" => Some(Isolation::Worktree),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Isolation::NAMES[self as usize]
    }
}

/// The arguments that give an agent CLI one permission level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LevelArgs {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub full: Vec<String>,
}

impl LevelArgs {
    pub fn get(&self, level: Permission) -> &[String] {
        match level {
            Permission::Read => &self.read,
            Permission::Write => &self.write,
            Permission::Full => &self.full,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty() && self.full.is_empty()
    }
}

/// How orch reads what an agent printed: each CLI's own JSON, or as `result` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ReplyFormat {
    /// `result` alone decides (stdout, a JSON field, a file); errors are exit codes and
    /// `is_error`/`error` fields.
    Generic,
    /// `claude -p --output-format json` or `stream-json`: the `result` object.
    Claude,
    /// `codex exec --json`: JSON lines of a thread's events.
    Codex,
    /// `gemini -o json` or `stream-json`.
    Gemini,
}

impl ReplyFormat {
    pub const NAMES: [&'static str; 4] = ["generic", "claude", "codex", "gemini"];

    pub fn parse(s: &str) -> Option<ReplyFormat> {
        match s {
            "generic" => Some(ReplyFormat::Generic),
            "claude" => Some(ReplyFormat::Claude),
            "codex" => Some(ReplyFormat::Codex),
            "gemini" => Some(ReplyFormat::Gemini),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        ReplyFormat::NAMES[self as usize]
    }
}

/// Writes outside the declared outputs that a task may make without failing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AllowWrites {
    /// `allow_undeclared_writes = true`: no check at all.
    All,
    /// `allow_undeclared_writes = ["target/**", ...]`: files these globs match.
    Globs(Vec<String>),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub kind: AgentKind,
    pub command: Vec<String>,
    pub prompt_via: PromptVia,
    pub result: ResultSpec,
    pub format: ReplyFormat,
    /// Extra arguments, at `{args}` in the command.
    pub args: Vec<String>,
    /// The arguments for each permission level, at `{permission_args}`.
    pub permission_args: LevelArgs,
    /// The arguments that continue a session (`{session_id}` in them), at `{resume_args}`;
    /// empty when the CLI cannot resume.
    pub resume_args: Vec<String>,
    /// The level this agent's tasks get unless a task says otherwise.
    pub permissions: Option<Permission>,
    pub allow_undeclared_writes: Option<AllowWrites>,
    /// Whether this agent's tasks run in a worktree of their own, unless a task says.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub retry_on: Vec<String>,
    pub env: IndexMap<String, String>,
    /// Where this agent's tasks run (`executor`, `slurm`), unless a task says otherwise.
    #[serde(default)]
    pub placement: crate::executor::Placement,
    /// What one attempt may cost (USD): passed to a CLI that can stop itself there
    /// (claude's `--max-budget-usd`), and a cap on the attempt's projected cost.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// The API whose rate limits and usage limits this agent shares with others; `None`
    /// takes [`AgentSpec::provider`]'s default.
    #[serde(default)]
    pub provider: Option<String>,
    /// Whether the CLI may be started before its provider has a place for its call: it
    /// reads its whole prompt on stdin up to EOF however long the last byte takes
    /// (verified for the real claude, codex and gemini by tests/early_start_agents.rs).
    #[serde(default)]
    pub start_early: bool,
}

impl AgentSpec {
    /// The provider whose limits this agent's calls count against: the one set, else the
    /// agent's own name (a preset sets its API's); `None` for the sim agent, which calls
    /// nothing.
    pub fn provider(&self) -> Option<&str> {
        match (&self.provider, &self.kind) {
            (Some(p), _) => Some(p),
            (None, AgentKind::Sim) => None,
            (None, AgentKind::Command) => Some(&self.name),
        }
    }

    /// Whether a session of this agent can be continued.
    pub fn can_resume(&self) -> bool {
        !self.resume_args.is_empty() && self.format != ReplyFormat::Generic
    }
}
