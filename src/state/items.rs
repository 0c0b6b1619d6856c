//! Where a fan-out template's items come from on disk: the files its glob matches (walked as
//! input globs are, never into the state directory or `.git`), and the items a
//! `foreach_from` source answered, recorded under the state directory when it succeeded so
//! that the next build knows the instances before the source runs again.

use std::io;
use std::path::{Path, PathBuf};

use crate::fingerprint;
use crate::plan::diagnostic::PlanSpans;
use crate::plan::fanout::{self, ItemSource};
use crate::plan::{Plan, PlanError};

use super::StateLayout;

/// The items of a plan's templates in its project and state directory.
pub struct ProjectItems {
    root: PathBuf,
    layout: StateLayout,
}

impl ProjectItems {
    pub fn of(plan: &Plan) -> ProjectItems {
        ProjectItems {
            root: plan.root.clone(),
            layout: StateLayout::new(plan.state_dir()),
        }
    }
}

impl ItemSource for ProjectItems {
    fn glob(&self, pattern: &str) -> io::Result<Vec<String>> {
        fingerprint::expand_inputs(&self.root, &[pattern.to_string()], &self.layout.dir)
    }

    fn answered(&self, source: &str) -> Option<Vec<String>> {
        read_answered(&self.layout.answered_items(source))
    }
}

/// The recorded items in `path`; `None` when there are none (or they do not read back).
pub fn read_answered(path: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records the items `source` answered (replacing the file whole).
pub fn write_answered(layout: &StateLayout, source: &str, items: &[String]) -> io::Result<()> {
    let path = layout.answered_items(source);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec(items).map_err(io::Error::other)?;
    crate::disk::replace_unsynced(&path, &json)
}

/// `plan` with its templates expanded over the items found in its project.
pub fn expand(plan: Plan, spans: &dyn Fn() -> Option<PlanSpans>) -> Result<Plan, Box<PlanError>> {
    if !plan.tasks.iter().any(|t| t.foreach.is_some()) {
        return Ok(plan);
    }
    let items = ProjectItems::of(&plan);
    fanout::expand(plan, &items, spans)
}

/// The instances the state has records of whose item went away: their template is still
/// in `plan`, they are not. Sorted by id.
pub fn gone_instances<'a>(
    plan: &Plan,
    snapshot: &'a super::Snapshot,
) -> Vec<(&'a str, &'a super::TaskRecord)> {
    if plan.fanouts.is_empty() && !plan.tasks.iter().any(|t| t.foreach.is_some()) {
        return Vec::new();
    }
    let mut gone: Vec<(&str, &super::TaskRecord)> = snapshot
        .records
        .iter()
        .filter(|(id, _)| !plan.index.contains_key(id.as_str()))
        .filter(|(id, _)| {
            let (name, item) = fanout::split_dep(id);
            item.is_some() && plan.fanout(name).is_some()
        })
        .map(|(id, r)| (id.as_str(), &**r))
        .collect();
    gone.sort_by_key(|(id, _)| *id);
    gone
}
