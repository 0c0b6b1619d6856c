//! The validated plan of an unchanged Orchfile, kept in `.orchestrator/plan_cache.bin`:
//! parsing and validating a 10,000-task Orchfile costs more than a whole no-op build
//! otherwise. Keyed by orch's version and binary, the file's path and its text; written only
//! where the state directory already exists, and not used when the Orchfile moves it
//! (`state_dir`), since its place is then unknown before parsing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::disk::codec::{DecodeError, Decoder, Encoder};
use crate::disk::Digest;
use crate::fingerprint::DEFINITION_FIELDS;
use crate::plan::orchfile::{parse, read};
use crate::plan::{
    Action, AgentKind, AgentSpec, AggregateSpec, AggregateStrategy, AllowWrites, Foreach,
    Isolation, KeptDefinition, LevelArgs, OnMissing, Permission, Plan, Priority, PromptVia,
    ReplyFormat, ResultSpec, Settings, Task,
};

const MAGIC: &[u8; 8] = b"ORCHPC08";

pub struct PlanCache {
    file: PathBuf,
    key: Digest,
}

impl PlanCache {
    pub fn new(path: &Path, text: &str) -> Option<PlanCache> {
        if text.contains("state_dir") {
            return None;
        }
        let dir = path.parent()?.join(Settings::default().state_dir);
        let mut h = blake3::Hasher::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        // A rebuilt orch may validate (or hash definitions) differently: its binary's stamp
        // is part of the key. With the inode and ctime, which no tool can set back, so
        // builds given one fixed mtime (as Nix does) still differ.
        let exe = std::env::current_exe().and_then(std::fs::metadata).ok()?;
        let stamp = crate::disk::FileStamp::of(&exe);
        h.update(format!("{stamp:?}").as_bytes());
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        h.update(text.as_bytes());
        Some(PlanCache {
            file: dir.join("plan_cache.bin"),
            key: Digest::from_hash(h.finalize()),
        })
    }

    /// Identifies the Orchfile's text as this orch binary reads it.
    pub fn key(&self) -> &Digest {
        &self.key
    }

    /// The state directory the cache lives in (the default one beside the Orchfile).
    pub fn state_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn read(&self) -> Option<Plan> {
        let bytes = std::fs::read(&self.file).ok()?;
        let mut d = Decoder::new(MAGIC, &bytes).ok()?;
        if d.digest().ok()? != self.key {
            return None;
        }
        decode_plan(&mut d).ok().filter(|_| d.at_end())
    }

    /// Best effort: a cache that cannot be written only costs the next load a parse.
    pub fn write(&self, plan: &Plan) {
        if !self.file.parent().is_some_and(Path::is_dir) {
            return;
        }
        let Some(bytes) = encode_plan(&self.key, plan) else {
            return;
        };
        let _ = crate::disk::replace_unsynced(&self.file, &bytes);
    }
}

/// Reads and parses the Orchfile at `path`, through its plan cache.
pub fn load(path: &Path) -> miette::Result<Plan> {
    let text = read(path)?;
    let cache = PlanCache::new(path, &text);
    load_cached(path, text, cache)
}

/// As [`load`], for the text already read from `path` and its plan cache. The cache keeps
/// the plan as written; its fan-out templates are expanded over today's items every time.
pub fn load_cached(path: &Path, text: String, cache: Option<PlanCache>) -> miette::Result<Plan> {
    let plan = match cache.as_ref().and_then(|c| c.read()) {
        Some(plan) => plan,
        None => {
            let plan = parse(path, &text).map_err(|e| miette::Report::new(*e))?;
            if let Some(c) = cache {
                c.write(&plan);
            }
            plan
        }
    };
    super::items::expand(plan, &|| crate::plan::orchfile::spans(path, &text))
        .map_err(|e| miette::Report::new(*e))
}

