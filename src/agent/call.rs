//! How one call to an agent is made: its command line at a permission level, with or
//! without a session to continue, and where the prompt goes.

use std::path::Path;

use super::spec::{
    AgentSpec, Permission, PromptVia, ARGS_PLACEHOLDER, PERMISSION_PLACEHOLDER, RESUME_PLACEHOLDER,
    SESSION_PLACEHOLDER,
};

/// How one call is made: the permission level, the session it continues, and arguments
/// orch adds for this run only (its own retry knobs), beside the level's.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub level: Permission,
    pub resume: Option<&'a str>,
    pub extra_args: &'a [String],
}

impl Call<'_> {
    pub fn at(level: Permission) -> Call<'static> {
        Call {
            level,
            resume: None,
            extra_args: &[],
        }
    }
}

/// The agent's command for `call`, its placeholders for whole arguments expanded (`{args}`,
/// `{permission_args}`, `{resume_args}`; those it lacks go at the end) and the prompt ones
/// left. Without a session and extra arguments this is what the task's fingerprint holds.
pub fn command_line(agent: &AgentSpec, call: &Call) -> Vec<String> {
    let level: Vec<String> = agent
        .permission_args
        .get(call.level)
        .iter()
        .chain(call.extra_args)
        .cloned()
        .collect();
    let resume: Vec<String> = match call.resume {
        Some(id) => agent
            .resume_args
            .iter()
            .map(|a| a.replace(SESSION_PLACEHOLDER, id))
            .collect(),
        None => Vec::new(),
    };
    let mut argv = Vec::with_capacity(agent.command.len() + level.len() + resume.len());
    let mut placed = [false; 3];
    for a in &agent.command {
        match a.as_str() {
            ARGS_PLACEHOLDER => {
                argv.extend(agent.args.iter().cloned());
                placed[0] = true;
            }
            PERMISSION_PLACEHOLDER => {
                argv.extend(level.iter().cloned());
                placed[1] = true;
            }
            RESUME_PLACEHOLDER => {
                argv.extend(resume.iter().cloned());
                placed[2] = true;
            }
            _ => argv.push(a.clone()),
        }
    }
    for (i, rest) in [&agent.args, &level, &resume].into_iter().enumerate() {
        if !placed[i] {
            argv.extend(rest.iter().cloned());
        }
    }
    argv
}

/// The argv and stdin for one agent call. The prompt goes through stdin or a file; with
/// `prompt_via = "arg"` it is one argv element, never part of a shell string.
pub fn invocation(
    agent: &AgentSpec,
    call: &Call,
    prompt: &str,
    prompt_file: &Path,
) -> (Vec<String>, Option<Vec<u8>>) {
    let file = prompt_file.to_string_lossy();
    let argv = command_line(agent, call)
        .into_iter()
        .map(|a| match agent.prompt_via {
            PromptVia::Arg if a == "{prompt}" => prompt.to_string(),
            PromptVia::Arg => a
                .replace("{prompt}", prompt)
                .replace("{prompt_file}", &file),
            _ => a.replace("{prompt_file}", &file),
        })
        .collect();
    let stdin = match agent.prompt_via {
        PromptVia::Stdin => Some(prompt.as_bytes().to_vec()),
        _ => None,
    };
    (argv, stdin)
}
