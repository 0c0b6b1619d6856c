//! The timeline: one lane per agent (its agent id and task), one bar per attempt from its start
//! to its end, coloured by how it ended; retries' backoffs, waits and other spans under the
//! bars; tool calls, job states and events of unknown kinds as marks. A lane for the build
//! itself comes first when something happened to it (an interruption, a provider's quota
//! wait). Plain SVG with `<title>` tooltips: no script, so it reads the same in any viewer.

use std::fmt::Write;

use super::run::{Mark, Run, Span, TaskRun};
use super::text::{esc, money, short};
use crate::duration::format_duration;

/// Lanes drawn at most; a bigger build's later lanes are counted instead.
pub const MAX_LANES: usize = 2000;
/// Marks per lane at most (an agent may call hundreds of tools).
const MAX_MARKS: usize = 200;

const WIDTH: f64 = 1180.0;
const LABEL: f64 = 250.0;
const PLOT: f64 = WIDTH - LABEL - 20.0;
const LANE: f64 = 24.0;
const TOP: f64 = 28.0;

/// A tick every 1, 2 or 5 times a power of ten milliseconds, about eight across.
fn tick_step(span_ms: u64) -> u64 {
    let target = (span_ms / 8).max(1);
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step * m >= target {
                return step * m;
            }
        }
        step *= 10;
    }
}

struct Scale {
    t0: u64,
    span: f64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        LABEL + (t.saturating_sub(self.t0) as f64 / self.span) * PLOT
    }
}

/// The timeline's SVG, with a line under it saying what was left out.
pub fn svg(run: &Run) -> String {
    let t0 = run.start_ms();
    let t1 = run.end_ms().max(t0 + 1);
    let scale = Scale {
        t0,
        span: (t1 - t0) as f64,
    };
    let mut lanes: Vec<&TaskRun> = run.tasks.values().filter(|t| t.has_lane()).collect();
    // In the order they started; tasks with only marks after those.
    lanes.sort_by_key(|t| t.attempts.first().map_or(u64::MAX, |a| a.start_ms));
    let hidden = lanes.len().saturating_sub(MAX_LANES);
    lanes.truncate(MAX_LANES);
    let build_lane = !run.marks.is_empty() || !run.spans.is_empty();
    let rows = lanes.len() + usize::from(build_lane);
    let height = TOP + rows as f64 * LANE + 10.0;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="attempts over time">"#
    );
    axis(&mut s, &scale, t1, height);
    let mut y = TOP;
    if build_lane {
        lane_label(
            &mut s,
            y,
            "build",
            "the build itself: interruptions, provider waits",
        );
        spans(&mut s, &scale, y, &run.spans, "build");
        marks(&mut s, &scale, y, &run.marks, "build");
        y += LANE;
    }
    for t in &lanes {
        let label = if t.agent_id.is_empty() {
            t.id.clone()
        } else {
            format!("{} · {}", t.agent_id, t.id)
        };
        let full = format!("{label} ({}) {}", t.agent, t.title);
        lane_label(&mut s, y, &label, &full);
        spans(&mut s, &scale, y, &t.spans, &t.id);
        for a in &t.attempts {
            let end = a.end_ms.unwrap_or(t1);
            let x = scale.x(a.start_ms);
            let w = (scale.x(end) - x).max(2.0);
            let took = format_duration(std::time::Duration::from_millis(
                end.saturating_sub(a.start_ms),
            ));
            let mut tip = format!(
                "{} attempt {}: {}, {took}",
                t.id,
                a.number,
                a.outcome.word()
            );
            if let Some(c) = a.usage.cost_usd {
                let _ = write!(tip, ", {}", money(c));
            }
            if let Some(r) = &a.reason {
                let _ = write!(tip, " · {r}");
            }
            let _ = write!(
                s,
                r#"<rect class="attempt {}" data-task="{}" data-attempt="{}" x="{x:.1}" y="{:.1}" width="{w:.1}" height="14" rx="2"><title>{}</title></rect>"#,
                a.outcome.word(),
                esc(&t.id),
                a.number,
                y + 4.0,
                esc(&tip)
            );
        }
        marks(&mut s, &scale, y, &t.marks, &t.id);
        y += LANE;
    }
    s.push_str("</svg>");
    if hidden > 0 {
        let _ = write!(
            s,
            r#"<p class="note">{hidden} more lanes not drawn (at most {MAX_LANES}).</p>"#
        );
    }
    s
}

fn axis(s: &mut String, scale: &Scale, t1: u64, height: f64) {
    let step = tick_step(t1 - scale.t0);
    let mut t = 0;
    while scale.t0 + t <= t1 {
        let x = scale.x(scale.t0 + t);
        let label = format_duration(std::time::Duration::from_millis(t));
        // A label too near the right edge would be cut: it ends at its line instead.
        let anchor = if x > WIDTH - 60.0 { "end" } else { "start" };
        let _ = write!(
            s,
            r#"<line class="grid" x1="{x:.1}" y1="18" x2="{x:.1}" y2="{height}"/><text class="tick" x="{x:.1}" y="13" text-anchor="{anchor}">{label}</text>"#
        );
        t += step;
    }
}

fn lane_label(s: &mut String, y: f64, label: &str, full: &str) {
    let _ = write!(
        s,
        r#"<rect class="lane" x="0" y="{y:.1}" width="{WIDTH}" height="{LANE}"/><text class="label" x="6" y="{:.1}">{}<title>{}</title></text>"#,
        y + 16.0,
        esc(&short(label, 34)),
        esc(full)
    );
}

fn spans(s: &mut String, scale: &Scale, y: f64, spans: &[Span], lane: &str) {
    for sp in spans {
        // A wait until a time past the build's end ends with the plot.
        let t1 = scale.t0 + scale.span as u64;
        let end = sp.end_ms.unwrap_or(t1).min(t1).max(sp.start_ms);
        let x = scale.x(sp.start_ms);
        let w = (scale.x(end) - x).max(2.0);
        let _ = write!(
            s,
            r#"<rect class="span {}" data-lane="{}" x="{x:.1}" y="{:.1}" width="{w:.1}" height="6"><title>{}</title></rect>"#,
            esc(&sp.kind),
            esc(lane),
            y + 9.0,
            esc(&sp.text)
        );
    }
}

fn marks(s: &mut String, scale: &Scale, y: f64, marks: &[Mark], lane: &str) {
    for m in marks.iter().take(MAX_MARKS) {
        let x = scale.x(m.at_ms);
        let _ = write!(
            s,
            r#"<circle class="mark {}" data-lane="{}" cx="{x:.1}" cy="{:.1}" r="3"><title>{}</title></circle>"#,
            esc(&m.kind),
            esc(lane),
            y + 21.0,
            esc(&m.text)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(1000), 200);
        assert_eq!(tick_step(90_000), 20_000);
        assert_eq!(tick_step(0), 1);
    }
}
