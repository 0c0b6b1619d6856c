//! The Slurm executor on a real one-node cluster (tests/support/slurm): tasks run as batch jobs
//! or steps named `orch-<task-id>`, their exit codes, outputs and results come back through
//! the shared filesystem, orch's timeout cancels the job, agent tasks run as jobs, local and
//! Slurm tasks mix in one build under their own limits, `--json` tells queued from running, and
//! fan-out instances (ids holding `/` and spaces) run as safely named jobs.
//! The tests share one cluster (each names its tasks apart), except the two that need a second
//! partition or a node with room; the faults that change the node's state are in
//! slurm_faults.rs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::slurm::{slurm_project, ClusterOptions, SlurmCluster, SECOND_PARTITION};
use common::{Project, Run};

fn cluster() -> Arc<SlurmCluster> {
    SlurmCluster::shared()
}

/// `orch ARGS` in `p`, pointed at the cluster.
fn orch(c: &SlurmCluster, p: &Project, args: &[&str]) -> Run {
    Run(p.command(args).envs(c.env()).output().unwrap())
}

/// The JSON events of a `--json` run.
fn events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Journal lines naming a Slurm job: (event, job id).
fn journaled_jobs(p: &Project) -> Vec<(String, u64)> {
    p.lines(".orchestrator/journal.jsonl")
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((v["event"].as_str()?.to_string(), v["slurm_job"].as_u64()?))
        })
        .collect()
}

