//! The task graph as it was built, coloured by each task's status: layered left to right by
//! depth (a task sits one column right of its deepest dep), ordered within a column by the
//! mean row of its deps (two barycenter sweeps, enough to untangle the fan-in and fan-out
//! shapes plans have), edges as curves from a dep to its dependent. Plain SVG.

use std::collections::HashMap;
use std::fmt::Write;

use super::run::Run;
use super::text::{esc, money, short};

/// Tasks drawn at most: past that a graph is a wall of boxes (`orch graph` prints it as DOT).
pub const MAX_NODES: usize = 400;

const NODE_W: f64 = 170.0;
const NODE_H: f64 = 36.0;
const GAP_X: f64 = 56.0;
const GAP_Y: f64 = 12.0;
const PAD: f64 = 12.0;

/// Each task's column: 0 for one without deps among `deps`, else one past its deepest dep.
/// A cycle (not in a valid plan) is cut where it is found.
fn depths(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut depth = vec![usize::MAX; n];
    let mut on_path = vec![false; n];
    for start in 0..n {
        // Iterative depth-first: (node, next dep to look at).
        let mut stack = vec![(start, 0usize)];
        while let Some(top) = stack.last_mut() {
            let v = top.0;
            if depth[v] != usize::MAX {
                stack.pop();
                continue;
            }
            on_path[v] = true;
            if let Some(&d) = deps[v].get(top.1) {
                top.1 += 1;
                if depth[d] == usize::MAX && !on_path[d] {
                    stack.push((d, 0));
                }
                continue;
            }
            depth[v] = deps[v]
                .iter()
                .filter(|&&d| depth[d] != usize::MAX)
                .map(|&d| depth[d] + 1)
                .max()
                .unwrap_or(0);
            on_path[v] = false;
            stack.pop();
        }
    }
    depth
}

/// Columns of task indexes, each ordered to keep edges short.
fn layers(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let depth = depths(deps);
    let cols = depth.iter().max().map_or(0, |m| m + 1);
    let mut layers = vec![Vec::new(); cols];
    for (i, &d) in depth.iter().enumerate() {
        layers[d].push(i);
    }
    let mut row = vec![0f64; deps.len()];
    for l in &layers {
        for (k, &i) in l.iter().enumerate() {
            row[i] = k as f64;
        }
    }
    // Each column by the mean row of its tasks' deps, twice; a task without deps keeps its
    // row. (Sweeping back up by the dependents' rows was tried: on the fan-in shapes plans
    // have, it pushed the root under its leaves.)
    let sweep = |l: &mut Vec<usize>, row: &mut Vec<f64>| {
        let key = |i: usize| {
            let n = &deps[i];
            if n.is_empty() {
                row[i]
            } else {
                n.iter().map(|&x| row[x]).sum::<f64>() / n.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = l.iter().map(|&i| (key(i), i)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *l = keyed.into_iter().map(|(_, i)| i).collect();
        for (k, &i) in l.iter().enumerate() {
            row[i] = k as f64;
        }
    };
    for _ in 0..2 {
        for l in layers.iter_mut().skip(1) {
            sweep(l, &mut row);
        }
    }
    layers
}

/// The graph's SVG, or a note saying why it is not drawn.
pub fn svg(run: &Run) -> String {
    let tasks: Vec<_> = run.tasks.values().collect();
    if tasks.is_empty() {
        return r#"<p class="note">No tasks in this record.</p>"#.into();
    }
    if tasks.len() > MAX_NODES {
        return format!(
            r#"<p class="note">{} tasks: the graph is drawn up to {MAX_NODES}; <code>orch graph</code> prints it as DOT or mermaid.</p>"#,
            tasks.len()
        );
    }
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let layers = layers(&deps);
    let rows = layers.iter().map(Vec::len).max().unwrap_or(1);
    let mut pos = vec![(0f64, 0f64); tasks.len()];
    for (c, l) in layers.iter().enumerate() {
        // Each column centred on the tallest: a fan-in's task sits between its deps.
        let offset = (rows - l.len()) as f64 / 2.0;
        for (r, &i) in l.iter().enumerate() {
            pos[i] = (
                PAD + c as f64 * (NODE_W + GAP_X),
                PAD + (r as f64 + offset) * (NODE_H + GAP_Y),
            );
        }
    }
    let width = 2.0 * PAD + layers.len() as f64 * (NODE_W + GAP_X) - GAP_X;
    let height = 2.0 * PAD + rows as f64 * (NODE_H + GAP_Y) - GAP_Y;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="task graph">"#
    );
    for (i, ds) in deps.iter().enumerate() {
        let (x2, y2) = pos[i];
        for &d in ds {
            let (x1, y1) = pos[d];
            let (ax, ay) = (x1 + NODE_W, y1 + NODE_H / 2.0);
            let (bx, by) = (x2, y2 + NODE_H / 2.0);
            let mid = (ax + bx) / 2.0;
            let _ = write!(
                s,
                r#"<path class="edge" data-from="{}" data-to="{}" d="M{ax:.1},{ay:.1} C{mid:.1},{ay:.1} {mid:.1},{by:.1} {bx:.1},{by:.1}"/>"#,
                esc(&tasks[d].id),
                esc(&tasks[i].id)
            );
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        let (x, y) = pos[i];
        let mut sub = t.status.word().replace('-', " ");
        if let Some(c) = t.usage.cost_usd.filter(|&c| c > 0.0) {
            let _ = write!(sub, " · {}", money(c));
        }
        let mut tip = format!("{} ({}): {}", t.id, t.agent, t.status.word());
        if !t.title.is_empty() {
            let _ = write!(tip, "\n{}", t.title);
        }
        if let Some(r) = &t.reason {
            let _ = write!(tip, "\n{r}");
        }
        let _ = write!(
            s,
            r#"<g class="node {}" data-task="{}"><title>{}</title><rect x="{x:.1}" y="{y:.1}" width="{NODE_W}" height="{NODE_H}" rx="5"/><text class="id" x="{:.1}" y="{:.1}">{}</text><text class="sub" x="{:.1}" y="{:.1}">{}</text></g>"#,
            t.status.word(),
            esc(&t.id),
            esc(&tip),
            x + 8.0,
            y + 15.0,
            esc(&short(&t.id, 24)),
            x + 8.0,
            y + 29.0,
            esc(&sub)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_sits_one_column_past_its_deepest_dep() {
        // 0 -> 1 -> 3, 0 -> 2 -> 3, 4 alone
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        assert_eq!(depths(&deps), [0, 1, 1, 2, 0]);
        let l = layers(&deps);
        assert_eq!(l, [vec![0, 4], vec![1, 2], vec![3]]);
    }

    #[test]
    fn a_cycle_does_not_hang_the_layout() {
        let deps = vec![vec![1], vec![0]];
        let d = depths(&deps);
        assert!(d.iter().all(|&x| x < 2), "{d:?}");
    }

    #[test]
    fn barycenters_keep_a_chain_in_its_row() {
        // Two chains, listed so that the second column starts crossed: 0 -> 3, 1 -> 2.
        let deps = vec![vec![], vec![], vec![1], vec![0]];
        assert_eq!(layers(&deps), [vec![0, 1], vec![3, 2]]);
    }
}
