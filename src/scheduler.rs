//! Scheduling, apart from execution (ninja's Plan/CommandRunner split).
//!
//! [`Scheduler`] is pure bookkeeping: which tasks are wanted, which are ready, which may start
//! now given per-agent limits and locks, and what a failure blocks. [`drive`] runs it on a rayon
//! pool with any [`Runner`], handing results to a [`Coordinator`] on the calling thread, so
//! tests can drive the real scheduler with a fake runner.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use crate::graph::TaskGraph;

/// What the scheduler needs to know about one task.
#[derive(Debug, Clone, Default)]
pub struct SchedTask {
    /// 0 (P0, first) .. 3.
    pub priority: u8,
    /// Remaining critical-path length; longer starts first among equal priorities.
    pub critical: f64,
    /// Index into the per-agent limits, for agent tasks.
    pub agent_class: Option<usize>,
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

    fn class_full(&self, c: usize) -> bool {
        self.class_limit[c].is_some_and(|limit| self.class_running[c] >= limit)
    }

    /// Sets a ready task aside on what holds it back, or hands it back (`Err`) if it may start.
    fn park(&mut self, key: ReadyKey) -> Result<(), ReadyKey> {
        let task = &self.tasks[key.index];
        if let Some(c) = task.agent_class.filter(|&c| self.class_full(c)) {
            self.parked_on_class[c].push(key);
            return Ok(());
        }
        if let Some(&l) = task.locks.iter().find(|&&l| self.lock_held[l]) {
            // Its agent has room, so the agent's next parked task may go in its place.
            if let Some(c) = task.agent_class {
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
        if let Some(c) = self.tasks[t].agent_class {
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
        if let Some(c) = self.tasks[t].agent_class {
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
    }

    /// Records that a running task was stopped (cancelled): nothing more starts, and its
    /// dependents stay waiting rather than blocked.
    pub fn abandon(&mut self, t: usize) {
        debug_assert_eq!(self.state[t], NodeState::Running);
        self.release(t);
        self.state[t] = NodeState::Failed;
        self.stopped = true;
    }

    /// Wanted tasks that never started (stopped early, or cancelled).
    pub fn not_started(&self) -> Vec<usize> {
        (0..self.state.len())
            .filter(|&t| matches!(self.state[t], NodeState::Waiting | NodeState::Ready))
            .collect()
    }
}

/// Executes one task on a worker thread.
pub trait Runner: Sync {
    /// Progress sent while a task runs (attempt started, retrying...). Informational: the
    /// coordinator sees it, in order and before the task's result, when it next wakes (at
    /// the latest 100 ms later), so sending one does not wake the scheduling thread.
    type Message: Send;
    /// The result of a task.
    type Done: Send;
    fn run(&self, task: usize, send: &dyn Fn(Self::Message)) -> Self::Done;

    /// A cheap check on the scheduling thread before a task is handed to a worker: `Some`
    /// finishes the task at once (e.g. it is up to date) without a thread round trip.
    fn try_skip(&self, _task: usize) -> Option<Self::Done> {
        None
    }
}

/// Receives everything on the scheduling thread, in order.
pub trait Coordinator<M, D> {
    /// Tasks handed to workers together.
    fn started(&mut self, batch: &[usize]);
    fn message(&mut self, msg: M);
    /// Returns whether the task succeeded.
    fn finished(&mut self, task: usize, done: D) -> bool;
    fn blocked(&mut self, task: usize, failed_dep: usize);
    /// Called at least every 100ms while tasks run.
    fn tick(&mut self) {}
    /// Called before the scheduling thread waits for workers, and when `drive` returns: the
    /// moment to write out what the last steps buffered.
    fn idle(&mut self) {}
}

enum WorkerEvent<D> {
    Done(usize, D),
    /// A runner panicked: without this the loop would wait for its `Done` forever.
    Panicked(Box<dyn std::any::Any + Send>),
}

/// Runs the scheduler to completion: starts each task as soon as its deps are done, at most
/// `jobs` at once. On `cancel`, starts nothing more and waits for running tasks (the runner
/// sees `cancel` too and stops its processes).
pub fn drive<R: Runner, C: Coordinator<R::Message, R::Done>>(
    sched: &mut Scheduler,
    runner: &R,
    coord: &mut C,
    jobs: usize,
    cancel: &AtomicBool,
) {
    let jobs = jobs.max(1);
    // Takes ready tasks while fewer than `jobs` run: up-to-date ones are settled on the spot,
    // the others collected in `batch` for the workers.
    let fill = |sched: &mut Scheduler, coord: &mut C, batch: &mut Vec<usize>| {
        if cancel.load(Ordering::Relaxed) {
            sched.stop();
        }
        while sched.running() < jobs {
            let Some(t) = sched.next_task() else { break };
            match runner.try_skip(t) {
                Some(done) => {
                    let ok = coord.finished(t, done);
                    for b in sched.finish(t, ok) {
                        coord.blocked(b, t);
                    }
                }
                None => batch.push(t),
            }
        }
    };
    let mut batch = Vec::new();
    fill(sched, coord, &mut batch);
    if batch.is_empty() && sched.running() == 0 {
        // Everything was up to date (or stopped): no worker threads needed.
        coord.idle();
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("orch-worker-{i}"))
        .build()
        .expect("cannot start worker threads");
    let (tx, rx) = mpsc::channel::<WorkerEvent<R::Done>>();
    // Progress messages wait here rather than in the channel: a channel send wakes this
    // thread, and on a loaded machine each wake-up costs a context switch next to the
    // processes the workers started. Results still go through the channel, and the mailbox
    // is emptied before each is handled, so a task's messages come before its result.
    let mailbox: Mutex<Vec<R::Message>> = Mutex::new(Vec::new());
    let deliver = |coord: &mut C| {
        let messages = std::mem::take(&mut *mailbox.lock().unwrap());
        for m in messages {
            coord.message(m);
        }
    };
    pool.in_place_scope(|scope| {
        loop {
            fill(sched, coord, &mut batch);
            if !batch.is_empty() {
                coord.started(&batch);
                for &t in &batch {
                    let tx = tx.clone();
                    let mailbox = &mailbox;
                    scope.spawn(move |_| {
                        let send = |m| mailbox.lock().unwrap().push(m);
                        let run = std::panic::AssertUnwindSafe(|| runner.run(t, &send));
                        let _ = tx.send(match std::panic::catch_unwind(run) {
                            Ok(done) => WorkerEvent::Done(t, done),
                            Err(panic) => WorkerEvent::Panicked(panic),
                        });
                    });
                }
                batch.clear();
            }
            if sched.running() == 0 {
                break;
            }
            coord.idle();
            let event = rx.recv_timeout(Duration::from_millis(100));
            deliver(coord);
            match event {
                Ok(WorkerEvent::Done(t, d)) => {
                    let ok = coord.finished(t, d);
                    if !ok && cancel.load(Ordering::Relaxed) {
                        // Stopped by the user, not failed: dependents are "not started",
                        // not blocked by a failure.
                        sched.abandon(t);
                    } else {
                        for b in sched.finish(t, ok) {
                            coord.blocked(b, t);
                        }
                    }
                }
                Ok(WorkerEvent::Panicked(panic)) => {
                    // A bug: stop the other tasks' processes and crash rather than hang.
                    cancel.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(panic);
                }
                Err(_) => {}
            }
            coord.tick();
        }
    });
    // Messages sent after the last Done cannot exist: each worker sends Done last, and the
    // mailbox was emptied before that Done was handled.
    coord.idle();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    fn graph(deps: Vec<Vec<usize>>) -> TaskGraph {
        let n = deps.len();
        TaskGraph::new(deps, &vec![1.0; n]).unwrap()
    }

    fn plain(g: &TaskGraph) -> Vec<SchedTask> {
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
    fn unwanted_deps_count_as_done() {
        let g = graph(vec![vec![], vec![0]]);
        let mut s = Scheduler::new(&g, plain(&g), &[false, true], vec![], 0, false);
        assert_eq!(s.next_task(), Some(1));
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
            let limits = vec![Some(1), Some(2), None];
            let tasks: Vec<SchedTask> = (0..n)
                .map(|t| SchedTask {
                    priority: rand(4) as u8,
                    critical: g.critical[t],
                    agent_class: [None, Some(0), Some(1), Some(2)][rand(4)],
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
                        .filter(|&&t| tasks[t].agent_class == Some(c))
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

    struct FakeRunner {
        fail: HashSet<usize>,
        log: Mutex<Vec<usize>>,
    }

    impl Runner for FakeRunner {
        type Message = usize;
        type Done = bool;
        fn run(&self, task: usize, send: &dyn Fn(usize)) -> bool {
            send(task);
            self.log.lock().unwrap().push(task);
            !self.fail.contains(&task)
        }
    }

    #[derive(Default)]
    struct Record {
        started: Vec<usize>,
        finished: Vec<usize>,
        blocked: Vec<usize>,
        messages: usize,
        /// Messages and results in the order the coordinator saw them.
        seen: Vec<(&'static str, usize)>,
    }

    impl Coordinator<usize, bool> for Record {
        fn started(&mut self, batch: &[usize]) {
            self.started.extend_from_slice(batch);
        }
        fn message(&mut self, t: usize) {
            self.messages += 1;
            self.seen.push(("message", t));
        }
        fn finished(&mut self, t: usize, ok: bool) -> bool {
            self.finished.push(t);
            self.seen.push(("finished", t));
            ok
        }
        fn blocked(&mut self, t: usize, _: usize) {
            self.blocked.push(t);
        }
    }

    #[test]
    fn drive_runs_every_task_after_its_deps() {
        let n = 200;
        let deps: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![(i * 7) % i, i / 2]
                }
            })
            .map(|mut v: Vec<usize>| {
                v.sort();
                v.dedup();
                v
            })
            .collect();
        let g = graph(deps.clone());
        let mut s = Scheduler::new(&g, plain(&g), &vec![true; n], vec![], 0, false);
        let runner = FakeRunner {
            fail: HashSet::new(),
            log: Mutex::new(Vec::new()),
        };
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 4, &AtomicBool::new(false));
        assert_eq!(rec.finished.len(), n);
        let pos: Vec<usize> = {
            let mut p = vec![0; n];
            for (i, &t) in rec.finished.iter().enumerate() {
                p[t] = i;
            }
            p
        };
        for (t, ds) in deps.iter().enumerate() {
            for &d in ds {
                assert!(pos[d] < pos[t], "{d} must finish before {t}");
            }
        }
        // Every message arrives, and before its task's result.
        assert_eq!(rec.messages, n);
        for t in 0..n {
            let at = |what| rec.seen.iter().position(|&e| e == (what, t)).unwrap();
            assert!(at("message") < at("finished"), "task {t}");
        }
    }

    #[test]
    fn drive_stops_after_failure() {
        let g = graph(vec![vec![], vec![0], vec![1]]);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 3], vec![], 0, false);
        let runner = FakeRunner {
            fail: HashSet::from([0]),
            log: Mutex::new(Vec::new()),
        };
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 2, &AtomicBool::new(false));
        assert_eq!(rec.finished, vec![0]);
        assert_eq!(rec.blocked, vec![1, 2]);
    }

    /// Settles the tasks in `skip` in `try_skip` (as up to date, or failed when also in
    /// `fail`); runs the rest.
    struct SkippingRunner {
        skip: HashSet<usize>,
        fail: HashSet<usize>,
        ran: Mutex<Vec<usize>>,
    }

    impl Runner for SkippingRunner {
        type Message = usize;
        type Done = bool;
        fn run(&self, task: usize, _: &dyn Fn(usize)) -> bool {
            self.ran.lock().unwrap().push(task);
            true
        }
        fn try_skip(&self, task: usize) -> Option<bool> {
            self.skip
                .contains(&task)
                .then(|| !self.fail.contains(&task))
        }
    }

    fn skipping(skip: &[usize], fail: &[usize]) -> SkippingRunner {
        SkippingRunner {
            skip: skip.iter().copied().collect(),
            fail: fail.iter().copied().collect(),
            ran: Mutex::new(Vec::new()),
        }
    }

    fn chain(n: usize) -> TaskGraph {
        graph(
            (0..n)
                .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                .collect(),
        )
    }

    #[test]
    fn drive_settles_up_to_date_tasks_without_starting_any() {
        let g = chain(4);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, false);
        let runner = skipping(&[0, 1, 2, 3], &[]);
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 2, &AtomicBool::new(false));
        assert_eq!(rec.finished, vec![0, 1, 2, 3]);
        assert!(rec.started.is_empty() && runner.ran.lock().unwrap().is_empty());
        assert!(s.not_started().is_empty());
    }