/// `None` when a path is not UTF-8: such a plan is parsed every time.
fn encode_plan(key: &Digest, plan: &Plan) -> Option<Vec<u8>> {
    let mut e = Encoder::new(MAGIC);
    e.digest(key);
    e.str(plan.root.to_str()?);
    e.str(plan.source_path.to_str()?);
    let s = &plan.settings;
    e.str(s.state_dir.to_str()?);
    opt_usize(&mut e, s.jobs);
    e.str(&s.default_agent);
    e.bool(s.keep_going);
    duration(&mut e, s.kill_grace);
    duration(&mut e, s.retry_backoff);
    duration(&mut e, s.retry_backoff_max);
    e.usize(s.inline_result_limit);
    e.bool(s.strict);
    placement(&mut e, &s.placement);
    e.str(&serde_json::to_string(&s.slurm).ok()?);
    opt_f64(&mut e, s.max_cost_usd);
    duration(&mut e, s.max_quota_wait);
    e.str(&serde_json::to_string(&s.cache).ok()?);
    opt_isolation(&mut e, Some(s.isolation));
    strings(&mut e, &s.worktree_include);
    e.usize(plan.agents.len());
    for (name, a) in &plan.agents {
        e.str(name);
        e.str(&a.name);
        e.u32(match a.kind {
            AgentKind::Sim => 0,
            AgentKind::Command => 1,
        });
        strings(&mut e, &a.command);
        e.u32(match a.prompt_via {
            PromptVia::Stdin => 0,
            PromptVia::Arg => 1,
            PromptVia::File => 2,
        });
        match &a.result {
            ResultSpec::Stdout => e.u32(0),
            ResultSpec::JsonField(f) => {
                e.u32(1);
                e.str(f);
            }
            ResultSpec::File(f) => {
                e.u32(2);
                e.str(f);
            }
            ResultSpec::Reply => e.u32(3),
        }
        e.u32(a.format as u32);
        strings(&mut e, &a.args);
        strings(&mut e, &a.permission_args.read);
        strings(&mut e, &a.permission_args.write);
        strings(&mut e, &a.permission_args.full);
        strings(&mut e, &a.resume_args);
        opt_permission(&mut e, a.permissions);
        allow_writes(&mut e, a.allow_undeclared_writes.as_ref());
        opt_isolation(&mut e, a.isolation);
        opt_usize(&mut e, a.max_parallel);
        opt_duration(&mut e, a.timeout);
        e.u32(a.retries);
        strings(&mut e, &a.retry_on);
        map(&mut e, &a.env);
        placement(&mut e, &a.placement);
        opt_f64(&mut e, a.max_cost_usd);
        e.opt_str(a.provider.as_deref());
        e.bool(a.start_early);
    }
    e.usize(plan.tasks.len());
    for t in &plan.tasks {
        e.str(&t.id);
        e.str(&t.title);
        match &t.action {
            Action::Shell(c) => {
                e.u32(0);
                e.str(c);
            }
            Action::Prompt(p) => {
                e.u32(1);
                e.str(p);
            }
            Action::PromptFile(f) => {
                e.u32(2);
                e.str(f.to_str()?);
            }
        }
        e.opt_str(t.agent.as_deref());
        strings(&mut e, &t.inputs);
        strings(&mut e, &t.outputs);
        strings(&mut e, &t.deps);
        e.u32(t.priority.0.into());
        e.bool(t.retries.is_some());
        e.u32(t.retries.unwrap_or(0));
        opt_duration(&mut e, t.timeout);
        strings(&mut e, &t.locks);
        e.opt_str(t.verify.as_deref());
        opt_duration(&mut e, t.estimate);
        map(&mut e, &t.env);
        match &t.foreach {
            None => e.u32(0),
            Some(Foreach::Glob(g)) => {
                e.u32(1);
                e.str(g);
            }
            Some(Foreach::List(l)) => {
                e.u32(2);
                strings(&mut e, l);
            }
            Some(Foreach::SameAs(s)) => {
                e.u32(3);
                e.str(s);
            }
            Some(Foreach::From(s)) => {
                e.u32(4);
                e.str(s);
            }
        }
        opt_permission(&mut e, t.permissions);
        allow_writes(&mut e, t.allow_undeclared_writes.as_ref());
        opt_isolation(&mut e, t.isolation);
        placement(&mut e, &t.placement);
        opt_f64(&mut e, t.max_cost_usd);
        opt_f64(&mut e, t.cost_estimate);
        e.bool(t.cache);
    }
    e.bool(plan.aggregate.is_some());
    if let Some(a) = &plan.aggregate {
        e.u32(match a.strategy {
            AggregateStrategy::Concat => 0,
            AggregateStrategy::Structured => 1,
            AggregateStrategy::Agent => 2,
        });
        e.opt_str(a.agent.as_deref());
        e.str(&a.title);
        e.bool(a.on_missing == OnMissing::Rerun);
        e.opt_str(a.prompt.as_deref());
        opt_f64(&mut e, a.cost_estimate);
    }
    e.opt_str(plan.request.as_deref());
    // Worked out once here, so that an unchanged Orchfile's builds need not hash every
    // task's definition again.
    for t in 0..plan.tasks.len() {
        // A template's instances each have their own, worked out as they are expanded.
        let definition = plan.tasks[t]
            .foreach
            .is_none()
            .then(|| crate::fingerprint::memoizable_definition(plan, t))
            .flatten();
        e.bool(definition.is_some());
        if let Some(def) = definition {
            e.digest(&def.digest);
            for (_, f) in &def.fields {
                e.digest(f);
            }
        }
    }
    Some(e.finish())
}

