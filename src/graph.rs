//! The task DAG: dependency edges, topological order, cycle paths and critical-path lengths.
//!
//! Over plain dependency lists (node `i` is task `i`), so it imports nothing of the crate: the
//! plan builds its graph with `TaskGraph::from_plan` (defined beside the plan model) and its
//! validation uses the cycle check, and the scheduler runs on it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::graph::{DiGraph, NodeIndex};

/// Edges run from a dependency to its dependent. Node `i` is task `i` of the plan.
#[derive(Debug, Clone)]
pub struct TaskGraph {
    pub graph: DiGraph<usize, ()>,
    pub deps: Vec<Vec<usize>>,
    pub dependents: Vec<Vec<usize>>,
    /// Dependencies before dependents; ties in plan order.
    pub topo: Vec<usize>,
    /// Longest estimate-weighted path from each task to the end of the graph, itself included.
    /// The scheduler starts the ready task with the longest remaining chain first.
    pub critical: Vec<f64>,
}

impl TaskGraph {
    /// Builds from dependency lists; on a cycle returns its path (first task repeated last).
    pub fn new(deps: Vec<Vec<usize>>, weights: &[f64]) -> Result<TaskGraph, Vec<usize>> {
        let n = deps.len();
        let mut graph = DiGraph::with_capacity(n, deps.iter().map(Vec::len).sum());
        for i in 0..n {
            graph.add_node(i);
        }
        let mut dependents = vec![Vec::new(); n];
        for (task, ds) in deps.iter().enumerate() {
            for &d in ds {
                graph.add_edge(NodeIndex::new(d), NodeIndex::new(task), ());
                dependents[d].push(task);
            }
        }
        let Some(topo) = topological_order(&deps, &dependents) else {
            return Err(find_cycle(&deps).unwrap_or_default());
        };
        let mut critical = vec![0.0; n];
        for &t in topo.iter().rev() {
            let tail = dependents[t]
                .iter()
                .map(|&d| critical[d])
                .fold(0.0, f64::max);
            critical[t] = weights.get(t).copied().unwrap_or(1.0) + tail;
        }
        Ok(TaskGraph {
            graph,
            deps,
            dependents,
            topo,
            critical,
        })
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// The targets and everything they depend on, transitively.
    pub fn upstream_closure(&self, targets: &[usize]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(t) = stack.pop() {
            if !std::mem::replace(&mut seen[t], true) {
                stack.extend(self.deps[t].iter().copied());
            }
        }
        seen
    }

    /// The roots and everything that depends on them, transitively.
    pub fn downstream_cone(&self, roots: &[usize]) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(t) = stack.pop() {
            if !std::mem::replace(&mut seen[t], true) {
                stack.extend(self.dependents[t].iter().copied());
            }
        }
        seen
    }

    /// Groups the selected tasks into waves that could run together: a task's wave is one past
    /// the latest wave among its selected deps.
    pub fn waves(&self, selected: &[bool]) -> Vec<Vec<usize>> {
        let mut level = vec![0usize; self.len()];
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for &t in &self.topo {
            if !selected[t] {
                continue;
            }
            let l = self.deps[t]
                .iter()
                .filter(|&&d| selected[d])
                .map(|&d| level[d] + 1)
                .max()
                .unwrap_or(0);
            level[t] = l;
            if waves.len() <= l {
                waves.resize(l + 1, Vec::new());
            }
            waves[l].push(t);
        }
        for w in &mut waves {
            w.sort_unstable();
        }
        waves
    }

    /// Length of the longest estimate-weighted chain in the graph.
    pub fn critical_path_length(&self) -> f64 {
        self.critical.iter().copied().fold(0.0, f64::max)
    }
}

/// Finds one dependency cycle; the path starts and ends at the same task.
/// Kahn's algorithm taking the lowest ready index first: dependencies before dependents and,
/// among tasks free to go, plan order. The same plan always gives the same order (what
/// final_output.md is written in); `None` on a cycle.
fn topological_order(deps: &[Vec<usize>], dependents: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..deps.len())
        .filter(|&t| waiting[t] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(Reverse(t)) = ready.pop() {
        order.push(t);
        for &d in &dependents[t] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    (order.len() == deps.len()).then_some(order)
}

pub fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let n = deps.len();
    let mut mark = vec![Mark::New; n];
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dep index to visit).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::OnStack;
                        stack.push((dep, 0));
                    }
                    Mark::OnStack => {
                        let from = stack.iter().position(|&(n, _)| n == dep).unwrap();
                        // The stack walks dependent -> dep; report it in run order
                        // (dep before dependent) so it reads like the DAG edges.
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        cycle.reverse();
                        cycle.push(cycle[0]);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diamond() -> TaskGraph {
        // 0 -> {1,2,3} -> 4, the seed's code-review shape.
        TaskGraph::new(
            vec![vec![], vec![0], vec![0], vec![0], vec![1, 2, 3]],
            &[1.0, 1.0, 5.0, 2.0, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn critical_path_follows_the_heaviest_branch() {
        let g = diamond();
        assert_eq!(g.critical[0], 7.0);
        assert_eq!(g.critical[2], 6.0);
        assert_eq!(g.critical[1], 2.0);
        assert_eq!(g.critical_path_length(), 7.0);
    }

    #[test]
    fn waves_group_independent_tasks() {
        let g = diamond();
        assert_eq!(g.waves(&[true; 5]), vec![vec![0], vec![1, 2, 3], vec![4]]);
        // Without the root selected, the middle tasks start at once.
        assert_eq!(
            g.waves(&[false, true, true, true, true]),
            vec![vec![1, 2, 3], vec![4]]
        );
    }

    #[test]
    fn topological_order_keeps_plan_order_among_free_tasks() {
        // The code-review shape: 0 -> 1, 2, 3 -> 4 (petgraph's DFS order gave 0, 3, 2, 1, 4).
        assert_eq!(diamond().topo, vec![0, 1, 2, 3, 4]);
        // A dependent listed before its dep still comes after it, and then the rest in order.
        let g = TaskGraph::new(vec![vec![2], vec![], vec![], vec![0]], &[]).unwrap();
        assert_eq!(g.topo, vec![1, 2, 0, 3]);
    }

    #[test]
    fn closures() {
        let g = diamond();
        assert_eq!(
            g.upstream_closure(&[2]),
            vec![true, false, true, false, false]
        );
        assert_eq!(
            g.downstream_cone(&[3]),
            vec![false, false, false, true, true]
        );
    }

    #[test]
    fn cycle_is_reported_as_a_path() {
        // 0 needs 2, 1 needs 0, 2 needs 1.
        let err = TaskGraph::new(vec![vec![2], vec![0], vec![1]], &[1.0; 3]).unwrap_err();
        assert_eq!(err.len(), 4);
        assert_eq!(err.first(), err.last());
        let mut members = err[..3].to_vec();
        members.sort();
        assert_eq!(members, vec![0, 1, 2]);
        assert!(find_cycle(&[vec![], vec![0]]).is_none());
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
    }
}
