//! A real one-node Slurm cluster for tests: [`SlurmCluster::start`] installs the Debian packages
//! when missing (tests/support/slurm/setup.sh), starts munged, slurmctld and slurmd under a temp
//! dir (tests/support/slurm/cluster.sh) and hands back a guard whose Drop cancels every job, stops
//! the daemons and removes the dir, also when the test panics. A test process killed outright
//! (SIGKILL) never runs that Drop: each cluster names its owner process, and the next start, in
//! any test process, first stops the clusters whose owner is gone. A cluster that cannot be
//! installed or started fails the test with the reason and the daemons' log tails: it never skips.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Job states after which a job never runs again (squeue/scontrol spelling).
pub const TERMINAL_STATES: &[&str] = &[
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
];

/// How a cluster differs from the default one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Also run slurmdbd on MariaDB, so `sacct` answers (installs both when missing).
    pub accounting: bool,
    /// Slurm's own scheduler delays (batch_sched_delay=3) instead of the test config's 0.
    pub stock_scheduler: bool,
    /// The node is also in a partition named [`SECOND_PARTITION`] (not the default).
    pub second_partition: bool,
}

/// The partition `ClusterOptions::second_partition` adds.
pub const SECOND_PARTITION: &str = "second";

pub struct SlurmCluster {
    dir: PathBuf,
    conf: PathBuf,
    node: String,
    stopped: bool,
}

/// A job as `squeue` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: u64,
    pub name: String,
    pub state: String,
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/slurm")
}

