//! The checks every plan source shares (Orchfile.toml, master_plan.md, an `orch plan` reply):
//! what a task id, a path and a result spec may be, and the did-you-mean for a misspelt name.

use std::path::{Component, Path};

use super::ResultSpec;

pub fn parse_result_spec(s: &str) -> Result<ResultSpec, String> {
    if s == "stdout" {
        Ok(ResultSpec::Stdout)
    } else if s == "reply" {
        Ok(ResultSpec::Reply)
    } else if let Some(f) = s.strip_prefix("json:") {
        if f.is_empty() {
            Err("json: needs a field name, e.g. json:result".into())
        } else {
            Ok(ResultSpec::JsonField(f.to_string()))
        }
    } else if let Some(p) = s.strip_prefix("file:") {
        if p.is_empty() {
            Err("file: needs a path, e.g. file:out/result.md".into())
        } else {
            Ok(ResultSpec::File(p.to_string()))
        }
    } else {
        Err(format!(
            "result must be reply, stdout, json:<field> or file:<path>, not `{s}`"
        ))
    }
}

/// What a task id may hold, for messages.
pub const TASK_ID_RULE: &str = "ASCII letters, digits, `-`, `_` and `.`";

/// Task ids name files and table cells, so they stay plain.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Refuses absolute paths and `..` that climb above the root.
pub fn check_inside_root(path: &str) -> Result<(), &'static str> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Err("is absolute");
    }
    let mut depth: i32 = 0;
    for c in p.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return Err("climbs out of the project root");
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    Ok(())
}

/// The known name nearest to a misspelling, if one is close.
pub fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // Case aside first (`INPUTS` is `inputs`), then as written.
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| {
            let folded = edit_distance(&lower, &k.to_ascii_lowercase());
            (folded, edit_distance(name, k), k)
        })
        .filter(|&(d, _, k)| d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, _, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
