//! Validation of where tasks run: `executor` (in settings, an agent, a task) and the `slurm`
//! tables (`[settings.slurm]`, `[agents.X.slurm]`, `[tasks.X.slurm]`). Each value is checked
//! with its span; options orch sets on every job itself are refused, naming the field.

use std::time::Duration;

use toml::Spanned;

use super::raw::{RawSlurm, RawSlurmSettings};
use super::validate::Validator;
use crate::executor::{ExecutorKind, Launch, Placement, SlurmOptions};
use crate::plan::limits;
use crate::plan::SlurmSettings;

/// Options orch gives every job itself, which `args` may not set again.
const ORCH_OWNS: &[(&str, &str)] = &[
    ("--job-name", "the job is named orch-<task-id>"),
    ("-J", "the job is named orch-<task-id>"),
    ("--output", "orch reads the job's stdout from its own file"),
    ("-o", "orch reads the job's stdout from its own file"),
    ("--error", "orch reads the job's stderr from its own file"),
    ("-e", "orch reads the job's stderr from its own file"),
    ("--input", "orch feeds the job's stdin"),
    ("-i", "orch feeds the job's stdin"),
    ("--chdir", "the job runs in the project directory"),
    ("-D", "the job runs in the project directory"),
    ("--comment", "orch marks its jobs with their run's id"),
    ("--parsable", "orch reads the job id itself"),
    ("--wrap", "orch writes the job script"),
    ("--jobid", "steps run in the allocation orch holds"),
    ("--wait", "orch waits for the job itself"),
    ("-W", "orch waits for the job itself"),
];

/// What `allocation` may not say on top of [`ORCH_OWNS`]: orch reads the allocation's id from
/// salloc's `Granted job allocation N`, which `--quiet` hides (an allocation orch cannot name
/// is one it cannot release).
const ALLOCATION_REFUSES: &[(&str, &str)] = &[
    (
        "--quiet",
        "orch reads the allocation's id from salloc's \"Granted job allocation\" line",
    ),
    (
        "-Q",
        "orch reads the allocation's id from salloc's \"Granted job allocation\" line",
    ),
];

/// Whether the word `word` sets the option `opt`: `--opt`, `--opt=value`, `-o`, `-ovalue`,
/// or (for `--quiet`, which takes no value) an abbreviation Slurm's getopt accepts (`--qui`).
fn sets_option(word: &str, opt: &str) -> bool {
    if word == opt {
        return true;
    }
    match opt.strip_prefix("--") {
        Some(long) if long == "quiet" => word
            .strip_prefix("--")
            .is_some_and(|w| w.len() >= 2 && long.starts_with(w)),
        Some(_) => word.starts_with(&format!("{opt}=")),
        None => word.starts_with(opt) && word.len() > 2,
    }
}