fn decode_plan(d: &mut Decoder) -> Result<Plan, DecodeError> {
    let bad = |what| DecodeError::Shape(what);
    let root = PathBuf::from(d.str()?);
    let source_path = PathBuf::from(d.str()?);
    let settings = Settings {
        state_dir: PathBuf::from(d.str()?),
        jobs: read_opt_usize(d)?,
        default_agent: d.string()?,
        keep_going: d.bool()?,
        kill_grace: read_duration(d)?,
        retry_backoff: read_duration(d)?,
        retry_backoff_max: read_duration(d)?,
        inline_result_limit: d.u64()? as usize,
        strict: d.bool()?,
        placement: read_placement(d)?,
        slurm: serde_json::from_str(d.str()?).map_err(|_| bad("slurm settings"))?,
        max_cost_usd: read_opt_f64(d)?,
        max_quota_wait: read_duration(d)?,
        cache: serde_json::from_str(d.str()?).map_err(|_| bad("cache settings"))?,
        isolation: read_isolation(d)?.unwrap_or_default(),
        worktree_include: read_strings(d)?,
    };
    let n = d.count()?;
    let mut agents = IndexMap::with_capacity(n);
    for _ in 0..n {
        let key = d.string()?;
        let spec = AgentSpec {
            name: d.string()?,
            kind: match d.u32()? {
                0 => AgentKind::Sim,
                1 => AgentKind::Command,
                _ => return Err(bad("agent kind")),
            },
            command: read_strings(d)?,
            prompt_via: match d.u32()? {
                0 => PromptVia::Stdin,
                1 => PromptVia::Arg,
                2 => PromptVia::File,
                _ => return Err(bad("prompt_via")),
            },
            result: match d.u32()? {
                0 => ResultSpec::Stdout,
                1 => ResultSpec::JsonField(d.string()?),
                2 => ResultSpec::File(d.string()?),
                3 => ResultSpec::Reply,
                _ => return Err(bad("result")),
            },
            format: match d.u32()? {
                0 => ReplyFormat::Generic,
                1 => ReplyFormat::Claude,
                2 => ReplyFormat::Codex,
                3 => ReplyFormat::Gemini,
                _ => return Err(bad("format")),
            },
            args: read_strings(d)?,
            permission_args: LevelArgs {
                read: read_strings(d)?,
                write: read_strings(d)?,
                full: read_strings(d)?,
            },
            resume_args: read_strings(d)?,
            permissions: read_opt_permission(d)?,
            allow_undeclared_writes: read_allow_writes(d)?,
            isolation: read_isolation(d)?,
            max_parallel: read_opt_usize(d)?,
            timeout: read_opt_duration(d)?,
            retries: d.u32()?,
            retry_on: read_strings(d)?,
            env: read_map(d)?,
            placement: read_placement(d)?,
            max_cost_usd: read_opt_f64(d)?,
            provider: d.opt_string()?,
            start_early: d.bool()?,
        };
        agents.insert(key, spec);
    }
    let n = d.count()?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let id = d.string()?;
        let title = d.string()?;
        let action = match d.u32()? {
            0 => Action::Shell(d.string()?),
            1 => Action::Prompt(d.string()?),
            2 => Action::PromptFile(PathBuf::from(d.str()?)),
            _ => return Err(bad("action")),
        };
        let task = Task {
            agent: d.opt_string()?,
            inputs: read_strings(d)?,
            outputs: read_strings(d)?,
            deps: read_strings(d)?,
            priority: Priority(u8::try_from(d.u32()?).map_err(|_| bad("priority"))?),
            retries: {
                let some = d.bool()?;
                let n = d.u32()?;
                some.then_some(n)
            },
            timeout: read_opt_duration(d)?,
            locks: read_strings(d)?,
            verify: d.opt_string()?,
            estimate: read_opt_duration(d)?,
            env: read_map(d)?,
            foreach: match d.u32()? {
                0 => None,
                1 => Some(Foreach::Glob(d.string()?)),
                2 => Some(Foreach::List(read_strings(d)?)),
                3 => Some(Foreach::SameAs(d.string()?)),
                4 => Some(Foreach::From(d.string()?)),
                _ => return Err(bad("foreach")),
            },
            item: None,
            permissions: read_opt_permission(d)?,
            allow_undeclared_writes: read_allow_writes(d)?,
            isolation: read_isolation(d)?,
            placement: read_placement(d)?,
            max_cost_usd: read_opt_f64(d)?,
            cost_estimate: read_opt_f64(d)?,
            cache: d.bool()?,
            id,
            title,
            action,
        };
        tasks.push(task);
    }
    let aggregate = if d.bool()? {
        Some(AggregateSpec {
            strategy: match d.u32()? {
                0 => AggregateStrategy::Concat,
                1 => AggregateStrategy::Structured,
                2 => AggregateStrategy::Agent,
                _ => return Err(bad("aggregate strategy")),
            },
            agent: d.opt_string()?,
            title: d.string()?,
            on_missing: if d.bool()? {
                OnMissing::Rerun
            } else {
                OnMissing::Fail
            },
            prompt: d.opt_string()?,
            cost_estimate: read_opt_f64(d)?,
        })
    } else {
        None
    };
    let request = d.opt_string()?;
    let mut definitions = Vec::with_capacity(tasks.len());
    for _ in 0..tasks.len() {
        definitions.push(if d.bool()? {
            let digest = d.digest()?;
            let mut fields = [Digest::default(); DEFINITION_FIELDS.len()];
            for f in &mut fields {
                *f = d.digest()?;
            }
            Some(KeptDefinition { digest, fields })
        } else {
            None
        });
    }
    let index = Plan::index_of(&tasks);
    Ok(Plan {
        root,
        source_path,
        settings,
        agents,
        tasks,
        index,
        aggregate,
        request,
        fanouts: Vec::new(),
        definitions,
    })
}

