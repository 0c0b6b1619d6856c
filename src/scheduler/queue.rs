//! The scheduler's bookkeeping: which tasks are wanted, which are ready, which may start now
//! given per-agent limits, per-executor limits (local children apart from Slurm jobs) and
//! locks, and what a failure blocks. Pure state: no threads, no processes.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use crate::graph::TaskGraph;

/// What the scheduler needs to know about one task.
#[derive(Debug, Clone, Default)]
pub struct SchedTask {
    /// 0 (P0, first) .. 3.
    pub priority: u8,
    /// Remaining critical-path length; longer starts first among equal priorities.
    pub critical: f64,
    /// Index into the class limits, for agent tasks.
    pub agent_class: Option<usize>,
    /// Index into the class limits too: the executor's (`-j` for local children, `max_jobs`
    /// for Slurm), when the build has more than one.
    pub pool: Option<usize>,
    /// Index into the class limits too: the provider whose API the task's agent calls,
    /// whose limit the build adapts as the provider answers (see [`Limiter`]).
    ///
    /// [`Limiter`]: super::Limiter
    pub provider: Option<usize>,
    /// Indexes of the locks the task holds while running.
    pub locks: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    NotWanted,
    Waiting,
    Ready,
    Running,
    Succeeded,
    Failed,
    /// A dep failed, so this task will not run.
    Blocked,
}

#[derive(Debug, PartialEq)]
struct ReadyKey {
    priority: u8,
    critical: f64,
    index: usize,
}

impl Eq for ReadyKey {}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Max-heap: lower priority number, then longer critical path, then earlier in the plan.
        other
            .priority
            .cmp(&self.priority)
            .then(self.critical.total_cmp(&other.critical))
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

pub struct Scheduler {
    tasks: Vec<SchedTask>,
    dependents: Vec<Vec<usize>>,
    waiting_on: Vec<u32>,
    state: Vec<NodeState>,
    ready: BinaryHeap<ReadyKey>,
    class_limit: Vec<Option<usize>>,
    class_running: Vec<usize>,
    lock_held: Vec<bool>,
    /// Ready tasks set aside because their agent is at its limit, or a lock they need is
    /// held; a freed slot or lock wakes the best one. So a long queue behind a busy agent
    /// is not re-examined on every call (which would make scheduling quadratic).
    parked_on_class: Vec<BinaryHeap<ReadyKey>>,
    parked_on_lock: Vec<BinaryHeap<ReadyKey>>,
    running: usize,
    keep_going: bool,
    stopped: bool,
}

impl Scheduler {
    /// `wanted[i]` selects the tasks to run; unwanted deps count as already satisfied.
    pub fn new(
        graph: &TaskGraph,
        tasks: Vec<SchedTask>,
        wanted: &[bool],
        class_limit: Vec<Option<usize>>,
        lock_count: usize,
        keep_going: bool,
    ) -> Scheduler {
        let n = graph.len();
        let mut waiting_on = vec![0u32; n];
        let mut state = vec![NodeState::NotWanted; n];
        let mut ready = BinaryHeap::new();
        for t in 0..n {
            if !wanted[t] {
                continue;
            }
            waiting_on[t] = graph.deps[t].iter().filter(|&&d| wanted[d]).count() as u32;
            if waiting_on[t] == 0 {
                state[t] = NodeState::Ready;
                ready.push(ReadyKey {
                    priority: tasks[t].priority,
                    critical: tasks[t].critical,
                    index: t,
                });
            } else {
                state[t] = NodeState::Waiting;
            }
        }
        let classes = class_limit.len();
        Scheduler {
            tasks,
            dependents: graph.dependents.clone(),
            waiting_on,
            state,
            ready,
            class_limit,
            class_running: vec![0; classes],
            lock_held: vec![false; lock_count],
            parked_on_class: (0..classes).map(|_| BinaryHeap::new()).collect(),
            parked_on_lock: (0..lock_count).map(|_| BinaryHeap::new()).collect(),
            running: 0,
            keep_going,
            stopped: false,
        }
    }

    pub fn state(&self, t: usize) -> NodeState {
        self.state[t]
    }

