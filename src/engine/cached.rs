//! The engine's side of the output cache: a stale task is looked up by its fingerprint
//! before it runs, and restored when found; a task that ran is stored after it succeeds.
//!
//! A restore is all or nothing: every blob is fetched into the local store, then copied
//! beside its place and checked on the way, and only then are the files renamed in (each
//! whole, with its mode). The restored files are synced together at the build's end, before
//! the state that names them closes (one fsync at a time was most of a restore's cost).
//! Blobs stream through one bounded buffer, never held whole. A record is used only when it holds
//! exactly the task's declared outputs (a record from a remote names no other path), and a
//! blob that does not match its digest is reported and makes the task run. A restored task
//! hands its dependents what a run would have, and counts as having run for them.

use std::time::Duration;

use super::context::{BuildContext, DoneInfo};
use super::exchange::{Restored, TaskDone, TaskMsg};
use super::explain::FingerprintParts;
use crate::agent::Usage;
use crate::cache::{
    mode_of, ActionKey, ActionRecord, BlobError, CachedFile, Source, RECORD_VERSION,
};
use crate::clock::{unix_now, Active};
use crate::disk::Digest;
use crate::state::TaskRecord;

/// What a successful run's action record keeps besides its files.
pub(super) struct RunFacts<'a> {
    /// Every attempt's.
    pub(super) usage: &'a Usage,
    /// The last attempt's session.
    pub(super) session: Option<String>,
    pub(super) duration: Duration,
}