fn duration(e: &mut Encoder, d: Duration) {
    e.u64(d.as_secs());
    e.u32(d.subsec_nanos());
}

fn read_duration(d: &mut Decoder) -> Result<Duration, DecodeError> {
    let secs = d.u64()?;
    let nanos = d.u32()?;
    if nanos >= 1_000_000_000 {
        return Err(DecodeError::Shape("duration"));
    }
    Ok(Duration::new(secs, nanos))
}

fn opt_duration(e: &mut Encoder, d: Option<Duration>) {
    e.bool(d.is_some());
    if let Some(d) = d {
        duration(e, d);
    }
}

fn read_opt_duration(d: &mut Decoder) -> Result<Option<Duration>, DecodeError> {
    Ok(if d.bool()? {
        Some(read_duration(d)?)
    } else {
        None
    })
}

/// Where tasks run: most say nothing (one byte); the rest as JSON, which they rarely are.
fn placement(e: &mut Encoder, p: &crate::executor::Placement) {
    let json = (*p != Default::default())
        .then(|| serde_json::to_string(p).ok())
        .flatten();
    e.opt_str(json.as_deref());
}

fn read_placement(d: &mut Decoder) -> Result<crate::executor::Placement, DecodeError> {
    match d.opt_string()? {
        None => Ok(Default::default()),
        Some(json) => serde_json::from_str(&json).map_err(|_| DecodeError::Shape("placement")),
    }
}

