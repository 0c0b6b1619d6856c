//! Phase 4: check that every result exists, then merge them in dependency order (ties in
//! plan order, so every run writes the same file) into `final_output.md` (concatenation, a
//! structured report, or an agent's merge). A shell task that printed nothing has no
//! section.

use std::fmt::Write as _;

use super::context::BuildContext;
use crate::agent::{self, sim, Judged};
use crate::disk::{persist_atomic, Digest};
use crate::executor::{JobEvent, ProcessSpec};
use crate::plan::{AgentKind, AgentSpec, AggregateSpec, AggregateStrategy, Plan};
use crate::reporter::{Event, Events};
use crate::state::{JournalEntry, StateStore};

/// How the merge stands where a task would be named (`budget_reached`, a provider's waiting
/// tasks, the journal's job records).
pub(crate) const MERGE_ID: &str = crate::reporter::MERGE_ID;

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
        cost_estimate: None,
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

/// The agent of the `agent` strategy: `--agent`, else the `[aggregate]` one, else the default
/// agent; `None` for a strategy that calls none.
pub(crate) fn merge_agent<'p>(
    plan: &'p Plan,
    agent_override: Option<&str>,
) -> Option<Result<&'p AgentSpec, String>> {
    let spec = plan.aggregate.as_ref()?;
    if spec.strategy != AggregateStrategy::Agent {
        return None;
    }
    let name = agent_override
        .or(spec.agent.as_deref())
        .unwrap_or(&plan.settings.default_agent);
    Some(
        plan.agents
            .get(name)
            .ok_or_else(|| format!("unknown aggregate agent `{name}`")),
    )
}

/// The merge a build is about to make: the results in order, and what decides whether
/// final_output.md is up to date.
pub(super) struct Merge {
    spec: AggregateSpec,
    parts: Vec<Part>,
    pub(super) agent: Option<AgentSpec>,
    /// Strategy, title, prompt, agent and each result's text.
    digest: Digest,
    /// The same with the results' texts left out: what the merge's last cost is kept
    /// under, for projecting the next one (the results change every time it runs).
    pub(super) definition: Digest,
}

