//! The remote cache's timeouts against real transfers (Debian's nginx, tests/common/nginx.rs):
//! a blob that trickles in for longer than `remote_cache_stall_timeout` but never stops is
//! restored (no limit on a whole request), and one that stops midway fails once with a
//! message naming the timeout, leaves no blob behind, and the task runs instead.

mod common;

use common::nginx::{Behaviour, CacheServer, Config, Stalling};
use common::Project;

/// 1.5 MB: at 256 KiB/s about six seconds, twice the stall timeout of the slow test.
const BIG: usize = 1_500_000;

/// A shell task with one large output, the remote at `url`.
fn clone_of(url: &str, stall: &str) -> Project {
    Project::new(&format!(
        r#"
[settings]
remote_cache = "{url}/orch"
remote_cache_stall_timeout = "{stall}"

[tasks.big]
run = "head -c {BIG} /dev/zero | tr '\\0' x > big.bin"
outputs = ["big.bin"]
"#
    ))
}

/// A writer clone builds (runs the task, uploads its output) against `server`.
fn upload(server: &CacheServer) {
    let writer = clone_of(&server.url(), "10s");
    writer.orch(&["build"]).success();
    let puts = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 2, "one blob and one record: {:?}", server.requests());
}

fn finished(events: &[serde_json::Value]) -> &serde_json::Value {
    events
        .iter()
        .rfind(|e| e["event"] == "build_finished")
        .expect("a build_finished event")
}

/// Every blob of the local store hashes to its name, and nothing is left in its temp dir.
fn assert_store_sound(p: &Project) {
    let cas = p.path(".orchestrator/cache/cas");
    for shard in std::fs::read_dir(&cas).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let bytes = std::fs::read(blob.path()).unwrap();
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                blob.file_name().to_str().unwrap(),
                "a damaged blob in the store"
            );
        }
    }
    let tmp = p.path(".orchestrator/cache/tmp");
    let left: Vec<_> = std::fs::read_dir(tmp).into_iter().flatten().collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[test]
fn a_slow_transfer_that_keeps_moving_is_not_cut_off() {
    let server = CacheServer::start_with(Config {
        auth: common::nginx::Auth::None,
        behaviour: Behaviour::Slow {
            bytes_per_sec: 256 << 10,
        },
    });
    upload(&server);
    let reader = clone_of(&server.url(), "3s");
    let run = reader.orch(&["build", "--json"]).ok();
    let events = run.json_lines();
    let done = finished(&events);
    assert_eq!(
        (done["ran"].as_u64(), done["restored"].as_u64()),
        (Some(0), Some(1)),
        "{}",
        run.stderr()
    );
    let restored = events
        .iter()
        .find(|e| e["event"] == "task_restored")
        .unwrap();
    // The premise: nginx cannot send faster than its limit, so the restore took longer than
    // the stall timeout, which is therefore not a limit on the whole transfer.
    assert!(
        restored["duration_ms"].as_u64().unwrap() > 3000,
        "{restored}"
    );
    let said = run.stdout() + &run.stderr();
    assert!(!said.contains("remote cache"), "{said}");
    assert_eq!(std::fs::read(reader.path("big.bin")).unwrap().len(), BIG);
    assert_store_sound(&reader);
}

#[test]
fn a_transfer_that_stalls_fails_once_clearly_and_the_task_runs() {
    let server = CacheServer::start(common::nginx::Auth::None);
    upload(&server);
    // The record and the blob's first 64 KiB come through; then nothing more.
    let proxy = Stalling::start(server.addr(), 64 << 10);
    let reader = clone_of(&proxy.url(), "1s");
    let run = reader.orch(&["build", "--json"]).ok();
    let done = finished(&run.json_lines()).clone();
    // The notice is an event under --json.
    let err = run.stdout() + &run.stderr();
    assert_eq!(
        (done["ran"].as_u64(), done["restored"].as_u64()),
        (Some(1), Some(0)),
        "{err}"
    );
    assert_eq!(err.matches("going on without it").count(), 1, "{err}");
    assert!(
        err.contains("GET /cas/")
            && err.contains("stalled: nothing received for 1s (remote_cache_stall_timeout)"),
        "{err}"
    );
    assert_eq!(std::fs::read(reader.path("big.bin")).unwrap().len(), BIG);
    assert_store_sound(&reader);
}
