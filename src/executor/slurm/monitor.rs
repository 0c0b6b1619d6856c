//! One view of the queue for every job of the build: a single `squeue` call lists all the
//! jobs being waited for, at most once per poll interval, whichever worker asks first; the
//! others read what it found. So a thousand jobs in flight cost one query a second, not a
//! thousand. The jobs' ends are not learnt here first (their exit files say it sooner, see
//! `batch.rs`): the queue tells pending from running, and how a job that wrote no exit code
//! ended.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cli::{self, State};

/// What the last query said of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not asked about yet, or the controller did not answer.
    Unknown,
    /// Listed in this state.
    Is(State),
    /// Not listed: ended and forgotten (past `MinJobAge`), or never known.
    Gone,
}

pub(crate) struct Monitor {
    poll: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    watched: BTreeSet<u64>,
    seen: HashMap<u64, Seen>,
    asked: Option<Instant>,
}

impl Monitor {
    pub fn new(poll: Duration) -> Monitor {
        Monitor {
            poll,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn poll(&self) -> Duration {
        self.poll
    }

    pub fn watch(&self, job: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.watched.insert(job);
        inner.seen.insert(job, Seen::Unknown);
    }

    pub fn unwatch(&self, job: u64) {
        let mut inner = self.inner.lock().unwrap();
        inner.watched.remove(&job);
        inner.seen.remove(&job);
    }

    /// The job as a query no older than `max_age` saw it (asking now if the last is older).
    pub fn state(&self, job: u64, max_age: Duration) -> Seen {
        let mut inner = self.inner.lock().unwrap();
        if inner.asked.is_none_or(|t| t.elapsed() >= max_age) {
            // Asked under the lock: a worker that wants it too waits for this answer rather
            // than asking again.
            inner.refresh();
        }
        inner.seen.get(&job).cloned().unwrap_or(Seen::Unknown)
    }
}

impl Inner {
    fn refresh(&mut self) {
        self.asked = Some(Instant::now());
        if self.watched.is_empty() {
            return;
        }
        let ids: Vec<String> = self.watched.iter().map(u64::to_string).collect();
        let args = vec![
            "--states=all".to_string(),
            format!("--jobs={}", ids.join(",")),
        ];
        // An unanswered query (controller restarting) leaves every job as it was last seen:
        // the next one may answer.
        let Ok(listed) = cli::list(&args) else {
            return;
        };
        for &job in &self.watched {
            self.seen.insert(job, Seen::Gone);
        }
        for l in listed {
            if self.watched.contains(&l.id) {
                let seen = match l.state {
                    Some(s) => Seen::Is(s),
                    None => Seen::Unknown,
                };
                self.seen.insert(l.id, seen);
            }
        }
    }
}