/// Runs setup.sh once per test process; panics with its output when it fails.
fn install(accounting: bool) {
    static PLAIN: OnceLock<()> = OnceLock::new();
    static WITH_DB: OnceLock<()> = OnceLock::new();
    let (once, args): (_, &[&str]) = match accounting {
        false => (&PLAIN, &[]),
        true => (&WITH_DB, &["--accounting"]),
    };
    once.get_or_init(|| {
        let out = Command::new(support_dir().join("setup.sh"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tests/support/slurm/setup.sh");
        assert!(
            out.status.success(),
            "installing Slurm failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Where the clusters' directories are: short, because munged's socket lives inside them and a
/// Unix socket path has at most 107 bytes.
pub fn clusters_base() -> PathBuf {
    let tmp = std::env::temp_dir();
    if tmp.as_os_str().len() <= 40 {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// A fresh, empty directory for one cluster (cluster.sh removes it at stop).
fn cluster_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("orch-slurm-")
        .tempdir_in(clusters_base())
        .expect("creating the cluster's dir")
        .keep()
}

/// Stops the clusters (`cluster.sh sweep`) whose owner process is gone: a test process
/// SIGKILLed before its guards' Drop ran left them. Only those: a cluster names its owner
/// (pid and start time) and its daemons by pid files, so nothing else on the machine is touched.
fn stop_orphaned_clusters() {
    let out = scrubbed(Command::new(support_dir().join("cluster.sh")))
        .arg("sweep")
        .arg(clusters_base())
        .stdin(Stdio::null())
        .output()
        .expect("running cluster.sh sweep");
    let said = String::from_utf8_lossy(&out.stderr);
    if !said.trim().is_empty() {
        eprintln!("{}", said.trim_end());
    }
    assert!(
        out.status.success(),
        "cluster.sh sweep failed ({}): {said}",
        out.status
    );
}

/// A job as the controller's job-completion log records its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedJob {
    pub id: u64,
    pub name: String,
    pub state: String,
}

impl SlurmCluster {
    /// A cluster without accounting, as most tests want (and as many users' clusters are).
    pub fn start() -> SlurmCluster {
        SlurmCluster::start_with(ClusterOptions::default())
    }

    /// One cluster for the tests of this process that leave the node as they found it
    /// (they tell their jobs apart by name): started by the first that asks, stopped when the
    /// last one holding it ends (a later test starts another).
    pub fn shared() -> Arc<SlurmCluster> {
        static SHARED: Mutex<Weak<SlurmCluster>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.upgrade() {
            return c;
        }
        let c = Arc::new(SlurmCluster::start());
        *slot = Arc::downgrade(&c);
        c
    }

    /// Jobs still pending, running or completing whose name starts with `prefix`.
    pub fn queued_named(&self, prefix: &str) -> Vec<QueuedJob> {
        self.squeue_jobs()
            .into_iter()
            .filter(|j| j.name.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded) until no job whose name starts with `prefix` is listed; panics with
    /// what is left otherwise.
    #[track_caller]
    pub fn wait_none_named(&self, prefix: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let left = self.queued_named(prefix);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "jobs {prefix}* still queued after {limit:?}: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every job that ended, from the job-completion log (`JobCompType=jobcomp/filetxt`).
    pub fn ended_jobs(&self) -> Vec<EndedJob> {
        let text = std::fs::read_to_string(self.dir.join("log/jobcomp.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f = parse_scontrol_record(line);
                Some(EndedJob {
                    id: f.get("JobId")?.parse().ok()?,
                    name: f.get("Name")?.clone(),
                    state: f.get("JobState")?.clone(),
                })
            })
            .collect()
    }

    /// The end states of the jobs named `name`, in the order they ended.
    pub fn ended_states(&self, name: &str) -> Vec<String> {
        self.ended_jobs()
            .into_iter()
            .filter(|j| j.name == name)
            .map(|j| j.state)
            .collect()
    }

    pub fn start_with(options: ClusterOptions) -> SlurmCluster {
        install(options.accounting);
        stop_orphaned_clusters();
        let began = Instant::now();
        // A second try in a fresh dir with fresh ports: the free ports cluster.sh picks may be
        // taken between its look and the daemons' bind (by a cluster another test starts).
        let mut failures = Vec::new();
        let dir = loop {
            let dir = cluster_dir();
            let mut start = Command::new(support_dir().join("cluster.sh"));
            start
                .arg("start")
                .arg(&dir)
                .arg("--owner")
                .arg(std::process::id().to_string());
            if options.accounting {
                start.arg("--accounting");
            }
            if options.stock_scheduler {
                start.arg("--stock-scheduler");
            }
            if options.second_partition {
                start.arg("--second-partition");
            }
            let out = scrubbed(start).output().expect("running cluster.sh start");
            if out.status.success() {
                break dir;
            }
            // cluster.sh stopped what it had started; its output holds the logs' tails.
            let _ = std::fs::remove_dir_all(&dir);
            failures.push(format!(
                "starting the Slurm cluster in {} failed ({}):\n{}{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            assert!(failures.len() < 2, "{}", failures.join("\n"));
        };
        eprintln!(
            "slurm cluster up in {} ms ({})",
            began.elapsed().as_millis(),
            dir.display()
        );
        let conf = dir.join("slurm.conf");
        let node = std::fs::read_to_string(&conf)
            .expect("slurm.conf")
            .lines()
            .find_map(|l| l.strip_prefix("NodeName="))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("a NodeName line in slurm.conf")
            .to_string();
        SlurmCluster {
            dir,
            conf,
            node,
            stopped: false,
        }
    }

    /// The generated slurm.conf; `SLURM_CONF` points every Slurm command at it.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The directory holding the cluster's state, spool and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The one node's name (`hostname -s`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Variables to give a child process so its Slurm commands reach this cluster: `SLURM_CONF`,
    /// and `PATH` led by the cluster's wrappers of the client commands (which set `SLURM_CONF`
    /// themselves, for tools that scrub `SLURM_*` before a nested `srun`). A child should also
    /// lose any inherited `SLURM_*` (see [`SlurmCluster::command`]).
    pub fn env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("SLURM_CONF".into(), self.conf.display().to_string()),
            (
                "PATH".into(),
                format!("{}:{path}", self.dir.join("bin").display()),
            ),
        ]
    }

    /// `program` set up to talk to this cluster, without the `SLURM_*` variables of a job the
    /// test process itself may run in. It runs in the temp dir, so a job submitted without
    /// `--chdir`/`--output` leaves nothing in the source tree.
    pub fn command(&self, program: &str) -> Command {
        let mut c = scrubbed(Command::new(program));
        c.envs(self.env())
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null());
        c
    }

    /// Runs a Slurm command; panics with its output when it fails.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a Slurm command, whatever its exit.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    /// `sbatch --parsable` with these options and a `--wrap` script; the job id.
    #[track_caller]
    pub fn submit(&self, options: &[&str], script: &str) -> u64 {
        let wrap = format!("--wrap={script}");
        let mut args = vec!["--parsable"];
        args.extend_from_slice(options);
        args.push(&wrap);
        let out = self.run("sbatch", &args);
        out.trim()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("sbatch --parsable printed {out:?}: {e}"))
    }

    /// Jobs the controller lists as pending, running or completing.
    pub fn squeue_jobs(&self) -> Vec<QueuedJob> {
        self.run("squeue", &["--noheader", "--format=%i|%j|%T"])
            .lines()
            .map(|line| {
                let mut f = line.splitn(3, '|');
                QueuedJob {
                    id: f.next().unwrap().trim().parse().unwrap(),
                    name: f.next().unwrap().to_string(),
                    state: f.next().unwrap().trim().to_string(),
                }
            })
            .collect()
    }

    /// `scontrol show job -o ID` as key/value pairs; None once the controller has forgotten the
    /// job (MinJobAge after it ended) or never knew it.
    pub fn job_info(&self, id: u64) -> Option<BTreeMap<String, String>> {
        let out = self.output("scontrol", &["show", "job", "--oneliner", &id.to_string()]);
        if !out.status.success() {
            return None;
        }
        Some(parse_scontrol_record(&String::from_utf8_lossy(&out.stdout)))
    }

    /// A job's `JobState` field, None as for [`SlurmCluster::job_info`].
    pub fn job_state(&self, id: u64) -> Option<String> {
        self.job_info(id).and_then(|i| i.get("JobState").cloned())
    }

    /// Polls `scontrol show job` (bounded) until the job reaches a terminal state; its record.
    #[track_caller]
    pub fn wait_job_end(&self, id: u64, limit: Duration) -> BTreeMap<String, String> {
        let end = Instant::now() + limit;
        loop {
            let info = self.job_info(id);
            if let Some(info) = &info {
                if TERMINAL_STATES.contains(&info["JobState"].as_str()) {
                    return info.clone();
                }
            }
            assert!(
                Instant::now() < end,
                "job {id} not ended after {limit:?}: {info:?}\n{}",
                self.log_tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Drains the node: its running jobs finish, new ones wait in the queue.
    pub fn drain(&self) {
        let node = format!("nodename={}", self.node);
        self.run(
            "scontrol",
            &["update", &node, "state=drain", "reason=orch-test"],
        );
    }

    /// Returns a drained node to service.
    pub fn resume(&self) {
        let node = format!("nodename={}", self.node);
        self.run("scontrol", &["update", &node, "state=resume"]);
    }

    /// `sinfo`'s compact state of the node (`idle`, `alloc`, `mix`, `drain`, `drng`, `down`...).
    pub fn node_state(&self) -> String {
        self.run(
            "sinfo",
            &["--noheader", "--nodes", &self.node, "--format=%t"],
        )
        .trim()
        .to_string()
    }

    /// The last lines of each daemon's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let out = Command::new(support_dir().join("cluster.sh"))
            .arg("logs")
            .arg(&self.dir)
            .output();
        match out {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(cluster.sh logs: {e})"),
        }
    }

    /// Cancels every job, stops the daemons (bounded, SIGKILL fallback) and removes the dir.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) -> Option<String> {
        if std::mem::replace(&mut self.stopped, true) {
            return None;
        }
        let out = scrubbed(Command::new(support_dir().join("cluster.sh")))
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        let failure = match out {
            Ok(out) if out.status.success() && !self.dir.exists() => return None,
            Ok(out) => format!(
                "cluster.sh stop {} ({}): {}{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cluster.sh stop {}: {e}", self.dir.display()),
        };
        Some(failure)
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        if let Some(failure) = self.stop_inner() {
            if std::thread::panicking() {
                eprintln!("{failure}");
            } else {
                panic!("{failure}");
            }
        }
    }
}

/// A command without the `SLURM_*` variables the test process may have inherited (say, when the
/// suite itself runs inside a Slurm job): they would point its Slurm commands elsewhere.
fn scrubbed(mut c: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SLURM_") {
            c.env_remove(key);
        }
    }
    c
}

/// `Key=Value Key=Value ...` as scontrol prints one record per line (`--oneliner`). Values hold
/// no spaces except the last field's on some records, which this keeps whole.
pub fn parse_scontrol_record(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last_key: Option<String> = None;
    for word in line.split_whitespace() {
        match word.split_once('=') {
            Some((key, value))
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/:_".contains(c)) =>
            {
                fields.insert(key.to_string(), value.to_string());
                last_key = Some(key.to_string());
            }
            _ => {
                if let Some(key) = &last_key {
                    let v: &mut String = fields.get_mut(key).unwrap();
                    v.push(' ');
                    v.push_str(word);
                }
            }
        }
    }
    fields
}

/// The median of some durations, in milliseconds.
pub fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    let n = samples.len();
    let mid = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    mid.as_secs_f64() * 1000.0
}

/// A project of `tasks` (Orchfile text) run as Slurm jobs, their state polled every 200 ms.
pub fn slurm_project(tasks: &str) -> super::Project {
    super::Project::new(&format!(
        "[settings]\nexecutor = \"slurm\"\n[settings.slurm]\npoll = \"200ms\"\n{tasks}"
    ))
}