impl Validator<'_> {
    pub(super) fn executor(&mut self, raw: &Option<Spanned<String>>) -> Option<ExecutorKind> {
        let raw = raw.as_ref()?;
        let kind = ExecutorKind::parse(raw.get_ref());
        if kind.is_none() {
            self.err(
                "orch::bad_value",
                format!("executor must be local or slurm, not `{}`", raw.get_ref()),
                raw.span(),
                "here",
            );
        }
        kind
    }

    /// An agent's or a task's `executor` and `slurm` table.
    pub(super) fn placement(
        &mut self,
        executor: &Option<Spanned<String>>,
        slurm: &Option<Spanned<RawSlurm>>,
    ) -> Placement {
        Placement {
            executor: self.executor(executor),
            slurm: match slurm {
                Some(s) => self.slurm_options(s.get_ref()),
                None => SlurmOptions::default(),
            },
        }
    }

    /// `[settings.slurm]`: the options every job starts from, and the build-wide settings.
    pub(super) fn slurm_settings(
        &mut self,
        raw: &Option<Spanned<RawSlurmSettings>>,
    ) -> (SlurmOptions, SlurmSettings) {
        let mut settings = SlurmSettings::default();
        let Some(raw) = raw else {
            return (SlurmOptions::default(), settings);
        };
        let raw = raw.get_ref();
        let options = self.slurm_options(&raw.job());
        if let Some(m) = self.count(&raw.max_jobs, limits::SLURM_MAX_JOBS) {
            settings.max_jobs = m as usize;
        }
        if let Some(p) = self.duration(&raw.poll, limits::SLURM_POLL) {
            if p < Duration::from_millis(100) {
                let span = raw.poll.as_ref().map(|p| p.span()).unwrap_or_default();
                self.err(
                    "orch::bad_value",
                    "poll must be at least 100ms: each poll is a query to slurmctld".into(),
                    span,
                    "too often",
                );
            } else {
                settings.poll = p;
            }
        }
        if let Some(w) = self.duration(&raw.output_wait, limits::SLURM_OUTPUT_WAIT) {
            settings.output_wait = w;
        }
        if let Some(i) = self.duration(&raw.allocation_idle, limits::SLURM_ALLOCATION_IDLE) {
            settings.allocation_idle = i;
        }
        if let Some(a) = &raw.allocation {
            settings.allocation = self.slurm_args(a, "allocation");
        }
        (options, settings)
    }

    fn slurm_options(&mut self, raw: &RawSlurm) -> SlurmOptions {
        let mut o = SlurmOptions::default();
        if let Some(p) = &raw.partition {
            let name = p.get_ref();
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.err(
                    "orch::bad_value",
                    format!("partition `{name}` is not a partition name"),
                    p.span(),
                    "here",
                );
            } else {
                o.partition = Some(name.clone());
            }
        }
        o.time = self.duration(&raw.time, limits::SLURM_TIME);
        o.cpus = self.count(&raw.cpus, limits::SLURM_CPUS).map(|n| n as u32);
        if let Some(m) = &raw.mem {
            match mem_value(m.get_ref()) {
                Some(v) => o.mem = Some(v),
                None => self.errors.push(
                    self.src
                        .error(
                            "orch::bad_value",
                            format!("mem must be a size like \"4G\" or \"500M\", not {}", m.get_ref()),
                            Some(m.span()),
                            "here",
                        )
                        .with_help("Slurm's --mem: a number with an optional K, M, G or T (megabytes without)"),
                ),
            }
        }
        if let Some(a) = &raw.args {
            o.args = self.slurm_args(a, "args");
        }
        if let Some(l) = &raw.launch {
            o.launch = match l.get_ref().as_str() {
                "batch" => Some(Launch::Batch),
                "step" => Some(Launch::Step),
                other => {
                    self.err(
                        "orch::bad_value",
                        format!("launch must be batch or step, not `{other}`"),
                        l.span(),
                        "here",
                    );
                    None
                }
            };
        }
        o
    }

    /// Extra `sbatch`/`srun` options, as given, except those orch sets itself (and, in
    /// `allocation`, those that would hide the allocation's id).
    fn slurm_args(&mut self, raw: &Spanned<Vec<Spanned<String>>>, field: &str) -> Vec<String> {
        let refused = match field {
            "allocation" => ALLOCATION_REFUSES,
            _ => &[],
        };
        let mut args = Vec::new();
        for a in raw.get_ref() {
            let word = a.get_ref();
            let owned = ORCH_OWNS
                .iter()
                .map(|o| (o, "orch sets this"))
                .chain(refused.iter().map(|o| (o, "salloc would not print the id")))
                .find(|((opt, _), _)| sets_option(word, opt));
            if let Some(((opt, why), label)) = owned {
                self.errors.push(
                    self.src
                        .error(
                            "orch::slurm_option",
                            format!("{field} may not set `{opt}`: {why}"),
                            Some(a.span()),
                            label,
                        )
                        .with_help("see the Slurm executor section of the README"),
                );
            } else {
                args.push(word.clone());
            }
        }
        args
    }
}

