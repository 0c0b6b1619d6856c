//! The providers' [`Limiter`]s, shared by the workers and the scheduling thread: a worker
//! takes a [`Permit`] before each call of an agent and hands back how the call went; the
//! scheduling thread reads each provider's limit (for its class, so no more of its tasks
//! start than it takes) and the news of cuts, raises and waits (for the build's events).
//!
//! A task already running when its provider's limit drops (or while it is held for a
//! retry-after or a usage-limit reset) waits here for a permit before its next attempt,
//! rather than calling into a provider that just said no; other providers' tasks and shell
//! tasks do not pass through it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::limiter::{Change, Limiter};
use crate::cancel::Cancel;

/// How a call went, as far as its provider's limits go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallEnd<'a> {
    Succeeded,
    /// Refused for load (429, 529, overloaded), maybe with when to call again.
    Refused {
        retry_after: Option<Duration>,
        reason: &'a str,
    },
    /// The account's usage limit is reached until `until`.
    Quota {
        until: SystemTime,
        reason: &'a str,
    },
    /// Failed for another reason: says nothing of the provider's limits.
    Other,
}

/// What the caller does next, after a call that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// As it would without a limiter (a retry backs off).
    AsBefore,
    /// The provider's limit was cut or it is held: retry without a backoff of its own, the
    /// next permit paces it.
    Paced,
    /// Wait for the usage limit to reset (the next permit comes then); not an attempt.
    QuotaWait,
    /// The reset is past `max_quota_wait`: stop the task, and the build.
    QuotaStop,
}

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPermit {
    Cancelled,
    /// The provider's usage limit resets past `max_quota_wait`.
    Stopped,
}

/// A change the build reports.
#[derive(Debug, Clone, PartialEq)]
pub enum News {
    Limit {
        provider: usize,
        limit: usize,
        max: usize,
        reason: String,
    },
    Waiting {
        provider: usize,
        until: SystemTime,
        quota: bool,
        reason: String,
    },
    Resumed {
        provider: usize,
        quota: bool,
    },
    Stopped {
        provider: usize,
        until: SystemTime,
    },
}

struct Provider {
    name: String,
    limiter: Limiter,
    /// Calls out now: permit id and when it was taken.
    active: Vec<(u64, Instant)>,
    /// Usage-limit waits so far in this build.
    waited: Duration,
    /// A hold said in the news, and whether it is a quota's: its end is news too.
    held: Option<bool>,
    stopped: bool,
}

struct Inner {
    providers: Vec<Provider>,
    next_id: u64,
    news: Vec<News>,
}

pub struct Gate {
    inner: Mutex<Inner>,
    freed: Condvar,
    max_quota_wait: Duration,
}

/// One call's place at its provider; handed back with [`Permit::end`] (dropping it counts
/// as a call that said nothing).
pub struct Permit<'g> {
    gate: &'g Gate,
    provider: usize,
    id: u64,
    started: Instant,
    ended: bool,
}

/// How often a waiting worker looks at the cancel and the clock.
const POLL: Duration = Duration::from_millis(50);

impl Gate {
    /// A gate for these providers: name, most calls at once, and where its limit starts
    /// (`None`: at the most).
    pub fn new(providers: Vec<(String, usize, Option<usize>)>, max_quota_wait: Duration) -> Gate {
        Gate {
            inner: Mutex::new(Inner {
                providers: providers
                    .into_iter()
                    .map(|(name, max, start)| Provider {
                        name,
                        limiter: Limiter::new(max, start),
                        active: Vec::new(),
                        waited: Duration::ZERO,
                        held: None,
                        stopped: false,
                    })
                    .collect(),
                next_id: 0,
                news: Vec::new(),
            }),
            freed: Condvar::new(),
            max_quota_wait,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn name(&self, p: usize) -> String {
        self.lock().providers[p].name.clone()
    }

    /// Waits until provider `p` takes one more call (or the build is cancelled, or the
    /// provider stopped).
    pub fn acquire(&self, p: usize, cancel: &Cancel) -> Result<Permit<'_>, NoPermit> {
        let mut g = self.lock();
        loop {
            if let Some(permit) = self.take_place(&mut g, p, cancel)? {
                return Ok(permit);
            }
            g = self
                .freed
                .wait_timeout(g, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether provider `p` takes no calls now for a while (held for a retry-after or a
    /// usage-limit reset, or stopped).
    pub fn held(&self, p: usize) -> bool {
        let g = self.lock();
        g.providers[p].stopped || g.providers[p].limiter.held_until(Instant::now()).is_some()
    }

    /// As [`Gate::acquire`], without waiting: `None` while the provider takes no more.
    pub fn try_acquire(&self, p: usize, cancel: &Cancel) -> Result<Option<Permit<'_>>, NoPermit> {
        self.take_place(&mut self.lock(), p, cancel)
    }

    fn take_place(
        &self,
        g: &mut Inner,
        p: usize,
        cancel: &Cancel,
    ) -> Result<Option<Permit<'_>>, NoPermit> {
        if cancel.is_cancelled() {
            return Err(NoPermit::Cancelled);
        }
        if g.providers[p].stopped {
            return Err(NoPermit::Stopped);
        }
        let now = Instant::now();
        if g.providers[p].active.len() >= g.providers[p].limiter.limit(now) {
            return Ok(None);
        }
        g.next_id += 1;
        let id = g.next_id;
        g.providers[p].active.push((id, now));
        Ok(Some(Permit {
            gate: self,
            provider: p,
            id,
            started: now,
            ended: false,
        }))
    }

    /// Each provider's limit now (0 while held); a hold that ended is news.
    pub fn limits(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut g = self.lock();
        let mut ended = Vec::new();
        let limits = g
            .providers
            .iter_mut()
            .enumerate()
            .map(|(p, prov)| {
                let limit = if prov.stopped {
                    0
                } else {
                    prov.limiter.limit(now)
                };
                if limit > 0 {
                    if let Some(quota) = prov.held.take() {
                        ended.push(News::Resumed { provider: p, quota });
                    }
                }
                limit
            })
            .collect();
        g.news.extend(ended);
        limits
    }

    /// What changed since last asked.
    pub fn take_news(&self) -> Vec<News> {
        std::mem::take(&mut self.lock().news)
    }

    /// What each provider's limiter learnt in this build (and its most), for the next build
    /// to start from: providers it taught nothing (no refusal, below the most) are left out.
    pub fn learnt(&self) -> Vec<(String, usize, usize)> {
        self.lock()
            .providers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.limiter.learnt()?, p.limiter.max())))
            .collect()
    }