fn opt_f64(e: &mut Encoder, v: Option<f64>) {
    e.bool(v.is_some());
    if let Some(v) = v {
        e.u64(v.to_bits());
    }
}

fn read_opt_f64(d: &mut Decoder) -> Result<Option<f64>, DecodeError> {
    Ok(if d.bool()? {
        Some(f64::from_bits(d.u64()?))
    } else {
        None
    })
}

fn opt_usize(e: &mut Encoder, v: Option<usize>) {
    e.bool(v.is_some());
    if let Some(v) = v {
        e.usize(v);
    }
}

fn read_opt_usize(d: &mut Decoder) -> Result<Option<usize>, DecodeError> {
    Ok(if d.bool()? {
        Some(d.u64()? as usize)
    } else {
        None
    })
}

fn strings(e: &mut Encoder, v: &[String]) {
    e.usize(v.len());
    for s in v {
        e.str(s);
    }
}

fn read_strings(d: &mut Decoder) -> Result<Vec<String>, DecodeError> {
    let n = d.count()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(d.string()?);
    }
    Ok(v)
}

fn map(e: &mut Encoder, m: &IndexMap<String, String>) {
    e.usize(m.len());
    for (k, v) in m {
        e.str(k);
        e.str(v);
    }
}

fn read_map(d: &mut Decoder) -> Result<IndexMap<String, String>, DecodeError> {
    let n = d.count()?;
    let mut m = IndexMap::with_capacity(n);
    for _ in 0..n {
        m.insert(d.string()?, d.string()?);
    }
    Ok(m)
}

/// 0 for none, else the level's position plus one.
fn opt_permission(e: &mut Encoder, p: Option<Permission>) {
    e.u32(p.map_or(0, |p| p as u32 + 1));
}

fn read_opt_permission(d: &mut Decoder) -> Result<Option<Permission>, DecodeError> {
    Ok(match d.u32()? {
        0 => None,
        n => Some(
            Permission::parse(Permission::NAMES.get(n as usize - 1).copied().unwrap_or(""))
                .ok_or(DecodeError::Shape("permissions"))?,
        ),
    })
}

/// 0 for none (not set), else the isolation's position plus one.
fn opt_isolation(e: &mut Encoder, i: Option<Isolation>) {
    e.u32(i.map_or(0, |i| i as u32 + 1));
}

fn read_isolation(d: &mut Decoder) -> Result<Option<Isolation>, DecodeError> {
    Ok(match d.u32()? {
        0 => None,
        n => Some(
            Isolation::parse(Isolation::NAMES.get(n as usize - 1).copied().unwrap_or(""))
                .ok_or(DecodeError::Shape("isolation"))?,
        ),
    })
}