    pub fn running(&self) -> usize {
        self.running
    }

    /// Stops starting new tasks (after a failure without keep-going, or on cancel).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Changes a class's limit (a provider's, as it answers): a raised one wakes as many
    /// parked tasks as it has room for; a lowered one lets running tasks finish.
    pub fn set_limit(&mut self, c: usize, limit: Option<usize>) {
        if self.class_limit[c] == limit {
            return;
        }
        self.class_limit[c] = limit;
        let room = match limit {
            Some(l) => l.saturating_sub(self.class_running[c]),
            None => usize::MAX,
        };
        for _ in 0..room.min(self.parked_on_class[c].len()) {
            if let Some(k) = self.parked_on_class[c].pop() {
                self.ready.push(k);
            }
        }
    }

    /// Whether ready tasks wait on a class whose limit is 0 now (a provider that asked to
    /// wait): the build is not over while they do, though nothing runs.
    pub fn held(&self) -> bool {
        !self.stopped
            && self
                .class_limit
                .iter()
                .zip(&self.parked_on_class)
                .any(|(l, parked)| *l == Some(0) && !parked.is_empty())
    }

    /// The classes of task `t`: its agent's, its executor pool's, its provider's.
    fn classes_of(&self, t: usize) -> [Option<usize>; 3] {
        let task = &self.tasks[t];
        [task.agent_class, task.pool, task.provider]
    }

    fn class_full(&self, c: usize) -> bool {
        self.class_limit[c].is_some_and(|limit| self.class_running[c] >= limit)
    }

    /// Sets a ready task aside on what holds it back, or hands it back (`Err`) if it may start.
    fn park(&mut self, key: ReadyKey) -> Result<(), ReadyKey> {
        let task = &self.tasks[key.index];
        let classes = self.classes_of(key.index);
        if let Some(c) = classes.into_iter().flatten().find(|&c| self.class_full(c)) {
            // It may have been woken by its other class, which has room: that class's next
            // parked task may go in its place.
            for other in classes.into_iter().flatten().filter(|&o| o != c) {
                self.wake_class(other);
            }
            self.parked_on_class[c].push(key);
            return Ok(());
        }
        if let Some(&l) = task.locks.iter().find(|&&l| self.lock_held[l]) {
            // Its classes have room, so their next parked tasks may go in its place.
            for c in classes.into_iter().flatten() {
                self.wake_class(c);
            }
            self.parked_on_lock[l].push(key);
            return Ok(());
        }
        Err(key)
    }

    fn wake_class(&mut self, c: usize) {
        if !self.class_full(c) {
            if let Some(k) = self.parked_on_class[c].pop() {
                self.ready.push(k);
            }
        }
    }

    fn wake_lock(&mut self, l: usize) {
        if !self.lock_held[l] {
            if let Some(k) = self.parked_on_lock[l].pop() {
                self.ready.push(k);
            }
        }
    }

    /// The best ready task that may start now, marked running.
    pub fn next_task(&mut self) -> Option<usize> {
        if self.stopped {
            return None;
        }
        let t = loop {
            let key = self.ready.pop()?;
            if self.state[key.index] != NodeState::Ready {
                continue;
            }
            match self.park(key) {
                Ok(()) => continue,
                Err(key) => break key.index,
            }
        };
        self.state[t] = NodeState::Running;
        self.running += 1;
        for c in self.classes_of(t).into_iter().flatten() {
            self.class_running[c] += 1;
        }
        for &l in &self.tasks[t].locks {
            self.lock_held[l] = true;
        }
        Some(t)
    }

    /// Frees what a running task held: an agent slot and its locks.
    fn release(&mut self, t: usize) {
        self.running -= 1;
        for c in self.classes_of(t).into_iter().flatten() {
            self.class_running[c] -= 1;
            self.wake_class(c);
        }
        for i in 0..self.tasks[t].locks.len() {
            let l = self.tasks[t].locks[i];
            self.lock_held[l] = false;
            self.wake_lock(l);
        }
    }