    #[test]
    fn a_task_settled_as_failed_blocks_its_dependents() {
        let g = chain(3);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 3], vec![], 0, false);
        let runner = skipping(&[0], &[0]);
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 2, &AtomicBool::new(false));
        assert_eq!(rec.finished, vec![0]);
        assert_eq!(rec.blocked, vec![1, 2]);
        assert!(rec.started.is_empty());
    }

    #[test]
    fn drive_mixes_settled_and_running_tasks_in_dependency_order() {
        // 0 up to date, 1 runs, 2 up to date once 1 is done, 3 runs.
        let g = chain(4);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 4], vec![], 0, false);
        let runner = skipping(&[0, 2], &[]);
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 2, &AtomicBool::new(false));
        assert_eq!(rec.finished, vec![0, 1, 2, 3]);
        assert_eq!(rec.started, vec![1, 3]);
        assert_eq!(*runner.ran.lock().unwrap(), vec![1, 3]);
    }

    #[test]
    fn drive_cancelled_before_it_starts_settles_nothing() {
        let g = chain(3);
        let mut s = Scheduler::new(&g, plain(&g), &[true; 3], vec![], 0, false);
        let runner = skipping(&[0, 1, 2], &[]);
        let mut rec = Record::default();
        drive(&mut s, &runner, &mut rec, 2, &AtomicBool::new(true));
        assert!(rec.finished.is_empty() && rec.started.is_empty());
        assert_eq!(s.not_started(), vec![0, 1, 2]);
    }

    struct PanickingRunner;

    impl Runner for PanickingRunner {
        type Message = usize;
        type Done = bool;
        fn run(&self, task: usize, _: &dyn Fn(usize)) -> bool {
            if task == 1 {
                panic!("runner bug");
            }
            true
        }
    }

    #[test]
    fn a_runner_panic_propagates_instead_of_hanging() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let g = graph(vec![vec![], vec![], vec![1]]);
            let mut s = Scheduler::new(&g, plain(&g), &[true; 3], vec![], 0, false);
            let cancel = AtomicBool::new(false);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drive(&mut s, &PanickingRunner, &mut Record::default(), 2, &cancel)
            }));
            let _ = tx.send((r.is_err(), cancel.load(Ordering::Relaxed)));
        });
        let (panicked, cancelled) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("drive hung after a runner panic");
        assert!(panicked && cancelled);
    }
}
