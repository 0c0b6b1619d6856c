//! The real one-node Slurm cluster the Slurm executor is tested on (tests/common/slurm.rs): that
//! it starts and stops cleanly, and how Slurm behaves in the cases the executor must handle,
//! learnt without accounting (sbatch --wait, squeue, scontrol show job, srun exit codes):
//! success and failure exit codes, time limits, scancel of a process tree, a drained or downed
//! node, the job options the executor passes. Also measures submit and start latency, and a step
//! in a held allocation against one job per task (figures printed; tests/support/slurm/README.md
//! records them). One cluster per test: one starts in well under a second. A cluster whose test
//! process was SIGKILLed is stopped by the next start.

mod common;

use common::slurm::{median_ms, ClusterOptions, SlurmCluster};
use common::{alive, wait_for};
use std::path::Path;
use std::time::{Duration, Instant};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sbatch` options that keep a job's output in the test's dir, not in the cwd of cargo.
fn output_in(dir: &Path) -> String {
    format!("--output={}/slurm-%j.out", dir.display())
}

#[test]
fn cluster_starts_and_stops_without_leaving_a_daemon() {
    let began = Instant::now();
    let cluster = SlurmCluster::start();
    let started = began.elapsed();
    assert_eq!(cluster.node_state(), "idle");
    let dir = cluster.dir().to_path_buf();
    let pids: Vec<i32> = ["munged", "slurmctld", "slurmd"]
        .iter()
        .map(|d| {
            read(&dir.join(format!("run/{d}.pid")))
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(pids.iter().all(|&p| alive(p)), "daemons {pids:?} running");
    let began = Instant::now();
    cluster.stop();
    eprintln!(
        "cluster start {} ms, stop {} ms",
        started.as_millis(),
        began.elapsed().as_millis()
    );
    assert!(pids.iter().all(|&p| !alive(p)), "daemons {pids:?} gone");
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// Set in the child of [`a_sigkilled_owners_cluster_is_stopped_by_the_next_start`]: that
/// test, run again, then only starts a cluster and waits to be killed.
const OWNER_CHILD: &str = "ORCH_TEST_CLUSTER_OWNER_CHILD";

/// Whether `pid` is alive and one of the cluster's in `dir` (its command line names it), so a
/// recycled pid does not count.
fn daemon_of(dir: &Path, pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    alive(pid) && String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
}

#[test]
fn a_sigkilled_owners_cluster_is_stopped_by_the_next_start() {
    const NAME: &str = "a_sigkilled_owners_cluster_is_stopped_by_the_next_start";
    if std::env::var_os(OWNER_CHILD).is_some() {
        let cluster = SlurmCluster::start();
        println!("cluster-dir={}", cluster.dir().display());
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        // The parent SIGKILLs this process long before; if it does not, Drop stops the cluster.
        std::thread::sleep(Duration::from_secs(300));
        return;
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture"])
        .env(OWNER_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(dir) = line.strip_prefix("cluster-dir=") {
                let _ = tx.send(std::path::PathBuf::from(dir));
            }
        }
    });
    let dir = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the child never said its cluster was up:\n{}",
                read(log.path())
            )
        });
    let pids: Vec<(&str, i32)> = ["munged", "slurmctld", "slurmd"]
        .into_iter()
        .map(|d| {
            (
                d,
                read(&dir.join(format!("run/{d}.pid")))
                    .trim()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    child.kill().unwrap(); // SIGKILL: the child's Drop never runs
    child.wait().unwrap();
    assert!(
        pids.iter().all(|&(_, pid)| daemon_of(&dir, pid)),
        "the killed owner's daemons {pids:?} outlive it (what the next start must clean up)"
    );

    let next = SlurmCluster::start();
    wait_for(
        "the SIGKILLed owner's daemons to exit",
        Duration::from_secs(60),
        || pids.iter().all(|&(_, pid)| !daemon_of(&dir, pid)),
    );
    assert!(!dir.exists(), "{} removed", dir.display());
    assert_eq!(next.node_state(), "idle", "the new cluster runs");
}

#[test]
fn sbatch_wait_runs_a_job_that_writes_to_the_shared_filesystem() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let out = cluster
        .command("sbatch")
        .current_dir(work.path())
        .args(["--wait", &output_in(work.path())])
        .arg("--wrap=echo \"hello from $SLURM_JOB_ID\" > result.txt")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", cluster.log_tails());
    // "Submitted batch job N"
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.split_whitespace().last().unwrap();
    assert_eq!(
        read(&work.path().join("result.txt")),
        format!("hello from {id}\n")
    );
    assert!(cluster.squeue_jobs().is_empty());
}

#[test]
fn exit_codes_are_learnt_without_accounting() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let out = output_in(work.path());
    let ok = cluster.submit(&[&out], "exit 0");
    let failing = cluster.submit(&[&out], "exit 3");
    let ok = cluster.wait_job_end(ok, Duration::from_secs(60));
    let failing = cluster.wait_job_end(failing, Duration::from_secs(60));
    assert_eq!(
        (ok["JobState"].as_str(), ok["ExitCode"].as_str()),
        ("COMPLETED", "0:0")
    );
    assert_eq!(
        (failing["JobState"].as_str(), failing["ExitCode"].as_str()),
        ("FAILED", "3:0")
    );

    // `sbatch --wait` and `srun` exit with the job's or the task's code.
    let wait = cluster.output("sbatch", &["--wait", &out, "--wrap=exit 4"]);
    assert_eq!(wait.status.code(), Some(4), "{wait:?}");
    let srun = cluster.output("srun", &["bash", "-c", "exit 7"]);
    assert_eq!(srun.status.code(), Some(7), "{srun:?}");

    // The cluster has no accounting: sacct cannot tell.
    let sacct = cluster.output("sacct", &["-j", "1"]);
    assert!(!sacct.status.success());
    let says = String::from_utf8_lossy(&sacct.stdout) + String::from_utf8_lossy(&sacct.stderr);
    assert!(says.contains("accounting storage is disabled"), "{says}");
}

#[test]
fn a_time_limit_ends_the_job_in_state_timeout() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    // A minute is the smallest limit: --time is in minutes; slurmctld checks limits every 30 s.
    let began = Instant::now();
    let id = cluster.submit(&[&output_in(work.path()), "--time=1"], "sleep 600");
    let info = cluster.wait_job_end(id, Duration::from_secs(150));
    eprintln!(
        "--time=1 job ended after {:.0} s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(info["JobState"], "TIMEOUT", "{info:?}");
    assert_eq!(info["Reason"], "TimeLimit");
    // SIGTERM (SIGKILL KillWait later): the code shows the script's signal ("0:15") or, when
    // the shell outlived its child, the shell's own exit ("143:0"); JobState is what tells.
    assert!(
        ["0:15", "143:0", "0:9"].contains(&info["ExitCode"].as_str()),
        "{info:?}"
    );
}

#[test]
fn scancel_ends_a_running_job_and_its_whole_process_tree() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let pids = work.path().join("pids");
    // The batch shell, a child, and a grandchild under a second shell.
    let script = format!(
        "echo $$ >> {p}; sleep 600 & echo $! >> {p}; \
         bash -c 'sleep 600 & echo $! >> {p}; wait' & echo $! >> {p}; wait",
        p = pids.display()
    );
    let id = cluster.submit(&[&output_in(work.path())], &script);
    wait_for("the job's 4 processes", Duration::from_secs(30), || {
        std::fs::read_to_string(&pids).is_ok_and(|s| s.lines().count() == 4)
    });
    let pids: Vec<i32> = read(&pids).lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.iter().all(|&p| alive(p)));
    assert_eq!(cluster.job_state(id).as_deref(), Some("RUNNING"));

    cluster.run("scancel", &[&id.to_string()]);
    let info = cluster.wait_job_end(id, Duration::from_secs(30));
    assert_eq!(info["JobState"], "CANCELLED");
    wait_for(
        "the job's processes to exit",
        Duration::from_secs(20),
        || pids.iter().all(|&p| !alive(p)),
    );
    wait_for("squeue to forget the job", Duration::from_secs(20), || {
        cluster.squeue_jobs().is_empty()
    });
}

#[test]
fn a_drained_node_finishes_its_running_job_and_starts_no_new_one() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let out = output_in(work.path());
    let running = cluster.submit(&[&out], "sleep 4");
    wait_for("the job to run", Duration::from_secs(30), || {
        cluster.job_state(running).as_deref() == Some("RUNNING")
    });
    let node = format!("nodename={}", cluster.node());
    cluster.run("scontrol", &["update", &node, "state=drain", "reason=test"]);
    assert_eq!(cluster.node_state(), "drng");
    let queued = cluster.submit(&[&out], "true");

    let info = cluster.wait_job_end(running, Duration::from_secs(30));
    assert_eq!(info["JobState"], "COMPLETED");
    assert_eq!(cluster.node_state(), "drain");
    let pending = cluster.job_info(queued).unwrap();
    assert_eq!(pending["JobState"], "PENDING", "{pending:?}");
    eprintln!(
        "job pending on a drained node: Reason={}",
        pending["Reason"]
    );

    cluster.run("scontrol", &["update", &node, "state=resume"]);
    let info = cluster.wait_job_end(queued, Duration::from_secs(30));
    assert_eq!(info["JobState"], "COMPLETED");
}

#[test]
fn a_node_set_down_requeues_a_running_job_or_fails_it_with_no_requeue() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let out = output_in(work.path());
    let log = work.path().join("runs");
    let script = format!(
        "echo run $SLURM_RESTART_COUNT >> {}; sleep 600",
        log.display()
    );
    let requeued = cluster.submit(&[&out], &script);
    let failing = cluster.submit(&[&out, "--no-requeue"], &script);
    wait_for("both jobs to run", Duration::from_secs(30), || {
        [requeued, failing]
            .iter()
            .all(|&j| cluster.job_state(j).as_deref() == Some("RUNNING"))
    });
    // RUNNING comes before the script's first line: on a busy machine, a while before.
    wait_for("both scripts to start", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 2)
    });

    let node = format!("nodename={}", cluster.node());
    cluster.run("scontrol", &["update", &node, "state=down", "reason=test"]);
    let info = cluster.wait_job_end(failing, Duration::from_secs(30));
    assert_eq!(info["JobState"], "NODE_FAIL", "{info:?}");
    // The default: back to the queue under the same id, its restart count up, held until the
    // launch credential's lifetime (AuthInfo cred_expire, 120 s) has passed.
    wait_for("the job to be requeued", Duration::from_secs(30), || {
        cluster
            .job_info(requeued)
            .is_some_and(|i| i["Restarts"] == "1")
    });
    let info = cluster.job_info(requeued).unwrap();
    assert_eq!(info["JobState"], "PENDING", "{info:?}");
    let now = String::from_utf8(
        std::process::Command::new("date")
            .arg("+%Y-%m-%dT%H:%M:%S")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // scontrol's times are local, ISO-like: they compare as strings.
    assert!(
        info["EligibleTime"].as_str() > now.trim(),
        "eligible later: {info:?}"
    );
    assert_eq!(read(&log).lines().count(), 2, "each job ran once so far");
    // slurmd still answers, so with ReturnToService=2 the node comes straight back.
    wait_for("the node to return", Duration::from_secs(30), || {
        cluster.node_state() == "idle"
    });
    cluster.run("scancel", &[&requeued.to_string()]);
}

#[test]
fn the_executors_job_options_are_accepted() {
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let id = cluster.submit(
        &[
            &output_in(work.path()),
            "--job-name=orch-build-1",
            "--partition=debug",
            "--cpus-per-task=2",
            "--mem=100M",
            "--time=5",
        ],
        "echo $SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE $SLURM_JOB_NAME",
    );
    let info = cluster.wait_job_end(id, Duration::from_secs(60));
    assert_eq!(info["JobState"], "COMPLETED");
    assert_eq!(info["JobName"], "orch-build-1");
    assert_eq!(info["Partition"], "debug");
    assert_eq!(info["CPUs/Task"], "2");
    assert_eq!(info["MinMemoryNode"], "100M");
    assert_eq!(info["TimeLimit"], "00:05:00");
    let printed = read(&work.path().join(format!("slurm-{id}.out")));
    assert_eq!(printed, "2 100 orch-build-1\n");
    // squeue selects by name, as the executor finds its jobs after a restart.
    let held = cluster.submit(&["--job-name=orch-x", "--hold"], "true");
    let listed = cluster.run("squeue", &["--noheader", "--name=orch-x", "--format=%i"]);
    assert_eq!(listed.trim(), held.to_string());
    cluster.run("scancel", &[&held.to_string()]);
}

#[test]
fn two_clusters_run_side_by_side() {
    let first = SlurmCluster::start();
    let second = SlurmCluster::start();
    assert_ne!(first.conf(), second.conf());
    let a = first.submit(&["--hold", "--job-name=on-first"], "true");
    let b = second.submit(&["--hold", "--job-name=on-second"], "true");
    let names =
        |c: &SlurmCluster| -> Vec<String> { c.squeue_jobs().into_iter().map(|j| j.name).collect() };
    assert_eq!(names(&first), ["on-first"]);
    assert_eq!(names(&second), ["on-second"]);
    first.run("scancel", &[&a.to_string()]);
    second.run("scancel", &[&b.to_string()]);
}

/// Seconds from `began` to the Unix time a job wrote into `stamp`.
fn started_after(stamp: &Path, began: std::time::SystemTime) -> Duration {
    let at: f64 = read(stamp).trim().parse().unwrap();
    let since = at
        - began
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    Duration::from_secs_f64(since.max(0.0))
}

#[test]
fn measure_submit_and_start_latency() {
    for (label, options) in [
        ("test config", ClusterOptions::default()),
        (
            "stock scheduler",
            ClusterOptions {
                stock_scheduler: true,
                ..Default::default()
            },
        ),
    ] {
        let cluster = SlurmCluster::start_with(options);
        let work = tempfile::tempdir().unwrap();
        let out = output_in(work.path());
        // 20 sbatch calls in a row; then when each job's script began.
        let mut submits = Vec::new();
        let mut jobs = Vec::new();
        for i in 0..20 {
            let stamp = work.path().join(format!("start.{i}"));
            let began = std::time::SystemTime::now();
            let t = Instant::now();
            let id = cluster.submit(&[&out], &format!("date +%s.%N > {}", stamp.display()));
            submits.push(t.elapsed());
            jobs.push((id, began, stamp));
        }
        let mut starts = Vec::new();
        for (id, began, stamp) in &jobs {
            let info = cluster.wait_job_end(*id, Duration::from_secs(60));
            assert_eq!(info["JobState"], "COMPLETED", "{info:?}");
            starts.push(started_after(stamp, *began));
        }
        let max_start = starts.iter().max().unwrap().as_secs_f64();
        let submit_ms = median_ms(&mut submits);
        let burst_ms = median_ms(&mut starts);

        // One job at a time on an idle cluster.
        let mut lone = Vec::new();
        for i in 0..5 {
            let stamp = work.path().join(format!("lone.{i}"));
            let began = std::time::SystemTime::now();
            let id = cluster.submit(&[&out], &format!("date +%s.%N > {}", stamp.display()));
            cluster.wait_job_end(id, Duration::from_secs(60));
            lone.push(started_after(&stamp, began));
        }
        let lone_ms = median_ms(&mut lone);
        println!(
            "{label}: sbatch submit median {submit_ms:.0} ms (20 in a row); job start after \
             submit: 20 at once median {burst_ms:.0} ms, max {max_start:.1} s; one at a time \
             median {lone_ms:.0} ms"
        );
        // The figures are printed, not asserted: a loaded machine would fail any bound.
    }
}

#[test]
fn measure_per_task_overhead_of_jobs_and_steps() {
    const TASKS: usize = 8;
    let cluster = SlurmCluster::start();
    let work = tempfile::tempdir().unwrap();
    let out = output_in(work.path());
    // Seconds per task beyond its 0.5 s, running `command` TASKS times one after another.
    let sequential = |command: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..TASKS {
            command();
        }
        t.elapsed().as_secs_f64() / TASKS as f64 - 0.5
    };
    let succeeds = |program: &str, args: &[&str]| {
        let run = cluster.output(program, args);
        assert!(run.status.success(), "{program} {args:?}: {run:?}");
    };

    let sbatch_wait =
        sequential(&|| succeeds("sbatch", &["--wait", "--quiet", &out, "--wrap=sleep 0.5"]));
    let sbatch_poll = sequential(&|| {
        let id = cluster.submit(&[&out], "sleep 0.5");
        cluster.wait_job_end(id, Duration::from_secs(60));
    });
    // srun outside any allocation: it asks for its own, granted at once (not batch-scheduled).
    let srun_alone = sequential(&|| succeeds("srun", &["--job-name=orch-t", "sleep", "0.5"]));

    // Steps of one allocation held for them all (`salloc --no-shell`).
    let t = Instant::now();
    cluster.run(
        "salloc",
        &[
            "--no-shell",
            "--quiet",
            "--ntasks=2",
            "--time=10",
            "--job-name=orch-alloc",
        ],
    );
    let allocated = t.elapsed().as_secs_f64();
    let alloc = cluster
        .run(
            "squeue",
            &["--noheader", "--name=orch-alloc", "--format=%i"],
        )
        .trim()
        .to_string();
    let jobid = format!("--jobid={alloc}");
    let step =
        sequential(&|| succeeds("srun", &[&jobid, "--ntasks=1", "--overlap", "sleep", "0.5"]));

    // Throughput: 16 tasks, 8 in flight.
    let sixteen = |args: &[&str]| {
        let t = Instant::now();
        let mut children = Vec::new();
        for _ in 0..16 {
            children.push(cluster.command(args[0]).args(&args[1..]).spawn().unwrap());
            if children.len() == 8 {
                assert!(children.remove(0).wait().unwrap().success());
            }
        }
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        t.elapsed().as_secs_f64()
    };
    let jobs_16 = sixteen(&["sbatch", "--wait", "--quiet", &out, "--wrap=sleep 0.5"]);
    let srun_16 = sixteen(&["srun", "--job-name=orch-t", "sleep", "0.5"]);
    let steps_16 = sixteen(&["srun", &jobid, "--ntasks=1", "--overlap", "sleep", "0.5"]);
    cluster.run("scancel", &[&alloc]);
    println!(
        "0.5 s tasks, overhead per task one after another: sbatch --wait {:.0} ms, sbatch + \
         scontrol poll every 100 ms {:.0} ms, srun (own allocation) {:.0} ms, srun step in a \
         held allocation {:.0} ms (salloc --no-shell took {:.0} ms); 16 tasks 8 in flight: \
         sbatch --wait {jobs_16:.1} s, srun {srun_16:.1} s, steps {steps_16:.1} s",
        sbatch_wait * 1000.0,
        sbatch_poll * 1000.0,
        srun_alone * 1000.0,
        step * 1000.0,
        allocated * 1000.0,
    );
    assert!(step < sbatch_poll, "a step costs less than a batch job");
}

#[test]
fn accounting_mode_answers_sacct() {
    let cluster = SlurmCluster::start_with(ClusterOptions {
        accounting: true,
        ..Default::default()
    });
    let work = tempfile::tempdir().unwrap();
    let run = cluster.output(
        "sbatch",
        &["--wait", &output_in(work.path()), "--wrap=exit 2"],
    );
    assert_eq!(run.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let id = stdout.split_whitespace().last().unwrap().to_string();
    // slurmctld hands the record to slurmdbd asynchronously.
    let mut said = String::new();
    wait_for("sacct to know the job", Duration::from_secs(30), || {
        said = cluster.run(
            "sacct",
            &[
                "--noheader",
                "--parsable2",
                "-X",
                "-j",
                &id,
                "--format=JobID,State,ExitCode",
            ],
        );
        !said.trim().is_empty()
    });
    assert_eq!(said.trim(), format!("{id}|FAILED|2:0"));
}