/// 0 for none, 1 for all, 2 and the globs for a list.
fn allow_writes(e: &mut Encoder, a: Option<&AllowWrites>) {
    match a {
        None => e.u32(0),
        Some(AllowWrites::All) => e.u32(1),
        Some(AllowWrites::Globs(g)) => {
            e.u32(2);
            strings(e, g);
        }
    }
}

fn read_allow_writes(d: &mut Decoder) -> Result<Option<AllowWrites>, DecodeError> {
    Ok(match d.u32()? {
        0 => None,
        1 => Some(AllowWrites::All),
        2 => Some(AllowWrites::Globs(read_strings(d)?)),
        _ => return Err(DecodeError::Shape("allow_undeclared_writes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_round_trips_through_the_cache_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Orchfile.toml");
        let text = r#"
request = "review"
[settings]
jobs = 3
keep_going = true
[agents.rev]
command = ["rev-cli", "--json"]
result = "json:result"
max_parallel = 2
timeout = "90s"
retries = 4
env = { MODE = "fast" }
[tasks.a]
prompt = "Summarise {{ inputs }}"
agent = "rev"
inputs = ["src/*.rs"]
outputs = ["out/a.md"]
priority = "P0"
retries = 0
timeout = "1.5s"
locks = ["db"]
verify = "test -s out/a.md"
estimate = "2m"
env = { X = "1", Y = "2" }
[tasks.b]
run = "cat out/a.md > out/b.md"
deps = ["a"]
outputs = ["out/b.md"]
[tasks.c]
prompt_file = "prompts/c.md"
[aggregate]
strategy = "structured"
title = "Report"
on_missing = "fail"
"#;
        std::fs::write(&path, text).unwrap();
        let plan = parse(&path, text).unwrap();
        let key = Digest::of(b"k");
        let bytes = encode_plan(&key, &plan).unwrap();
        let mut d = Decoder::new(MAGIC, &bytes).unwrap();
        assert_eq!(d.digest().unwrap(), key);
        let back = decode_plan(&mut d).unwrap();
        assert!(d.at_end());
        // Debug output covers every field of every part of the plan.
        let sorted = |p: &Plan| {
            let mut p = p.clone();
            p.index.clear();
            p.definitions.clear();
            format!("{p:?}")
        };
        assert_eq!(sorted(&back), sorted(&plan));
        assert_eq!(back.index, plan.index);
        // The kept definitions are what a build would compute; a prompt file's is not kept.
        let computed = |t: usize| {
            let task = &plan.tasks[t];
            crate::fingerprint::Definition::of(&plan, task, plan.agent_for(task, None))
                .unwrap()
                .kept()
        };
        assert_eq!(
            back.definitions,
            vec![Some(computed(0)), Some(computed(1)), None]
        );
    }

    #[test]
    fn an_agent_override_is_not_served_from_the_kept_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Orchfile.toml");
        let text = "[agents.other]\ncommand = [\"x\"]\n\
                    [tasks.a]\nprompt = \"p\"\nagent = \"sim\"\n\
                    [tasks.b]\nrun = \"true\"\n";
        let plan = parse(&path, text).unwrap();
        let bytes = encode_plan(&Digest::of(b"k"), &plan).unwrap();
        let mut d = Decoder::new(MAGIC, &bytes).unwrap();
        d.digest().unwrap();
        let cached = decode_plan(&mut d).unwrap();
        let def = |p: &Plan, t: usize, o: Option<&str>| {
            crate::fingerprint::task_definition(p, t, o).unwrap().digest
        };
        assert_eq!(def(&cached, 0, None), def(&plan, 0, None));
        assert_eq!(def(&cached, 0, Some("other")), def(&plan, 0, Some("other")));
        assert_ne!(def(&cached, 0, Some("other")), def(&cached, 0, None));
        // A shell task runs no agent: the override leaves it as it was.
        assert_eq!(def(&cached, 1, Some("other")), def(&plan, 1, None));
    }
}