    fn end(&self, permit: &Permit, how: CallEnd) -> Next {
        let now = Instant::now();
        let mut g = self.lock();
        let max_quota_wait = self.max_quota_wait;
        let p = permit.provider;
        let prov = &mut g.providers[p];
        let in_flight = prov.active.len();
        prov.active.retain(|(id, _)| *id != permit.id);
        let mut news = Vec::new();
        let limit_news = |prov: &Provider, change: Option<Change>, reason: String| {
            change.map(|_| News::Limit {
                provider: p,
                limit: prov.limiter.base_limit(),
                max: prov.limiter.max(),
                reason,
            })
        };
        let next = match how {
            CallEnd::Succeeded => {
                let change = prov.limiter.success();
                news.extend(limit_news(prov, change, "a run of successes".into()));
                Next::AsBefore
            }
            CallEnd::Other => Next::AsBefore,
            CallEnd::Refused {
                retry_after,
                reason,
            } => {
                let burst = prov.limiter.cut_since(permit.started);
                let change = prov
                    .limiter
                    .refused(now, permit.started, in_flight, retry_after);
                news.extend(limit_news(prov, change, format!("refused: {reason}")));
                if let Some(d) = retry_after {
                    if prov.held.is_none() {
                        prov.held = Some(false);
                        news.push(News::Waiting {
                            provider: p,
                            until: SystemTime::now() + d,
                            quota: false,
                            reason: reason.to_string(),
                        });
                    }
                }
                // The retry will wait for a permit (fewer places than calls that were out,
                // a cut already made for its burst, or a hold): that paces it. A lone call
                // at a limit of 1 backs off as before.
                if retry_after.is_some() || burst || prov.limiter.base_limit() < in_flight {
                    Next::Paced
                } else {
                    Next::AsBefore
                }
            }
            CallEnd::Quota { until, reason } => {
                let wait = until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                if prov.waited + wait > max_quota_wait {
                    if !prov.stopped {
                        prov.stopped = true;
                        news.push(News::Stopped { provider: p, until });
                    }
                    Next::QuotaStop
                } else {
                    let until_instant = now + wait;
                    // Waits overlap when several tasks hear of one reset: count the new part.
                    let already = prov
                        .limiter
                        .held_until(now)
                        .map_or(Duration::ZERO, |h| h - now);
                    prov.waited += wait.saturating_sub(already);
                    prov.limiter.hold(until_instant);
                    if prov.held != Some(true) {
                        prov.held = Some(true);
                        news.push(News::Waiting {
                            provider: p,
                            until,
                            quota: true,
                            reason: reason.to_string(),
                        });
                    }
                    Next::QuotaWait
                }
            }
        };
        g.news.extend(news);
        drop(g);
        self.freed.notify_all();
        next
    }
}

