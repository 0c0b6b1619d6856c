//! Snakemake 9 with its Slurm executor plugin on the local cluster, as the orch-against-Snakemake
//! bench runs it (benches/support/snakemake/setup.sh installs both into the test cache): a
//! 3-job workflow completes on the accounting cluster with the plugin's default status command
//! (`sacct`), and on a cluster without accounting once told to use `squeue`.

mod common;

use common::slurm::{ClusterOptions, SlurmCluster};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SNAKEFILE: &str = r#"rule all:
    input: expand("out/{i}.txt", i=range(3))

rule task:
    output: "out/{i}.txt"
    shell: "sleep 0.5; echo {wildcards.i} > {output}"
"#;

/// The venv's bin dir; panics with setup.sh's output when the install fails.
fn snakemake_bin() -> PathBuf {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/support/snakemake/setup.sh");
    let out = Command::new(setup).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "installing Snakemake failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Runs the workflow with `--executor slurm` and these extra options; panics unless it ends
/// within `limit` with all three outputs written.
fn run_workflow(cluster: &SlurmCluster, extra: &[&str], limit: Duration) {
    let bin = snakemake_bin();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("Snakefile"), SNAKEFILE).unwrap();
    let log = work.path().join("snakemake.log");
    let began = Instant::now();
    let mut child = cluster
        .command(bin.join("snakemake").to_str().unwrap())
        .current_dir(work.path())
        .args(["--executor", "slurm", "--jobs", "3"])
        .args(["--default-resources", "slurm_partition=debug", "runtime=5"])
        // The plugin waits 40 s before its first status check and 10 s between rounds by
        // default; the bench decides its own, this only proves the workflow completes.
        .args(["--slurm-init-seconds-before-status-checks", "1"])
        .args(["--seconds-between-status-checks", "1"])
        .args(extra)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if began.elapsed() > limit {
            // Snakemake waits for its jobs on SIGTERM; it must not outlive the test.
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "snakemake {extra:?} ended {status:?} after {:.0} s:\n{said}\n{}",
        began.elapsed().as_secs_f64(),
        cluster.log_tails()
    );
    eprintln!(
        "snakemake {extra:?}: 3 jobs in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    for i in 0..3 {
        let out = std::fs::read_to_string(work.path().join(format!("out/{i}.txt"))).unwrap();
        assert_eq!(out, format!("{i}\n"));
    }
    assert!(cluster.squeue_jobs().is_empty());
}

#[test]
fn snakemake_completes_a_workflow_on_the_accounting_cluster() {
    let cluster = SlurmCluster::start_with(ClusterOptions {
        accounting: true,
        ..Default::default()
    });
    run_workflow(&cluster, &[], Duration::from_secs(240));
}

#[test]
fn snakemake_completes_without_accounting_when_told_to_use_squeue() {
    let cluster = SlurmCluster::start();
    run_workflow(
        &cluster,
        &["--slurm-status-command", "squeue"],
        Duration::from_secs(240),
    );
}
