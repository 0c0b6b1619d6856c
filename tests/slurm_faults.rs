//! The Slurm executor when things go wrong, on a real one-node cluster: Ctrl-C and SIGTERM
//! cancel every job of the run (waited for, exit 130); a SIGKILLed orch's jobs are cancelled
//! by its crash guard, or, with the guard killed too, by the next build from the journal, which
//! runs only what had not finished; a drained node holds new jobs in the queue (shown as queued)
//! until it is resumed, and steps wait for their allocation, queued as a batch job when salloc
//! finds no room; a node that goes down fails its job, which is retried.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::slurm::SlurmCluster;
use common::{wait_for, Project, Run};

/// A build running in the background, its output in files.
struct Background {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Background {
    fn start(c: &SlurmCluster, p: &Project, args: &[&str]) -> Background {
        let out = p.path("orch.out");
        let err = p.path("orch.err");
        let child = p
            .command(args)
            .envs(c.env())
            .stdout(Stdio::from(File::create(&out).unwrap()))
            .stderr(Stdio::from(File::create(&err).unwrap()))
            .spawn()
            .unwrap();
        Background { child, out, err }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits (bounded) for the build to end; its exit code and output.
    #[track_caller]
    fn finish(mut self, limit: Duration) -> (i32, String, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "orch still running after {limit:?}:\n{}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        (
            code,
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default(),
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the jobs named `names` all run.
#[track_caller]
fn wait_running(c: &SlurmCluster, names: &[&str]) {
    wait_for(
        &format!("{names:?} running"),
        Duration::from_secs(60),
        || {
            let q = c.squeue_jobs();
            names
                .iter()
                .all(|n| q.iter().any(|j| j.name == *n && j.state == "RUNNING"))
        },
    );
}

/// The pid of the crash guard `orch` started.
fn guard_of(orch: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let ppid: i32 = stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (ppid == orch && cmdline.split(|&b| b == 0).any(|a| a == b"__guard")).then_some(pid)
    })
}

fn slurm_plan(tasks: &str) -> String {
    format!("[settings]\nexecutor = \"slurm\"\n[settings.slurm]\npoll = \"200ms\"\n{tasks}")
}

#[test]
fn ctrl_c_and_sigterm_cancel_every_job_of_the_run() {
    let c = SlurmCluster::shared();
    for (sig, prefix) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let p = Project::new(&slurm_plan(&format!(
            "[tasks.{prefix}-a]\nrun = \"sleep 120\"\n[tasks.{prefix}-b]\nrun = \"sleep 120\"\n\
             [tasks.{prefix}-c]\nrun = \"true\"\ndeps = [\"{prefix}-a\"]\n"
        )));
        let b = Background::start(&c, &p, &["build"]);
        let names = [format!("orch-{prefix}-a"), format!("orch-{prefix}-b")];
        wait_running(&c, &[&names[0], &names[1]]);
        b.signal(sig);
        let (code, _, err) = b.finish(Duration::from_secs(60));
        assert_eq!(code, 130, "{err}");
        // orch waited for the cancel: nothing of its run is left when it exits.
        assert!(
            c.queued_named(&format!("orch-{prefix}-")).is_empty(),
            "{:?}",
            c.squeue_jobs()
        );
        for n in &names {
            assert_eq!(c.ended_states(n), ["CANCELLED"], "{n}");
        }
        assert!(err.contains("interrupted"), "{err}");
    }
}

#[test]
fn a_sigkilled_orchs_jobs_are_cancelled_and_the_next_build_resumes() {
    let c = SlurmCluster::shared();
    // `slow` sleeps long on its first run only.
    let p = Project::new(&slurm_plan(
        "[tasks.kill-done]\nrun = \"echo done > done.txt\"\noutputs = [\"done.txt\"]\n\
         [tasks.kill-slow]\nrun = \"if [ -e again ]; then echo quick; else touch again; sleep 120; fi\"\n",
    ));
    // 1. SIGKILL: the crash guard cancels the running job.
    let b = Background::start(&c, &p, &["build"]);
    wait_running(&c, &["orch-kill-slow"]);
    wait_for("kill-done recorded", Duration::from_secs(60), || {
        p.recorded_successes().contains("kill-done")
    });
    // Its job may be listed a moment after its exit file is read; the guard would cancel it
    // at its very end (CANCELLED for a job that finished). What is tested is the slow one.
    c.wait_none_named("orch-kill-done", Duration::from_secs(60));
    b.signal(libc::SIGKILL);
    let (code, _, _) = b.finish(Duration::from_secs(10));
    assert_eq!(code, 128 + libc::SIGKILL);
    c.wait_none_named("orch-kill-", Duration::from_secs(60));
    assert_eq!(c.ended_states("orch-kill-slow"), ["CANCELLED"]);
    // 2. The guard killed too: the next build finds the job in the journal and cancels it.
    std::fs::remove_file(p.path("again")).unwrap();
    let b = Background::start(&c, &p, &["build"]);
    wait_running(&c, &["orch-kill-slow"]);
    let orch = b.pid();
    let guard = guard_of(orch).expect("the guard runs beside orch");
    // SAFETY: signals to processes this test started.
    unsafe {
        libc::kill(guard, libc::SIGKILL);
    }
    b.signal(libc::SIGKILL);
    b.finish(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let left = c.queued_named("orch-kill-slow");
    assert_eq!(left.len(), 1, "nobody cancelled it: {left:?}");
    let run = Run(p.command(&["build"]).envs(c.env()).output().unwrap());
    run.success();
    assert!(
        run.stderr()
            .contains("stopped 1 process(es) or Slurm job(s) left running by an interrupted run"),
        "{}",
        run.stderr()
    );
    assert!(c.queued_named("orch-kill-").is_empty());
    assert_eq!(
        p.read(".orchestrator/results/agent-02-result.md"),
        "quick\n"
    );
    // The finished task never ran again; the slow one was cancelled twice, then completed.
    assert_eq!(c.ended_states("orch-kill-done"), ["COMPLETED"]);
    assert_eq!(
        c.ended_states("orch-kill-slow"),
        ["CANCELLED", "CANCELLED", "COMPLETED"]
    );
}

#[test]
fn a_drained_node_holds_new_jobs_queued_until_it_is_resumed() {
    let c = SlurmCluster::start();
    let p = Project::new(&slurm_plan(
        "[tasks.dr-a]\nrun = \"sleep 3; echo a > a.txt\"\noutputs = [\"a.txt\"]\n\
         [tasks.dr-b]\nrun = \"sleep 1; cat a.txt\"\ndeps = [\"dr-a\"]\n",
    ));
    let b = Background::start(&c, &p, &["build", "--json"]);
    wait_running(&c, &["orch-dr-a"]);
    c.drain();
    // The running job finishes; the next one waits in the queue, and says so.
    wait_for("dr-b queued", Duration::from_secs(60), || {
        c.queued_named("orch-dr-b")
            .iter()
            .any(|j| j.state == "PENDING")
    });
    wait_for("the status table shows it", Duration::from_secs(10), || {
        std::fs::read_to_string(p.path(".orchestrator/master_plan.md"))
            .is_ok_and(|t| t.lines().any(|l| l.contains("dr-b") && l.contains("⏳")))
    });
    c.resume();
    let (code, out, err) = b.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let evs: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let b_states: Vec<(String, String)> = evs
        .iter()
        .filter(|e| e["event"] == "task_job" && e["task"] == "dr-b")
        .map(|e| {
            (
                e["state"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        b_states.iter().any(|(s, r)| s == "queued" && !r.is_empty()),
        "queued with Slurm's reason: {b_states:?}"
    );
    assert_eq!(b_states.last().unwrap().0, "running", "{b_states:?}");
    assert_eq!(c.ended_states("orch-dr-a"), ["COMPLETED"]);
}

#[test]
fn steps_wait_for_their_allocation_queued_while_the_node_is_drained() {
    let c = SlurmCluster::start();
    c.drain();
    let p = Project::new(&slurm_plan(
        "launch = \"step\"\n[tasks.qa-a]\nrun = \"echo $SLURM_JOB_ID > a.txt\"\noutputs = [\"a.txt\"]\n",
    ));
    // No room now: salloc is refused, so the allocation is a batch job left in the queue.
    let b = Background::start(&c, &p, &["build"]);
    wait_for("the allocation queued", Duration::from_secs(60), || {
        c.queued_named("orch-allocation")
            .iter()
            .any(|j| j.state == "PENDING")
    });
    c.resume();
    let (code, _, err) = b.finish(Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let alloc: u64 = p.read("a.txt").trim().parse().unwrap();
    let info = c.job_info(alloc).unwrap();
    assert_eq!(info["JobName"], "orch-allocation");
    assert_eq!(info["BatchFlag"], "1", "the queued holder job: {info:?}");
    assert!(c.queued_named("orch-").is_empty(), "{:?}", c.squeue_jobs());
}

#[test]
fn a_job_whose_node_goes_down_is_retried() {
    let c = SlurmCluster::start();
    let p = Project::new(&slurm_plan(
        "[tasks.down-a]\nretries = 1\n\
         run = \"if [ -e tried ]; then echo second; else touch tried; sleep 120; fi\"\n",
    ));
    let b = Background::start(&c, &p, &["build"]);
    wait_running(&c, &["orch-down-a"]);
    // Slurm says RUNNING before the script's first line has run: down the node only once the
    // first attempt has left its mark, or the retry would be the one that sleeps.
    let marked = std::time::Instant::now();
    while !p.exists("tried") {
        assert!(
            marked.elapsed() < Duration::from_secs(30),
            "the first attempt never started its script"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let node = c.node().to_string();
    c.run(
        "scontrol",
        &[
            "update",
            &format!("nodename={node}"),
            "state=down",
            "reason=orch-test",
        ],
    );
    let (code, _, err) = b.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NODE_FAIL"), "the retry says why: {err}");
    assert_eq!(
        p.read(".orchestrator/results/agent-01-result.md"),
        "second\n"
    );
    assert_eq!(
        c.ended_states("orch-down-a"),
        ["NODE_FAIL", "COMPLETED"],
        "not requeued by Slurm: retried by orch"
    );
}
