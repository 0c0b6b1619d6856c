//! Before anything runs: the checks a plan gets against the project's files, each time it is
//! loaded for a build (a plan from the plan cache too: files change while the Orchfile does
//! not). What the plan alone shows to be wrong is said here, with the file and line, instead
//! of failing a task (and maybe a paid agent's attempt) at run time:
//!
//! - a `prompt_file` that is missing, not a regular file, not UTF-8 or empty, and every
//!   placeholder in it (the same grammar and checks as an inline prompt, pointing into the
//!   prompt file);
//! - an input named plainly (not a glob) that is a directory (suggesting `dir/**`), a FIFO,
//!   socket or device, a symlink loop, or that cannot be read; an output that is a directory;
//! - a glob that matches nothing, or a named input that does not exist, when no task declares
//!   an output it would match either: a warning (a file may come later), an error under
//!   `settings.strict`. One warning per pattern, naming the tasks that use it.
//!
//! Files that appear or change during the build are the hashing's to check. The cost is one
//! `stat` per named input and output and one walk per distinct glob (which stops at its
//! first match), spread over the cores for a large plan; the no-op fast path
//! (`engine::up_to_date`) does not load the plan, so it pays none of it.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;

use rayon::prelude::*;

use crate::fingerprint::{compile_glob, has_glob_meta, literal_prefix};
use crate::plan::diagnostic::{PlanError, PlanSpans, SourceFile};
use crate::plan::{normalize, placeholder, Action, Plan};

/// What the checks found: errors stop the build, warnings are shown.
#[derive(Default)]
pub struct Findings {
    pub errors: Vec<PlanError>,
    pub warnings: Vec<PlanError>,
}

/// One problem before it has a span: which task, where in it, what.
struct Problem {
    task: usize,
    at: At,
    code: &'static str,
    message: String,
    label: &'static str,
    help: Option<String>,
    warning: bool,
}

#[derive(Clone, Copy)]
enum At {
    Input(usize),
    Output(usize),
    PromptFile,
}

/// Checks `plan` against the files under its root. `spans` finds where its tasks are written
/// (read again only when there is something to say). A plan with no tasks is an error here,
/// since there is nothing to build.
pub fn check(plan: &Plan, spans: &dyn Fn() -> Option<PlanSpans>) -> Findings {
    let mut findings = Findings::default();
    if plan.tasks.is_empty() {
        let src = spans().map(|s| s.src).unwrap_or_else(|| {
            SourceFile::new(plan.source_path.display().to_string(), String::new())
        });
        let name = plan
            .source_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        findings.errors.push(
            src.error(
                "orch::no_tasks",
                format!("{name} defines no tasks: there is nothing to build"),
                None,
                "",
            )
            .with_help(
                "add a task, e.g. [tasks.hello] with run = \"echo hello\"; `orch init` writes \
                 a commented starter",
            ),
        );
        return findings;
    }
    let root = std::fs::File::open(&plan.root).ok();
    let per_task = |t: usize| task_problems(plan, root.as_ref(), t);
    let checked: Vec<(Vec<Problem>, Vec<usize>)> = if plan.tasks.len() >= 256 {
        (0..plan.tasks.len())
            .into_par_iter()
            .with_min_len(64)
            .map(per_task)
            .collect()
    } else {
        (0..plan.tasks.len()).map(per_task).collect()
    };
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (t, (found, absent)) in checked.into_iter().enumerate() {
        problems.extend(found);
        missing.extend(absent.into_iter().map(|i| (t, i)));
    }
    let mut prompt_files = Vec::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        if let Action::PromptFile(f) = &task.action {
            match prompt_file(plan, t, f) {
                Ok(Some(text)) => prompt_files.push((t, f, text)),
                Ok(None) => {}
                Err(p) => problems.push(p),
            }
        }
    }
    problems.extend(unmatched(plan, &missing));
    let placeholders: Vec<PlanError> = prompt_files
        .into_iter()
        .flat_map(|(t, path, text)| prompt_file_placeholders(plan, t, path, text))
        .collect();
    if problems.is_empty() {
        findings.errors = placeholders;
        return findings;
    }
    let spans = spans();
    let fallback = SourceFile::new(plan.source_path.display().to_string(), String::new());
    for p in problems {
        let id = &plan.tasks[p.task].id;
        let at = |s: &crate::plan::diagnostic::TaskSpans| match p.at {
            At::Input(i) => s.inputs.get(i).cloned(),
            At::Output(i) => s.outputs.get(i).cloned(),
            At::PromptFile => s.prompt_file.clone(),
        };
        let mut e = match &spans {
            Some(s) => s.error(p.code, p.message, id, at, p.label),
            None => fallback.error(p.code, p.message, None, p.label),
        };
        let help = p.help.unwrap_or_default();
        if p.warning && !plan.settings.strict {
            e = e.with_help(format!(
                "{help}; settings.strict = true makes this an error"
            ));
            findings.warnings.push(e.warning());
        } else {
            if p.warning {
                e = e.with_help(format!("{help} (an error since settings.strict = true)"));
            } else if !help.is_empty() {
                e = e.with_help(help);
            }
            findings.errors.push(e);
        }
    }
    findings.errors.extend(placeholders);
    findings
}

