//! Validation of a parsed Orchfile into a [`Plan`]: every problem is collected (with its
//! span, a stable code and help), so one run shows them all.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use super::raw::{RawAgent, RawAggregate, RawOrchfile, RawTask};
use crate::agent::presets;
use crate::agent::spec::SESSION_PLACEHOLDER;
use crate::duration::{from_seconds, parse_duration};
use crate::plan::checks::{
    check_inside_root, closest, parse_result_spec, valid_task_id, TASK_ID_RULE,
};
use crate::plan::diagnostic::{cycle_error, PlanError, SourceFile};
use crate::plan::fanout::{self, split_dep};
use crate::plan::limits::{self, Count, Span};
use crate::plan::placeholder;
use crate::plan::{
    Action, AgentSpec, AggregateSpec, AggregateStrategy, AllowWrites, Foreach, Isolation,
    OnMissing, Permission, Plan, Priority, PromptVia, ReplyFormat, ResultSpec, Settings, Task,
};

/// The task ids of the Orchfile, and which of them fan out.
struct Known<'a> {
    ids: &'a HashMap<&'a str, usize>,
    fanouts: &'a HashSet<&'a str>,
}

pub(super) struct Validator<'a> {
    pub(super) src: &'a SourceFile,
    pub(super) errors: Vec<PlanError>,
    /// Output path -> (task id, span) of its writer: one writer per file, except between
    /// tasks that both run in worktrees (their merge decides).
    pub(super) writers: HashMap<String, (String, Range<usize>, bool)>,
    /// `settings.isolation` and `settings.default_agent`, for telling which tasks run in
    /// worktrees.
    pub(super) isolated_by_default: (Isolation, String),
}

