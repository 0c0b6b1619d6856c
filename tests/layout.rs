//! No import circles: the crate's modules form a DAG, per file under `src/` and per top-level
//! module (`plan`, `state`, `engine`, ...). A module that imports another that imports it back
//! (directly or round a longer loop) makes both one knot that can only be read, tested and
//! changed together; this test names any such loop.
//!
//! "A imports B" means A's code (outside `#[cfg(test)]` modules, comments and string
//! literals) names an item that B defines: a `crate::`/`super::`/`self::` path, or a path
//! through one of A's child modules. A path through a re-export (`pub use` in a `mod.rs`)
//! counts as naming the module that defines the item, so a `mod.rs` that only declares and
//! re-exports its children is no part of a loop. Declaring a child (`pub mod x;`) is not an
//! import. `lib.rs` and `main.rs` are the map and the binary, not modules, and are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path: `["engine", "runner"]`.
type Module = Vec<String>;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let graph = Graph::new(&files);
    let mut report = String::new();
    for (name, depth) in [("file", usize::MAX), ("top-level module", 1)] {
        for (knot, cycle) in graph.cycles(depth) {
            let members: Vec<String> = knot.iter().map(show).collect();
            report.push_str(&format!(
                "import cycle among the {name}s {{{}}}, for one:\n",
                members.join(", ")
            ));
            for pair in cycle.windows(2) {
                let (file, path) = &graph.why(&pair[0], &pair[1], depth);
                report.push_str(&format!(
                    "  {} -> {}   ({file}: {path})\n",
                    show(&pair[0]),
                    show(&pair[1])
                ));
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// The checker itself finds a loop, through a re-export and a `super::` path alike.
#[test]
fn the_check_finds_a_cycle() {
    let files = [
        (
            "a/mod.rs",
            "mod x; pub use x::Thing; pub fn helper() {} fn f() { crate::b::g(); }",
        ),
        (
            "a/x.rs",
            "pub struct Thing; use super::super::c::C; fn h() { crate::b::g() }",
        ),
        ("b.rs", "pub fn g() { let _ = crate::a::Thing; }"),
        (
            "c.rs",
            "pub struct C; /* crate::a::Thing */ const S: &str = \"crate::a\";",
        ),
        (
            "d.rs",
            "use crate::{c::C, b}; #[cfg(test)] mod tests { use crate::d::x; }",
        ),
    ];
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    let graph = Graph::new(&files);
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    // `crate::a::Thing` is defined in a/x.rs: b names a::x, not a.
    assert!(graph.edges[&m("b")].contains_key(&m("a::x")));
    assert!(graph.edges[&m("a")].contains_key(&m("b")));
    assert!(
        !graph.edges.contains_key(&m("c")),
        "comments and strings are no imports"
    );
    assert_eq!(
        graph.edges[&m("d")].keys().cloned().collect::<Vec<_>>(),
        [m("b"), m("c")],
        "test modules are left out"
    );
    let loops =
        |depth| -> Vec<Vec<Module>> { graph.cycles(depth).into_iter().map(|(_, c)| c).collect() };
    assert_eq!(loops(usize::MAX), [[m("a::x"), m("b"), m("a::x")]]);
    assert_eq!(loops(1), [[m("a"), m("b"), m("a")]]);
}

fn show(m: &Module) -> String {
    m.join("::")
}

/// `(path relative to src/, text)` of every `.rs` file under `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The module a file under `src/` is; `None` for the crate root and the binary.
fn module_of(rel: &str) -> Option<Module> {
    let rel = rel.strip_suffix(".rs")?;
    if rel == "lib" || rel == "main" {
        return None;
    }
    let mut m: Module = rel.split('/').map(String::from).collect();
    if m.last().is_some_and(|l| l == "mod") {
        m.pop();
    }
    Some(m)
}

struct Graph {
    /// Importer -> imported -> one (file, path) that shows it.
    edges: BTreeMap<Module, BTreeMap<Module, (String, String)>>,
}

impl Graph {
    fn new(files: &[(String, String)]) -> Graph {
        let parsed: Vec<(String, Module, Vec<UsePath>)> = files
            .iter()
            .filter_map(|(rel, text)| {
                let module = module_of(rel)?;
                Some((rel.clone(), module, paths(&strip(text))))
            })
            .collect();
        let modules: BTreeSet<Module> = parsed.iter().map(|(_, m, _)| m.clone()).collect();
        let mut resolver = Resolver {
            modules,
            reexports: BTreeMap::new(),
        };
        // Re-exports first: `pub use child::Item` names Item in this module.
        for (_, module, paths) in &parsed {
            for p in paths.iter().filter(|p| p.public) {
                if let Some(abs) = resolver.absolute(module, &p.segments) {
                    let name = p.alias.clone().or_else(|| abs.last().cloned());
                    if let Some(name) = name.filter(|n| n != "*") {
                        resolver
                            .reexports
                            .insert((module.clone(), name), abs.clone());
                    }
                }
            }
        }
        let mut edges: BTreeMap<Module, BTreeMap<Module, (String, String)>> = BTreeMap::new();
        for (rel, module, paths) in &parsed {
            for p in paths {
                let Some(abs) = resolver.absolute(module, &p.segments) else {
                    continue;
                };
                let target = resolver.defining_module(&abs, 0);
                if &target != module {
                    edges
                        .entry(module.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| (rel.clone(), p.segments.join("::")));
                }
            }
        }
        Graph { edges }
    }

    /// The edges with modules cut to their first `depth` segments.
    fn collapsed(&self, depth: usize) -> BTreeMap<Module, BTreeSet<Module>> {
        let cut = |m: &Module| m[..m.len().min(depth)].to_vec();
        let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            for to in tos.keys() {
                if cut(from) != cut(to) {
                    out.entry(cut(from)).or_default().insert(cut(to));
                }
            }
        }
        out
    }

    /// A file and path behind the edge `from -> to` at this depth.
    fn why(&self, from: &Module, to: &Module, depth: usize) -> (String, String) {
        let cut = |m: &Module| m[..m.len().min(depth)].to_vec();
        self.edges
            .iter()
            .filter(|(f, _)| &cut(f) == from)
            .flat_map(|(_, tos)| tos.iter())
            .find(|(t, _)| &cut(t) == to)
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    }

    /// Each strongly connected component of more than one module, with one loop through it
    /// (first module repeated last).
    fn cycles(&self, depth: usize) -> Vec<(BTreeSet<Module>, Vec<Module>)> {
        let edges = self.collapsed(depth);
        let nodes: BTreeSet<Module> = edges
            .iter()
            .flat_map(|(f, ts)| std::iter::once(f.clone()).chain(ts.iter().cloned()))
            .collect();
        let reach = |from: &Module| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(n) = stack.pop() {
                for t in edges.get(&n).into_iter().flatten() {
                    if seen.insert(t.clone()) {
                        stack.push(t.clone());
                    }
                }
            }
            seen
        };
        let reachable: BTreeMap<Module, BTreeSet<Module>> =
            nodes.iter().map(|n| (n.clone(), reach(n))).collect();
        let mut done = BTreeSet::new();
        let mut out = Vec::new();
        for n in &nodes {
            if done.contains(n) || !reachable[n].contains(n) {
                continue;
            }
            let component: BTreeSet<Module> = reachable[n]
                .iter()
                .filter(|m| reachable[*m].contains(n))
                .cloned()
                .collect();
            done.extend(component.iter().cloned());
            let cycle = shortest_loop(n, &edges, &component);
            out.push((component, cycle));
        }
        out
    }
}

/// The shortest path from `start` back to itself inside `component` (breadth first).
fn shortest_loop(
    start: &Module,
    edges: &BTreeMap<Module, BTreeSet<Module>>,
    component: &BTreeSet<Module>,
) -> Vec<Module> {
    let mut came_from: BTreeMap<Module, Module> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(n) = queue.pop_front() {
        for t in edges.get(&n).into_iter().flatten() {
            if !component.contains(t) || came_from.contains_key(t) {
                continue;
            }
            came_from.insert(t.clone(), n.clone());
            if t == start {
                let mut path = vec![n.clone()];
                while path.last() != Some(start) {
                    let back = came_from[path.last().unwrap()].clone();
                    path.push(back);
                }
                path.reverse();
                path.push(start.clone());
                return path;
            }
            queue.push_back(t.clone());
        }
    }
    vec![start.clone(), start.clone()]
}

struct Resolver {
    modules: BTreeSet<Module>,
    /// (module, name) -> the absolute path the module re-exports under that name.
    reexports: BTreeMap<(Module, String), Vec<String>>,
}

impl Resolver {
    /// The path from the crate root that `segments`, written in `module`, names; `None` when
    /// it leads outside the crate (std, a dependency, a local name).
    fn absolute(&self, module: &Module, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let (mut base, rest): (Module, &[String]) = match first.as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (module.clone(), &segments[1..]),
            "super" => {
                let mut base = module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                (base, rest)
            }
            _ => {
                let mut child = module.clone();
                child.push(first.clone());
                if !self.modules.contains(&child) {
                    return None;
                }
                (module.clone(), segments)
            }
        };
        for s in rest {
            if s != "self" {
                base.push(s.clone());
            }
        }
        Some(base)
    }

    /// The module that defines what `abs` names: its longest module prefix, or, when the
    /// next segment is re-exported there, wherever the re-export leads.
    fn defining_module(&self, abs: &[String], depth: usize) -> Module {
        let mut module: Module = Vec::new();
        for s in abs {
            let mut next = module.clone();
            next.push(s.clone());
            if self.modules.contains(&next) {
                module = next;
                continue;
            }
            if depth < 8 {
                if let Some(target) = self.reexports.get(&(module.clone(), s.clone())) {
                    return self.defining_module(target, depth + 1);
                }
            }
            break;
        }
        module
    }
}

