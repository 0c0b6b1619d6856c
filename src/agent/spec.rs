//! What an agent is: the command it runs, how its prompt reaches it and where its reply is
//! read. A plan's `[agents.NAME]` tables become these; they need nothing of the plan, so the
//! plan can use them (and the [presets](super::presets)) without the agent module needing
//! the plan back.

use indexmap::IndexMap;
use std::time::Duration;

/// Name of the built-in simulated agent.
pub const SIM_AGENT: &str = "sim";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PromptVia {
    Stdin,
    Arg,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ResultSpec {
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

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub kind: AgentKind,
    pub command: Vec<String>,
    pub prompt_via: PromptVia,
    pub result: ResultSpec,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub retry_on: Vec<String>,
    pub env: IndexMap<String, String>,
    /// Where this agent's tasks run (`executor`, `slurm`), unless a task says otherwise.
    #[serde(default)]
    pub placement: crate::executor::Placement,
}