/// What one `stat` of a plainly named input found.
enum Named {
    /// A regular file orch can read.
    Fine,
    /// Nothing there (or a dangling symlink): [`unmatched`] decides if that is a warning.
    Missing,
}

/// The problems of one task's plainly named inputs, and which of them are missing (left to
/// [`unmatched`]). One `stat` an input, relative to the open root, symlinks followed; a
/// second look only for what is wrong.
fn task_problems(
    plan: &Plan,
    root: Option<&std::fs::File>,
    t: usize,
) -> (Vec<Problem>, Vec<usize>) {
    let task = &plan.tasks[t];
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (i, input) in task.inputs.iter().enumerate() {
        if has_glob_meta(input) {
            continue;
        }
        match named_input(plan, root, input) {
            Ok(Named::Fine) => {}
            Ok(Named::Missing) => missing.push(i),
            Err((message, label, help)) => out.push(Problem {
                task: t,
                at: At::Input(i),
                code: "orch::bad_input",
                message: format!("input `{input}` of task `{}` {message}", task.id),
                label,
                help,
                warning: false,
            }),
        }
    }
    // An output that is a directory now can never be the file the task must leave.
    for (i, output) in task.outputs.iter().enumerate() {
        if let Ok(Some(mode)) = stat_mode(plan, root, output) {
            if mode & libc::S_IFMT == libc::S_IFDIR {
                out.push(Problem {
                    task: t,
                    at: At::Output(i),
                    code: "orch::dir_output",
                    message: format!("output `{output}` of task `{}` is a directory", task.id),
                    label: "a directory",
                    help: Some(
                        "an output is a file the task writes: list each file (a task that \
                         writes a whole tree can name one file in it, e.g. a stamp file)"
                            .into(),
                    ),
                    warning: false,
                });
            }
        }
    }
    (out, missing)
}

type Wrong = (String, &'static str, Option<String>);

/// What is wrong with a plainly named input, if anything: (what it is, label, help).
fn named_input(plan: &Plan, root: Option<&std::fs::File>, input: &str) -> Result<Named, Wrong> {
    let mode = match stat_mode(plan, root, input) {
        Ok(Some(mode)) => mode,
        Ok(None) => return Ok(Named::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err((
                "is a symlink loop".into(),
                "a symlink that leads back to itself",
                Some("point the link at a file, or remove it".into()),
            ))
        }
        Err(e) => return Err((format!("cannot be read: {e}"), "here", None)),
    };
    let linked = || {
        plan.resolve(input)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    };
    let odd = match mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFDIR => {
            return Err((
                "is a directory".into(),
                "a directory",
                Some(format!(
                    "inputs are files; to depend on every file under it, write \"{}/**\"",
                    input.trim_end_matches('/')
                )),
            ))
        }
        libc::S_IFIFO => Some("a FIFO (named pipe)"),
        libc::S_IFSOCK => Some("a socket"),
        _ => Some("a device"),
    };
    if let Some(what) = odd {
        let via = if linked() { " (through a symlink)" } else { "" };
        return Err((
            format!("is {what}{via}, not a regular file"),
            "not a regular file",
            Some("inputs are hashed by content, so they must be regular files".into()),
        ));
    }
    // A file others may not read is the rare case (as under /proc): only then try to open it.
    if mode & 0o004 == 0 {
        if let Err(e) = std::fs::File::open(plan.resolve(input)) {
            return Err((format!("cannot be read: {e}"), "here", None));
        }
    }
    Ok(Named::Fine)
}

/// The mode of `rel` under the plan's root (symlinks followed), `None` when nothing is there.
fn stat_mode(plan: &Plan, root: Option<&std::fs::File>, rel: &str) -> io::Result<Option<u32>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let (dir, path) = match root {
        Some(dir) if !rel.starts_with('/') => (dir.as_raw_fd(), std::ffi::CString::new(rel)),
        _ => (
            libc::AT_FDCWD,
            std::ffi::CString::new(plan.resolve(rel).as_os_str().as_bytes()),
        ),
    };
    let path = path.map_err(io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated and st is large enough for the kernel to fill.
    if unsafe { libc::fstatat(dir, path.as_ptr(), st.as_mut_ptr(), 0) } != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: fstatat succeeded, so it filled st.
    Ok(Some(unsafe { st.assume_init() }.st_mode))
}

