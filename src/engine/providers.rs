//! The build's providers: which API each agent task calls (its agent's `provider`, by
//! default its preset's API), one [`Gate`] of limiters over them, each allowed `-j` calls
//! at once and starting where the last build within the hour left it; and, on the
//! scheduling thread, the gate's limits handed to the scheduler's provider classes and its
//! news (cuts, raises, waits for a retry-after or a usage-limit reset) reported.

use std::time::Duration;

use super::budget::CostHistory;
use super::coordinator::{task_ref, BuildCoordinator};
use super::early_start::tasks_at_once;
use crate::clock::unix_now;
use crate::plan::Plan;
use crate::reporter::{Event, Stop, TaskRef};
use crate::scheduler::{Gate, News};
use crate::state::Status;

/// The providers of a build: the gate over those of `plan`'s agent tasks and its
/// aggregation's merge agent, and where in it each calls.
pub(super) struct Providers {
    pub(super) gate: Gate,
    /// Each task's provider (`None`: a shell or sim task).
    pub(super) of_task: Vec<Option<usize>>,
    /// The merge agent's (`None`: no merge by an agent, or the sim agent's).
    pub(super) of_merge: Option<usize>,
}

/// The gate over the providers of `plan`'s agent tasks and merge agent, allowed `jobs` calls
/// each.
pub(super) fn gate(
    plan: &Plan,
    agent_override: Option<&str>,
    jobs: usize,
    history: &CostHistory,
) -> Providers {
    let mut names: Vec<String> = Vec::new();
    let mut index = |name: &str| match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    };
    let of_task = plan
        .tasks
        .iter()
        .map(|t| Some(index(plan.agent_for(t, agent_override)?.provider()?)))
        .collect();
    let of_merge = super::aggregate::merge_agent(plan, agent_override)
        .and_then(Result::ok)
        .and_then(|a| a.provider())
        .map(&mut index);
    let now = unix_now();
    let providers = names
        .into_iter()
        .map(|n| {
            let start = history.learnt_limit(&n, now);
            (n, jobs, start)
        })
        .collect();
    Providers {
        gate: Gate::new(providers, plan.settings.max_quota_wait),
        of_task,
        of_merge,
    }
}

/// A gate for a context that runs nothing.
pub(super) fn no_gate() -> Gate {
    Gate::new(Vec::new(), Duration::ZERO)
}

impl BuildCoordinator<'_, '_> {
    /// The provider classes' limits that changed since last asked, and the gate's news
    /// reported.
    pub(super) fn provider_limits(&mut self) -> Vec<(usize, Option<usize>)> {
        let ctx = self.ctx;
        let limits = ctx.gate.limits();
        self.provider_news();
        let mut changed = Vec::new();
        for (p, &limit) in limits.iter().enumerate() {
            if self.sent_limits.get(p) != Some(&limit) {
                if let Some(&class) = self.provider_classes.get(p) {
                    let early = self.provider_early.get(p) == Some(&true);
                    changed.push((class, Some(tasks_at_once(limit, early))));
                }
            }
        }
        self.sent_limits = limits;
        changed
    }

    /// Reports what the gate says changed (a quota stop among it stops the build).
    pub(super) fn provider_news(&mut self) {
        for news in self.ctx.gate.take_news() {
            self.report_news(news);
        }
    }

    /// The tasks of provider `p` running now (some of them waiting for a permit) or ready to
    /// start (queued for a place at it): a hold keeps them all waiting.
    fn provider_tasks(&self, p: usize) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&t| self.ctx.provider_of[t] == Some(p))
            .filter(|&t| {
                matches!(
                    self.rows[t].status,
                    Status::Running | Status::Ready | Status::QuotaWait
                )
            })
            .collect()
    }

    fn report_news(&mut self, news: News) {
        let ctx = self.ctx;
        self.eventful = true;
        match news {
            News::Limit {
                provider,
                limit,
                max,
                reason,
            } => {
                let name = ctx.gate.name(provider);
                self.events.emit(Event::ProviderLimit {
                    provider: &name,
                    limit,
                    max,
                    reason: &reason,
                });
                self.log(
                    format!("{name} Limit"),
                    vec![format!("{limit} of {max} calls at once ({reason})")],
                );
            }
            News::Waiting {
                provider,
                until,
                quota,
                reason,
            } => {
                let name = ctx.gate.name(provider);
                let tasks = self.provider_tasks(provider);
                if quota {
                    for &t in &tasks {
                        self.rows[t].status = Status::QuotaWait;
                        self.rows[t].waiting_until = Some(crate::clock::local_hh_mm(until));
                    }
                }
                let refs: Vec<TaskRef> = tasks.iter().map(|&t| task_ref(ctx, t)).collect();
                let mut ids: Vec<&str> = refs.iter().map(|r| r.id).collect();
                if self.merge_waits_on == Some(provider) {
                    ids.push(super::aggregate::MERGE_ID);
                }
                let reason = super::coordinator::one_line(&reason);
                self.events.emit(Event::ProviderWaiting {
                    provider: &name,
                    until,
                    quota,
                    reason: &reason,
                    tasks: &ids,
                });
                let what = if quota {
                    "waiting for quota"
                } else {
                    "calls paused"
                };
                self.log(
                    format!("{name} Waiting"),
                    vec![format!(
                        "{what} until {} ({}): {reason}",
                        crate::clock::local_hh_mm(until),
                        if ids.is_empty() {
                            "no task waiting yet".to_string()
                        } else {
                            ids.join(", ")
                        }
                    )],
                );
                self.doc.touch();
            }
            News::Resumed { provider, quota } => {
                let name = ctx.gate.name(provider);
                for t in self.provider_tasks(provider) {
                    if self.rows[t].status == Status::QuotaWait {
                        // Back to running, or to ready if it was queued when the wait began.
                        self.rows[t].status = if self.rows[t].start.is_some() {
                            Status::Running
                        } else {
                            Status::Ready
                        };
                        self.rows[t].waiting_until = None;
                    }
                }
                self.events.emit(Event::ProviderResumed {
                    provider: &name,
                    quota,
                });
                if quota {
                    self.log(
                        format!("{name} Resumed"),
                        vec!["the usage limit reset: its tasks run again".into()],
                    );
                }
                self.doc.touch();
            }
            News::Stopped { provider, until } => {
                let name = ctx.gate.name(provider);
                let wait = crate::duration::format_duration(ctx.plan.settings.max_quota_wait);
                let message = format!(
                    "{name}'s usage limit resets at {}, past max_quota_wait ({wait}): the build \
                     stops; running tasks of other providers finish",
                    crate::clock::local_hh_mm(until)
                );
                self.events.emit(Event::Notice { message: &message });
                self.log("Quota Stop".into(), vec![message]);
                self.money.stop.get_or_insert(Stop::Quota {
                    provider: name,
                    until,
                });
                self.doc.touch();
            }
        }
    }

    /// Each provider's limit as this build leaves it, kept for the next one.
    pub(super) fn keep_learnt_limits(&mut self) {
        let now = unix_now();
        let mut changed = false;
        for (name, limit, max) in self.ctx.gate.learnt() {
            changed |= self.money.history.learn(&name, limit, max, now);
        }
        if changed {
            self.money.save_history();
        }
    }
}