/// `--mem` as Slurm reads it: `4G`, `500M`, `1024` (megabytes); a TOML integer is megabytes.
fn mem_value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::Integer(i) if *i > 0 => Some(i.to_string()),
        toml::Value::String(s) => {
            let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
            let suffix = s.len() - digits.len();
            (!digits.is_empty() && suffix <= 1 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.to_ascii_uppercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::executor::{ExecutorKind, Launch};
    use crate::plan::orchfile::parse;

    fn parse_str(text: &str) -> Result<crate::plan::Plan, Box<crate::plan::PlanError>> {
        parse(Path::new("/p/Orchfile.toml"), text)
    }

    #[test]
    fn placements_parse_at_every_level() {
        let plan = parse_str(
            r#"
[settings]
executor = "slurm"
[settings.slurm]
partition = "main"
time = "30m"
mem = "2g"
args = ["--account=lab"]
max_jobs = 16
poll = "500ms"
allocation = ["--nodes=2"]

[agents.claude]
preset = "claude"
slurm = { cpus = 2 }

[tasks.a]
prompt = "x"
slurm = { launch = "step", mem = 512, args = ["--gres=gpu:1"] }

[tasks.b]
run = "true"
executor = "local"
"#,
        )
        .unwrap();
        let s = &plan.settings;
        assert_eq!(s.placement.executor, Some(ExecutorKind::Slurm));
        assert_eq!(s.placement.slurm.mem.as_deref(), Some("2G"));
        assert_eq!(s.slurm.max_jobs, 16);
        assert_eq!(s.slurm.allocation, ["--nodes=2"]);
        assert_eq!(plan.agents["claude"].placement.slurm.cpus, Some(2));
        let a = plan.slurm_job(&plan.tasks[0], None, None).unwrap();
        assert_eq!(a.name, "orch-a");
        assert_eq!(a.launch, Launch::Step);
        assert_eq!(a.partition.as_deref(), Some("main"));
        assert_eq!(a.time_minutes, Some(30));
        assert_eq!(a.cpus, Some(2), "from the agent");
        assert_eq!(a.mem.as_deref(), Some("512"), "the task's");
        assert_eq!(a.args, ["--account=lab", "--gres=gpu:1"]);
        assert!(plan.slurm_job(&plan.tasks[1], None, None).is_none());
        assert!(
            plan.slurm_job(&plan.tasks[1], None, Some(ExecutorKind::Slurm))
                .is_some(),
            "--executor decides over the plan"
        );
        assert!(
            plan.slurm_job(&plan.tasks[0], Some("sim"), None).is_none(),
            "a sim task runs in orch"
        );
    }

    #[test]
    fn bad_slurm_values_point_at_themselves() {
        let text = r#"
[settings]
executor = "cloud"
[settings.slurm]
max_jobs = 0
poll = "10ms"
[tasks.a]
run = "x"
slurm = { cpus = 0, mem = "lots", launch = "srun", args = ["--output=x", "-J", "ok"] }
"#;
        let e = parse_str(text).unwrap_err();
        let msgs = e.messages();
        for want in [
            "executor must be local or slurm, not `cloud`",
            "max_jobs must be at least 1, not 0",
            "poll must be at least 100ms",
            "cpus must be at least 1, not 0",
            "mem must be a size",
            "launch must be batch or step",
            "args may not set `--output`",
            "args may not set `-J`",
        ] {
            assert!(msgs.iter().any(|m| m.contains(want)), "{want}: {msgs:?}");
        }
        assert_eq!(msgs.len(), 8, "{msgs:?}");
    }

    #[test]
    fn an_allocation_that_would_hide_its_id_is_refused() {
        let text = r#"
[settings.slurm]
allocation = ["--nodes=1", "--quiet", "-Q", "--qui", "--qos=high", "-J", "x"]
args = ["--quiet"]
[tasks.a]
run = "x"
"#;
        let e = parse_str(text).unwrap_err();
        let msgs = e.messages();
        let quiet: Vec<&String> = msgs
            .iter()
            .filter(|m| m.contains("Granted job allocation"))
            .collect();
        assert_eq!(quiet.len(), 3, "--quiet, -Q and --qui, not --qos: {msgs:?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("allocation may not set `-J`")),
            "{msgs:?}"
        );
        assert_eq!(msgs.len(), 4, "a job's own args may be quiet: {msgs:?}");
    }

    #[test]
    fn unknown_slurm_fields_are_refused() {
        let e = parse_str("[tasks.a]\nrun = \"x\"\nslurm = { max_jobs = 3 }\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }
}