impl Validator<'_> {
    pub(super) fn err(&mut self, code: &'static str, msg: String, span: Range<usize>, label: &str) {
        self.errors
            .push(self.src.error(code, msg, Some(span), label));
    }

    /// A duration field, in its range.
    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<toml::Value>>,
        limit: Span,
    ) -> Option<Duration> {
        let v = v.as_ref()?;
        let field = limit.name;
        let parsed = match v.get_ref() {
            toml::Value::String(s) => parse_duration(s),
            toml::Value::Integer(i) if *i >= 0 => from_seconds(*i as f64, &i.to_string()),
            toml::Value::Float(f) if *f >= 0.0 => from_seconds(*f, &f.to_string()),
            other => Err(format!("expected a duration like \"90s\", found {other}")),
        };
        match parsed.map(|d| (d, limit.check(d))) {
            Ok((_, Ok(d))) => Some(d),
            Ok((_, Err(e))) => {
                self.err("orch::bad_value", e, v.span(), "out of range");
                None
            }
            Err(e) => {
                self.err(
                    "orch::bad_duration",
                    format!("invalid {field}: {e}"),
                    v.span(),
                    "not a duration",
                );
                None
            }
        }
    }

    /// A whole-number field, in its range.
    pub(super) fn count(&mut self, v: &Option<Spanned<i64>>, limit: Count) -> Option<u64> {
        let v = v.as_ref()?;
        match limit.check(*v.get_ref()) {
            Ok(n) => Some(n),
            Err(e) => {
                self.err("orch::bad_value", e, v.span(), "out of range");
                None
            }
        }
    }

    fn permission(&mut self, v: &Option<Spanned<String>>) -> Option<Permission> {
        let v = v.as_ref()?;
        let level = Permission::parse(v.get_ref());
        if level.is_none() {
            self.err(
                "orch::bad_value",
                format!(
                    "permissions must be read, write or full, not `{}`",
                    v.get_ref()
                ),
                v.span(),
                "here",
            );
        }
        level
    }

    fn isolation(&mut self, v: &Option<Spanned<String>>) -> Option<Isolation> {
        let v = v.as_ref()?;
        let i = Isolation::parse(v.get_ref());
        if i.is_none() {
            self.err(
                "orch::bad_value",
                format!("isolation must be none or worktree, not `{}`", v.get_ref()),
                v.span(),
                "here",
            );
        }
        i
    }

    /// `true` (no check), `false` (checked, whatever the agent says) or a list of globs.
    fn allow_writes(&mut self, v: &Option<Spanned<toml::Value>>) -> Option<AllowWrites> {
        let v = v.as_ref()?;
        match v.get_ref() {
            toml::Value::Boolean(true) => Some(AllowWrites::All),
            toml::Value::Boolean(false) => Some(AllowWrites::Globs(Vec::new())),
            toml::Value::Array(items) => {
                let mut globs = Vec::new();
                for item in items {
                    match item.as_str().map(|g| (g, globset::Glob::new(g))) {
                        Some((g, Ok(_))) => globs.push(g.to_string()),
                        Some((g, Err(e))) => self.err(
                            "orch::bad_glob",
                            format!(
                                "invalid glob `{g}` in allow_undeclared_writes: {}",
                                e.kind()
                            ),
                            v.span(),
                            "here",
                        ),
                        None => self.err(
                            "orch::bad_value",
                            "allow_undeclared_writes lists glob strings".into(),
                            v.span(),
                            "here",
                        ),
                    }
                }
                Some(AllowWrites::Globs(globs))
            }
            _ => {
                self.err(
                    "orch::bad_value",
                    "allow_undeclared_writes is true, false or a list of globs".into(),
                    v.span(),
                    "here",
                );
                None
            }
        }
    }

    /// A text field that must say something: `prompt = ""` is a mistake, not a prompt.
    fn not_blank(&mut self, v: &Spanned<String>, what: &str, id: &str) -> bool {
        if v.get_ref().trim().is_empty() {
            self.err(
                "orch::empty_value",
                format!("{what} of task `{id}` is empty"),
                v.span(),
                "empty",
            );
            return false;
        }
        true
    }

    /// Environment variable names a process can be given: not empty, no `=` (which would
    /// split the name), no NUL.
    fn env_names(&mut self, env: &IndexMap<Spanned<String>, String>, whose: &str) {
        for name in env.keys() {
            let n = name.get_ref();
            let why = if n.is_empty() {
                "is empty"
            } else if n.contains('=') {
                "holds `=`"
            } else if n.contains('\0') {
                "holds a NUL byte"
            } else {
                continue;
            };
            self.errors.push(
                self.src
                    .error(
                        "orch::bad_env",
                        format!("environment variable name `{n}` of {whose} {why}"),
                        Some(name.span()),
                        "not a variable name",
                    )
                    .with_help("write env = { NAME = \"value\" }, e.g. { RUST_LOG = \"debug\" }"),
            );
        }
    }

    fn relative_path(&mut self, p: &Spanned<String>, what: &str, allow_outside: bool) {
        if allow_outside {
            return;
        }
        if let Err(why) = check_inside_root(p.get_ref()) {
            self.errors.push(
                self.src
                    .error(
                        "orch::path_outside_root",
                        format!("{what} `{}` {why}", p.get_ref()),
                        Some(p.span()),
                        "outside the project",
                    )
                    .with_help(
                        "paths are relative to the Orchfile's directory; set \
                         settings.allow_outside_root = true to allow this",
                    ),
            );
        }
    }

    #[allow(clippy::result_large_err)] // boxed once, by `parse`
    pub(super) fn validate(
        mut self,
        raw: RawOrchfile,
        root: PathBuf,
        source_path: PathBuf,
    ) -> Result<Plan, PlanError> {
        let mut settings = Settings::default();
        let raw_settings = raw.settings.unwrap_or_default();
        let allow_outside = raw_settings.allow_outside_root;
        if let Some(dir) = &raw_settings.state_dir {
            if crate::plan::normalize(dir.get_ref()).is_empty() {
                // "" or ".": orch's files would be strewn among the project's own.
                self.errors.push(
                    self.src
                        .error(
                            "orch::bad_value",
                            format!(
                                "state_dir `{}` is the project directory itself",
                                dir.get_ref()
                            ),
                            Some(dir.span()),
                            "not a directory of its own",
                        )
                        .with_help("name a directory of its own, e.g. \".orchestrator\""),
                );
            }
            self.relative_path(dir, "state_dir", allow_outside);
            settings.state_dir = PathBuf::from(dir.get_ref());
        }
        if let Some(j) = self.count(&raw_settings.jobs, limits::JOBS) {
            settings.jobs = Some(j as usize);
        }
        if let Some(k) = raw_settings.keep_going {
            settings.keep_going = k;
        }
        settings.strict = raw_settings.strict;
        if let Some(d) = self.duration(&raw_settings.kill_grace, limits::KILL_GRACE) {
            settings.kill_grace = d;
        }
        if let Some(d) = self.duration(&raw_settings.retry_backoff, limits::RETRY_BACKOFF) {
            settings.retry_backoff = d;
        }
        if let Some(d) = self.duration(&raw_settings.retry_backoff_max, limits::RETRY_BACKOFF_MAX) {
            settings.retry_backoff_max = d;
        }
        if let (Some(max), true) = (
            &raw_settings.retry_backoff_max,
            settings.retry_backoff > settings.retry_backoff_max,
        ) {
            self.err(
                "orch::bad_value",
                format!(
                    "retry_backoff_max ({}) is less than retry_backoff ({})",
                    crate::duration::format_exact(settings.retry_backoff_max),
                    crate::duration::format_exact(settings.retry_backoff)
                ),
                max.span(),
                "less than the first backoff",
            );
        }
        if let Some(l) = self.count(
            &raw_settings.inline_result_limit,
            limits::INLINE_RESULT_LIMIT,
        ) {
            settings.inline_result_limit = l as usize;
        }
        if let Some(i) = self.isolation(&raw_settings.isolation) {
            settings.isolation = i;
        }
        for g in raw_settings.worktree_include.iter().flatten() {
            self.relative_path(g, "worktree_include", false);
            match globset::Glob::new(g.get_ref()) {
                _ if g.get_ref().trim().is_empty() => self.err(
                    "orch::empty_value",
                    "a worktree_include glob is empty".into(),
                    g.span(),
                    "empty",
                ),
                Ok(_) => settings.worktree_include.push(g.get_ref().clone()),
                Err(e) => self.err(
                    "orch::bad_glob",
                    format!(
                        "invalid glob `{}` in worktree_include: {}",
                        g.get_ref(),
                        e.kind()
                    ),
                    g.span(),
                    "here",
                ),
            }
        }
        settings.placement.executor = self.executor(&raw_settings.executor);
        let (job_options, slurm) = self.slurm_settings(&raw_settings.slurm);
        settings.placement.slurm = job_options;
        settings.slurm = slurm;
        self.money_settings(&raw_settings, &mut settings);
        settings.cache = self.cache_settings(&raw_settings);

        let mut agents = presets::builtin_agents();
        for (name, raw_agent) in &raw.agents {
            if let Some(a) = self.agent(name, raw_agent, allow_outside) {
                agents.insert(name.clone(), a);
            }
        }
        if let Some(d) = &raw_settings.default_agent {
            if !agents.contains_key(d.get_ref()) {
                self.unknown_agent(d, &agents);
            }
            settings.default_agent = d.get_ref().clone();
        }

        self.isolated_by_default = (settings.isolation, settings.default_agent.clone());
        let ids: HashMap<&str, usize> = raw
            .tasks
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let fanouts: HashSet<&str> = raw
            .tasks
            .iter()
            .filter(|(_, t)| t.get_ref().foreach.is_some() || t.get_ref().foreach_from.is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        let known = Known {
            ids: &ids,
            fanouts: &fanouts,
        };
        let mut tasks = Vec::with_capacity(raw.tasks.len());
        let mut dep_spans: Vec<Vec<Range<usize>>> = Vec::with_capacity(raw.tasks.len());
        for (id, raw_task) in &raw.tasks {
            let (task, spans) = self.task(id, raw_task, &known, &agents, allow_outside);
            tasks.push(task);
            dep_spans.push(spans);
        }

        let aggregate = raw.aggregate.map(|a| self.aggregate(a, &agents));

        if self.errors.is_empty() {
            let deps: Vec<Vec<usize>> = tasks
                .iter()
                .map(|t: &Task| {
                    let mut of: Vec<usize> = t.deps.iter().map(|d| ids[split_dep(d).0]).collect();
                    // A dynamic fan-out comes after the task whose answer its items are.
                    if let Some(Foreach::From(source)) = &t.foreach {
                        of.push(ids[source.as_str()]);
                    }
                    of
                })
                .collect();
            let edge = |dep: usize, dependent: usize| {
                let k = deps[dependent].iter().position(|&d| d == dep)?;
                // The edge to a `foreach_from` source has no span among the deps.
                dep_spans[dependent].get(k).cloned()
            };
            if let Some(err) = cycle_error(self.src, &tasks, deps.clone(), edge) {
                self.errors.push(err);
            }
        }
        if let Some(e) = PlanError::combine(self.errors) {
            return Err(e);
        }
        let index = Plan::index_of(&tasks);
        Ok(Plan {
            root,
            source_path,
            settings,
            agents,
            tasks,
            index,
            aggregate: aggregate.flatten(),
            request: raw.request,
            fanouts: Vec::new(),
            definitions: Vec::new(),
        })
    }

    fn unknown_agent(&mut self, name: &Spanned<String>, agents: &IndexMap<String, AgentSpec>) {
        let known: Vec<&str> = agents.keys().map(String::as_str).collect();
        let help = match closest(name.get_ref(), known.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "known agents: {}; define others under [agents.NAME]",
                known.join(", ")
            ),
        };
        self.errors.push(
            self.src
                .error(
                    "orch::unknown_agent",
                    format!("unknown agent `{}`", name.get_ref()),
                    Some(name.span()),
                    "no such agent",
                )
                .with_help(help),
        );
    }

    fn agent(
        &mut self,
        name: &str,
        raw: &Spanned<RawAgent>,
        allow_outside: bool,
    ) -> Option<AgentSpec> {
        let r = raw.get_ref();
        let base_name = r
            .preset
            .as_ref()
            .map(|p| p.get_ref().as_str())
            .unwrap_or(name);
        let mut spec = match presets::preset(base_name) {
            Some(p) => p,
            // The agent is still defined (from a stand-in) after an error here, so that the
            // tasks naming it do not add a second, misleading "unknown agent".
            None if r.preset.is_some() => {
                let p = r.preset.as_ref().unwrap();
                let help = match closest(p.get_ref(), presets::PRESET_NAMES.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("presets: {}", presets::PRESET_NAMES.join(", ")),
                };
                self.errors.push(
                    self.src
                        .error(
                            "orch::unknown_preset",
                            format!("unknown agent preset `{}`", p.get_ref()),
                            Some(p.span()),
                            "no such preset",
                        )
                        .with_help(help),
                );
                presets::preset("llm").expect("llm preset")
            }
            None => {
                if r.command.is_none() {
                    self.errors.push(
                        self.src
                            .error(
                                "orch::agent_without_command",
                                format!("agent `{name}` has no command and no preset"),
                                Some(raw.span()),
                                "defined here",
                            )
                            .with_help(
                                "add command = [\"my-cli\", \"--flag\"] or preset = \"claude\"",
                            ),
                    );
                }
                let mut p = presets::preset("llm").expect("llm preset");
                p.retry_on.clear();
                p
            }
        };
        spec.name = name.to_string();
        if let Some(c) = &r.command {
            if c.get_ref().is_empty() {
                self.err(
                    "orch::bad_value",
                    "command must not be empty".into(),
                    c.span(),
                    "empty",
                );
            } else if c.get_ref()[0].trim().is_empty() {
                self.err(
                    "orch::bad_value",
                    "the command's program (its first element) is empty".into(),
                    c.span(),
                    "empty program",
                );
            }
            spec.command = c.get_ref().clone();
        }
        if let Some(v) = &r.prompt_via {
            spec.prompt_via = match v.get_ref().as_str() {
                "stdin" => PromptVia::Stdin,
                "arg" => PromptVia::Arg,
                "file" => PromptVia::File,
                other => {
                    self.err(
                        "orch::bad_value",
                        format!("prompt_via must be stdin, arg or file, not `{other}`"),
                        v.span(),
                        "here",
                    );
                    spec.prompt_via
                }
            };
        }
        let placeholder = match spec.prompt_via {
            PromptVia::Arg => Some("{prompt}"),
            PromptVia::File => Some("{prompt_file}"),
            PromptVia::Stdin => None,
        };
        if let (Some(ph), Some(c)) = (placeholder, &r.command) {
            if !c.get_ref().iter().any(|a| a.contains(ph)) {
                self.err(
                    "orch::missing_placeholder",
                    format!("prompt_via needs a `{ph}` argument in command"),
                    c.span(),
                    "no placeholder here",
                );
            }
        }
        if let Some(v) = &r.result {
            match parse_result_spec(v.get_ref()) {
                Ok(ResultSpec::File(path))
                    if !allow_outside && check_inside_root(&path).is_err() =>
                {
                    self.err(
                        "orch::path_outside_root",
                        format!("result file `{path}` is outside the project"),
                        v.span(),
                        "outside the project",
                    );
                }
                Ok(s) => spec.result = s,
                Err(e) => self.err("orch::bad_value", e, v.span(), "here"),
            }
        }
        if let Some(m) = self.count(&r.max_parallel, limits::MAX_PARALLEL) {
            spec.max_parallel = Some(m as usize);
        }
        if let Some(early) = r.start_early {
            spec.start_early = early;
        }
        if let Some(t) = self.duration(&r.timeout, limits::TIMEOUT) {
            spec.timeout = Some(t);
        }
        if let Some(n) = self.count(&r.retries, limits::RETRIES) {
            spec.retries = n as u32;
        }
        if let Some(patterns) = &r.retry_on {
            for p in patterns {
                if p.get_ref().is_empty() {
                    self.errors.push(
                        self.src
                            .error(
                                "orch::empty_value",
                                format!("a retry_on pattern of agent `{name}` is empty"),
                                Some(p.span()),
                                "empty",
                            )
                            .with_help(
                                "an empty pattern is in every message, so every failure would                                  be retried; give the text of a transient error, e.g.                                  \"overloaded\"",
                            ),
                    );
                }
            }
            spec.retry_on = patterns.iter().map(|p| p.get_ref().clone()).collect();
        }
        if let Some(env) = &r.env {
            self.env_names(env, &format!("agent `{name}`"));
            spec.env = env
                .iter()
                .map(|(k, v)| (k.get_ref().clone(), v.clone()))
                .collect();
        }
        if let Some(f) = &r.format {
            match ReplyFormat::parse(f.get_ref()) {
                Some(format) => spec.format = format,
                None => self.err(
                    "orch::bad_value",
                    format!(
                        "format must be one of {}, not `{}`",
                        ReplyFormat::NAMES.join(", "),
                        f.get_ref()
                    ),
                    f.span(),
                    "here",
                ),
            }
        }
        if let Some(args) = &r.args {
            spec.args = args.clone();
        }
        if let Some(levels) = &r.permission_args {
            let l = levels.get_ref();
            for (slot, given) in [
                (&mut spec.permission_args.read, &l.read),
                (&mut spec.permission_args.write, &l.write),
                (&mut spec.permission_args.full, &l.full),
            ] {
                if let Some(args) = given {
                    *slot = args.clone();
                }
            }
        }
        if let Some(resume) = &r.resume_args {
            if !resume.get_ref().is_empty()
                && !resume
                    .get_ref()
                    .iter()
                    .any(|a| a.contains(SESSION_PLACEHOLDER))
            {
                self.err(
                    "orch::missing_placeholder",
                    format!("resume_args needs a `{SESSION_PLACEHOLDER}` argument"),
                    resume.span(),
                    "no session id here",
                );
            }
            spec.resume_args = resume.get_ref().clone();
        }
        if let Some(level) = self.permission(&r.permissions) {
            spec.permissions = Some(level);
        }
        if let Some(allow) = self.allow_writes(&r.allow_undeclared_writes) {
            spec.allow_undeclared_writes = Some(allow);
        }
        if let Some(i) = self.isolation(&r.isolation) {
            spec.isolation = Some(i);
        }
        spec.placement = self.placement(&r.executor, &r.slurm);
        self.money_agent(r, &mut spec);
        Some(spec)
    }

    fn task(
        &mut self,
        id: &str,
        raw: &Spanned<RawTask>,
        known: &Known,
        agents: &IndexMap<String, AgentSpec>,
        allow_outside: bool,
    ) -> (Task, Vec<Range<usize>>) {
        let ids = known.ids;
        let r = raw.get_ref();
        let foreach = self.foreach(id, r, known);
        let is_fanout = foreach.is_some();
        if !valid_task_id(id) {
            self.err(
                "orch::bad_task_id",
                format!("task id `{id}` may only use {TASK_ID_RULE}"),
                raw.span(),
                "this task",
            );
        }
        let actions = [r.prompt.is_some(), r.prompt_file.is_some(), r.run.is_some()];
        let action = match (&r.prompt, &r.prompt_file, &r.run) {
            (Some(p), None, None) => {
                self.not_blank(p, "the prompt", id);
                Action::Prompt(p.get_ref().clone())
            }
            (None, Some(f), None) => {
                if self.not_blank(f, "prompt_file", id) {
                    self.relative_path(f, "prompt_file", allow_outside);
                }
                Action::PromptFile(PathBuf::from(f.get_ref()))
            }
            (None, None, Some(c)) => {
                self.not_blank(c, "the run command", id);
                Action::Shell(c.get_ref().clone())
            }
            _ => {
                let n = actions.iter().filter(|&&b| b).count();
                let msg = if n == 0 {
                    format!("task `{id}` has nothing to do")
                } else {
                    format!("task `{id}` sets more than one of prompt, prompt_file and run")
                };
                self.errors.push(
                    self.src
                        .error("orch::task_action", msg, Some(raw.span()), "this task")
                        .with_help("give exactly one of prompt, prompt_file or run"),
                );
                Action::Shell(String::new())
            }
        };
        if let Some(a) = &r.agent {
            if action.is_shell() && r.run.is_some() {
                self.err(
                    "orch::agent_on_shell_task",
                    format!("task `{id}` runs a shell command, so it takes no agent"),
                    a.span(),
                    "remove this",
                );
            } else if !agents.contains_key(a.get_ref()) {
                self.unknown_agent(a, agents);
            }
        }
        let mut deps = Vec::new();
        let mut spans = Vec::new();
        for d in &r.deps {
            let written = d.get_ref();
            let (name, which) = split_dep(written);
            let name = name.to_string();
            if name == id {
                self.err(
                    "orch::self_dep",
                    format!("task `{id}` depends on itself"),
                    d.span(),
                    "here",
                );
            } else if !ids.contains_key(name.as_str()) {
                let mut err = self.src.error(
                    "orch::unknown_dep",
                    format!("task `{id}` depends on unknown task `{name}`"),
                    Some(d.span()),
                    "no task has this id",
                );
                if let Some(close) = closest(&name, ids.keys().copied().filter(|&k| k != id)) {
                    err = err.with_help(format!("did you mean `{close}`?"));
                }
                self.errors.push(err);
            } else if which.is_some() && !known.fanouts.contains(name.as_str()) {
                self.err(
                    "orch::unknown_dep",
                    format!(
                        "task `{id}` names an instance of `{name}`, which is not a fan-out task"
                    ),
                    d.span(),
                    "no instances",
                );
            } else if which.is_some_and(fanout::mentions_item) && !is_fanout {
                self.errors.push(
                    self.src
                        .error(
                            "orch::placeholder",
                            format!("`{written}` in task `{id}`: an item is only known in a fan-out task"),
                            Some(d.span()),
                            "no item here",
                        )
                        .with_help(format!("depend on all instances with \"{name}\"")),
                );
            } else if deps.contains(written) {
                self.err(
                    "orch::duplicate_dep",
                    format!("task `{id}` lists dep `{written}` twice"),
                    d.span(),
                    "again here",
                );
            } else {
                deps.push(written.clone());
                spans.push(d.span());
            }
        }
        if !is_fanout {
            self.no_item_outside_fanout(id, r);
        }
        if let Some(p) = &r.prompt {
            self.placeholders(p, id, &deps, ids, is_fanout);
        }
        for pattern in &r.inputs {
            if !self.not_blank(pattern, "an input", id) {
                continue;
            }
            // An item fills in a plain path (glob characters escaped): checked with one.
            let as_glob = fanout::fill(pattern.get_ref(), "item", fanout::Quoting::Glob);
            if let Err(e) = globset::Glob::new(&as_glob) {
                self.err(
                    "orch::bad_glob",
                    format!("invalid input glob `{}`: {}", pattern.get_ref(), e.kind()),
                    pattern.span(),
                    "bad glob",
                );
            }
            self.relative_path(pattern, "input", allow_outside);
        }
        for out in &r.outputs {
            if !self.not_blank(out, "an output", id) {
                continue;
            }
            self.relative_path(out, "output", allow_outside);
            let filled = fanout::fill(out.get_ref(), "item", fanout::Quoting::Plain);
            if out.get_ref().ends_with('/') || crate::plan::normalize(out.get_ref()).is_empty() {
                self.errors.push(
                    self.src
                        .error(
                            "orch::dir_output",
                            format!("output `{}` of task `{id}` is a directory", out.get_ref()),
                            Some(out.span()),
                            "a directory",
                        )
                        .with_help(
                            "an output is a file the task writes: list each file (a task that \
                             writes a whole tree can name one file in it, e.g. a stamp file)",
                        ),
                );
            } else if filled.contains(['*', '?', '[', '{']) {
                self.err(
                    "orch::glob_output",
                    format!("output `{}` must be a file path, not a glob", out.get_ref()),
                    out.span(),
                    "a glob",
                );
            }
            if fanout::mentions_item(out.get_ref()) {
                // Each instance renders its own: checked once the items are known.
                continue;
            }
            let key = crate::plan::normalize(out.get_ref());
            let isolated = r
                .isolation
                .as_ref()
                .and_then(|i| Isolation::parse(i.get_ref()))
                .or_else(|| {
                    // A shell task has no agent to take it from (as `Plan::isolation`).
                    let default = &self.isolated_by_default.1;
                    let name = r.agent.as_ref().map_or(default, |a| a.get_ref());
                    agents
                        .get(name)
                        .filter(|_| r.run.is_none())
                        .and_then(|a| a.isolation)
                })
                .unwrap_or(self.isolated_by_default.0)
                == Isolation::Worktree;
            match self.writers.get(&key) {
                Some((_, _, true)) if isolated => {}
                Some((other, first, _)) if other != id => {
                    let err = self
                        .src
                        .error(
                            "orch::duplicate_output",
                            format!("tasks `{other}` and `{id}` both write `{}`", out.get_ref()),
                            Some(out.span()),
                            "written here too",
                        )
                        .with_label(first.clone(), format!("`{other}` writes it"))
                        .with_help(
                            "give each file one writer; the other task can read it as an input",
                        );
                    self.errors.push(err);
                }
                Some(_) => {}
                None => {
                    self.writers
                        .insert(key, (id.to_string(), out.span(), isolated));
                }
            }
        }
        let priority = match &r.priority {
            None => Priority::default(),
            Some(p) => {
                let level = match p.get_ref() {
                    toml::Value::String(s) => s
                        .strip_prefix(['P', 'p'])
                        .and_then(|n| n.parse::<u8>().ok()),
                    toml::Value::Integer(i) => u8::try_from(*i).ok(),
                    _ => None,
                };
                match level {
                    Some(l) if l <= 3 => Priority(l),
                    _ => {
                        self.err(
                            "orch::bad_priority",
                            "priority must be one of P0, P1, P2, P3".into(),
                            p.span(),
                            "here",
                        );
                        Priority::default()
                    }
                }
            }
        };
        for l in &r.locks {
            self.not_blank(l, "a lock", id);
        }
        if let Some(v) = &r.verify {
            self.not_blank(v, "the verify command", id);
        }
        if let Some(t) = &r.title {
            self.not_blank(t, "the title", id);
        }
        self.env_names(&r.env, &format!("task `{id}`"));
        let timeout = self.duration(&r.timeout, limits::TIMEOUT);
        let estimate = self.duration(&r.estimate, limits::ESTIMATE);
        let retries = self.count(&r.retries, limits::RETRIES).map(|n| n as u32);
        let permissions = self.permission(&r.permissions);
        let allow_undeclared_writes = self.allow_writes(&r.allow_undeclared_writes);
        let isolation = self.isolation(&r.isolation);
        if r.run.is_some() {
            // A shell runs with the person's own rights, and make-like commands write caches
            // and intermediates: neither field could mean anything there.
            for (name, span) in [
                ("permissions", r.permissions.as_ref().map(|p| p.span())),
                (
                    "allow_undeclared_writes",
                    r.allow_undeclared_writes.as_ref().map(|p| p.span()),
                ),
            ] {
                if let Some(span) = span {
                    self.errors.push(
                        self.src
                            .error(
                                "orch::agent_field_on_shell_task",
                                format!("task `{id}` runs a shell command: {name} applies to agent tasks"),
                                Some(span),
                                "remove this",
                            )
                            .with_help(
                                "a shell task runs with your own permissions and its writes are not checked",
                            ),
                    );
                }
            }
        }
        let placement = self.placement(&r.executor, &r.slurm);
        let mut task = Task {
            id: id.to_string(),
            title: r
                .title
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_else(|| id.to_string()),
            action,
            agent: r.agent.as_ref().map(|a| a.get_ref().clone()),
            inputs: r.inputs.iter().map(|s| s.get_ref().clone()).collect(),
            outputs: r.outputs.iter().map(|s| s.get_ref().clone()).collect(),
            deps,
            priority,
            retries,
            timeout,
            locks: r.locks.iter().map(|l| l.get_ref().clone()).collect(),
            verify: r.verify.as_ref().map(|v| v.get_ref().clone()),
            estimate,
            env: r
                .env
                .iter()
                .map(|(k, v)| (k.get_ref().clone(), v.clone()))
                .collect(),
            foreach,
            item: None,
            permissions,
            allow_undeclared_writes,
            placement,
            max_cost_usd: None,
            cost_estimate: None,
            cache: r.cache.unwrap_or(true),
            isolation,
        };
        self.money_task(r, &mut task);
        (task, spans)
    }

    /// A task's `foreach` or `foreach_from`, checked.
    fn foreach(&mut self, id: &str, r: &RawTask, known: &Known) -> Option<Foreach> {
        match (&r.foreach, &r.foreach_from) {
            (None, None) => None,
            (Some(_), Some(from)) => {
                self.err(
                    "orch::foreach",
                    format!("task `{id}` sets both foreach and foreach_from"),
                    from.span(),
                    "one of the two",
                );
                None
            }
            (None, Some(from)) => {
                let source = from.get_ref();
                if source == id {
                    self.err(
                        "orch::foreach",
                        format!("task `{id}` takes its items from itself"),
                        from.span(),
                        "here",
                    );
                } else if !known.ids.contains_key(source.as_str()) {
                    let mut e = self.src.error(
                        "orch::foreach",
                        format!("foreach_from of task `{id}` names unknown task `{source}`"),
                        Some(from.span()),
                        "no task has this id",
                    );
                    if let Some(c) = closest(source, known.ids.keys().copied()) {
                        e = e.with_help(format!("did you mean `{c}`?"));
                    }
                    self.errors.push(e);
                } else if known.fanouts.contains(source.as_str()) {
                    self.err(
                        "orch::foreach",
                        format!("foreach_from of task `{id}` names fan-out task `{source}`"),
                        from.span(),
                        "has many answers",
                    );
                }
                Some(Foreach::From(source.clone()))
            }
            (Some(v), None) => match v.get_ref() {
                toml::Value::String(s) if known.ids.contains_key(s.as_str()) => {
                    if s == id {
                        self.err(
                            "orch::foreach",
                            format!("task `{id}` takes its items from itself"),
                            v.span(),
                            "here",
                        );
                    } else if !known.fanouts.contains(s.as_str()) {
                        self.errors.push(
                            self.src
                                .error(
                                    "orch::foreach",
                                    format!("foreach of task `{id}` names `{s}`, which is not a fan-out task"),
                                    Some(v.span()),
                                    "has no items",
                                )
                                .with_help(format!(
                                    "for the items `{s}` answers, write foreach_from = \"{s}\""
                                )),
                        );
                    }
                    Some(Foreach::SameAs(s.clone()))
                }
                toml::Value::String(s) => {
                    if s.trim().is_empty() {
                        self.err(
                            "orch::empty_value",
                            format!("foreach of task `{id}` is empty"),
                            v.span(),
                            "empty",
                        );
                    } else if let Err(e) = globset::Glob::new(s) {
                        self.err(
                            "orch::bad_glob",
                            format!("invalid foreach glob `{s}`: {}", e.kind()),
                            v.span(),
                            "bad glob",
                        );
                    } else if let Err(why) = check_inside_root(s) {
                        self.err(
                            "orch::path_outside_root",
                            format!("foreach `{s}` {why}"),
                            v.span(),
                            "outside the project",
                        );
                    }
                    Some(Foreach::Glob(s.clone()))
                }
                toml::Value::Array(items) => {
                    let mut list = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            toml::Value::String(s) if !s.is_empty() => {
                                if list.contains(s) {
                                    self.err(
                                        "orch::foreach",
                                        format!("foreach of task `{id}` lists `{s}` twice"),
                                        v.span(),
                                        "here",
                                    );
                                }
                                list.push(s.clone());
                            }
                            other => {
                                self.err(
                                    "orch::foreach",
                                    format!(
                                        "foreach of task `{id}` must list non-empty strings, not {other}"
                                    ),
                                    v.span(),
                                    "here",
                                );
                            }
                        }
                    }
                    Some(Foreach::List(list))
                }
                other => {
                    self.err(
                        "orch::foreach",
                        format!(
                            "foreach of task `{id}` must be a glob, a list of strings or a fan-out task's name, not {other}"
                        ),
                        v.span(),
                        "here",
                    );
                    None
                }
            },
        }
    }

    /// `{{ item }}` in a field of a task without items.
    fn no_item_outside_fanout(&mut self, id: &str, r: &RawTask) {
        let fields = [&r.run, &r.verify, &r.title, &r.prompt_file];
        let lists = r.inputs.iter().chain(&r.outputs).chain(&r.locks);
        for v in fields.into_iter().flatten().chain(lists) {
            if fanout::mentions_item(v.get_ref()) {
                self.errors.push(
                    self.src
                        .error(
                            "orch::placeholder",
                            format!("task `{id}` has no items: `{{{{ item }}}}` is only known in a fan-out task"),
                            Some(v.span()),
                            "no item here",
                        )
                        .with_help(format!(
                            "give `{id}` a `foreach` (a glob or a list) for one instance per item"
                        )),
                );
            }
        }
        for (k, v) in &r.env {
            if fanout::mentions_item(v) {
                self.err(
                    "orch::placeholder",
                    format!("task `{id}` has no items: `{{{{ item }}}}` in its env is only known in a fan-out task"),
                    k.span(),
                    "no item here",
                );
            }
        }
    }

    /// Every placeholder of an inline prompt must name something the task has; each problem
    /// points at the placeholder as written in the Orchfile.
    fn placeholders(
        &mut self,
        prompt: &Spanned<String>,
        id: &str,
        deps: &[String],
        ids: &HashMap<&str, usize>,
        fanout: bool,
    ) {
        let text = prompt.get_ref();
        if !text.contains("{{") {
            return;
        }
        let deps: Vec<&str> = deps.iter().map(|d| split_dep(d).0).collect();
        let problems = placeholder::check(text, id, &deps, ids, fanout);
        self.placeholder_problems(prompt, problems);
    }

    /// Each placeholder problem of `prompt`, at the placeholder as written in the Orchfile.
    fn placeholder_problems(
        &mut self,
        prompt: &Spanned<String>,
        problems: Vec<placeholder::Problem>,
    ) {
        let text = prompt.get_ref();
        let span = prompt.span();
        let written = self.src.text.get(span.clone()).unwrap_or("");
        let found = placeholder::locate_in(written, text, &problems);
        for (p, at) in problems.into_iter().zip(found) {
            let at = at.map_or(span.clone(), |r| span.start + r.start..span.start + r.end);
            let mut e = self
                .src
                .error("orch::placeholder", p.message, Some(at), p.label);
            if let Some(h) = p.help {
                e = e.with_help(h);
            }
            self.errors.push(e);
        }
    }

    fn aggregate(
        &mut self,
        raw: RawAggregate,
        agents: &IndexMap<String, AgentSpec>,
    ) -> Option<AggregateSpec> {
        let strategy = match raw.strategy.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("concat") => AggregateStrategy::Concat,
            Some("structured") => AggregateStrategy::Structured,
            Some("agent") => AggregateStrategy::Agent,
            Some(other) => {
                let s = raw.strategy.as_ref().unwrap();
                self.err(
                    "orch::bad_value",
                    format!(
                        "aggregate strategy must be concat, structured or agent, not `{other}`"
                    ),
                    s.span(),
                    "here",
                );
                return None;
            }
        };
        if let Some(a) = &raw.agent {
            if !agents.contains_key(a.get_ref()) {
                self.unknown_agent(a, agents);
            }
        }
        let on_missing = match raw.on_missing.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("rerun") => OnMissing::Rerun,
            Some("fail") => OnMissing::Fail,
            Some(other) => {
                let s = raw.on_missing.as_ref().unwrap();
                self.err(
                    "orch::bad_value",
                    format!("on_missing must be rerun or fail, not `{other}`"),
                    s.span(),
                    "here",
                );
                OnMissing::Rerun
            }
        };
        for (value, what) in [(&raw.title, "title"), (&raw.prompt, "prompt")] {
            if let Some(v) = value.as_ref().filter(|v| v.get_ref().trim().is_empty()) {
                self.err(
                    "orch::empty_value",
                    format!("the [aggregate] {what} is empty"),
                    v.span(),
                    "empty",
                );
            }
        }
        if let Some(p) = &raw.prompt {
            let problems = placeholder::check_without_names(p.get_ref(), "the [aggregate] prompt");
            self.placeholder_problems(p, problems);
        }
        let cost_estimate = self.aggregate_cost_estimate(&raw, strategy);
        Some(AggregateSpec {
            strategy,
            agent: raw.agent.map(|a| a.into_inner()),
            title: raw
                .title
                .map_or_else(|| "Final Output".into(), |t| t.into_inner()),
            on_missing,
            prompt: raw
                .prompt
                .map(|p| placeholder::render_literals(&p.into_inner())),
            cost_estimate,
        })
    }
}
