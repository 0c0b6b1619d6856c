//! The remote-cache test server itself (tests/common/nginx.rs over Debian's nginx): that it
//! speaks the Bazel HTTP cache protocol the output cache relies on (PUT then GET the same bytes,
//! 404 for a miss, nested keys without MKCOL), enforces each auth variant, and is gone once
//! stopped. Checked with a std-only HTTP client, so a failure here is the server's, not orch's.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::nginx::{http, Auth, Behaviour, CacheServer, Config, Unresponsive};

/// Bytes no text-mode mangling would leave alone: every byte value, twice.
fn blob() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

#[test]
fn put_then_get_returns_the_same_bytes() {
    let started = Instant::now();
    let server = CacheServer::start(Auth::None);
    eprintln!("start (setup check included): {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(server.put("/cas/0123abcd", &blob()).status, 201);
    let got = server.get("/cas/0123abcd");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, blob());
    assert_eq!(got.header("content-length"), Some("512"));
    // The blob is a plain file under root(), where a test can corrupt it.
    assert_eq!(
        std::fs::read(server.root().join("cas/0123abcd")).unwrap(),
        blob()
    );

    // Overwriting an existing key succeeds too (a re-upload of the same action).
    assert_eq!(server.put("/cas/0123abcd", b"new").status, 204);
    assert_eq!(server.get("/cas/0123abcd").body, b"new");
    eprintln!("PUT+GET+PUT+GET: {:?}", started.elapsed());

    // nginx logs a request just after sending its response, so the last line may lag.
    common::wait_for("4 logged requests", Duration::from_secs(5), || {
        server.requests().len() == 4
    });
    // One line per request, but not always in the order they were sent: nginx writes a line
    // after answering, and under load a PUT's line was seen after the next GET's.
    let mut methods: Vec<_> = server.requests().into_iter().map(|r| r.method).collect();
    methods.sort();
    assert_eq!(methods, ["GET", "GET", "PUT", "PUT"]);
}

#[test]
fn a_missing_key_is_404_for_head_and_get() {
    let server = CacheServer::start(Auth::None);
    let head = server.head("/ac/absent");
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());
    assert_eq!(server.get("/cas/absent").status, 404);

    server.put("/ac/present", b"x");
    let head = server.head("/ac/present");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1"));
}

#[test]
fn put_creates_nested_directories() {
    let server = CacheServer::start(Auth::None);
    let deep = "/ac/ab/cd/ef/0123456789abcdef";
    assert_eq!(server.put(deep, b"record").status, 201);
    assert_eq!(server.get(deep).body, b"record");
    assert!(server.root().join("ac/ab/cd/ef").is_dir());
}

#[test]
fn a_large_blob_round_trips() {
    // Past nginx's default 1 MiB client_max_body_size, which the shipped config lifts.
    let server = CacheServer::start(Auth::None);
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    assert_eq!(server.put("/cas/big", &big).status, 201);
    assert_eq!(server.get("/cas/big").body, big);
}

#[test]
fn basic_auth_rejects_without_credentials_and_accepts_with_them() {
    let server = CacheServer::start(Auth::basic("ci", "s3cret-pw"));
    let anonymous = |method, body: &[u8]| http(server.addr(), method, "/ac/k", &[], body).unwrap();
    assert_eq!(anonymous("PUT", b"v").status, 401);
    assert_eq!(anonymous("GET", b"").status, 401);
    let wrong = Auth::basic("ci", "wrong").header().unwrap();
    let with_wrong = http(
        server.addr(),
        "GET",
        "/ac/k",
        &[("Authorization", &wrong)],
        b"",
    );
    assert_eq!(with_wrong.unwrap().status, 401);

    assert_eq!(server.put("/ac/k", b"v").status, 201);
    assert_eq!(server.get("/ac/k").body, b"v");
}

#[test]
fn bearer_auth_rejects_without_the_token_and_accepts_with_it() {
    let server = CacheServer::start(Auth::bearer("tok-123"));
    assert_eq!(
        http(server.addr(), "PUT", "/cas/d", &[], b"v")
            .unwrap()
            .status,
        401
    );
    let other = [("Authorization", "Bearer tok-999")];
    assert_eq!(
        http(server.addr(), "GET", "/cas/d", &other, b"")
            .unwrap()
            .status,
        401
    );
    assert!(
        !server.root().join("cas/d").exists(),
        "a refused PUT writes nothing"
    );
    assert_eq!(server.put("/cas/d", b"v").status, 201);
    assert_eq!(server.head("/cas/d").status, 200);
}

#[test]
fn a_stopped_server_refuses_connections_and_a_restarted_one_serves_the_same_blobs() {
    let mut server = CacheServer::start(Auth::None);
    server.put("/cas/kept", b"kept");
    let started = Instant::now();
    server.stop();
    eprintln!("stop: {:?}", started.elapsed());
    assert!(!server.is_running());
    let refused = TcpStream::connect(server.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let started = Instant::now();
    server.restart();
    eprintln!("restart: {:?}", started.elapsed());
    assert_eq!(server.get("/cas/kept").body, b"kept");
}

#[test]
fn the_failing_and_slow_variants_behave_as_named() {
    let failing = CacheServer::start_with(Config {
        auth: Auth::None,
        behaviour: Behaviour::Failing { status: 503 },
    });
    assert_eq!(failing.put("/cas/x", b"x").status, 503);
    assert_eq!(failing.get("/cas/x").status, 503);

    let slow = CacheServer::start_with(Config {
        auth: Auth::None,
        behaviour: Behaviour::Slow {
            bytes_per_sec: 4096,
        },
    });
    let body = vec![7u8; 8192];
    slow.put("/cas/slow", &body);
    let started = Instant::now();
    assert_eq!(slow.get("/cas/slow").body, body);
    let took = started.elapsed();
    // 8 KiB at 4 KiB/s: nginx sends the first second's worth at once, then waits.
    assert!(took >= Duration::from_millis(900), "took {took:?}");
}

#[test]
fn an_unresponsive_server_accepts_and_never_answers() {
    let hung = Unresponsive::start();
    let mut conn = TcpStream::connect(hung.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    std::io::Write::write_all(&mut conn, b"GET /ac/k HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    let err = std::io::Read::read(&mut conn, &mut buf).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
}

#[test]
fn a_panicking_test_still_stops_its_server() {
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let server = CacheServer::start(Auth::None);
        let pid = std::fs::read_to_string(server.root().join("../state/nginx.pid")).unwrap();
        pid_tx.send(pid.trim().parse::<i32>().unwrap()).unwrap();
        panic!("the test failed");
    });
    assert!(outcome.is_err());
    let pid = pid_rx.recv().unwrap();
    assert!(!common::alive(pid), "nginx {pid} outlived the panic");
}
