//! Phase 4: check that every result exists, then merge them in dependency order (ties in
//! plan order, so every run writes the same file) into `final_output.md` (concatenation, a
//! structured report, or an agent's merge). A shell task that printed nothing has no
//! section.

use std::fmt::Write as _;

use super::context::BuildContext;
use crate::agent::{self, sim, FailureKind, Usage};
use crate::disk::persist_atomic;
use crate::executor::{JobEvent, ProcessSpec};
use crate::plan::{AgentKind, AggregateSpec, AggregateStrategy, Plan};
use crate::reporter::{Event, Events};
use crate::state::{JournalEntry, StateStore};

/// Aggregation runs when the plan asks for it, or when it has agent tasks at all.
pub(crate) fn enabled(plan: &Plan) -> bool {
    plan.aggregate.is_some() || plan.tasks.iter().any(|t| !t.action.is_shell())
}

fn spec(plan: &Plan) -> AggregateSpec {
    plan.aggregate.clone().unwrap_or(AggregateSpec {
        strategy: AggregateStrategy::Concat,
        agent: None,
        title: "Final Output".into(),
        on_missing: crate::plan::OnMissing::Rerun,
        prompt: None,
    })
}

/// Tasks whose result is not there: they did not end well this run, or the file is gone.
pub(crate) fn missing_results(ctx: &BuildContext, ok: &[bool]) -> Vec<usize> {
    (0..ctx.plan.tasks.len())
        .filter(|&t| {
            // A shell task that printed nothing has no result file; that is an empty result.
            !ok[t]
                || (!ctx.task(t).action.is_shell()
                    && !ctx.layout.result_file(&ctx.agent_ids[t]).is_file())
        })
        .collect()
}

/// final_output.md as the `Aggregated` event names it (relative to the project root), and the
/// merge strategy.
pub(crate) fn reported_as(ctx: &BuildContext) -> (String, String) {
    (
        ctx.plan.relative(&ctx.layout.final_output()),
        format!("{:?}", spec(ctx.plan).strategy).to_lowercase(),
    )
}

struct Part {
    id: String,
    title: String,
    agent_id: String,
    text: String,
}