#[test]
fn batch_jobs_run_tasks_and_report_success_and_failure() {
    let c = cluster();
    let p = slurm_project(
        r#"
[tasks.ok-a]
run = "echo \"job=$SLURM_JOB_ID task=$ORCH_TASK_ID\"; echo from-a > a.txt"
outputs = ["a.txt"]

[tasks.ok-b]
run = "cat a.txt; echo 'bad input' >&2; exit 7"
deps = ["ok-a"]
"#,
    );
    let run = orch(&c, &p, &["build", "--json"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(p.read("a.txt"), "from-a\n");
    let result = p.read(".orchestrator/results/agent-01-result.md");
    assert!(
        result.starts_with("job=") && result.contains("task=ok-a"),
        "{result}"
    );
    assert!(
        !result.starts_with("job= "),
        "ran inside a Slurm job: {result}"
    );
    let evs = events(&run);
    let failed = evs
        .iter()
        .find(|e| e["event"] == "task_failed")
        .expect("task_failed");
    assert_eq!(failed["task"], "ok-b");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("exit code 7") && reason.contains("bad input"),
        "{reason}"
    );
    // Each job is journaled when submitted and when it ends.
    let jobs = journaled_jobs(&p);
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    assert_eq!(jobs.iter().filter(|(e, _)| e == "spawned").count(), 2);
    let ids: Vec<u64> = jobs
        .iter()
        .filter(|(e, _)| e == "spawned")
        .map(|j| j.1)
        .collect();
    let states: Vec<String> = ids
        .iter()
        .map(|&id| c.job_state(id).unwrap_or_default())
        .collect();
    assert_eq!(states, ["COMPLETED", "FAILED"]);
    // The job's name is the task's; none is left behind.
    assert_eq!(c.job_info(ids[0]).unwrap()["JobName"], "orch-ok-a");
    c.wait_none_named("orch-ok-", Duration::from_secs(60));
    // Their files are cleaned up after them.
    let left: Vec<_> = std::fs::read_dir(p.path(".orchestrator/slurm"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Up to date now: nothing is submitted again.
    p.write(
        "Orchfile.toml",
        &p.read("Orchfile.toml").replace("exit 7", "exit 0"),
    );
    orch(&c, &p, &["build"]).success();
    let again = orch(&c, &p, &["build", "--json"]).ok();
    assert!(events(&again).iter().all(|e| e["event"] != "task_job"));
    assert_eq!(c.ended_states("orch-ok-a").len(), 1, "ok-a ran once");
}

#[test]
fn the_json_stream_says_when_a_job_runs() {
    let c = cluster();
    let p = slurm_project(
        r#"
[tasks.js-a]
run = "sleep 2; echo done"
"#,
    );
    let run = orch(&c, &p, &["build", "--json"]).ok();
    let states: Vec<String> = events(&run)
        .iter()
        .filter(|e| e["event"] == "task_job" && e["task"] == "js-a")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states.last().map(String::as_str),
        Some("running"),
        "{states:?}"
    );
    let running = events(&run)
        .into_iter()
        .find(|e| e["event"] == "task_job" && e["state"] == "running")
        .unwrap();
    assert_eq!(running["node"], c.node());
    assert!(running["job"].as_str().unwrap().parse::<u64>().is_ok());
}

#[test]
fn orchs_timeout_cancels_the_job() {
    let c = cluster();
    let p = slurm_project(
        r#"
[tasks.to-a]
run = "echo started > started.txt; sleep 120"
timeout = "2s"
"#,
    );
    let run = orch(&c, &p, &["build"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("timed out; Slurm job cancelled"),
        "{}",
        run.stderr()
    );
    assert!(p.exists("started.txt"), "the job ran before it timed out");
    assert!(c.queued_named("orch-to-").is_empty(), "cancel waited for");
    // Cancelled by orch's timeout: the job has no Slurm time limit, which would have ended
    // it as TIMEOUT (and a minute or more later), not a wall-clock bound that a loaded
    // machine could miss.
    let id = journaled_jobs(&p)[0].1;
    assert_eq!(c.job_state(id).as_deref(), Some("CANCELLED"));
}

/// One wording per way a timed-out run is stopped, whoever reports it: the agent's judge said
/// "process group stopped" of a Slurm job before.
#[test]
fn a_timeout_says_how_the_run_was_stopped_for_agents_and_steps_too() {
    let c = cluster();
    let fake = common::fake_claude();
    let p = Project::new(&format!(
        r#"
[settings]
executor = "slurm"
default_agent = "fake"
[settings.slurm]
poll = "200ms"

[agents.fake]
command = ["{}"]
result = "json:result"
env = {{ FAKE_MODE = "hang" }}

[tasks.to-agent]
prompt = "Never answers."
timeout = "2s"
retries = 0

[tasks.to-step]
run = "sleep 120"
timeout = "2s"
slurm = {{ launch = "step" }}

[tasks.to-local]
run = "sleep 120"
timeout = "2s"
executor = "local"
"#,
        fake.display()
    ));
    let run = orch(&c, &p, &["build", "-k", "--json"]);
    assert_eq!(run.code(), 1);
    let reason = |task: &str| {
        events(&run)
            .into_iter()
            .find(|e| e["event"] == "task_failed" && e["task"] == task)
            .unwrap_or_else(|| panic!("{task} did not fail:\n{}", run.stderr()))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason("to-agent"), "timed out; Slurm job cancelled");
    assert_eq!(reason("to-step"), "timed out; Slurm step stopped");
    assert_eq!(reason("to-local"), "timed out; process group stopped");
    assert!(c.queued_named("orch-to-").is_empty(), "cancel waited for");
}

#[test]
fn an_agent_task_runs_as_a_job() {
    let c = cluster();
    let fake = common::fake_claude();
    let p = Project::new(&format!(
        r#"
[settings]
default_agent = "fake"

[agents.fake]
command = ["{}"]
result = "json:result"
executor = "slurm"
env = {{ FAKE_MODE = "ok", FAKE_WRITE = "reports/ag.md" }}
slurm = {{ cpus = 1 }}

[tasks.ag-a]
prompt = "Summarise the repository."
outputs = ["reports/ag.md"]
"#,
        fake.display()
    ));
    let run = orch(&c, &p, &["build", "--json"]).ok();
    assert!(
        events(&run).iter().any(|e| e["event"] == "task_job"),
        "ran on Slurm"
    );
    // The prompt reached it on stdin (from a file the job read), its JSON reply came back.
    let result = p.read(".orchestrator/results/agent-01-result.md");
    assert!(result.contains("ag-a"), "{result}");
    assert_eq!(p.lines(".orchestrator/calls.log"), ["ag-a"]);
    assert_eq!(p.read("reports/ag.md"), "written by fake agent for ag-a\n");
    let finished = events(&run)
        .into_iter()
        .find(|e| e["event"] == "task_finished")
        .unwrap();
    assert_eq!(finished["cost_usd"], 0.0021);
    assert_eq!(c.ended_states("orch-ag-a"), ["COMPLETED"]);
}

#[test]
fn local_and_slurm_tasks_mix_under_their_own_limits() {
    let c = cluster();
    // Each task logs where it ran and when it started and ended. A local task holds its slot
    // until some Slurm job has started (bounded), so that the overlap checked below does not
    // hang on how soon a loaded cluster starts a job; Slurm jobs sharing the local slot
    // would never start, and the local tasks would end without one.
    let stamp = |name: &str, first: &str| {
        format!(
            "{first}echo \"{name} start $(date +%s.%N) ${{SLURM_JOB_ID:-local}}\" >> log.txt; sleep 1; \
             echo \"{name} end $(date +%s.%N)\" >> log.txt"
        )
    };
    let wait_for_a_job =
        "i=0; while [ ! -e job-started ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; ";
    let mut orchfile = String::from("[settings]\njobs = 1\n[settings.slurm]\npoll = \"200ms\"\n");
    for i in 0..3 {
        orchfile.push_str(&format!(
            "\n[tasks.mx-l{i}]\nrun = '{}'\n",
            stamp(&format!("l{i}"), wait_for_a_job)
        ));
        orchfile.push_str(&format!(
            "\n[tasks.mx-s{i}]\nrun = '{}'\nexecutor = \"slurm\"\n",
            stamp(&format!("s{i}"), "touch job-started; ")
        ));
    }
    // A local task after a Slurm one, reading what it wrote.
    orchfile.push_str(
        "\n[tasks.mx-last]\nrun = 'echo $(grep -c start log.txt) > count.txt'\ndeps = [\"mx-s0\", \"mx-l0\"]\noutputs = [\"count.txt\"]\n",
    );
    let p = Project::new(&orchfile);
    orch(&c, &p, &["build"]).ok();
    let mut starts = Vec::new();
    let mut intervals: std::collections::HashMap<String, (f64, f64)> = Default::default();
    for line in p.lines("log.txt") {
        let f: Vec<&str> = line.split_whitespace().collect();
        let t: f64 = f[2].parse().unwrap();
        let e = intervals.entry(f[0].to_string()).or_insert((t, t));
        if f[1] == "start" {
            e.0 = t;
            starts.push((f[0].to_string(), f[3].to_string()));
        } else {
            e.1 = t;
        }
    }
    for (name, job) in &starts {
        assert_eq!(
            name.starts_with('s'),
            job != "local",
            "{name} ran in {job}: local tasks here, Slurm ones in a job"
        );
    }
    let locals: Vec<(f64, f64)> = (0..3).map(|i| intervals[&format!("l{i}")]).collect();
    for a in 0..3 {
        for b in a + 1..3 {
            let (x, y) = (locals[a], locals[b]);
            assert!(x.1 <= y.0 || y.1 <= x.0, "-j 1 holds for local tasks");
        }
    }
    let overlaps = (0..3).any(|i| {
        let s = intervals[&format!("s{i}")];
        locals.iter().any(|l| s.0 < l.1 && l.0 < s.1)
    });
    assert!(
        overlaps,
        "Slurm jobs run beside the local task, not in its slot"
    );
    assert!(p.read("count.txt").trim().parse::<u32>().unwrap() >= 2);
}

#[test]
fn steps_run_in_one_allocation_that_ends_with_the_build() {
    let c = cluster();
    let mut orchfile = String::from(
        "[settings]\nexecutor = \"slurm\"\n[settings.slurm]\nlaunch = \"step\"\nmax_jobs = 4\npoll = \"200ms\"\n",
    );
    for i in 0..8 {
        orchfile.push_str(&format!(
            "\n[tasks.st-{i}]\nrun = 'echo \"$SLURM_JOB_ID $SLURM_STEP_ID\" > out/{i}.txt'\noutputs = [\"out/{i}.txt\"]\n"
        ));
    }
    orchfile.push_str("\n[tasks.st-bad]\nrun = 'echo nope >&2; exit 3'\n");
    let p = Project::new(&orchfile);
    std::fs::create_dir_all(p.path("out")).unwrap();
    let run = orch(&c, &p, &["build", "-k"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("exit code 3") && run.stderr().contains("nope"),
        "{}",
        run.stderr()
    );
    let allocations: std::collections::BTreeSet<String> = (0..8)
        .map(|i| {
            let line = p.read(&format!("out/{i}.txt"));
            line.split_whitespace().next().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(allocations.len(), 1, "one allocation: {allocations:?}");
    let alloc: u64 = allocations.iter().next().unwrap().parse().unwrap();
    // The allocation is journaled while held, and released at the end of the build.
    let jobs = journaled_jobs(&p);
    assert_eq!(
        jobs,
        [
            ("spawned".to_string(), alloc),
            ("reaped".to_string(), alloc)
        ]
    );
    let info = c.job_info(alloc).unwrap();
    assert_eq!(info["JobName"], "orch-allocation");
    // Granted by salloc or queued as a holder batch job, as the shared node's room allowed:
    // the_step_allocation_lands_where_sbatch_variables_send_batch_jobs checks the grant.
    assert!(c.squeue_jobs().iter().all(|j| j.id != alloc));
    assert_eq!(c.job_state(alloc).as_deref(), Some("CANCELLED"));
}

#[test]
fn fan_out_instances_run_as_jobs_named_safely() {
    let c = cluster();
    let p = slurm_project(
        r#"
[tasks.fo]
foreach = ["src/a.ts", "b c"]
run = "i=0; while [ ! -e go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; printf '%s\n' {{ item }} >> ran.log"
"#,
    );
    // The jobs wait for `go` until orch has said they are queued or run: a job that ends before
    // orch's first look at the queue is never seen queued or running, so has no task_job event.
    let out = p.path("events.jsonl");
    let err = p.path("orch.err");
    let mut child = p
        .command(&["build", "--json"])
        .envs(c.env())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let seen = |task: &str| {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|e| e["event"] == "task_job" && e["task"] == task)
            })
    };
    let end = std::time::Instant::now() + Duration::from_secs(120);
    while !(seen("fo[src/a.ts]") && seen("fo[b c]")) {
        if std::time::Instant::now() >= end || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no task_job event of each instance within 120 s:\n{}\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    p.write("go", "");
    let end = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("orch did not finish within 120 s of `go`");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&err).unwrap()
    );
    let mut ran: Vec<String> = p.read("ran.log").lines().map(str::to_string).collect();
    ran.sort();
    assert_eq!(ran, ["b c", "src/a.ts"]);
    let mut names: Vec<String> = journaled_jobs(&p)
        .iter()
        .filter(|(e, _)| e == "spawned")
        .map(|&(_, id)| c.job_info(id).unwrap()["JobName"].clone())
        .collect();
    names.sort();
    assert_eq!(names, ["orch-fo[b_c]", "orch-fo[src_a.ts]"]);
}

/// A directory holding `salloc`: a script that runs `body` and then the cluster's own salloc.
fn salloc_wrapper(c: &SlurmCluster, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let salloc = dir.path().join("salloc");
    let real = c.dir().join("bin/salloc");
    let script = format!(
        "#!/bin/sh\n{}\n",
        body.replace("REAL", &real.display().to_string())
    );
    std::fs::write(&salloc, script).unwrap();
    std::fs::set_permissions(&salloc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// `orch ARGS` in `p`, pointed at the cluster, with `first` ahead of the cluster's commands in
/// PATH.
fn command_with_path_first(
    c: &SlurmCluster,
    p: &Project,
    first: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let mut command = p.command(args);
    command.envs(c.env());
    let path = c.env().into_iter().find(|(k, _)| k == "PATH").unwrap().1;
    command.env("PATH", format!("{}:{path}", first.display()));
    command
}

#[test]
fn the_step_allocation_lands_where_sbatch_variables_send_batch_jobs() {
    // A cluster of its own, for the second partition; the step comes after the batch job, as
    // salloc --immediate is refused while a batch job waits ahead of it in the queue.
    let c = SlurmCluster::start_with(ClusterOptions {
        second_partition: true,
        ..Default::default()
    });
    let p = slurm_project(
        r#"
[tasks.sb-batch]
run = "echo batch"
[tasks.sb-step]
run = "echo step"
deps = ["sb-batch"]
slurm = { launch = "step" }
"#,
    );
    // What salloc was given, whether or not it could grant at once (it gives up after 1 s, which
    // a loaded machine's controller may take).
    let seen = p.path("salloc.env");
    let wrapper = salloc_wrapper(
        &c,
        &format!(
            "env | grep '^SALLOC_' > {}\nexec REAL \"$@\"",
            seen.display()
        ),
    );
    let mut command = command_with_path_first(&c, &p, wrapper.path(), &["build", "--json"]);
    command
        .env("SBATCH_PARTITION", SECOND_PARTITION)
        .env("SBATCH_ACCOUNT", "orch-lab")
        .env_remove("SALLOC_PARTITION")
        .env_remove("SALLOC_ACCOUNT");
    let run = Run(command.output().unwrap()).ok();
    let mut given = p.lines("salloc.env");
    given.sort();
    assert_eq!(
        given,
        [
            "SALLOC_ACCOUNT=orch-lab".to_string(),
            format!("SALLOC_PARTITION={SECOND_PARTITION}")
        ]
    );
    let job_of = |task: &str| -> u64 {
        events(&run)
            .iter()
            .find(|e| e["event"] == "task_job" && e["task"] == task)
            .and_then(|e| e["job"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("no task_job event of {task}: {}", run.stdout()))
    };
    let batch = c.job_info(job_of("sb-batch")).unwrap();
    let allocation = c.job_info(job_of("sb-step")).unwrap();
    assert_eq!(allocation["JobName"], "orch-allocation");
    // Granted by salloc (BatchFlag=0) or, when it could not grant at once, a holder batch job:
    // either way where the batch job went.
    eprintln!("the allocation's BatchFlag: {}", allocation["BatchFlag"]);
    for (what, info) in [("the batch job", &batch), ("the allocation", &allocation)] {
        assert_eq!(info["Partition"], SECOND_PARTITION, "{what}: {info:?}");
        assert_eq!(info["Account"], "orch-lab", "{what}: {info:?}");
    }
}

#[test]
fn a_grant_salloc_does_not_name_is_cancelled_not_left_running() {
    // The plan refuses `--quiet` in `allocation`; a salloc that hides the line anyway (a
    // site's wrapper, another version) stands in here: the real one, its "Granted" line dropped,
    // its exit code kept in a file. A cluster of its own: the shared node may be too full for
    // salloc --immediate for a while.
    let c = SlurmCluster::start();
    let p = slurm_project("launch = \"step\"\n[tasks.ug-step]\nrun = \"echo step\"\n");
    let code_file = p.path("salloc.code");
    let wrapper = salloc_wrapper(
        &c,
        &format!(
            "said=$(REAL \"$@\" 2>&1); code=$?; echo $code > {}\n\
             printf '%s\\n' \"$said\" | grep -v 'Granted job allocation' >&2\nexit $code",
            code_file.display()
        ),
    );
    // salloc --immediate gives up after 1 s, which a loaded machine's controller may take; the
    // step then runs in a holder batch job, which tells nothing here: a few builds, bounded.
    for _ in 0..3 {
        let run = Run(command_with_path_first(&c, &p, wrapper.path(), &["build"])
            .output()
            .unwrap());
        if p.read("salloc.code").trim() != "0" {
            eprintln!("salloc did not grant at once; again");
            continue;
        }
        assert_eq!(run.code(), 1, "{}", run.stderr());
        let err = run.stderr();
        let said = err
            .split("not the allocation it granted; cancelled [")
            .nth(1)
            .unwrap_or_else(|| panic!("says what salloc said and what it cancelled: {err}"));
        let job: u64 = said.split(']').next().unwrap().parse().unwrap();
        let info = c.wait_job_end(job, Duration::from_secs(60));
        assert_eq!(info["JobName"], "orch-allocation", "{info:?}");
        assert_eq!(info["JobState"], "CANCELLED", "{info:?}");
        return;
    }
    panic!("salloc never granted an allocation at once in 3 builds (a loaded machine?)");
}