/// Inputs that match no file: globs (one walk per distinct pattern, stopping at the first
/// match) and the named inputs `missing` found, unless another task declares an output they
/// would match. One warning per pattern, at its first use, naming every task that uses it.
fn unmatched(plan: &Plan, missing: &[(usize, usize)]) -> Vec<Problem> {
    // pattern -> (first task and input index, the tasks using it)
    let mut uses: BTreeMap<&str, ((usize, usize), Vec<&str>)> = BTreeMap::new();
    let mut add = |t: usize, i: usize| {
        let task = &plan.tasks[t];
        let entry = uses
            .entry(task.inputs[i].as_str())
            .or_insert(((t, i), Vec::new()));
        if !entry.1.contains(&task.id.as_str()) {
            entry.1.push(&task.id);
        }
    };
    for &(t, i) in missing {
        add(t, i);
    }
    let mut globs = Vec::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        for (i, input) in task.inputs.iter().enumerate() {
            if has_glob_meta(input) {
                add(t, i);
                globs.push(input.as_str());
            }
        }
    }
    globs.sort_unstable();
    globs.dedup();
    let skip = plan.state_dir();
    let empty_globs: HashSet<&str> = globs
        .par_iter()
        .copied()
        .filter(|p| !glob_matches_a_file(&plan.root, p, &skip))
        .collect();
    let empty: Vec<&str> = uses
        .keys()
        .copied()
        .filter(|p| !has_glob_meta(p) || empty_globs.contains(p))
        .collect();
    if empty.is_empty() {
        return Vec::new();
    }
    let outputs: HashSet<String> = plan
        .tasks
        .iter()
        .flat_map(|t| t.outputs.iter().map(|o| normalize(o)))
        .collect();
    let mut out = Vec::new();
    for pattern in empty {
        let produced = if has_glob_meta(pattern) {
            compile_glob(pattern).is_ok_and(|m| outputs.iter().any(|o| m.is_match(o)))
        } else {
            outputs.contains(&normalize(pattern))
        };
        if produced {
            continue;
        }
        let ((t, i), tasks) = &uses[pattern];
        let named = if tasks.len() == 1 {
            format!("task `{}`", tasks[0])
        } else {
            let shown: Vec<String> = tasks.iter().take(5).map(|t| format!("`{t}`")).collect();
            let more = match tasks.len().saturating_sub(5) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            format!("tasks {}{more}", shown.join(", "))
        };
        let (message, help) = if has_glob_meta(pattern) {
            (
                format!("input glob `{pattern}` of {named} matches no file"),
                "a typo here means the task never reads, nor rebuilds for, the files it was \
                 meant to",
            )
        } else {
            (
                format!("input `{pattern}` of {named} does not exist, and no task writes it"),
                "create it, or declare it in the outputs of the task that writes it",
            )
        };
        out.push(Problem {
            task: *t,
            at: At::Input(*i),
            code: "orch::no_match",
            message,
            label: "matches nothing",
            help: Some(help.to_string()),
            warning: true,
        });
    }
    out
}

/// Whether a glob matches at least one file now, as `fingerprint::expand_inputs` would
/// expand it. A walk that cannot finish counts as a match: its errors are the hashing's to
/// report.
fn glob_matches_a_file(root: &Path, pattern: &str, skip: &Path) -> bool {
    let Ok(matcher) = compile_glob(pattern) else {
        return true;
    };
    let walk_root = root.join(literal_prefix(pattern));
    if !walk_root.is_dir() {
        return false;
    }
    let walk = walkdir::WalkDir::new(&walk_root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.path() != skip && e.file_name() != ".git");
    for entry in walk {
        let Ok(entry) = entry else {
            return true;
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = match entry.path().strip_prefix(root) {
            Ok(r) => r.to_string_lossy().replace('\\', "/"),
            Err(_) => entry.path().to_string_lossy().into_owned(),
        };
        if matcher.is_match(&rel) {
            return true;
        }
    }
    false
}

/// A prompt file's text, or the problem with it.
fn prompt_file(plan: &Plan, t: usize, rel: &Path) -> Result<Option<String>, Problem> {
    let who = format!(
        "prompt_file `{}` of task `{}`",
        rel.display(),
        plan.tasks[t].id
    );
    let problem = |message: String, label, help: Option<&str>| Problem {
        task: t,
        at: At::PromptFile,
        code: "orch::bad_prompt_file",
        message,
        label,
        help: help.map(String::from),
        warning: false,
    };
    let path = plan.resolve(rel);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(problem(
                format!("{who} does not exist"),
                "no such file",
                Some("paths are relative to the plan's directory"),
            ))
        }
        Err(e) => return Err(problem(format!("{who} cannot be read: {e}"), "here", None)),
    };
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(problem(format!("{who} is {what}"), what, None));
    }
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Err(problem(
            format!("{who} is empty"),
            "an empty prompt",
            Some("write the task's instructions in it"),
        )),
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(problem(
            format!("{who} is not UTF-8 text"),
            "not text",
            None,
        )),
        Err(e) => Err(problem(format!("{who} cannot be read: {e}"), "here", None)),
    }
}

