//! One reply checked: its plan found, read and validated; a plan that fans out also as the
//! Orchfile it becomes, since only an Orchfile holds a fan-out template and the Orchfile's
//! own rules are the ones it must pass.

use indexmap::IndexMap;

use super::output::render_toml;
use super::reply::{extract_json, read_tasks, validate, PlannedTask};
use crate::plan::{AgentSpec, PlanError};

/// Extracts, reads and validates one reply.
pub fn check_reply(
    reply: &str,
    agents: &IndexMap<String, AgentSpec>,
) -> Result<Vec<PlannedTask>, Vec<String>> {
    let v = extract_json(reply).map_err(|e| vec![e])?;
    let (tasks, mut problems) = read_tasks(&v);
    problems.extend(validate(&tasks, agents));
    if problems.is_empty() && tasks.iter().any(|t| t.foreach.is_some()) {
        problems.extend(as_orchfile(&tasks));
    }
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(problems)
    }
}

/// The problems the Orchfile these tasks become has, a fan-out's rules being the
/// Orchfile's own. Agents are left out (they were checked above, and may be an
/// existing Orchfile's).
fn as_orchfile(tasks: &[PlannedTask]) -> Vec<String> {
    let anonymous: Vec<PlannedTask> = tasks
        .iter()
        .map(|t| PlannedTask {
            agent: None,
            ..t.clone()
        })
        .collect();
    let text = match render_toml(&anonymous, "check", None) {
        Ok(t) => t,
        Err(e) => return vec![format!("the plan cannot be written as an Orchfile: {e}")],
    };
    match crate::plan::orchfile::parse(std::path::Path::new("Orchfile.toml"), &text) {
        Ok(_) => Vec::new(),
        Err(e) => plan_error_lines(&e),
    }
}

/// One line per problem of a plan error (and its related ones), with its help.
fn plan_error_lines(e: &PlanError) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::iter::once(e).chain(&e.related) {
        if e.severity != miette::Severity::Error {
            continue;
        }
        match &e.help {
            Some(h) => out.push(format!("{} ({h})", e.message)),
            None => out.push(e.message.clone()),
        }
    }
    out
}