/// Merges the results and writes final_output.md; returns a line for the execution log.
pub(crate) fn run(
    ctx: &BuildContext,
    store: &mut StateStore,
    events: &mut dyn Events,
    usage: &mut Usage,
) -> Result<String, String> {
    let spec = spec(ctx.plan);
    let mut parts = Vec::new();
    for &t in &ctx.graph.topo {
        let path = ctx.layout.result_file(&ctx.agent_ids[t]);
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && ctx.task(t).action.is_shell() => {
                Vec::new()
            }
            other => other.map_err(|e| format!("reading {}: {e}", path.display()))?,
        };
        // A shell task that printed nothing (a build step) has nothing to report.
        if bytes.iter().all(u8::is_ascii_whitespace) && ctx.task(t).action.is_shell() {
            continue;
        }
        parts.push(Part {
            id: ctx.task(t).id.clone(),
            title: ctx.task(t).title.clone(),
            agent_id: ctx.agent_ids[t].clone(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let merge_agent = match spec.strategy {
        AggregateStrategy::Agent => {
            let name = ctx
                .opts
                .agent_override
                .clone()
                .or(spec.agent.clone())
                .unwrap_or_else(|| ctx.plan.settings.default_agent.clone());
            Some(
                ctx.plan
                    .agents
                    .get(&name)
                    .ok_or_else(|| format!("unknown aggregate agent `{name}`"))?
                    .clone(),
            )
        }
        _ => None,
    };
    let digest = {
        let mut h = blake3::Hasher::new();
        h.update(format!("{:?}|{}|{:?}", spec.strategy, spec.title, spec.prompt).as_bytes());
        if let Some(a) = &merge_agent {
            h.update(format!("{}|{:?}|{:?}", a.name, a.command, a.result).as_bytes());
        }
        for p in &parts {
            h.update(p.id.as_bytes());
            h.update(blake3::hash(p.text.as_bytes()).as_bytes());
        }
        crate::disk::Digest::from_hash(h.finalize())
    };
    let out_path = ctx.layout.final_output();
    let (rel, strategy) = reported_as(ctx);
    if store.snapshot.aggregate_digest == Some(digest) && out_path.is_file() {
        events.emit(Event::Aggregated {
            path: &rel,
            strategy: &strategy,
            up_to_date: true,
        });
        return Ok(format!("Final output up to date: {rel}"));
    }
    let text = match spec.strategy {
        AggregateStrategy::Concat => concat(&spec, &parts),
        AggregateStrategy::Structured => structured(&spec, &parts),
        AggregateStrategy::Agent => merge_with_agent(
            ctx,
            store,
            &spec,
            merge_agent.as_ref().unwrap(),
            &parts,
            usage,
        )?,
    };
    persist_atomic(&out_path, text.as_bytes()).map_err(|e| format!("writing {rel}: {e}"))?;
    store.snapshot.aggregate_digest = Some(digest);
    events.emit(Event::Aggregated {
        path: &rel,
        strategy: &strategy,
        up_to_date: false,
    });
    Ok(format!(
        "Final output: {rel} ({strategy}, {} results)",
        parts.len()
    ))
}

/// Strategy A: each result under its agent's heading, in dependency order.
fn concat(spec: &AggregateSpec, parts: &[Part]) -> String {
    let mut s = format!("# {}\n\n", spec.title);
    for p in parts {
        let _ = write!(
            s,
            "## {} Output: {} ({})\n\n{}\n\n",
            p.agent_id,
            p.title,
            p.id,
            demote_headings(p.text.trim_end(), 2)
        );
    }
    s
}

/// Strategy B: an overview with one line per result, then the details by task.
fn structured(spec: &AggregateSpec, parts: &[Part]) -> String {
    let mut s = format!("# {}\n\n## Overview\n\n", spec.title);
    for p in parts {
        let _ = writeln!(
            s,
            "- **{}**: {} (from {})",
            p.title,
            summary_line(&p.text),
            p.agent_id
        );
    }
    s.push_str("\n## Detailed Findings\n\n");
    for p in parts {
        let _ = write!(
            s,
            "### {}\n\n_{} · {}_\n\n{}\n\n",
            p.title,
            p.id,
            p.agent_id,
            demote_headings(p.text.trim_end(), 3)
        );
    }
    s
}

/// The first line of prose in a result, for the overview.
fn summary_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("```") && !l.starts_with('>')
        })
        .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("(empty)");
    let line = line
        .trim_start_matches(['-', '*', ' ', '_'])
        .trim_end_matches('_');
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_string()
    }
}

