//! The page around the timeline and the graph: the run's outcome and totals, the table of
//! tasks with their cost and tokens, the slowest and most expensive tasks, the run's options
//! and settings, and what else the record holds. One HTML file with its CSS inline and no
//! script, link, font or image from anywhere: it opens the same from a CI artifact, a mail
//! or a laptop offline.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use super::run::{Run, Status, TaskRun, Usage};
use super::text::{esc, money, short};
use super::{dag, timeline};
use crate::duration::format_duration;

fn ms(d: Option<u64>) -> String {
    d.map_or_else(|| "–".into(), |d| format_duration(Duration::from_millis(d)))
}

fn num(n: Option<u64>) -> String {
    n.map_or_else(|| "–".into(), |n| n.to_string())
}

fn cost(c: Option<f64>) -> String {
    c.map_or_else(|| "–".into(), money)
}

const CSS: &str = r#"
:root { --ok: #2f9e5b; --fail: #d64545; --retry: #e8912d; --skip: #a9b1ba; --block: #c77dba;
  --int: #7a6ff0; --cache: #3a8fd9; --open: #e6c229; --ink: #1d2733; --mute: #66727f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  margin: 0; background: #f5f7fa; }
header { background: #1d2733; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .meta { color: #c3cbd4; }
main { padding: 8px 28px 40px; max-width: 1260px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 14px 18px;
  margin: 16px 0; }
h2 { font-size: 16px; margin: 0 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 10px 16px;
  min-width: 130px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { color: var(--mute); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.outcome-success { color: var(--ok); } .outcome-failure { color: var(--fail); }
.outcome-interrupted { color: var(--int); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #edf0f3; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.sum td { font-weight: 600; border-top: 2px solid #c9d1da; }
.pill { display: inline-block; padding: 0 8px; border-radius: 9px; font-size: 12px; color: #fff; }
.pill.succeeded { background: var(--ok); } .pill.failed { background: var(--fail); }
.pill.up-to-date, .pill.not-run { background: var(--skip); } .pill.blocked { background: var(--block); }
.pill.interrupted { background: var(--int); } .pill.restored { background: var(--cache); }
.pill.unfinished { background: var(--open); color: var(--ink); }
.legend { display: flex; gap: 14px; flex-wrap: wrap; margin: 6px 0 10px; color: var(--mute); font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px;
  vertical-align: -2px; }
.note { color: var(--mute); font-size: 13px; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
#timeline .lane:nth-of-type(odd) { fill: #fafbfc; } #timeline .lane { fill: #fff; }
#timeline .grid { stroke: #e6eaee; } #timeline .tick { fill: var(--mute); font-size: 11px; }
.attempt.succeeded { fill: var(--ok); } .attempt.retried { fill: var(--retry); }
.attempt.failed { fill: var(--fail); } .attempt.interrupted { fill: var(--int); }
.attempt.restored { fill: var(--cache); } .attempt.unfinished { fill: var(--open); }
.span { fill: #b9c2cc; } .span.backoff { fill: #f3c58f; }
.span[class*="quota"], .span[class*="wait"] { fill: #9d8cf0; } .span[class*="budget"] { fill: #d64545; }
.mark { fill: #1d2733; opacity: .55; } .mark.task_activity { fill: #5b6b7b; opacity: .35; }
.mark[class*="quota"], .mark[class*="wait"] { fill: #7a6ff0; opacity: 1; }
.mark[class*="budget"], .mark.build_interrupted { fill: var(--fail); opacity: 1; }
.mark[class*="cache"], .mark[class*="restore"] { fill: var(--cache); opacity: 1; }
#dag .edge { fill: none; stroke: #aab4be; stroke-width: 1.3; }
#dag .node rect { stroke: rgba(0,0,0,.15); }
#dag .node text.id { fill: #fff; font-weight: 600; } #dag .node text.sub { fill: #f4f6f8; font-size: 11px; }
#dag .succeeded rect { fill: var(--ok); } #dag .failed rect { fill: var(--fail); }
#dag .up-to-date rect { fill: var(--skip); } #dag .blocked rect { fill: var(--block); }
#dag .interrupted rect { fill: var(--int); } #dag .restored rect { fill: var(--cache); }
#dag .unfinished rect { fill: var(--open); } #dag .not-run rect { fill: #fff; stroke: #aab4be; }
#dag .not-run text.id, #dag .not-run text.sub, #dag .unfinished text { fill: var(--ink); }
code { background: #eef1f4; padding: 0 4px; border-radius: 3px; }
"#;

fn legend(items: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<div class="legend">"#);
    for (var, word) in items {
        let _ = write!(
            s,
            r#"<span><i style="background:var({var})"></i>{word}</span>"#
        );
    }
    s.push_str("</div>");
    s
}

fn card(s: &mut String, id: &str, key: &str, value: &str, data: Option<String>) {
    let data = data.map_or_else(String::new, |d| format!(r#" data-value="{}""#, esc(&d)));
    let _ = write!(
        s,
        r#"<div class="card"><div class="v" id="{id}"{data}>{}</div><div class="k">{key}</div></div>"#,
        esc(value)
    );
}

/// The whole page for `run`; `title` names the record it came from.
pub fn html(run: &Run, title: &str) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>orch report · {}</title><style>{CSS}</style></head><body>"#,
        esc(title)
    );
    head(&mut s, run, title);
    s.push_str("<main>");
    totals(&mut s, run);
    s.push_str(r#"<section id="timeline-section"><h2>Timeline: every attempt, per agent</h2>"#);
    s.push_str(&legend(&[
        ("--ok", "succeeded"),
        ("--retry", "failed, retried"),
        ("--fail", "failed"),
        ("--int", "interrupted"),
        ("--cache", "restored from cache"),
        ("--open", "unfinished"),
    ]));
    let _ = write!(
        s,
        r#"<div class="scroll">{}</div><p class="note">Thin bars under an attempt: a retry's backoff, a wait for quota, other waits. Dots: tool calls, job states, other events. Hover for details.</p></section>"#,
        timeline::svg(run)
    );
    s.push_str(r#"<section id="dag-section"><h2>Task graph, by status</h2>"#);
    s.push_str(&legend(&[
        ("--ok", "succeeded"),
        ("--cache", "restored"),
        ("--skip", "up to date"),
        ("--fail", "failed"),
        ("--block", "blocked"),
        ("--int", "interrupted"),
    ]));
    if !run.has_plan {
        s.push_str(
            r#"<p class="note">The record holds no plan: tasks are shown without their deps.</p>"#,
        );
    }
    let _ = write!(
        s,
        r#"<div class="scroll">{}</div></section>"#,
        dag::svg(run)
    );
    tasks_table(&mut s, run);
    rankings(&mut s, run);
    settings(&mut s, run);
    other(&mut s, run);
    s.push_str("</main></body></html>\n");
    s
}

fn head(s: &mut String, run: &Run, title: &str) {
    let started = run
        .start_ms()
        .checked_div(1000)
        .map(|secs| crate::clock::Stamp::from_unix(secs).date_time())
        .unwrap_or_default();
    let (word, class) = match &run.finished {
        Some(f) if f["success"] == true => ("succeeded", "success"),
        // What stopped it early, when the stream says (`budget`, `quota`).
        Some(f) if f["stopped_by"] == "budget" => ("stopped by the budget", "failure"),
        Some(f) if f["stopped_by"] == "quota" => ("stopped waiting for quota", "failure"),
        Some(f) if f["interrupted"] == true => ("interrupted", "interrupted"),
        Some(_) => ("failed", "failure"),
        None => (
            "did not finish (no build_finished in the record)",
            "failure",
        ),
    };
    let h = &run.header;
    let _ = write!(
        s,
        r#"<header><h1>orch {} <span class="outcome-{class}" id="outcome">{word}</span></h1><div class="meta">started {} · {} · orch {}</div></header>"#,
        esc(h["command"].as_str().unwrap_or("build")),
        esc(&started),
        esc(h["orchfile"].as_str().unwrap_or(title)),
        esc(h["orch_version"].as_str().unwrap_or("?")),
    );
}

fn totals(s: &mut String, run: &Run) {
    s.push_str(r#"<section id="totals"><h2>Totals</h2><div class="cards">"#);
    let f = run.finished.clone().unwrap_or(Value::Null);
    let total = run.total_usage().unwrap_or_else(|| run.tasks_usage());
    let c = total.cost();
    card(s, "total-cost", "cost", &money(c), Some(c.to_string()));
    for (id, key, v) in [
        ("total-input-tokens", "input tokens", total.input_tokens),
        ("total-output-tokens", "output tokens", total.output_tokens),
        (
            "total-cache-read-tokens",
            "cache reads",
            total.cache_read_tokens,
        ),
    ] {
        let n = v.unwrap_or(0);
        card(s, id, key, &n.to_string(), Some(n.to_string()));
    }
    let d = f["duration_ms"]
        .as_u64()
        .unwrap_or(run.end_ms().saturating_sub(run.start_ms()));
    card(
        s,
        "total-duration",
        "wall time",
        &ms(Some(d)),
        Some(d.to_string()),
    );
    for (key, field) in [
        ("ran", "ran"),
        ("up to date", "skipped"),
        ("failed", "failed"),
        ("blocked", "blocked"),
        ("retries", "retries"),
    ] {
        if let Some(n) = f[field].as_u64() {
            card(
                s,
                &format!("total-{field}"),
                key,
                &n.to_string(),
                Some(n.to_string()),
            );
        }
    }
    s.push_str("</div></section>");
}

fn attempts_word(t: &TaskRun) -> String {
    match t.attempts.len() {
        0 => "–".into(),
        n => n.to_string(),
    }
}

fn task_row(s: &mut String, t: &TaskRun) {
    let u = &t.usage;
    let _ = write!(
        s,
        r#"<tr data-task="{}"><td title="{}">{}</td><td>{}</td><td>{}</td><td><span class="pill {st}">{}</span></td><td class="n">{}</td><td class="n">{}</td><td class="n" data-cost="{}">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
        esc(&t.id),
        esc(&t.title),
        esc(&short(&t.id, 48)),
        esc(&t.agent_id),
        esc(&t.agent),
        t.status.word().replace('-', " "),
        attempts_word(t),
        ms(t.duration_ms),
        u.cost(),
        cost(u.cost_usd),
        num(u.input_tokens),
        num(u.cache_read_tokens),
        num(u.output_tokens),
        st = t.status.word(),
    );
}

fn sum_row(s: &mut String, id: &str, label: &str, u: &Usage) {
    let _ = write!(
        s,
        r#"<tr class="sum" id="{id}"><td colspan="6">{}</td><td class="n" data-cost="{}">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
        esc(label),
        u.cost(),
        money(u.cost()),
        u.input_tokens.unwrap_or(0),
        u.cache_read_tokens.unwrap_or(0),
        u.output_tokens.unwrap_or(0),
    );
}

fn head_row(s: &mut String) {
    s.push_str(r#"<thead><tr><th>task</th><th>agent id</th><th>agent</th><th>status</th><th class="n">attempts</th><th class="n">time</th><th class="n">cost</th><th class="n">input tokens</th><th class="n">cache reads</th><th class="n">output tokens</th></tr></thead>"#);
}

/// Rows past this are summed, not listed.
const MAX_ROWS: usize = 2000;

fn tasks_table(s: &mut String, run: &Run) {
    s.push_str(r#"<section id="tasks"><h2>Cost and tokens per task</h2><div class="scroll"><table id="task-table">"#);
    head_row(s);
    s.push_str("<tbody>");
    let shown: Vec<&TaskRun> = run
        .tasks
        .values()
        .filter(|t| t.status != Status::NotRun || t.has_lane())
        .collect();
    for t in shown.iter().take(MAX_ROWS) {
        task_row(s, t);
    }
    s.push_str("</tbody><tfoot>");
    let tasks = run.tasks_usage();
    sum_row(s, "sum-tasks", "all tasks", &tasks);
    if let Some(total) = run.total_usage() {
        let other = Usage {
            cost_usd: Some((total.cost() - tasks.cost()).max(0.0)),
            input_tokens: Some(
                total
                    .input_tokens
                    .unwrap_or(0)
                    .saturating_sub(tasks.input_tokens.unwrap_or(0)),
            ),
            cache_read_tokens: Some(
                total
                    .cache_read_tokens
                    .unwrap_or(0)
                    .saturating_sub(tasks.cache_read_tokens.unwrap_or(0)),
            ),
            cache_write_tokens: None,
            output_tokens: Some(
                total
                    .output_tokens
                    .unwrap_or(0)
                    .saturating_sub(tasks.output_tokens.unwrap_or(0)),
            ),
        };
        if other.cost() > 1e-12 || other.tokens() > 0 {
            sum_row(s, "sum-other", "the aggregation's merge agent", &other);
        }
        sum_row(s, "sum-build", "the build (build_finished)", &total);
    }
    s.push_str("</tfoot></table></div>");
    if shown.len() > MAX_ROWS {
        let _ = write!(
            s,
            r#"<p class="note">{} more tasks not listed; the sums count them.</p>"#,
            shown.len() - MAX_ROWS
        );
    }
    let untouched = run.tasks.len() - shown.len();
    if untouched > 0 {
        let _ = write!(
            s,
            r#"<p class="note">{untouched} task(s) of the plan were not part of this build.</p>"#
        );
    }
    s.push_str("</section>");
}

fn ranking(s: &mut String, id: &str, title: &str, rows: Vec<(&TaskRun, String)>) {
    let _ = write!(s, r#"<div><h2>{title}</h2><table id="{id}"><tbody>"#);
    if rows.is_empty() {
        s.push_str(r#"<tr><td class="note">none</td></tr>"#);
    }
    for (t, v) in rows {
        let _ = write!(
            s,
            r#"<tr data-task="{}"><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#,
            esc(&t.id),
            esc(&short(&t.id, 40)),
            esc(&t.agent),
            esc(&v)
        );
    }
    s.push_str("</tbody></table></div>");
}

const TOP: usize = 5;

fn rankings(s: &mut String, run: &Run) {
    let mut slow: Vec<&TaskRun> = run
        .tasks
        .values()
        .filter(|t| t.duration_ms.is_some())
        .collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.duration_ms));
    let mut dear: Vec<&TaskRun> = run
        .tasks
        .values()
        .filter(|t| t.usage.cost() > 0.0)
        .collect();
    dear.sort_by(|a, b| b.usage.cost().total_cmp(&a.usage.cost()));
    s.push_str(r#"<section id="rankings" class="cols">"#);
    ranking(
        s,
        "slowest",
        "Slowest tasks",
        slow.into_iter()
            .take(TOP)
            .map(|t| (t, ms(t.duration_ms)))
            .collect(),
    );
    ranking(
        s,
        "most-expensive",
        "Most expensive tasks",
        dear.into_iter()
            .take(TOP)
            .map(|t| (t, money(t.usage.cost())))
            .collect(),
    );
    s.push_str("</section>");
}

/// `{"secs": 5, "nanos": 0}` as serde writes a `Duration`, shown as `5.0s`.
fn as_duration(v: &Value) -> Option<Duration> {
    let o = v.as_object()?;
    if o.len() != 2 {
        return None;
    }
    Some(Duration::new(
        o.get("secs")?.as_u64()?,
        o.get("nanos")?.as_u64()? as u32,
    ))
}

/// Leaves of a JSON value as `a.b = value` rows.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    if let Some(d) = as_duration(v) {
        out.push((prefix.into(), crate::duration::format_exact(d)));
        return;
    }
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, x) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Null => out.push((prefix.into(), "–".into())),
        Value::String(x) => out.push((prefix.into(), x.clone())),
        x => out.push((prefix.into(), x.to_string())),
    }
}

fn settings(s: &mut String, run: &Run) {
    let mut rows = Vec::new();
    if let Some(b) = &run.build_started {
        flatten("jobs", &b["jobs"], &mut rows);
        flatten("tasks in the build", &b["tasks"], &mut rows);
    }
    flatten("options", &run.header["options"], &mut rows);
    flatten("settings", &run.header["settings"], &mut rows);
    s.push_str(r#"<section id="settings"><h2>Settings of the run</h2><table><tbody>"#);
    for (k, v) in rows {
        let _ = write!(
            s,
            r#"<tr><th>{}</th><td>{}</td></tr>"#,
            esc(&k),
            esc(&short(&v, 160))
        );
    }
    s.push_str("</tbody></table></section>");
}

fn other(s: &mut String, run: &Run) {
    let mut items = Vec::new();
    match &run.aggregate {
        Some(a) if a["event"] == "aggregate_failed" => items.push(format!(
            "aggregation failed: {}",
            a["reason"].as_str().unwrap_or("")
        )),
        Some(a) => items.push(format!(
            "aggregated into {} ({}{})",
            a["path"].as_str().unwrap_or(""),
            a["strategy"].as_str().unwrap_or(""),
            if a["up_to_date"] == true {
                ", up to date"
            } else {
                ""
            }
        )),
        None => {}
    }
    items.extend(run.notices.iter().map(|n| format!("notice: {n}")));
    for (kind, n) in &run.unknown {
        items.push(format!("{n} event(s) {kind}"));
    }
    if run.bad_lines > 0 {
        items.push(format!(
            "{} line(s) of the record were not events (a torn end after a crash?) and were skipped",
            run.bad_lines
        ));
    }
    if items.is_empty() {
        return;
    }
    s.push_str(r#"<section id="other"><h2>Also in the record</h2><ul>"#);
    for i in items {
        let _ = write!(s, "<li>{}</li>", esc(&i));
    }
    s.push_str("</ul></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_durations_read_as_durations() {
        let mut rows = Vec::new();
        let v = serde_json::json!({"kill_grace": {"secs": 5, "nanos": 0}, "jobs": null, "slurm": {"max_jobs": 100}});
        flatten("settings", &v, &mut rows);
        rows.sort();
        assert_eq!(
            rows,
            [
                ("settings.jobs".to_string(), "–".to_string()),
                ("settings.kill_grace".into(), "5s".into()),
                ("settings.slurm.max_jobs".into(), "100".into()),
            ]
        );
    }

    #[test]
    fn an_unknown_event_is_listed_not_fatal() {
        let run = Run::parse(
            "{\"event\":\"build_started\",\"ts_ms\":1}\n{\"event\":\"brand_new\",\"x\":1,\"ts_ms\":2}\n",
        );
        let page = html(&run, "t");
        assert!(page.contains("1 event(s) brand_new"), "{page}");
        assert!(page.contains(r#"class="mark brand_new""#));
    }
}