    /// Records the end of a running task. Returns the tasks this blocks when it failed.
    pub fn finish(&mut self, t: usize, success: bool) -> Vec<usize> {
        debug_assert_eq!(self.state[t], NodeState::Running);
        self.release(t);
        if success {
            self.state[t] = NodeState::Succeeded;
            for i in 0..self.dependents[t].len() {
                let d = self.dependents[t][i];
                if self.state[d] != NodeState::Waiting {
                    continue;
                }
                self.waiting_on[d] -= 1;
                if self.waiting_on[d] == 0 {
                    self.state[d] = NodeState::Ready;
                    self.ready.push(ReadyKey {
                        priority: self.tasks[d].priority,
                        critical: self.tasks[d].critical,
                        index: d,
                    });
                }
            }
            Vec::new()
        } else {
            self.state[t] = NodeState::Failed;
            if !self.keep_going {
                self.stopped = true;
            }
            self.block_dependents(t)
        }
    }

    /// Settles a wanted task that is not to start in this build, before anything runs, as
    /// failed but without stopping the build (a worktree task whose kept change waits for
    /// `orch merge`): the other tasks go on. Returns the tasks this blocks.
    pub fn hold(&mut self, t: usize) -> Vec<usize> {
        if !matches!(self.state[t], NodeState::Waiting | NodeState::Ready) {
            return Vec::new();
        }
        self.state[t] = NodeState::Failed;
        self.block_dependents(t)
    }

    /// Every task downstream of `t` that has not started, blocked; in plan order.
    fn block_dependents(&mut self, t: usize) -> Vec<usize> {
        let mut blocked = Vec::new();
        let mut stack = self.dependents[t].clone();
        while let Some(d) = stack.pop() {
            if matches!(self.state[d], NodeState::Waiting | NodeState::Ready) {
                self.state[d] = NodeState::Blocked;
                blocked.push(d);
                stack.extend(self.dependents[d].iter().copied());
            }
        }
        blocked.sort_unstable();
        blocked
    }

    /// Hands back a task [`next_task`](Self::next_task) gave out that did not start after
    /// all (the budget would not allow it): ready again, holding nothing.
    pub fn put_back(&mut self, t: usize) {
        debug_assert_eq!(self.state[t], NodeState::Running);
        self.release(t);
        self.state[t] = NodeState::Ready;
        self.ready.push(ReadyKey {
            priority: self.tasks[t].priority,
            critical: self.tasks[t].critical,
            index: t,
        });
    }

    /// Sets aside a task handed out that will not start in this build (the budget is
    /// reached): it is not handed out again, and counts as not started.
    pub fn set_aside(&mut self, t: usize) {
        debug_assert_eq!(self.state[t], NodeState::Running);
        self.release(t);
        self.state[t] = NodeState::Ready;
    }

    /// Records that a running task was stopped (cancelled): nothing more starts, and its
    /// dependents stay waiting rather than blocked.
    pub fn abandon(&mut self, t: usize) {
        debug_assert_eq!(self.state[t], NodeState::Running);
        self.release(t);
        self.state[t] = NodeState::Failed;
        self.stopped = true;
    }

    /// The tasks running now, in plan order.
    pub fn running_tasks(&self) -> Vec<usize> {
        (0..self.state.len())
            .filter(|&t| self.state[t] == NodeState::Running)
            .collect()
    }