impl BuildContext<'_> {
    /// Whether task `t` is looked up in and stored to the cache in this build.
    pub(super) fn caches(&self, t: usize) -> bool {
        // A worktree task's product is its change, which the cache does not hold.
        self.cache.is_some()
            && self.task(t).cache
            && self
                .plan
                .isolation(self.task(t), self.opts.agent_override.as_deref())
                != crate::plan::Isolation::Worktree
    }

    /// Whether a build would restore task `t` (with these exact parts) from the local
    /// store, for the dry run and `orch explain`.
    pub(crate) fn would_restore(&self, t: usize, parts: &FingerprintParts) -> bool {
        !self.forced[t]
            && self.caches(t)
            && self
                .cache
                .as_ref()
                .is_some_and(|c| c.has_local(&ActionKey::of(&parts.value)))
    }

    fn say_cache_notes(&self, send: &dyn Fn(TaskMsg)) {
        if let Some(c) = &self.cache {
            for message in c.take_notes() {
                send(TaskMsg::BuildNotice { message });
            }
        }
    }

    /// Task `t` restored from the cache, if its fingerprint is there and every blob checks
    /// out; `None`: run it.
    pub(super) fn restore(
        &self,
        t: usize,
        parts: &FingerprintParts,
        why: &str,
        send: &dyn Fn(TaskMsg),
    ) -> Option<TaskDone> {
        let cache = self.cache.as_ref()?;
        let started = Active::now();
        let key = ActionKey::of(&parts.value);
        let (found, bad_record) = cache.lookup(&key);
        self.say_cache_notes(send);
        if let Some(message) = bad_record {
            send(TaskMsg::Notice { task: t, message });
        }
        let (record, source) = found?;
        let task = self.task(t);
        // Exactly the declared outputs, each once; an agent's answer has its result.
        let mut declared: Vec<&str> = task.outputs.iter().map(String::as_str).collect();
        let mut named: Vec<&str> = record.outputs.iter().map(|f| f.path.as_str()).collect();
        declared.sort_unstable();
        named.sort_unstable();
        if declared != named || (!task.action.is_shell() && record.result.is_none()) {
            send(TaskMsg::Notice {
                task: t,
                message: format!(
                    "{} cache entry not restored: it does not hold the declared outputs",
                    source.word()
                ),
            });
            return None;
        }
        let result_path = self.layout.result_file(&self.agent_ids[t]);
        let mut places: Vec<(&CachedFile, std::path::PathBuf)> = record
            .outputs
            .iter()
            .map(|f| (f, self.plan.root.join(&f.path)))
            .collect();
        places.extend(record.result.as_ref().map(|f| (f, result_path.clone())));
        // Every blob in the local store first (a remote's streamed in and checked), then
        // each copied beside its place and checked again; only when all are there are they
        // renamed in.
        let mut staged = Vec::with_capacity(places.len());
        for (f, dest) in &places {
            let copied = cache
                .ensure_local(f, source)
                .and_then(|()| cache.stage_restore(f, dest));
            match copied {
                Ok(tmp) => staged.push((tmp, dest)),
                Err(BlobError::Missing) => {
                    self.say_cache_notes(send);
                    return None;
                }
                Err(BlobError::Corrupt(why)) => {
                    send(TaskMsg::Notice {
                        task: t,
                        message: format!(
                            "{} cache entry not restored: {why}; running the task",
                            source.word()
                        ),
                    });
                    return None;
                }
                Err(BlobError::Unwritable(e)) => {
                    send(TaskMsg::Notice {
                        task: t,
                        message: format!("cache entry not restored: {e}"),
                    });
                    return None;
                }
            }
        }
        let written = (|| -> std::io::Result<()> {
            for (tmp, dest) in staged {
                tmp.persist(dest)?;
                cache.restored(dest.clone());
            }
            if record.result.is_none() {
                match std::fs::remove_file(&result_path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            send(TaskMsg::Notice {
                task: t,
                message: format!("cache entry not restored: {e}"),
            });
            return None;
        }
        // The task file says what the answer was given for, as after a run: the same
        // fingerprint is the same prompt. Synced with the restored files.
        if let Ok(Some(path)) = self.write_task_file_unsynced(t, parts) {
            cache.restored(path);
        }
        if source == Source::Remote {
            cache.keep_remote_hit(&key, &record);
        }
        let mut proof = task.outputs.clone();
        if record.result.is_some() {
            proof.push(self.result_rel(t));
        }
        let mut outputs = Vec::with_capacity(proof.len());
        for o in proof {
            let h = self.hash_project_file(&o).ok().flatten()?;
            outputs.push((o, h));
        }
        let task_record = TaskRecord {
            restored: true,
            ..parts.record(outputs.clone(), record.duration_ms, 0)
        };
        let _ = self.done[t].set(DoneInfo {
            handoff: self.handoff(t, &parts.value, &outputs),
            ran: true,
            restored: true,
            upstream_ran: true,
        });
        Some(TaskDone::Restored {
            record: task_record,
            duration: started.elapsed(),
            why: why.to_string(),
            restored: Restored {
                saved: record.usage(),
                original: Duration::from_millis(record.duration_ms),
                source,
                session: record.session.clone(),
            },
        })
    }

    /// Keeps a successful run in the cache: its outputs and result (as `outputs` lists them,
    /// hashed) and what it cost. A file that changed since it was hashed is not kept (the
    /// entry would not be what the record says), nor is anything when the store fails: the
    /// cache is a help, the build does not depend on it.
    pub(super) fn keep(
        &self,
        t: usize,
        fingerprint: &Digest,
        outputs: &[(String, Digest)],
        run: RunFacts,
        send: &dyn Fn(TaskMsg),
    ) {
        let RunFacts {
            usage,
            session,
            duration,
        } = run;
        let Some(cache) = &self.cache else { return };
        let mut record = ActionRecord {
            orch_cache: RECORD_VERSION,
            task: self.task(t).id.clone(),
            runner: self.runner_name(t).to_string(),
            outputs: Vec::with_capacity(outputs.len()),
            result: None,
            cost_usd: None,
            input_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            output_tokens: None,
            session,
            duration_ms: duration.as_millis() as u64,
            created_unix: unix_now(),
        };
        record.set_usage(usage);
        let mut blobs = Vec::with_capacity(outputs.len());
        let mut result = None;
        for (path, hash) in outputs {
            let full = self.plan.root.join(path);
            // Copied into the store as it is hashed: what is kept is what was hashed.
            let Ok(staged) = cache.stage_file(&full) else {
                return;
            };
            let d = staged.copied.digests.clone();
            if d.blake3[..32] != hash.to_hex() {
                return;
            }
            let is_result = self.is_result(t, path);
            let f = CachedFile {
                path: if is_result {
                    String::new()
                } else {
                    path.clone()
                },
                blake3: d.blake3,
                sha256: d.sha256,
                size: staged.copied.size,
                mode: if is_result { 0o644 } else { mode_of(&full) },
            };
            if is_result {
                result = Some((f, staged));
            } else {
                record.outputs.push(f);
                blobs.push(staged);
            }
        }
        if let Some((f, staged)) = result {
            record.result = Some(f);
            blobs.push(staged);
        }
        if let Err(e) = cache.store(&ActionKey::of(fingerprint), &record, blobs) {
            send(TaskMsg::Notice {
                task: t,
                message: format!("not kept in the cache: {e}"),
            });
        }
        self.say_cache_notes(send);
    }
}