/// Pushes a result's own headings below `level` so they nest under ours.
fn demote_headings(text: &str, level: usize) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if !in_fence && line.starts_with('#') {
            let hashes = line.chars().take_while(|&c| c == '#').count();
            if line[hashes..].starts_with(' ') {
                out.push_str(&"#".repeat((hashes + level).min(6)));
                out.push_str(&line[hashes..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Strategy C: an agent merges the results (the seed's "intelligent merge").
fn merge_with_agent(
    ctx: &BuildContext,
    store: &mut StateStore,
    spec: &AggregateSpec,
    agent_spec: &crate::plan::AgentSpec,
    parts: &[Part],
    usage: &mut Usage,
) -> Result<String, String> {
    let mut prompt = format!(
        "Please merge the following {} subtask results into one complete report titled \"{}\".\n\n",
        parts.len(),
        spec.title
    );
    for p in parts {
        let _ = write!(
            prompt,
            "## {} ({}, {})\n\n{}\n\n",
            p.title,
            p.id,
            p.agent_id,
            p.text.trim_end()
        );
    }
    prompt.push_str(
        "Requirements:\n1. Preserve all key information\n2. Eliminate duplicate content\n\
         3. Organize in logical order\n4. Generate an executive summary\n",
    );
    if let Some(extra) = &spec.prompt {
        let _ = write!(prompt, "\n{extra}\n");
    }
    let prompt_path = ctx.layout.agent_tasks_dir().join("aggregate.md");
    persist_atomic(&prompt_path, prompt.as_bytes()).map_err(|e| e.to_string())?;
    if agent_spec.kind == AgentKind::Sim {
        return Ok(sim::reply("aggregate", &spec.title, "aggregator", &prompt));
    }
    // As a task's agent would: where the project and its prompt are, then its own env.
    let mut env: Vec<(String, String)> = vec![
        (
            "ORCH_ROOT".into(),
            ctx.plan.root.to_string_lossy().into_owned(),
        ),
        (
            "ORCH_TASK_FILE".into(),
            prompt_path.to_string_lossy().into_owned(),
        ),
    ];
    env.extend(agent_spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let knobs = agent::internal_retry_knobs(agent_spec, &|k| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(k).ok())
    });
    let call = agent::Call {
        level: crate::plan::Permission::Read,
        resume: None,
        extra_args: &knobs.args,
    };
    let (argv, stdin) = agent::invocation(agent_spec, &call, &prompt, &prompt_path);
    let attempts = agent_spec.retries + 1;
    let mut last = String::new();
    for attempt in 1..=attempts {
        let mut env = env.clone();
        env.extend(knobs.env.iter().cloned());
        let process = ProcessSpec {
            argv: argv.clone(),
            cwd: ctx.plan.root.clone(),
            env,
            unset: Vec::new(),
            stdin: stdin.clone(),
            timeout: agent_spec.timeout,
            grace: ctx.plan.settings.kill_grace,
            max_output: 64 << 20,
            // The merge runs where orch runs: it reads every result, and is one job.
            slurm: None,
        };
        // The same crash bookkeeping as a task's process: the journal keeps the job's
        // record while it runs.
        let mut started = Vec::new();
        let out = ctx.backend.run(&process, ctx.cancel, &mut |event| {
            if let JobEvent::Started(job) = event {
                started.push(job);
                let _ = store.append(&JournalEntry::spawned("aggregate".into(), &job));
                // On disk before the wait: the merge agent may run for minutes.
                let _ = store.flush_journal();
            }
        });
        for job in &started {
            let _ = store.append(&JournalEntry::reaped(job));
        }
        let out = out.map_err(|e| e.to_string())?;
        let judged = agent::judge(agent_spec, call.level, &out, &ctx.plan.root);
        // Paid for whether or not it answered.
        usage.add(&judged.usage);
        match judged.result {
            Ok(text) => return Ok(text),
            Err(f) if f.kind == FailureKind::Cancelled => return Err("cancelled".into()),
            Err(f) => {
                last = ctx.redactor.redact(&f.message);
                if f.kind == FailureKind::Transient && attempt < attempts {
                    let wait = ctx.backoff(attempt, u64::from(attempt));
                    if !ctx.sleep_unless_cancelled(wait) {
                        return Err("cancelled".into());
                    }
                } else if attempt < attempts && !f.retryable() {
                    break;
                }
            }
        }
    }
    Err(format!(
        "aggregate agent `{}` failed: {last}",
        agent_spec.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<Part> {
        vec![
            Part {
                id: "T-02".into(),
                title: "Style".into(),
                agent_id: "Agent-02".into(),
                text: "# Style report\n\n12 issues found.\n".into(),
            },
            Part {
                id: "T-03".into(),
                title: "Security".into(),
                agent_id: "Agent-03".into(),
                text: "3 vulnerabilities.\n```\n# not a heading\n```\n".into(),
            },
        ]
    }

    fn spec() -> AggregateSpec {
        AggregateSpec {
            strategy: AggregateStrategy::Structured,
            agent: None,
            title: "Code Review Report".into(),
            on_missing: crate::plan::OnMissing::Rerun,
            prompt: None,
        }
    }

    #[test]
    fn structured_has_overview_and_details() {
        let s = structured(&spec(), &parts());
        assert!(s.starts_with("# Code Review Report\n\n## Overview\n"));
        assert!(s.contains("- **Style**: 12 issues found. (from Agent-02)"));
        assert!(s.contains("### Security\n"));
        assert!(
            s.contains("#### Style report"),
            "result headings nest below ours"
        );
        assert!(s.contains("# not a heading"), "code blocks are left alone");
    }

    #[test]
    fn concat_keeps_dependency_order() {
        let s = concat(&spec(), &parts());
        let a = s.find("## Agent-02 Output").unwrap();
        let b = s.find("## Agent-03 Output").unwrap();
        assert!(a < b);
    }
}
