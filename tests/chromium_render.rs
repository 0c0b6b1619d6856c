//! The report renderer itself (tests/common/chromium.rs over Debian's headless chromium): a
//! small self-contained page with inline SVG and a script that builds elements, as
//! `orch report` will write, comes back with the script-made elements in the DOM, a probe's
//! computed facts, a real PNG screenshot, and no network request; a page that does fetch is
//! caught. Each render's wall time is printed (run with `--nocapture` to see it).

mod common;

use std::path::PathBuf;

use common::chromium::{png_size, render, render_with, RenderOptions};

/// A timeline-like page: bars drawn by script (one synchronously, one on a timer) into an
/// inline SVG, plus totals written into a data- attribute.
const PAGE: &str = r##"<!doctype html>
<html><head><meta charset="utf-8"><title>render check</title>
<style>
  body { font: 14px sans-serif; margin: 24px; background: #fff; }
  .bar { fill: #2a7; } .bar.retry { fill: #d62; }
  h1 { font-size: 28px; }
</style></head>
<body>
<h1>Run report</h1>
<svg id="timeline" width="1200" height="300" viewBox="0 0 1200 300">
  <rect x="0" y="0" width="1200" height="300" fill="#eef"/>
</svg>
<table id="totals"><tr><th>cost</th><td id="cost"></td></tr></table>
<script>
  const attempts = [
    { task: "a", lane: 0, start: 0, end: 400, cost: 0.25 },
    { task: "b", lane: 1, start: 100, end: 900, cost: 0.5 },
    { task: "b", lane: 1, start: 950, end: 1150, cost: 0.125, retry: true },
  ];
  const svg = document.getElementById("timeline");
  for (const a of attempts) {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    r.setAttribute("class", a.retry ? "bar retry" : "bar");
    r.setAttribute("data-task", a.task);
    r.setAttribute("x", a.start); r.setAttribute("width", a.end - a.start);
    r.setAttribute("y", 20 + a.lane * 60); r.setAttribute("height", 40);
    svg.appendChild(r);
  }
  const total = attempts.reduce((s, a) => s + a.cost, 0);
  document.getElementById("cost").textContent = "$" + total.toFixed(3);
  document.body.dataset.totalCost = String(total);
  // Work left for later, as a page that lays out after load would do.
  setTimeout(() => { document.body.dataset.late = "done"; }, 1000);
</script>
</body></html>
"##;

fn page(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn script_made_elements_appear_in_the_dumped_dom() {
    let (_dir, html) = page(PAGE);
    let r = render(&html);
    eprintln!("render: {:?}", r.elapsed);
    assert_eq!(r.count(r#"<rect class="bar"#), 3, "{}", r.dom);
    assert_eq!(r.count(r#"class="bar retry""#), 1);
    assert!(r.dom.contains(r#"<td id="cost">$0.875</td>"#), "{}", r.dom);
    assert!(r.dom.contains(r#"data-total-cost="0.875""#));
    // The timer ran in virtual time before the dump.
    assert!(r.dom.contains(r#"data-late="done""#), "{}", r.dom);
    assert!(r.page_requests.is_empty(), "{:?}", r.page_requests);
}

#[test]
fn the_screenshot_is_a_png_of_the_window_with_the_page_in_it() {
    let (_dir, html) = page(PAGE);
    let r = render(&html);
    let png = std::fs::read(&r.screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(r.screenshot_size(), (1400, 900));

    // A blank page of the same size compresses to far fewer bytes than one with bars and text
    // (measured: about 5.7 KB against 10 KB).
    let (_blank_dir, blank) = page("<!doctype html><html><body></body></html>");
    let empty = render(&blank);
    let blank_len = std::fs::metadata(&empty.screenshot).unwrap().len();
    eprintln!(
        "screenshot: {} bytes, blank page {blank_len} bytes; renders {:?} and {:?}",
        png.len(),
        r.elapsed,
        empty.elapsed
    );
    assert!(
        png.len() as u64 > blank_len * 3 / 2,
        "{} vs {blank_len}",
        png.len()
    );
    if let Ok(keep) = std::env::var("ORCH_KEEP_SCREENSHOT") {
        std::fs::copy(&r.screenshot, keep).unwrap();
    }
}

#[test]
fn a_probe_reports_facts_computed_in_the_page() {
    let (_dir, html) = page(PAGE);
    let r = render_with(
        &html,
        &RenderOptions {
            probe: Some(
                r##"
                const bars = [...document.querySelectorAll("#timeline .bar")];
                return {
                  bars: bars.length,
                  widths: bars.map(b => b.getBoundingClientRect().width),
                  cost: document.getElementById("cost").textContent,
                  late: document.body.dataset.late ?? null,
                };"##
                    .into(),
            ),
            ..RenderOptions::default()
        },
    );
    let probe = r.probe.expect("probe value");
    assert_eq!(probe["bars"], 3);
    assert_eq!(probe["widths"], serde_json::json!([400, 800, 200]));
    assert_eq!(probe["cost"], "$0.875");
    // The probe runs right after load; the 1 s timer has not fired yet by then.
    assert_eq!(probe["late"], serde_json::Value::Null);
}

#[test]
fn a_page_that_fetches_is_caught_and_reaches_nothing() {
    let leaky = PAGE.replace(
        "</body>",
        r#"<img src="http://127.0.0.1:1/pixel.png"><link rel="stylesheet" href="https://cdn.example.com/x.css"></body>"#,
    );
    let (_dir, html) = page(&leaky);
    let r = render(&html);
    assert_eq!(
        r.page_requests,
        [
            "http://127.0.0.1:1/pixel.png",
            "https://cdn.example.com/x.css"
        ]
    );
}

#[test]
fn a_hanging_page_is_killed_at_the_timeout() {
    let (_dir, html) = page("<html><body><script>while (true) {}</script></body></html>");
    let outcome = std::panic::catch_unwind(|| {
        render_with(
            &html,
            &RenderOptions {
                timeout: std::time::Duration::from_secs(3),
                ..RenderOptions::default()
            },
        )
    });
    let message = *outcome
        .err()
        .expect("a hung render fails")
        .downcast::<String>()
        .unwrap();
    // The outcome, not the time it took: render_with killed chromium at its timeout (a hang
    // would never get here) and says so.
    assert!(message.contains("did not finish"), "{message}");
    assert!(
        message.contains("within 3s"),
        "names the timeout: {message}"
    );
}

#[test]
fn png_size_rejects_what_is_not_a_png() {
    assert_eq!(png_size(b"GIF89a not a png at all, really"), None);
    assert_eq!(png_size(b""), None);
}
