//! What is watched and what a changed path means: the selected tasks' inputs as patterns,
//! the directories to watch, and the class of a changed path (an input, the Orchfile, or
//! nothing: outputs, the state directory, `.git/`, `.gitignore`d paths).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use miette::{miette, Result};

use crate::fingerprint;
use crate::plan::{Action, Foreach, Plan, ResultSpec};

/// One input of a selected task.
pub(super) enum Pattern {
    /// A file named exactly: an input without wildcards, or a `prompt_file`.
    File(String),
    Glob {
        pattern: String,
        matcher: GlobMatcher,
        /// Literal directory prefix, where matches live ("" for the root).
        base: String,
        /// Whether matches may sit in subdirectories of `base`.
        recursive: bool,
    },
}

impl Pattern {
    pub(super) fn new(input: &str) -> Result<Pattern> {
        if !fingerprint::has_glob_meta(input) {
            return Ok(Pattern::File(crate::plan::normalize(input)));
        }
        let norm = crate::plan::normalize(input);
        let base = fingerprint::literal_prefix(input);
        let rest = norm[base.len()..].trim_start_matches('/');
        let matcher = fingerprint::compile_glob(input)
            .map_err(|e| miette!("input pattern `{input}`: {e}"))?;
        Ok(Pattern::Glob {
            pattern: input.to_string(),
            matcher,
            recursive: rest.contains('/') || rest.contains("**"),
            base,
        })
    }

    /// The directory whose entries this pattern names.
    pub(super) fn anchor(&self) -> &str {
        match self {
            Pattern::File(f) => f.rfind('/').map_or("", |i| &f[..i]),
            Pattern::Glob { base, .. } => base,
        }
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum Class {
    Orchfile,
    /// The OS dropped events: anything may have changed.
    Rescan,
    /// Never a trigger: state dir, outputs, `.git`, `.gitignore`d.
    Ignored,
    /// The tasks whose inputs this path names, matches or leads to (empty: irrelevant).
    Inputs(BTreeSet<usize>),
    /// A file a fan-out's glob matches came or went: the plan is expanded again (and the
    /// path is an input of these tasks, if any).
    Items(BTreeSet<usize>),
}

/// Which paths matter, for one plan.
pub(super) struct Rules {
    pub(super) root: PathBuf,
    pub(super) state_dir: PathBuf,
    /// (task, pattern) for the selected tasks.
    pub(super) patterns: Vec<(usize, Pattern)>,
    /// The globs of the plan's fan-outs, and the items they matched when it was loaded.
    pub(super) item_globs: Vec<Pattern>,
    pub(super) items: HashSet<String>,
    /// Declared outputs and `file:` results of every task, relative to the root.
    pub(super) generated: HashSet<String>,
    pub(super) gitignore: GitIgnore,
}

impl Rules {
    pub(super) fn new(plan: &Plan, wanted: &[bool], agent_override: Option<&str>) -> Result<Rules> {
        let mut patterns = Vec::new();
        let mut generated = HashSet::new();
        for (t, task) in plan.tasks.iter().enumerate() {
            generated.extend(task.outputs.iter().map(|o| crate::plan::normalize(o)));
            if let Some(agent) = plan.agent_for(task, agent_override) {
                if let ResultSpec::File(f) = &agent.result {
                    generated.insert(crate::plan::normalize(f));
                }
            }
            if !wanted[t] {
                continue;
            }
            for input in &task.inputs {
                patterns.push((t, Pattern::new(input)?));
            }
            if let Action::PromptFile(p) = &task.action {
                patterns.push((
                    t,
                    Pattern::File(crate::plan::normalize(&p.to_string_lossy())),
                ));
            }
        }
        let mut item_globs = Vec::new();
        let mut items = HashSet::new();
        for f in &plan.fanouts {
            if let Some(Foreach::Glob(g)) = &f.template.foreach {
                item_globs.push(Pattern::new(g)?);
                items.extend(
                    f.instances
                        .iter()
                        .filter_map(|&t| plan.tasks[t].item.as_ref())
                        .map(|i| i.value.clone()),
                );
            }
        }
        Ok(Rules {
            root: plan.root.clone(),
            state_dir: plan.state_dir(),
            patterns,
            item_globs,
            items,
            generated,
            gitignore: GitIgnore::load(&plan.root),
        })
    }

    pub(super) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Whether `.gitignore` hides `rel`, unless the pattern explicitly points inside an
    /// ignored directory (its anchor is ignored too).
    pub(super) fn git_hides(&self, rel: &str, anchor: &str) -> bool {
        self.gitignore.is_match(rel) && (anchor.is_empty() || !self.gitignore.is_match(anchor))
    }

    pub(super) fn classify(
        &self,
        path: &Path,
        orchfile: &Path,
        watched: &BTreeSet<PathBuf>,
    ) -> Class {
        if path.as_os_str().is_empty() {
            return Class::Rescan;
        }
        if path == orchfile {
            return Class::Orchfile;
        }
        if path.starts_with(&self.state_dir) {
            return Class::Ignored;
        }
        let Ok(rel_path) = path.strip_prefix(&self.root) else {
            return Class::Ignored;
        };
        if rel_path.as_os_str().is_empty() || rel_path.components().any(|c| c.as_os_str() == ".git")
        {
            return Class::Ignored;
        }
        let rel = rel_path.to_string_lossy();
        if self.generated.contains(rel.as_ref()) {
            return Class::Ignored;
        }
        let mut tasks = BTreeSet::new();
        let mut only_git_hidden = false;
        for (t, p) in &self.patterns {
            let anchor = p.anchor();
            let hit = match p {
                // A file named in the plan counts even if .gitignore'd.
                Pattern::File(f) => f == &rel || leads_to(&rel, anchor),
                Pattern::Glob {
                    matcher,
                    base,
                    recursive,
                    ..
                } => {
                    let hit = matcher.is_match(rel.as_ref())
                        || leads_to(&rel, base)
                        || (*recursive
                            && is_under(&rel, base)
                            && (path.is_dir() || watched.contains(path)));
                    if hit && self.git_hides(&rel, anchor) {
                        only_git_hidden = true;
                        false
                    } else {
                        hit
                    }
                }
            };
            if hit {
                tasks.insert(*t);
            }
        }
        let item_set_changes = self.item_globs.iter().any(|p| match p {
            Pattern::File(f) => f == &rel,
            Pattern::Glob {
                matcher,
                base,
                recursive,
                ..
            } => {
                (matcher.is_match(rel.as_ref())
                    && path.is_file() != self.items.contains(rel.as_ref()))
                    || leads_to(&rel, base)
                    || (*recursive && is_under(&rel, base) && !path.is_file())
            }
        });
        if item_set_changes {
            return Class::Items(tasks);
        }
        if tasks.is_empty() && only_git_hidden {
            return Class::Ignored;
        }
        Class::Inputs(tasks)
    }

    /// The directories to watch (each non-recursively).
    pub(super) fn watch_dirs(&self, orchfile: &Path) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        dirs.insert(existing_dir(orchfile.parent().unwrap_or(&self.root)));
        for p in self.patterns.iter().map(|(_, p)| p).chain(&self.item_globs) {
            let anchor_rel = p.anchor();
            let anchor = if anchor_rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(anchor_rel)
            };
            let recursive = matches!(
                p,
                Pattern::Glob {
                    recursive: true,
                    ..
                }
            );
            if !(recursive && anchor.is_dir()) {
                dirs.insert(existing_dir(&anchor));
                continue;
            }
            let walker = walkdir::WalkDir::new(&anchor)
                .follow_links(true)
                .into_iter()
                .filter_entry(|e| {
                    e.file_type().is_dir()
                        && (e.path() == anchor
                            || !(e.path().starts_with(&self.state_dir)
                                || e.file_name() == ".git"
                                || self.git_hides(&self.rel(e.path()), anchor_rel)))
                });
            dirs.extend(walker.flatten().map(|e| e.into_path()));
        }
        dirs
    }
}

