//! The money fields of an Orchfile, checked: dollar amounts (`max_cost_usd`,
//! `cost_estimate`), `max_quota_wait` and an agent's `provider`.

use toml::Spanned;

use super::raw::{RawAgent, RawAggregate, RawSettings, RawTask};
use super::validate::Validator;
use crate::agent::spec::AgentSpec;
use crate::plan::limits;
use crate::plan::{AggregateStrategy, Settings, Task};

impl Validator<'_> {
    /// A dollar amount: a number from 0 up.
    fn cost(&mut self, v: &Option<Spanned<toml::Value>>, name: &str) -> Option<f64> {
        let v = v.as_ref()?;
        let n = match v.get_ref() {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            other => {
                self.err(
                    "orch::bad_value",
                    format!("{name} must be a number of US dollars, found {other}"),
                    v.span(),
                    "not a number",
                );
                return None;
            }
        };
        match limits::check_cost(name, n) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err("orch::bad_value", e, v.span(), "out of range");
                None
            }
        }
    }

    pub(super) fn money_settings(&mut self, r: &RawSettings, settings: &mut Settings) {
        settings.max_cost_usd = self.cost(&r.max_cost_usd, "max_cost_usd");
        if let Some(d) = self.duration(&r.max_quota_wait, limits::MAX_QUOTA_WAIT) {
            settings.max_quota_wait = d;
        }
    }

    pub(super) fn money_agent(&mut self, r: &RawAgent, spec: &mut AgentSpec) {
        if let Some(c) = self.cost(&r.max_cost_usd, "max_cost_usd") {
            spec.max_cost_usd = Some(c);
        }
        if let Some(p) = &r.provider {
            if p.get_ref().trim().is_empty() {
                self.err(
                    "orch::empty_value",
                    "provider must not be empty".into(),
                    p.span(),
                    "empty",
                );
            } else {
                spec.provider = Some(p.get_ref().clone());
            }
        }
    }

    pub(super) fn money_task(&mut self, r: &RawTask, task: &mut Task) {
        task.max_cost_usd = self.cost(&r.max_cost_usd, "max_cost_usd");
        task.cost_estimate = self.cost(&r.cost_estimate, "cost_estimate");
        if r.run.is_some() {
            for (name, v) in [
                ("max_cost_usd", &r.max_cost_usd),
                ("cost_estimate", &r.cost_estimate),
            ] {
                if let Some(v) = v {
                    self.err(
                        "orch::agent_field_on_shell_task",
                        format!(
                            "task `{}` runs a shell command: {name} applies to agent tasks",
                            task.id
                        ),
                        v.span(),
                        "remove this",
                    );
                }
            }
        }
    }

    /// The `[aggregate]` merge's `cost_estimate`: only the `agent` strategy costs money.
    pub(super) fn aggregate_cost_estimate(
        &mut self,
        r: &RawAggregate,
        strategy: AggregateStrategy,
    ) -> Option<f64> {
        let estimate = self.cost(&r.cost_estimate, "cost_estimate");
        if let Some(v) = r.cost_estimate.as_ref() {
            if strategy != AggregateStrategy::Agent {
                self.err(
                    "orch::bad_value",
                    "[aggregate] cost_estimate applies to the `agent` strategy only".into(),
                    v.span(),
                    "remove this",
                );
            }
        }
        estimate
    }
}