/// Reads every result for the merge; `missing_as_empty` for a look ahead (the dry run),
/// where results a build would write are not there yet.
pub(super) fn prepare(ctx: &BuildContext, missing_as_empty: bool) -> Result<Merge, String> {
    let spec = spec(ctx.plan);
    let mut parts = Vec::new();
    for &t in &ctx.graph.topo {
        let path = ctx.layout.result_file(&ctx.agent_ids[t]);
        let bytes = match std::fs::read(&path) {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && (missing_as_empty || ctx.task(t).action.is_shell()) =>
            {
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
    let agent = merge_agent(ctx.plan, ctx.opts.agent_override.as_deref())
        .transpose()?
        .cloned();
    let mut h = blake3::Hasher::new();
    h.update(format!("{:?}|{}|{:?}", spec.strategy, spec.title, spec.prompt).as_bytes());
    if let Some(a) = &agent {
        h.update(format!("{}|{:?}|{:?}", a.name, a.command, a.result).as_bytes());
    }
    // The digest is the one earlier builds kept: a merge an agent was paid for stays up to
    // date across versions.
    let mut def = h.clone();
    for p in &parts {
        h.update(p.id.as_bytes());
        h.update(blake3::hash(p.text.as_bytes()).as_bytes());
        def.update(p.id.as_bytes());
    }
    let definition = Digest::from_hash(def.finalize());
    Ok(Merge {
        spec,
        parts,
        agent,
        digest: Digest::from_hash(h.finalize()),
        definition,
    })
}

impl Merge {
    /// final_output.md was merged from these very results, and is still there.
    pub(super) fn up_to_date(&self, ctx: &BuildContext, store: &StateStore) -> bool {
        self.merged_from(ctx, store.snapshot.aggregate_digest)
    }

    /// final_output.md is there, merged from results whose digest was `kept`: these.
    pub(super) fn merged_from(&self, ctx: &BuildContext, kept: Option<Digest>) -> bool {
        kept == Some(self.digest) && ctx.layout.final_output().is_file()
    }

    pub(super) fn title(&self) -> &str {
        &self.spec.title
    }

    /// The `[aggregate]` `cost_estimate`.
    pub(super) fn cost_estimate(&self) -> Option<f64> {
        self.spec.cost_estimate
    }

    /// The merged text, unless an agent that costs money has to write it (`None`).
    pub(super) fn text_without_agent(&self, ctx: &BuildContext) -> Result<Option<String>, String> {
        Ok(match (&self.spec.strategy, &self.agent) {
            (AggregateStrategy::Concat, _) => Some(concat(&self.spec, &self.parts)),
            (AggregateStrategy::Structured, _) => Some(structured(&self.spec, &self.parts)),
            (AggregateStrategy::Agent, Some(a)) if a.kind == AgentKind::Sim => {
                let prompt = self.write_prompt(ctx)?;
                Some(sim::reply(
                    "aggregate",
                    &self.spec.title,
                    "aggregator",
                    &prompt,
                ))
            }
            (AggregateStrategy::Agent, _) => None,
        })
    }

    /// Writes final_output.md and notes what it was merged from; a line for the execution
    /// log.
    pub(super) fn write(
        &self,
        ctx: &BuildContext,
        store: &mut StateStore,
        events: &mut dyn Events,
        text: &str,
    ) -> Result<String, String> {
        let (rel, strategy) = reported_as(ctx);
        persist_atomic(&ctx.layout.final_output(), text.as_bytes())
            .map_err(|e| format!("writing {rel}: {e}"))?;
        store.snapshot.aggregate_digest = Some(self.digest);
        events.emit(Event::Aggregated {
            path: &rel,
            strategy: &strategy,
            up_to_date: false,
        });
        Ok(format!(
            "Final output: {rel} ({strategy}, {} results)",
            self.parts.len()
        ))
    }

    /// The merge prompt, written to `agent_tasks/aggregate.md` (the seed's "intelligent
    /// merge").
    fn write_prompt(&self, ctx: &BuildContext) -> Result<String, String> {
        let mut prompt = format!(
            "Please merge the following {} subtask results into one complete report titled \"{}\".\n\n",
            self.parts.len(),
            self.spec.title
        );
        for p in &self.parts {
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
        if let Some(extra) = &self.spec.prompt {
            let _ = write!(prompt, "\n{extra}\n");
        }
        persist_atomic(&prompt_path(ctx), prompt.as_bytes()).map_err(|e| e.to_string())?;
        Ok(prompt)
    }

    /// The merge agent's process, its prompt written: as a task's agent runs, from the
    /// project root, with its per-attempt `max_cost_usd` passed down where the CLI takes one.
    pub(super) fn agent_call(&self, ctx: &BuildContext) -> Result<MergeCall, String> {
        let agent_spec = self
            .agent
            .as_ref()
            .ok_or("the agent strategy has no agent")?;
        let prompt = self.write_prompt(ctx)?;
        let prompt_path = prompt_path(ctx);
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
        let mut knobs = agent::internal_retry_knobs(agent_spec, &|k| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(k).ok())
        });
        knobs
            .args
            .extend(agent::budget_args(agent_spec, agent_spec.max_cost_usd));
        let level = crate::plan::Permission::Read;
        let call = agent::Call {
            level,
            resume: None,
            extra_args: &knobs.args,
        };
        let (argv, stdin) = agent::invocation(agent_spec, &call, &prompt, &prompt_path);
        env.extend(knobs.env);
        Ok(MergeCall {
            process: ProcessSpec {
                argv,
                cwd: ctx.plan.root.clone(),
                env,
                unset: Vec::new(),
                stdin,
                timeout: agent_spec.timeout,
                grace: ctx.plan.settings.kill_grace,
                max_output: 64 << 20,
                // The merge runs where orch runs: it reads every result, and is one job.
                slurm: None,
            },
            level,
        })
    }
}

fn prompt_path(ctx: &BuildContext) -> std::path::PathBuf {
    ctx.layout.agent_tasks_dir().join("aggregate.md")
}

/// final_output.md found up to date: said, and a line for the execution log.
pub(super) fn said_up_to_date(ctx: &BuildContext, events: &mut dyn Events) -> String {
    let (rel, strategy) = reported_as(ctx);
    events.emit(Event::Aggregated {
        path: &rel,
        strategy: &strategy,
        up_to_date: true,
    });
    format!("Final output up to date: {rel}")
}

/// One call of the merge agent, ready to run.
pub(super) struct MergeCall {
    process: ProcessSpec,
    level: crate::plan::Permission,
}

impl MergeCall {
    /// Runs one attempt and judges it. The same crash bookkeeping as a task's process: the
    /// journal keeps the job's record while it runs.
    pub(super) fn run(
        &self,
        ctx: &BuildContext,
        agent_spec: &AgentSpec,
        store: &mut StateStore,
    ) -> Result<Judged, String> {
        let mut started = Vec::new();
        let out = ctx.backend.run(&self.process, ctx.cancel, &mut |event| {
            if let JobEvent::Started(job) = event {
                started.push(job);
                let _ = store.append(&JournalEntry::spawned(MERGE_ID.into(), &job));
                // On disk before the wait: the merge agent may run for minutes.
                let _ = store.flush_journal();
            }
        });
        for job in &started {
            let _ = store.append(&JournalEntry::reaped(job));
        }
        let out = out.map_err(|e| e.to_string())?;
        Ok(agent::judge(agent_spec, self.level, &out, &ctx.plan.root))
    }
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
            cost_estimate: None,
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
