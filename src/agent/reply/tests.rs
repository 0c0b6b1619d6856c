//! The pieces the formats share: statuses in messages, paths, one-line displays.

use super::common::*;
use std::path::Path;

#[test]
fn statuses_are_read_from_the_message_alone() {
    assert_eq!(
        status_in_message("API Error: 500 Internal server error"),
        Some(500)
    );
    assert_eq!(
        status_in_message(r#"[API Error: {"error":{"code":529,"message":"overloaded"}}]"#),
        Some(529)
    );
    assert_eq!(
        status_in_message("exceeded retry limit, last status: 429 Too Many Requests"),
        Some(429)
    );
    assert_eq!(
        status_in_message("API Error: Request rejected (429) · Number of requests"),
        Some(429)
    );
    assert_eq!(
        status_in_message("unexpected status 529 <unknown status code>"),
        Some(529)
    );
    assert_eq!(status_in_message("thread 01a2-4290 status 4291 gone"), None);
    assert_eq!(
        status_in_message("We're currently experiencing high demand"),
        None
    );
}

#[test]
fn paths_inside_the_project_are_shown_relative() {
    let root = Path::new("/p");
    assert_eq!(relative(root, "/p/out/a.txt"), "out/a.txt");
    assert_eq!(relative(root, "/elsewhere/a.txt"), "/elsewhere/a.txt");
    assert_eq!(relative(root, "out/a.txt"), "out/a.txt");
}

#[test]
fn activities_read_like_the_tool_calls_they_are() {
    let root = Path::new("/p");
    let a = activity(
        root,
        "Bash",
        &serde_json::json!({"command": "npm test\nnpm run lint"}),
    );
    assert_eq!(a.to_string(), "Bash: npm test…");
    let a = activity(
        root,
        "write_file",
        &serde_json::json!({"file_path": "/p/r/s.json"}),
    );
    assert_eq!(a.to_string(), "Write r/s.json");
    assert_eq!(a.writes, ["r/s.json"]);
    let a = activity(root, "Grep", &serde_json::json!({"pattern": "TODO"}));
    assert_eq!(a.to_string(), "Grep TODO");
    assert!(a.writes.is_empty());
}
