//! The output cache against a real remote: Debian's nginx with WebDAV PUT on 127.0.0.1
//! (tests/common/nginx.rs, started and stopped by each test). Two clones of one project with
//! separate state dirs: the second builds with 0 agent calls; a blob corrupted on the server
//! is not restored; a server that goes away mid-build, or hangs, warns once and the build
//! goes on; read mode uploads nothing; credentials come from an environment variable and are
//! never in logs or state.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::nginx::{Auth, CacheServer, Unresponsive};
use common::{fake_claude, wait_for, Project};

/// A shell task and two agent tasks of the fake claude ($0.0021 a call) under it, with the
/// remote at `url` and `extra` settings.
fn clone_of(url: &str, extra: &str) -> Project {
    let p = Project::new(&format!(
        r#"
[settings]
remote_cache = "{url}/orch"
{extra}

[agents.claude]
command = ["{fake}"]
env = {{ FAKE_MODE = "ok" }}

[tasks.gen]
run = "tr a-z A-Z < in.txt > gen.txt; echo generated"
inputs = ["in.txt"]
outputs = ["gen.txt"]

[tasks.review]
prompt = "Review {{{{ deps.gen.result }}}}"
deps = ["gen"]

[tasks.report]
prompt = "Report on {{{{ deps.review.result }}}}"
deps = ["review"]
outputs = ["report.md"]
env = {{ FAKE_WRITE = "report.md" }}
"#,
        fake = fake_claude().display()
    ));
    p.write("in.txt", "some notes\n");
    p
}

fn puts(server: &CacheServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count()
}

fn stderr_of(p: &Project, args: &[&str]) -> String {
    p.orch(args).ok().stderr()
}

#[test]
fn a_second_clone_builds_with_no_agent_call() {
    let server = CacheServer::start(Auth::None);
    let a = clone_of(&server.url(), "");
    a.orch(&["build"]).success();
    assert_eq!(a.agent_calls().len(), 2);
    // Blobs first, records last; everything is on the server once the build is over.
    let ac = server.root().join("orch/ac");
    assert_eq!(std::fs::read_dir(&ac).unwrap().count(), 3, "three records");

    let b = clone_of(&server.url(), "");
    let out = b.orch(&["build", "--json"]).ok();
    assert_eq!(
        b.agent_calls().len(),
        0,
        "no agent call in the second clone"
    );
    let stdout = out.stdout();
    assert_eq!(
        stdout.matches("\"event\":\"task_restored\"").count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("\"source\":\"remote\""), "{stdout}");
    assert!(
        stdout.contains("\"saved_cost_usd\":0.0042"),
        "both calls saved: {stdout}"
    );
    for f in ["gen.txt", "report.md", ".orchestrator/final_output.md"] {
        assert_eq!(a.read(f), b.read(f), "{f}");
    }
    // What came from the remote is kept locally: with the server gone, a revert restores.
    drop(server);
    b.write("in.txt", "other notes\n");
    b.orch(&["build"]).success();
    let ran = b.agent_calls().len();
    assert_eq!(
        ran, 1,
        "new content runs review (report is kept by early cutoff)"
    );
    b.write("in.txt", "some notes\n");
    let again = stderr_of(&b, &["build"]);
    assert_eq!(
        b.agent_calls().len(),
        ran,
        "restored from the local copy: {again}"
    );
    assert!(again.contains("0 ran, 2 restored from cache"), "{again}");
}

#[test]
fn a_blob_corrupted_on_the_server_is_not_restored() {
    let server = CacheServer::start(Auth::None);
    let a = clone_of(&server.url(), "");
    a.orch(&["build"]).success();
    // Poison every blob on the server, as a compromised or broken cache would hand them out.
    let cas = server.root().join("orch/cas");
    let blobs: Vec<_> = std::fs::read_dir(&cas).unwrap().flatten().collect();
    assert!(blobs.len() >= 3, "{blobs:?}");
    for b in &blobs {
        std::fs::write(b.path(), "rm -rf / # poisoned").unwrap();
    }
    let b = clone_of(&server.url(), "");
    let err = stderr_of(&b, &["build"]);
    assert_eq!(b.agent_calls().len(), 2, "every agent task ran: {err}");
    assert!(
        err.contains("remote cache entry not restored: /cas/"),
        "reported: {err}"
    );
    for f in ["gen.txt", ".orchestrator/final_output.md"] {
        assert!(!b.read(f).contains("poisoned"), "{f}");
        assert_eq!(a.read(f), b.read(f), "{f}");
    }
}