    /// Wanted tasks that never started (stopped early, or cancelled).
    pub fn not_started(&self) -> Vec<usize> {
        (0..self.state.len())
            .filter(|&t| matches!(self.state[t], NodeState::Waiting | NodeState::Ready))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;

    pub(crate) fn graph(deps: Vec<Vec<usize>>) -> TaskGraph {
        let n = deps.len();
        TaskGraph::new(deps, &vec![1.0; n]).unwrap()
    }

    pub(crate) fn plain(g: &TaskGraph) -> Vec<SchedTask> {
        (0..g.len())
            .map(|t| SchedTask {
                priority: 2,
                critical: g.critical[t],
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn priority_then_critical_path_then_plan_order() {
        // 0 and 1 and 2 are roots; 1 has a long chain behind it; 2 is P0.
        let g = graph(vec![vec![], vec![], vec![], vec![1], vec![3]]);
        let mut tasks = plain(&g);
        tasks[2].priority = 0;
        let mut s = Scheduler::new(&g, tasks, &[true; 5], vec![], 0, false);
        assert_eq!(s.next_task(), Some(2));
        assert_eq!(s.next_task(), Some(1));
        assert_eq!(s.next_task(), Some(0));
        assert_eq!(s.next_task(), None);
    }

    #[test]
    fn dependents_start_as_soon_as_their_own_deps_finish() {
        // 0 -> 2, 1 -> 3: 2 must not wait for 1.
        let g = graph(vec![vec![], vec![], vec![0], vec![1]]);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, false);
        let a = s.next_task().unwrap();
        let b = s.next_task().unwrap();
        assert_eq!((a, b), (0, 1));
        s.finish(0, true);
        assert_eq!(s.next_task(), Some(2));
    }

    #[test]
    fn agent_limit_and_locks_hold_tasks_back() {
        let g = graph(vec![vec![], vec![], vec![], vec![]]);
        let mut tasks = plain(&g);
        tasks[0].agent_class = Some(0);
        tasks[1].agent_class = Some(0);
        tasks[2].locks = vec![0];
        tasks[3].locks = vec![0];
        let mut s = Scheduler::new(&g, tasks, &[true; 4], vec![Some(1)], 1, false);
        let first: HashSet<usize> = [s.next_task(), s.next_task()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(first, HashSet::from([0, 2]));
        assert_eq!(
            s.next_task(),
            None,
            "1 waits for agent slot, 3 for the lock"
        );
        s.finish(2, true);
        assert_eq!(s.next_task(), Some(3));
        s.finish(0, true);
        assert_eq!(s.next_task(), Some(1));
    }

    #[test]
    fn executor_pools_limit_apart_from_agent_classes() {
        // 0-3 local (pool 1, limit 1), 4-7 on Slurm (pool 2, limit 3); 4 and 5 also of an
        // agent with room for one (class 0).
        let g = graph(vec![vec![]; 8]);
        let mut tasks = plain(&g);
        for (t, task) in tasks.iter_mut().enumerate() {
            task.pool = Some(if t < 4 { 1 } else { 2 });
        }
        tasks[4].agent_class = Some(0);
        tasks[5].agent_class = Some(0);
        let limits = vec![Some(1), Some(1), Some(3)];
        let mut s = Scheduler::new(&g, tasks, &[true; 8], limits, 0, false);
        let mut started = HashSet::new();
        while let Some(t) = s.next_task() {
            started.insert(t);
        }
        assert_eq!(started.len(), 4, "1 local + 3 on Slurm: {started:?}");
        assert_eq!(started.iter().filter(|&&t| t < 4).count(), 1);
        assert!(
            !(started.contains(&4) && started.contains(&5)),
            "the agent's limit holds inside the pool"
        );
    }

    #[test]
    fn failure_blocks_dependents_and_stops_without_keep_going() {
        let g = graph(vec![vec![], vec![0], vec![1], vec![]]);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, false);
        assert_eq!(s.next_task(), Some(0));
        assert_eq!(s.next_task(), Some(3));
        assert_eq!(s.finish(0, false), vec![1, 2]);
        assert_eq!(s.next_task(), None);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, true);
        assert_eq!(s.next_task(), Some(0));
        s.finish(0, false);
        assert_eq!(s.next_task(), Some(3), "keep-going starts unrelated work");
    }

    #[test]
    fn a_held_task_blocks_its_dependents_and_the_rest_goes_on_without_keep_going() {
        // 1 waits on 0; 1 is held (2 after it is blocked), 3 is independent.
        let g = graph(vec![vec![], vec![0], vec![1], vec![]]);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, false);
        assert_eq!(s.hold(1), vec![2]);
        assert_eq!(s.hold(1), Vec::<usize>::new(), "held once");
        assert_eq!(s.next_task(), Some(0));
        assert_eq!(s.next_task(), Some(3));
        assert!(s.finish(0, true).is_empty());
        assert_eq!(s.next_task(), None, "neither 1 nor 2 starts");
        assert!(!s.is_stopped());
        assert!(s.not_started().is_empty(), "settled, not left waiting");
    }

    #[test]
    fn unwanted_deps_count_as_done() {
        let g = graph(vec![vec![], vec![0]]);
        let mut s = Scheduler::new(&g, plain(&g), &[false, true], vec![], 0, false);
        assert_eq!(s.next_task(), Some(1));
    }

    #[test]
    fn a_changed_limit_parks_and_wakes_a_class() {
        let g = graph(vec![vec![]; 4]);
        let mut tasks = plain(&g);
        for t in &mut tasks {
            t.provider = Some(0);
        }
        let mut s = Scheduler::new(&g, tasks, &[true; 4], vec![Some(2)], 0, false);
        assert!(s.next_task().is_some() && s.next_task().is_some());
        assert_eq!(s.next_task(), None, "2 at once");
        s.set_limit(0, Some(0));
        s.finish(0, true);
        assert_eq!(s.next_task(), None, "a limit of 0 holds every task back");
        assert!(s.held(), "parked on a class that waits");
        s.set_limit(0, Some(3));
        assert!(!s.held());
        let woken: Vec<usize> = std::iter::from_fn(|| s.next_task()).collect();
        assert_eq!(
            woken.len(),
            2,
            "room for 2 beside the one running: {woken:?}"
        );
    }

    #[test]
    fn a_task_put_back_is_ready_again_and_holds_nothing() {
        let g = graph(vec![vec![], vec![]]);
        let mut tasks = plain(&g);
        tasks[0].agent_class = Some(0);
        tasks[1].agent_class = Some(0);
        let mut s = Scheduler::new(&g, tasks, &[true; 2], vec![Some(1)], 0, false);
        let t = s.next_task().unwrap();
        s.put_back(t);
        assert_eq!(s.running(), 0);
        assert_eq!(s.state(t), NodeState::Ready);
        s.stop();
        assert_eq!(s.not_started(), vec![0, 1]);
    }

    /// Random DAGs with agent limits and locks, finished in random order: limits and locks
    /// always hold, and every task runs (no task is left parked).
    #[test]
    fn limits_and_locks_hold_under_random_completion_order() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..20 {
            let n = 50 + rand(250);
            let deps: Vec<Vec<usize>> = (0..n)
                .map(|i| {
                    let mut d: Vec<usize> =
                        (0..rand(3)).filter(|_| i > 0).map(|_| rand(i)).collect();
                    d.sort();
                    d.dedup();
                    d
                })
                .collect();
            let g = graph(deps);
            // Three agent classes, then two executor pools.
            let limits = vec![Some(1), Some(2), None, Some(2), Some(3)];
            let tasks: Vec<SchedTask> = (0..n)
                .map(|t| SchedTask {
                    priority: rand(4) as u8,
                    critical: g.critical[t],
                    agent_class: [None, Some(0), Some(1), Some(2)][rand(4)],
                    pool: [None, Some(3), Some(4)][rand(3)],
                    provider: None,
                    locks: (0..rand(3)).map(|_| rand(3)).collect(),
                })
                .collect();
            let mut s = Scheduler::new(&g, tasks.clone(), &vec![true; n], limits.clone(), 3, false);
            let jobs = 1 + rand(6);
            let mut running: Vec<usize> = Vec::new();
            let mut done = 0;
            loop {
                while running.len() < jobs {
                    let Some(t) = s.next_task() else { break };
                    running.push(t);
                }
                for (c, limit) in limits.iter().enumerate() {
                    let busy = running
                        .iter()
                        .filter(|&&t| tasks[t].agent_class == Some(c) || tasks[t].pool == Some(c))
                        .count();
                    assert!(
                        limit.is_none_or(|l| busy <= l),
                        "round {round}: class {c} over its limit"
                    );
                }
                for l in 0..3 {
                    let holders = running
                        .iter()
                        .filter(|&&t| tasks[t].locks.contains(&l))
                        .count();
                    assert!(holders <= 1, "round {round}: lock {l} held twice");
                }
                if running.is_empty() {
                    break;
                }
                let t = running.swap_remove(rand(running.len()));
                s.finish(t, true);
                done += 1;
            }
            assert_eq!(done, n, "round {round}: every task ran");
        }
    }
}