/// One path a file names: a `use` leaf (expanded from its tree) or a path in code.
struct UsePath {
    segments: Vec<String>,
    alias: Option<String>,
    /// A `pub`/`pub(crate)` use: a re-export.
    public: bool,
}

/// Every `use` path (trees expanded) and every `a::b` path in code.
fn paths(code: &str) -> Vec<UsePath> {
    let tokens = tokenize(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let public = i > 0 && (tokens[i - 1] == "pub" || tokens[i - 1] == ")");
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |p| i + p);
            let mut leaves = Vec::new();
            use_tree(&tokens[i + 1..end], &[], &mut leaves);
            out.extend(leaves.into_iter().map(|(segments, alias)| UsePath {
                segments,
                alias,
                public,
            }));
            i = end + 1;
            continue;
        }
        if is_ident(&tokens[i]) && tokens.get(i + 1).is_some_and(|t| t == "::") {
            let mut segments = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::")
                && tokens.get(j + 1).is_some_and(|t| is_ident(t))
            {
                segments.push(tokens[j + 1].clone());
                j += 2;
            }
            out.push(UsePath {
                segments,
                alias: None,
                public: false,
            });
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Expands a use tree (`a::{b, c::d as e, f::*}`) after `prefix` into its leaves.
fn use_tree(tokens: &[String], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "::" => {}
            "{" => {
                // Split the braces' content at top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < tokens.len() {
                    match tokens[j].as_str() {
                        "{" => depth += 1,
                        "}" if depth == 0 => break,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            use_tree(&tokens[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                use_tree(&tokens[start..j.min(tokens.len())], &path, out);
                return;
            }
            "as" => {
                let alias = tokens.get(i + 1).cloned().filter(|a| a != "_");
                out.push((path, alias));
                return;
            }
            t => path.push(t.to_string()),
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        out.push((path, None));
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
            continue;
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
        i += 1;
    }
    out
}

/// The code without comments, string and char literals, and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && starts_word(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_items(&out)
}

/// Whether `chars[i]` starts a word (or follows a lone `b`, as in `br"..."`).
fn starts_word(chars: &[char], i: usize) -> bool {
    let word = |k: usize| chars[k].is_alphanumeric() || chars[k] == '_';
    match i.checked_sub(1) {
        None => true,
        Some(p) if chars[p] == 'b' => p == 0 || !word(p - 1),
        Some(p) => !word(p),
    }
}

/// Drops each `#[cfg(test)]` item: up to its `;`, or its balanced `{ ... }` block.
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (k, ch) in after[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