impl Permit<'_> {
    /// Hands the permit back with how the call went.
    pub fn end(mut self, how: CallEnd) -> Next {
        self.ended = true;
        self.gate.end(&self, how)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            self.gate.end(self, CallEnd::Other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A gate over one provider, its limit at `max` (past the slow start).
    fn gate(max: usize) -> Gate {
        Gate::new(
            vec![("anthropic".into(), max, Some(max))],
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn permits_are_bounded_by_the_limit_and_a_refusal_cuts_it() {
        let g = gate(4);
        let cancel = Cancel::new();
        let permits: Vec<Permit> = (0..4).map(|_| g.acquire(0, &cancel).unwrap()).collect();
        let out = AtomicUsize::new(4);
        std::thread::scope(|s| {
            s.spawn(|| {
                let p = g.acquire(0, &cancel).unwrap();
                assert!(out.load(Ordering::SeqCst) < 4, "waited for a free place");
                drop(p);
            });
            std::thread::sleep(Duration::from_millis(120));
            let mut permits = permits;
            let refused = permits.pop().unwrap();
            out.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(
                refused.end(CallEnd::Refused {
                    retry_after: None,
                    reason: "HTTP 429"
                }),
                Next::Paced
            );
            drop(permits);
        });
        assert_eq!(g.limits(), vec![2], "4 out, one refused: halved");
        assert!(matches!(
            g.take_news().as_slice(),
            [News::Limit {
                limit: 2,
                max: 4,
                ..
            }]
        ));
    }

    #[test]
    fn try_acquire_takes_a_free_place_and_says_none_at_the_limit() {
        let g = gate(1);
        let cancel = Cancel::new();
        let first = g.try_acquire(0, &cancel).unwrap().expect("a free place");
        assert!(g.try_acquire(0, &cancel).unwrap().is_none(), "at the limit");
        first.end(CallEnd::Succeeded);
        assert!(g.try_acquire(0, &cancel).unwrap().is_some());
        cancel.cancel(crate::cancel::CancelReason::Signal(libc::SIGINT));
        assert_eq!(g.try_acquire(0, &cancel).err(), Some(NoPermit::Cancelled));
    }

    #[test]
    fn a_build_with_no_refusal_leaves_no_limit_to_keep_and_a_refusal_leaves_one() {
        let cold = || {
            Gate::new(
                vec![("anthropic".into(), 16, None)],
                Duration::from_secs(60),
            )
        };
        let cancel = Cancel::new();
        assert_eq!(
            cold().learnt(),
            vec![],
            "no calls: the starting 2 is not kept"
        );
        let g = cold();
        for _ in 0..3 {
            g.acquire(0, &cancel).unwrap().end(CallEnd::Succeeded);
        }
        assert_eq!(g.limits(), vec![5]);
        assert_eq!(g.learnt(), vec![], "the slow start's level is not kept");
        let first = g.acquire(0, &cancel).unwrap();
        let refused = g.acquire(0, &cancel).unwrap();
        refused.end(CallEnd::Refused {
            retry_after: None,
            reason: "HTTP 429",
        });
        first.end(CallEnd::Succeeded);
        assert_eq!(g.learnt(), vec![("anthropic".to_string(), 1, 16)]);
    }

    #[test]
    fn a_quota_holds_the_provider_and_its_end_is_news() {
        let g = gate(2);
        let cancel = Cancel::new();
        let p = g.acquire(0, &cancel).unwrap();
        let until = SystemTime::now() + Duration::from_millis(300);
        assert_eq!(
            p.end(CallEnd::Quota {
                until,
                reason: "limit reached"
            }),
            Next::QuotaWait
        );
        assert_eq!(g.limits(), vec![0]);
        assert!(g.held(0));
        let started = Instant::now();
        let p = g.acquire(0, &cancel).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "waited for the reset"
        );
        drop(p);
        assert!(!g.held(0));
        assert_eq!(g.limits(), vec![2]);
        let news = g.take_news();
        assert!(
            matches!(news[0], News::Waiting { quota: true, .. }),
            "{news:?}"
        );
        assert!(
            matches!(news.last(), Some(News::Resumed { quota: true, .. })),
            "{news:?}"
        );
    }

    #[test]
    fn a_reset_past_max_quota_wait_stops_the_provider() {
        let g = Gate::new(vec![("x".into(), 2, None)], Duration::from_secs(60));
        let cancel = Cancel::new();
        let p = g.acquire(0, &cancel).unwrap();
        let until = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(
            p.end(CallEnd::Quota {
                until,
                reason: "limit reached"
            }),
            Next::QuotaStop
        );
        assert_eq!(g.acquire(0, &cancel).err(), Some(NoPermit::Stopped));
        assert!(matches!(g.take_news().as_slice(), [News::Stopped { .. }]));
    }

    #[test]
    fn a_waiting_worker_gives_up_on_cancel() {
        let g = gate(1);
        let cancel = Cancel::new();
        let _held = g.acquire(0, &cancel).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| g.acquire(0, &cancel).err());
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel(crate::cancel::CancelReason::Signal(libc::SIGINT));
            assert_eq!(waiter.join().unwrap(), Some(NoPermit::Cancelled));
        });
    }
}