/// The placeholder problems of a prompt file, pointing into it.
fn prompt_file_placeholders(plan: &Plan, t: usize, rel: &Path, text: String) -> Vec<PlanError> {
    if !text.contains("{{") {
        return Vec::new();
    }
    let task = &plan.tasks[t];
    // An instance's deps by the names its prompt uses: `review`, not `review[src/a.ts]`.
    let deps: Vec<&str> = task
        .deps
        .iter()
        .map(|d| match plan.task(d).and_then(|t| t.item.as_ref()) {
            Some(item) => item.template.as_str(),
            None => d.as_str(),
        })
        .collect();
    let problems = placeholder::check(&text, &task.id, &deps, &plan.index, task.item.is_some());
    if problems.is_empty() {
        return Vec::new();
    }
    let src = SourceFile::new(rel.display().to_string(), text);
    problems
        .into_iter()
        .map(|p| {
            let e = src.error("orch::placeholder", p.message, Some(p.span), p.label);
            match p.help {
                Some(h) => e.with_help(h),
                None => e,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path, text: &str) -> Plan {
        crate::plan::orchfile::parse(&dir.join("Orchfile.toml"), text).unwrap()
    }

    fn findings(dir: &Path, text: &str) -> Findings {
        let p = plan(dir, text);
        let path = dir.join("Orchfile.toml");
        check(&p, &|| crate::plan::orchfile::spans(&path, text))
    }

    fn messages(errors: &[PlanError]) -> Vec<String> {
        errors.iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn named_inputs_that_are_not_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("adir")).unwrap();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.join("null")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::fs::write(d.join("ok.txt"), "x").unwrap();
        let text = "[tasks.t]\nrun = \"true\"\n\
                    inputs = [\"adir\", \"loop\", \"null\", \"fifo\", \"ok.txt\"]\n";
        let f = findings(d, text);
        let m = messages(&f.errors);
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m[0].contains("`adir` of task `t` is a directory"), "{m:?}");
        assert!(f.errors[0].help.as_ref().unwrap().contains("\"adir/**\""));
        assert!(m[1].contains("symlink loop"), "{m:?}");
        assert!(m[2].contains("a device (through a symlink)"), "{m:?}");
        assert!(m[3].contains("a FIFO"), "{m:?}");
        let label = &f.errors[0].labels[0];
        assert_eq!(
            &text[label.offset()..label.offset() + label.len()],
            "\"adir\""
        );
    }

    #[test]
    fn a_glob_that_matches_nothing_warns_once_unless_a_task_writes_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("docs")).unwrap();
        std::fs::write(d.join("docs/a.md"), "x").unwrap();
        let text = "[tasks.a]\nrun = \"true\"\ninputs = [\"docs/*.mdd\", \"docs/*.md\"]\n\
                    [tasks.b]\nrun = \"true\"\ninputs = [\"docs/*.mdd\", \"gen/*.txt\", \"made.txt\"]\n\
                    [tasks.c]\nrun = \"true\"\noutputs = [\"gen/x.txt\", \"made.txt\"]\n";
        let f = findings(d, text);
        assert!(f.errors.is_empty(), "{:?}", messages(&f.errors));
        let m = messages(&f.warnings);
        assert_eq!(
            m,
            ["input glob `docs/*.mdd` of tasks `a`, `b` matches no file"],
            "one warning per glob; outputs of tasks count as matches"
        );
        let strict = format!("[settings]\nstrict = true\n{text}");
        let f = findings(d, &strict);
        assert_eq!(messages(&f.errors).len(), 1);
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn prompt_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("p.md"), "Summarise\n{{ inptus }}\n").unwrap();
        let text = "[tasks.a]\nprompt_file = \"p.md\"\n[tasks.b]\nprompt_file = \"missing.md\"\n";
        let f = findings(d, text);
        let m = messages(&f.errors);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].contains("`missing.md` of task `b` does not exist"),
            "{m:?}"
        );
        assert!(m[1].contains("unknown placeholder `{{ inptus }}`"), "{m:?}");
        assert_eq!(f.errors[1].src.name(), "p.md");
        assert_eq!(f.errors[1].labels[0].offset(), "Summarise\n".len());
    }

    #[test]
    fn a_plan_without_tasks_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = findings(dir.path(), "");
        assert_eq!(f.errors[0].code, "orch::no_tasks");
        assert!(f.errors[0].message.contains("defines no tasks"));
    }
}
