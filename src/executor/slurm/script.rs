//! The batch job's script and the files of one attempt. The job runs the very command orch
//! would run locally, with its environment, its stdin from a file and its stdout and stderr
//! into files, all on the filesystem the nodes share (the state directory); its last act is to
//! write the command's exit code into a file of its own, by rename, so that orch sees the code
//! whole or not at all, without asking the controller (and without accounting).

use std::path::{Path, PathBuf};

use crate::executor::backend::{ProcessSpec, STRIPPED_ENV};

/// Where one attempt's files live: `<dir>/<stem>.{in,out,err,exit}`.
#[derive(Debug, Clone)]
pub(crate) struct AttemptFiles {
    pub stdin: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub exit: PathBuf,
}

impl AttemptFiles {
    pub fn new(dir: &Path, stem: &str) -> AttemptFiles {
        let file = |ext: &str| dir.join(format!("{stem}.{ext}"));
        AttemptFiles {
            stdin: file("in"),
            stdout: file("out"),
            stderr: file("err"),
            exit: file("exit"),
        }
    }

    pub fn remove(&self) {
        for f in [&self.stdin, &self.stdout, &self.stderr, &self.exit] {
            let _ = std::fs::remove_file(f);
        }
    }

    /// The exit code the job script left, once its file is there and whole.
    pub fn exit_code(&self) -> Option<i32> {
        std::fs::read_to_string(&self.exit)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// `s` as one word for sh: single-quoted, with `'` written as `'\''`.
pub(crate) fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The job script for `spec`: `env` sets its variables (whatever their names), the command
/// runs with stdin from its file, then its exit code goes to the exit file by rename.
pub(crate) fn job_script(
    spec: &ProcessSpec,
    files: &AttemptFiles,
    run_id: &str,
    name: &str,
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "# {name}: written by orch (run {run_id}); the exit code goes to {}\n",
        files.exit.display()
    ));
    let unset: Vec<String> = STRIPPED_ENV
        .iter()
        .map(|k| k.to_string())
        .chain(spec.unset.iter().cloned())
        .filter(|k| is_name(k))
        .collect();
    if !unset.is_empty() {
        s.push_str(&format!("unset {}\n", unset.join(" ")));
    }
    s.push_str(&format!(
        "cd {} || exit 1\n",
        quote(&spec.cwd.to_string_lossy())
    ));
    let mut line = String::from("env");
    for (k, v) in std::iter::once(("ORCH_RUN_ID", run_id))
        .chain(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        line.push(' ');
        line.push_str(&quote(&format!("{k}={v}")));
    }
    for a in &spec.argv {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let stdin = if spec.stdin.is_some() {
        quote(&files.stdin.to_string_lossy())
    } else {
        "/dev/null".to_string()
    };
    s.push_str(&format!("{line} < {stdin}\n"));
    let exit = quote(&files.exit.to_string_lossy());
    let tmp = quote(&format!("{}.tmp", files.exit.to_string_lossy()));
    s.push_str("code=$?\n");
    s.push_str(&format!(
        "printf '%s\\n' \"$code\" > {tmp} && mv -f {tmp} {exit}\n"
    ));
    s.push_str("exit \"$code\"\n");
    s
}

/// A name `unset` takes.
fn is_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let words = ["plain", "", "with space", "it's", "$HOME `x` \"q\"", "a\nb"];
        let script = format!(
            "printf '[%s]' {}",
            words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let expected: String = words.iter().map(|w| format!("[{w}]")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }

    #[test]
    fn the_job_script_runs_the_command_and_leaves_its_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let files = AttemptFiles::new(dir.path(), "orch-a.1");
        let mut spec = ProcessSpec::shell(
            "read line; echo \"got $line $ORCH_TASK_ID $ORCH_RUN_ID\"; echo oops >&2; exit 3",
            dir.path().to_path_buf(),
        );
        spec.env = vec![
            ("ORCH_TASK_ID".into(), "a b".into()),
            ("odd-name".into(), "x".into()),
        ];
        spec.stdin = Some(b"hello\n".to_vec());
        std::fs::write(&files.stdin, b"hello\n").unwrap();
        let script = job_script(&spec, &files, "run-1", "orch-a");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir("/")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "got hello a b run-1\n"
        );
        assert_eq!(files.exit_code(), Some(3));
        assert!(!dir.path().join("orch-a.1.exit.tmp").exists());
    }
}