#[test]
fn read_mode_restores_and_uploads_nothing() {
    let server = CacheServer::start(Auth::None);
    let a = clone_of(&server.url(), "");
    a.orch(&["build"]).success();
    let before = puts(&server);
    assert!(before >= 6, "the writer uploaded: {:?}", server.requests());
    let ci = clone_of(&server.url(), "remote_cache_mode = \"read\"");
    ci.orch(&["build"]).success();
    assert_eq!(ci.agent_calls().len(), 0, "restored from the remote");
    // New work in read mode: it runs, and nothing goes up.
    ci.write("in.txt", "a change only CI has\n");
    ci.orch(&["build"]).success();
    assert_eq!(
        ci.agent_calls().len(),
        1,
        "review runs (report is kept by early cutoff)"
    );
    assert_eq!(puts(&server), before, "{:?}", server.requests());
}

#[test]
fn a_server_that_goes_away_mid_build_warns_once_and_the_build_goes_on() {
    let mut server = CacheServer::start(Auth::None);
    let p = clone_of(&server.url(), "");
    // gen waits for the test to stop the server (bounded: 60 s at most).
    let text = p.read("Orchfile.toml").replace(
        "run = \"tr a-z A-Z",
        "run = \"touch started; i=0; while [ ! -f go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; tr a-z A-Z",
    );
    p.write("Orchfile.toml", &text);
    let child = p
        .command(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("gen to start", Duration::from_secs(30), || {
        p.exists("started")
    });
    server.stop();
    p.write("go", "");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(p.agent_calls().len(), 2, "the build went on locally");
    assert_eq!(err.matches("going on without it").count(), 1, "once: {err}");
    // The local cache still works.
    p.write("in.txt", "x\n");
    p.orch(&["build"]).success();
    p.write("in.txt", "some notes\n");
    let err = stderr_of(&p, &["build"]);
    assert!(err.contains("0 ran, 2 restored from cache"), "{err}");
    assert!(
        !err.contains("remote cache"),
        "local hits ask no server: {err}"
    );
}

#[test]
fn a_hung_server_costs_one_timeout_and_the_build_goes_on() {
    let hung = Unresponsive::start();
    let p = clone_of(
        &format!("http://{}", hung.addr()),
        "remote_cache_stall_timeout = \"1s\"",
    );
    let err = stderr_of(&p, &["build"]);
    assert_eq!(p.agent_calls().len(), 2);
    assert_eq!(err.matches("going on without it").count(), 1, "{err}");
    assert!(
        err.contains("stalled: nothing received for 1s (remote_cache_stall_timeout)"),
        "{err}"
    );
}

#[test]
fn credentials_come_from_the_environment_and_are_never_written() {
    for (auth, scheme, value) in [
        (
            Auth::bearer("tok-3f9a1c77e2"),
            "bearer",
            "tok-3f9a1c77e2".to_string(),
        ),
        (
            Auth::basic("ci", "pw-88d1b0a4"),
            "basic",
            "ci:pw-88d1b0a4".to_string(),
        ),
    ] {
        let server = CacheServer::start(auth.clone());
        let settings = format!(
            "remote_cache_auth = \"{scheme}\"\nremote_cache_auth_env = \"ORCH_TEST_CACHE_CREDS\""
        );
        let a = clone_of(&server.url(), &settings);
        let out = a
            .command(&["build", "--json"])
            .env("ORCH_TEST_CACHE_CREDS", &value)
            .output()
            .unwrap();
        assert!(out.status.success());
        let created = server
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.status == 201)
            .count();
        assert!(
            created >= 6,
            "{scheme}: uploaded with credentials: {:?}",
            server.requests()
        );
        let b = clone_of(&server.url(), &settings);
        let out_b = b
            .command(&["build", "--json"])
            .env("ORCH_TEST_CACHE_CREDS", &value)
            .output()
            .unwrap();
        assert!(out_b.status.success());
        assert_eq!(
            b.agent_calls().len(),
            0,
            "{scheme}: restored with credentials"
        );
        let header = auth.header().unwrap();
        let secret_parts = [value.as_str(), header.split(' ').nth(1).unwrap()];
        for (what, text) in [
            ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
            ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
            (
                "stdout b",
                String::from_utf8_lossy(&out_b.stdout).into_owned(),
            ),
        ] {
            for s in secret_parts {
                assert!(!text.contains(s), "{scheme}: {what} holds the credentials");
            }
        }
        for dir in [a.dir.path(), b.dir.path()] {
            assert_nothing_holds(dir, &secret_parts);
        }
        // Without the variable: said once, refused by the server, the build goes on.
        let c = clone_of(&server.url(), &settings);
        let err = c
            .command(&["build"])
            .env_remove("ORCH_TEST_CACHE_CREDS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&err.stderr);
        assert!(err.contains("$ORCH_TEST_CACHE_CREDS is not set"), "{err}");
        assert!(err.contains("HTTP 401"), "{err}");
        assert_eq!(c.agent_calls().len(), 2);
    }
}

/// No file under `dir` (state, logs, cache, master_plan.md) holds any of `secrets`.
fn assert_nothing_holds(dir: &Path, secrets: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            assert_nothing_holds(&path, secrets);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for s in secrets {
                assert!(!text.contains(s), "{} holds a credential", path.display());
            }
        }
    }
}
