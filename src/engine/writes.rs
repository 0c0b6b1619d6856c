//! Undeclared writes: after each agent run, the project tree is compared with how it looked
//! before (stat stamps; the state directory and `.git` left out), and a file the agent
//! created, changed or deleted that no task declares fails the task, unless
//! `allow_undeclared_writes` allows it.
//!
//! Tasks run side by side, and each sees the others' writes. The rule, for a file that
//! changed during a task's run:
//! - a declared output of any task is not this task's concern (nor is a file the allow list
//!   matches);
//! - a file the task's own tool calls name (a write's path, a shell command that mentions
//!   it) is this task's;
//! - otherwise, if no other task ran meanwhile, it is this task's too (the agent may write
//!   through a script);
//! - otherwise it cannot be told whose it is: a file another running task's tool calls name
//!   is left to that task's check, and the rest is reported as a notice, not a failure.

use std::time::Instant;

use globset::{GlobSet, GlobSetBuilder};

use super::attempts::Span;
use super::context::BuildContext;
use crate::agent::{Activity, Failure, FailureKind};
use crate::disk::tree::{Change, Tree};
use crate::plan::{AgentSpec, AllowWrites, ResultSpec};

/// What an attempt's check needs from before the run.
pub(crate) struct Before {
    tree: Tree,
    allowed: GlobSet,
}

/// Whether `tool` names `path`: as a file it writes, or inside a shell command.
fn names(tool: &Activity, path: &str) -> bool {
    tool.writes.iter().any(|w| w == path)
        || (tool.tool == "Bash" && tool.detail.contains(path))
        || (tool.tool == "Delete" && tool.detail.contains(path))
}

impl BuildContext<'_> {
    /// The tree before an attempt of `t` with `agent`, if its writes are checked.
    pub(super) fn tree_before(&self, t: usize, agent: &AgentSpec) -> Option<Before> {
        // A worktree task's change is what the merge decides on, whatever files it holds.
        if self.is_isolated(t) {
            return None;
        }
        let globs = match self.plan.allowed_writes(self.task(t), agent) {
            Some(AllowWrites::All) => return None,
            Some(AllowWrites::Globs(g)) => g.as_slice(),
            None => &[],
        };
        let mut set = GlobSetBuilder::new();
        let mut pruned: Vec<String> = Vec::new();
        for g in globs {
            if let Ok(glob) = crate::fingerprint::compile_glob(g) {
                set.add(glob.glob().clone());
            }
            // `target/**` needs no walk below target/ at all.
            if let Some(dir) = g.strip_suffix("/**") {
                if !crate::fingerprint::has_glob_meta(dir) {
                    pruned.push(crate::plan::normalize(dir));
                }
            }
        }
        let allowed = set.build().ok()?;
        let tree = self.scan_tree(&pruned)?;
        Some(Before { tree, allowed })
    }

    fn scan_tree(&self, pruned: &[String]) -> Option<Tree> {
        let state = self.plan.relative(&self.layout.dir);
        let skip = |dir: &str| {
            dir == state
                || dir == ".git"
                || dir.ends_with("/.git")
                || pruned.iter().any(|p| p == dir)
        };
        Tree::scan(&self.plan.root, &skip).ok()
    }

    /// The files the attempt `span` of `t` wrote without declaring them: a failure naming
    /// them, or the notes about changes it cannot tell the owner of (see the module's rule).
    pub(super) fn undeclared_writes(
        &self,
        t: usize,
        agent: &AgentSpec,
        span: u64,
        before: Before,
    ) -> Result<Vec<String>, Failure> {
        let Some(after) = self.scan_tree(&[]) else {
            return Ok(Vec::new());
        };
        let declared = self.attempts.declared.get_or_init(|| {
            self.plan
                .tasks
                .iter()
                .flat_map(|t| t.outputs.iter().map(|o| crate::plan::normalize(o)))
                .collect()
        });
        let own_result = match &agent.result {
            ResultSpec::File(rel) => Some(crate::plan::normalize(rel)),
            _ => None,
        };
        let (own, others, alone) = {
            let spans = self.attempts.spans.lock().unwrap();
            let me = spans.iter().find(|s| s.id == span);
            let (start, end) = me.map_or((Instant::now(), None), |s| (s.start, s.end));
            let overlapping: Vec<&Span> = spans
                .iter()
                .filter(|s| s.id != span)
                .filter(|s| s.end.is_none_or(|e| e > start) && end.is_none_or(|e| s.start < e))
                .collect();
            (
                me.map(|s| s.tools.clone()).unwrap_or_default(),
                overlapping
                    .iter()
                    .map(|s| (s.task, s.tools.clone()))
                    .collect::<Vec<_>>(),
                overlapping.is_empty(),
            )
        };
        let mut mine: Vec<String> = Vec::new();
        let mut unclear: Vec<String> = Vec::new();
        let merged = self.attempts.merged.lock().unwrap().clone();
        for (path, change) in before.tree.changes(&after) {
            if declared.contains(&path)
                || merged.contains(&path)
                || own_result.as_deref() == Some(path.as_str())
                || before.allowed.is_match(&path)
                || (change == Change::Modified && self.same_content(&before.tree, &path))
            {
                continue;
            }
            let shown = format!("{path} ({})", change.word());
            if own.iter().any(|a| names(a, &path)) || alone {
                mine.push(shown);
            } else if !others
                .iter()
                .any(|(_, tools)| tools.iter().any(|a| names(a, &path)))
            {
                unclear.push(shown);
            }
        }
        if !mine.is_empty() {
            return Err(Failure::new(
                FailureKind::UndeclaredWrite,
                format!(
                    "undeclared write: {}; declare the files in outputs, or allow them with \
                     allow_undeclared_writes",
                    shortlist(&mine)
                ),
            ));
        }
        if unclear.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = others
            .iter()
            .map(|(o, _)| self.task(*o).id.as_str())
            .collect();
        Ok(vec![format!(
            "{} changed while {} ran beside {}, and no tool call names it: not attributed \
             ({})",
            shortlist(&unclear),
            self.task(t).id,
            ids.join(", "),
            if unclear.len() == 1 {
                "undeclared write"
            } else {
                "undeclared writes"
            }
        )])
    }

    /// A file whose stamp changed but whose content the stat cache knew before and still
    /// matches (rewritten with the same bytes): only such candidates are hashed.
    fn same_content(&self, before: &Tree, path: &str) -> bool {
        let full = self.plan.root.join(path);
        let Some((stamp, hash)) = self.stat_cache.vouched(&full) else {
            return false;
        };
        before.files.get(path) == Some(&stamp)
            && crate::fingerprint::hash_file_contents(&full).is_ok_and(|h| h == hash)
    }
}

/// Up to ten paths, and how many more.
fn shortlist(paths: &[String]) -> String {
    let mut s = paths
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > 10 {
        s.push_str(&format!(" and {} more", paths.len() - 10));
    }
    s
}