/// Whether `rel` is `dir` or one of its ancestors (creating it may bring inputs into being).
pub(super) fn leads_to(rel: &str, dir: &str) -> bool {
    !dir.is_empty()
        && (dir == rel || (dir.starts_with(rel) && dir.as_bytes().get(rel.len()) == Some(&b'/')))
}

/// Whether `rel` lies below `dir` ("" is the root).
pub(super) fn is_under(rel: &str, dir: &str) -> bool {
    dir.is_empty() || (rel.starts_with(dir) && rel.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// `dir`, or its nearest existing ancestor.
pub(super) fn existing_dir(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(dir)
        .to_path_buf()
}

/// The root `.gitignore`, with the common forms: `name`, `*.ext`, `dir/`, `/anchored`,
/// `a/b`, `**`. Negations (`!keep`) are not supported and are skipped, so what they would
/// re-include stays ignored. Nested `.gitignore` files are not read.
pub(super) struct GitIgnore(GlobSet);

impl GitIgnore {
    pub(super) fn load(root: &Path) -> GitIgnore {
        GitIgnore::parse(&std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default())
    }

    pub(super) fn parse(text: &str) -> GitIgnore {
        let mut set = GlobSetBuilder::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let line = line.strip_prefix('\\').unwrap_or(line);
            // `dir/` matches only directories in git; a deleted path cannot be told apart, so
            // here it matches the name and everything below it.
            let pat = line.strip_suffix('/').unwrap_or(line);
            let anchored = pat.contains('/');
            let pat = pat.trim_start_matches('/');
            if pat.is_empty() {
                continue;
            }
            let base = if anchored || pat.starts_with("**/") {
                pat.to_string()
            } else {
                format!("**/{pat}")
            };
            for g in [base.clone(), format!("{base}/**")] {
                if let Ok(glob) = GlobBuilder::new(&g).literal_separator(true).build() {
                    set.add(glob);
                }
            }
        }
        GitIgnore(set.build().unwrap_or_else(|_| GlobSet::empty()))
    }

    pub(super) fn is_match(&self, rel: &str) -> bool {
        !rel.is_empty() && self.0.is_match(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::BuildOptions;
    use crate::watch::loaded::Loaded;

    fn plan(toml: &str) -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Orchfile.toml");
        std::fs::write(&path, toml).unwrap();
        let plan = crate::state::plan_cache::load(&path).unwrap();
        (dir, plan)
    }

    const PLAN: &str = r#"
[tasks.a]
run = "cat in_a.txt > out_a.txt"
inputs = ["in_a.txt", "src/**/*.rs"]
outputs = ["out_a.txt"]
[tasks.b]
run = "cat out_a.txt > out_b.txt"
inputs = ["docs/*.md"]
outputs = ["out_b.txt"]
deps = ["a"]
"#;

    fn inputs(c: Class) -> Vec<usize> {
        match c {
            Class::Inputs(t) => t.into_iter().collect(),
            other => panic!("expected inputs, got {other:?}"),
        }
    }

    #[test]
    fn classifies_inputs_outputs_state_and_gitignore() {
        let (dir, plan) = plan(PLAN);
        std::fs::write(dir.path().join(".gitignore"), "target/\n*.log\n/gen\n").unwrap();
        std::fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        let loaded = Loaded::new(plan, &BuildOptions::default()).unwrap();
        let r = &loaded.rules;
        let of = dir.path().join("Orchfile.toml");
        let none = BTreeSet::new();
        let c = |rel: &str| r.classify(&dir.path().join(rel), &of, &none);
        assert_eq!(r.classify(&of, &of, &none), Class::Orchfile);
        assert_eq!(inputs(c("in_a.txt")), vec![0]);
        assert_eq!(inputs(c("src/x/y.rs")), vec![0]);
        assert_eq!(
            inputs(c("src/deep")),
            vec![0],
            "a new directory under a glob"
        );
        assert_eq!(inputs(c("docs/readme.md")), vec![1]);
        assert_eq!(inputs(c("docs")), vec![1], "creating the glob's directory");
        assert!(
            inputs(c("docs/sub/x.md")).is_empty(),
            "`*` stays in one directory"
        );
        assert!(inputs(c("notes.txt")).is_empty());
        assert_eq!(c("out_a.txt"), Class::Ignored);
        assert_eq!(c(".orchestrator/snapshot.json"), Class::Ignored);
        assert_eq!(c(".git/index"), Class::Ignored);
        assert_eq!(c("src/target/x.rs"), Class::Ignored);
        assert_eq!(r.classify(&PathBuf::new(), &of, &none), Class::Rescan);
    }

    #[test]
    fn watches_input_directories_but_not_state_or_ignored_ones() {
        let (dir, plan) = plan(PLAN);
        std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
        for d in ["src/a/b", "src/target/debug", "src/.git", ".orchestrator"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let loaded = Loaded::new(plan, &BuildOptions::default()).unwrap();
        let dirs = loaded.rules.watch_dirs(&dir.path().join("Orchfile.toml"));
        let rel: Vec<String> = dirs.iter().map(|d| loaded.rules.rel(d)).collect();
        // docs/ does not exist yet: its parent (the root) is watched for it.
        assert_eq!(rel, vec!["", "src", "src/a", "src/a/b"]);
    }

    #[test]
    fn gitignore_common_forms() {
        let g = GitIgnore::parse("# c\n\ntarget/\n*.log\n/top.txt\na/b\n!keep.log\n\\#hash\n");
        assert!(g.is_match("target"));
        assert!(g.is_match("x/target/y.rs"));
        assert!(g.is_match("deep/x.log"));
        assert!(g.is_match("top.txt"));
        assert!(!g.is_match("sub/top.txt"));
        assert!(g.is_match("a/b/c"));
        assert!(!g.is_match("x/a/b"));
        assert!(g.is_match("#hash"));
        assert!(!g.is_match("src/main.rs"));
    }

    #[test]
    fn leads_to_and_is_under() {
        assert!(leads_to("src", "src/a"));
        assert!(leads_to("src/a", "src/a"));
        assert!(!leads_to("sr", "src/a"));
        assert!(!leads_to("x", ""));
        assert!(is_under("src/a", "src"));
        assert!(!is_under("srcx/a", "src"));
        assert!(is_under("anything", ""));
    }
}
