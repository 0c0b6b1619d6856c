//! Running the scheduler: tasks start on a rayon pool as soon as their deps are done, at
//! most `jobs` at once, with any [`Runner`]; every message and result reaches the
//! [`Coordinator`] on the calling thread, in order.

use std::sync::{mpsc, Mutex};
use std::time::Duration;

use super::queue::Scheduler;
use crate::cancel::{Cancel, CancelReason};

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
    /// Whether a task the scheduler handed out may start now (it is not settled at once).
    fn admit(&mut self, _task: usize) -> Admit {
        Admit::Start
    }
    /// Whether the build stops starting tasks though nothing failed (a provider's usage
    /// limit resets too late): a task that ends unsuccessful then is stopped, not failed.
    fn stopping(&self) -> bool {
        false
    }
    /// Class limits that changed since last asked (a provider's, as it answers), with
    /// their new value; asked before tasks are handed out.
    fn limits(&mut self) -> Vec<(usize, Option<usize>)> {
        Vec::new()
    }
    /// The build was cancelled while these tasks run (once, as soon as the scheduling
    /// thread sees it): the moment to say what is being stopped.
    fn cancelling(&mut self, _running: &[usize]) {}
    /// Called at least every 100ms while tasks run.
    fn tick(&mut self) {}
    /// Called before the scheduling thread waits for workers, and when `drive` returns: the
    /// moment to write out what the last steps buffered.
    fn idle(&mut self) {}
}

/// What [`Coordinator::admit`] says of a task about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Start,
    /// Not yet: it is put back, and nothing more starts until a running task ends (a task
    /// of unknown cost waits for the one running).
    Wait,
    /// Never: it is put back and nothing more starts (the budget is reached).
    Stop,
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
    cancel: &Cancel,
) {
    let jobs = jobs.max(1);
    // Once cancelled: nothing more starts, and the coordinator hears at once what is stopping
    // (before any of it reports back, which may take the whole grace period).
    let told_cancel = std::cell::Cell::new(false);
    let notice_cancel = |sched: &mut Scheduler, coord: &mut C| {
        if cancel.is_cancelled() {
            sched.stop();
            if !told_cancel.get() && sched.running() > 0 {
                told_cancel.set(true);
                coord.cancelling(&sched.running_tasks());
            }
        }
    };
    // Once the budget is reached nothing more starts, but what is up to date is still
    // settled (it costs nothing, and is not "not started").
    let budget_reached = std::cell::Cell::new(false);
    // Takes ready tasks while fewer than `jobs` run: up-to-date ones are settled on the spot,
    // the others collected in `batch` for the workers.
    let fill = |sched: &mut Scheduler, coord: &mut C, batch: &mut Vec<usize>| {
        notice_cancel(sched, coord);
        for (c, limit) in coord.limits() {
            sched.set_limit(c, limit);
        }
        if coord.stopping() {
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
                None if budget_reached.get() => sched.set_aside(t),
                None => match coord.admit(t) {
                    Admit::Start => batch.push(t),
                    Admit::Wait => {
                        sched.put_back(t);
                        break;
                    }
                    Admit::Stop => {
                        budget_reached.set(true);
                        sched.set_aside(t);
                    }
                },
            }
        }
    };
    let mut batch = Vec::new();
    fill(sched, coord, &mut batch);
    if batch.is_empty() && sched.running() == 0 && !sched.held() {
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
            // Tasks held back by a provider that asked to wait keep the build going though
            // nothing runs; the wait ends (or the build stops) at the provider's time.
            if sched.running() == 0 && !sched.held() {
                break;
            }
            coord.idle();
            let event = rx.recv_timeout(Duration::from_millis(100));
            notice_cancel(sched, coord);
            deliver(coord);
            match event {
                Ok(WorkerEvent::Done(t, d)) => {
                    let ok = coord.finished(t, d);
                    if !ok && (cancel.is_cancelled() || coord.stopping()) {
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
                    cancel.cancel(CancelReason::Bug);
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
    use crate::graph::TaskGraph;
    use crate::scheduler::queue::tests::{graph, plain};
    use std::collections::HashSet;

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
        drive(&mut s, &runner, &mut rec, 4, &Cancel::new());
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
        drive(&mut s, &runner, &mut rec, 2, &Cancel::new());
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
        drive(&mut s, &runner, &mut rec, 2, &Cancel::new());
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
        drive(&mut s, &runner, &mut rec, 2, &Cancel::new());
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
        drive(&mut s, &runner, &mut rec, 2, &Cancel::new());
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
        let cancel = Cancel::new();
        cancel.cancel(CancelReason::Signal(libc::SIGINT));
        drive(&mut s, &runner, &mut rec, 2, &cancel);
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
            let cancel = Cancel::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drive(&mut s, &PanickingRunner, &mut Record::default(), 2, &cancel)
            }));
            let _ = tx.send((r.is_err(), cancel.reason() == Some(CancelReason::Bug)));
        });
        let (panicked, cancelled) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("drive hung after a runner panic");
        assert!(panicked && cancelled);
    }
}
