//! Property tests ("fuzzing" with proptest) of the parsers that read text a person or an agent
//! wrote: `Orchfile.toml`, `master_plan.md` (as a plan source and as a document whose sections
//! orch keeps), and the JSON plan an agent returns to `orch plan`. Errors are fine; a panic is
//! a bug.
//!
//! The seed is fixed so CI is deterministic. For a longer hunt:
//! `ORCH_FUZZ_SEED=$RANDOM ORCH_FUZZ_CASES=20000 cargo test --release --test fuzz_parsers`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use orchfile::master_plan::{self, read as markdown, Sections};
use orchfile::plan::{orchfile as toml_plan, Plan};
use orchfile::state::Status;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// A runner with a fixed seed (unless `ORCH_FUZZ_SEED` is set) and no regression files.
fn runner(cases: u32, salt: u64) -> TestRunner {
    let seed = env_u64("ORCH_FUZZ_SEED").unwrap_or(0x0BC4_F11E) ^ salt;
    TestRunner::new(Config {
        cases: env_u64("ORCH_FUZZ_CASES").map_or(cases, |c| c as u32),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    })
}

fn manifest_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Orchfiles that parse, covering every field; the mutations start from these.
fn orchfile_seeds() -> Vec<String> {
    let mut seeds = vec![
        manifest_file("Orchfile.toml.example"),
        manifest_file("examples/code-review/Orchfile.toml"),
        manifest_file("examples/shell-pipeline/Orchfile.toml"),
        r#"
request = "build it"
[settings]
jobs = 2
kill_grace = 1.5
retry_backoff = "10ms"
retry_backoff_max = 3
inline_result_limit = 10

[agents.fake]
command = ["fake", "--file", "{prompt_file}"]
prompt_via = "file"
result = "json:result.text"
max_parallel = 1
retry_on = ["529"]
env = { K = "v" }

[tasks.a]
run = "echo a >> ran.log; cat in_a.txt > out_a.txt"
inputs = ["in_a.txt", "src/**/*.rs"]
outputs = ["out_a.txt"]
priority = 0
timeout = "1h30m"
verify = "test -s out_a.txt"

[tasks."b.c"]
title = "B | with `ticks` and ### hashes"
prompt = "use {{ deps.a.result }} and {{ inputs }} -> {{ outputs }}"
agent = "fake"
deps = ["a"]
locks = ["l1", "l2"]
estimate = "2m30s"
retries = 3
env = { X = "1" }

[tasks.T-03]
prompt_file = "prompts/p.md"
deps = ["a", "b.c"]
priority = "p3"

[aggregate]
strategy = "agent"
agent = "fake"
on_missing = "fail"
title = "T"
prompt = "merge"
"#
        .to_string(),
    ];
    // The invalid ones matter too: they reach the error paths (cycles, unknown deps, spans).
    seeds.push(
        "[tasks.a]\nrun = \"x\"\ndeps = [\"b\"]\n[tasks.b]\nrun = \"y\"\ndeps = [\"a\"]\n".into(),
    );
    seeds.push("[tasks.a]\nrun = \"x\"\ndeps = [\"zzz\", \"a\", \"a\"]\ninputs = [\"src/[\"]\noutputs = [\"../x\", \"/abs\", \"o*\"]\n".into());
    seeds
}

/// Fragments worth inserting into TOML: structure, quoting, escapes, odd numbers and paths.
#[rustfmt::skip]
const TOML_TOKENS: &[&str] = &[
    "[", "]", "[[", "]]", "{", "}", "\"", "'", "'''", "\"\"\"", "=", ",", ".", "\n", "\r\n", "#",
    "\\", "\\u0000", "\\U0010FFFF", "\t", " ", "é", "✅", "\u{200b}", "\u{0}", "inf", "-inf",
    "nan", "1e400", "-1", "0", "9223372036854775807", "-9223372036854775808",
    "18446744073709551616", "1e300", "0.0000001", "true", "1979-05-27T07:32:00Z", "..", "../",
    "/", "*", "**", "{{", "}}", "P9", "P-1", "\"999999999999h\"", "\"1e300s\"", "\"-5s\"",
    "[tasks.x]", "[tasks.a]\nrun = \"r\"\n", "deps = [\"a\"]\n", "deps = [\"x\"]\n",
    "[agents.z]\n", "[settings]\n", "[aggregate]\n", "timeout = 1e300\n", "timeout = inf\n",
    "estimate = \"9999999999999d\"\n", "jobs = 0\n", "priority = 300\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, u8),
    /// Copy a range somewhere else (duplicates a table, a line, a quote).
    Copy(usize, usize, usize),
    SwapLines(usize, usize),
}

fn edit_strategy(tokens: &'static [&'static str]) -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), prop::sample::select(tokens)).prop_map(|(i, t)| Edit::Insert(i, t.to_string())),
        1 => (any::<usize>(), ".{0,8}").prop_map(|(i, s)| Edit::Insert(i, s)),
        3 => (any::<usize>(), 1usize..24).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        1 => (any::<usize>(), 1usize..200, any::<usize>()).prop_map(|(a, n, b)| Edit::Copy(a, n, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

/// Applies byte-level edits; the result is made UTF-8 again (lossily), as the parsers take &str.
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut b = seed.as_bytes().to_vec();
    for e in edits {
        let len = b.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Insert(i, s) => {
                let i = at(*i);
                b.splice(i..i, s.bytes());
            }
            Edit::Delete(i, n) if len > 0 => {
                let i = i % len;
                b.drain(i..(i + n).min(len));
            }
            Edit::Replace(i, byte) if len > 0 => b[i % len] = *byte,
            Edit::Copy(from, n, to) if len > 0 => {
                let from = from % len;
                let piece = b[from..(from + n).min(len)].to_vec();
                let to = at(*to);
                b.splice(to..to, piece);
            }
            Edit::SwapLines(x, y) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let n = lines.len();
                lines.swap(x % n, y % n);
                b = lines.join("\n").into_bytes();
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn orchfile_path() -> PathBuf {
    PathBuf::from("/project/Orchfile.toml")
}

/// Parses an Orchfile and, when it is valid, uses the plan the way a build starts to:
/// the graph, the details writer, and the master_plan.md reader on what was written.
fn exercise_orchfile(text: &str) {
    let r = toml_plan::parse(&orchfile_path(), text);
    match r {
        Ok(plan) => exercise_plan(&plan),
        Err(e) => {
            // Rendering the diagnostic walks the spans: they must lie inside the text.
            let report = miette::Report::new(*e);
            let _ = format!("{report:?}");
        }
    }
}

fn exercise_plan(plan: &Plan) {
    let graph = orchfile::graph::TaskGraph::from_plan(plan).expect("a parsed plan has no cycle");
    assert_eq!(graph.deps.len(), plan.tasks.len());
    let md = render_master_plan(plan);
    let (root, state_dir) = (plan.root.clone(), plan.settings.state_dir.clone());
    let _ = markdown::parse(&master_plan_path(), &md, root, state_dir);
}

/// master_plan.md as orch writes it for `plan`: request, status table, details, graph.
fn render_master_plan(plan: &Plan) -> String {
    let ids: Vec<String> = (1..=plan.tasks.len())
        .map(|n| orchfile::state::agent_id(n as u32))
        .collect();
    let agent_of = |id: &str| ids[plan.index[id]].clone();
    let rows: Vec<master_plan::StatusRow> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| master_plan::StatusRow {
            id: t.id.clone(),
            title: t.title.clone(),
            agent: ids[i].clone(),
            status: [Status::Completed, Status::Ready, Status::Failed][i % 3],
            priority: format!("P{}", t.priority.0),
            deps: t.deps.clone(),
            start: None,
            end: None,
            retries: 0,
            until: None,
        })
        .collect();
    let table = master_plan::render_table(&rows);
    let details = master_plan::render_details(plan, &agent_of);
    let graph = master_plan::mermaid(plan);
    master_plan::render(
        &Sections::default(),
        &master_plan::Generated {
            request: plan.request.as_deref().unwrap_or(""),
            table: &table,
            details: &details,
            graph: &graph,
            log: "### [2026-01-01 00:00:00] Initialization\n- loaded\n",
        },
    )
}

fn master_plan_path() -> PathBuf {
    PathBuf::from("/project/.orchestrator/master_plan.md")
}

#[test]
fn mutated_orchfiles_never_panic() {
    let seeds = orchfile_seeds();
    for s in &seeds {
        exercise_orchfile(s);
    }
    let strategy = (
        prop::sample::select(seeds),
        prop::collection::vec(edit_strategy(TOML_TOKENS), 1..8),
    );
    runner(512, 1)
        .run(&strategy, |(seed, edits)| {
            exercise_orchfile(&mutate(&seed, &edits));
            Ok(())
        })
        .unwrap();
}

/// Random TOML values, the right type or not, for any field.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "",
            "a",
            "b",
            "T-01",
            "x.y",
            "bad id",
            "P0",
            "P3",
            "p1",
            "P4",
            "90s",
            "2m30s",
            "1h",
            "500ms",
            "5 fortnights",
            "-1s",
            "1e300s",
            "99999999999999999999h",
            "0",
            "stdin",
            "arg",
            "file",
            "stdout",
            "json:",
            "json:result",
            "file:",
            "file:o.md",
            "concat",
            "structured",
            "agent",
            "rerun",
            "fail",
            "claude",
            "sim",
            "shell",
            "llm",
            "../x",
            "/abs",
            "src/**/*.rs",
            "src/[",
            "{prompt}",
            "{prompt_file}",
            "{{ deps.a.result }}",
            "{{ deps.nope.result }}",
            "{{",
            "|",
            "`",
            "\n",
            "é✅",
        ])
        .prop_map(|s| toml::Value::String(s.to_string())),
        ".{0,12}".prop_map(toml::Value::String),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            3,
            300,
            65536,
            i64::MAX,
            i64::MIN,
            u32::MAX as i64,
            u32::MAX as i64 + 1
        ])
        .prop_map(toml::Value::Integer),
        prop::sample::select(vec![
            0.0f64,
            -0.5,
            1.5,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-12,
            f64::MAX
        ])
        .prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            prop::collection::vec(("[A-Z]{1,3}", inner), 0..3)
                .prop_map(|kv| toml::Value::Table(kv.into_iter().collect())),
        ]
    })
}

const TASK_IDS: &[&str] = &["a", "b", "c", "T-01", "x.y", "bad id", "é"];
const TASK_FIELDS: &[&str] = &[
    "title",
    "prompt",
    "prompt_file",
    "run",
    "agent",
    "inputs",
    "outputs",
    "deps",
    "priority",
    "retries",
    "timeout",
    "locks",
    "verify",
    "estimate",
    "env",
    "bogus",
];
const AGENT_FIELDS: &[&str] = &[
    "preset",
    "command",
    "prompt_via",
    "result",
    "max_parallel",
    "timeout",
    "retries",
    "retry_on",
    "env",
];
const SETTINGS_FIELDS: &[&str] = &[
    "state_dir",
    "jobs",
    "default_agent",
    "keep_going",
    "kill_grace",
    "retry_backoff",
    "retry_backoff_max",
    "inline_result_limit",
    "allow_outside_root",
];
const AGGREGATE_FIELDS: &[&str] = &["strategy", "agent", "title", "on_missing", "prompt"];

fn table_of(
    fields: &'static [&'static str],
    max: usize,
) -> impl Strategy<Value = toml::map::Map<String, toml::Value>> {
    let field = prop::sample::select(fields).prop_flat_map(|f| (Just(f), field_value(f)));
    prop::collection::vec(field, 0..max)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn strings(options: &'static [&'static str]) -> BoxedStrategy<toml::Value> {
    prop::sample::select(options)
        .prop_map(|s| toml::Value::String(s.to_string()))
        .boxed()
}

/// A value for `field`: mostly of the type it takes (so validation runs), sometimes anything.
fn field_value(field: &str) -> BoxedStrategy<toml::Value> {
    const WORDS: &[&str] = &[
        "",
        "a",
        "b",
        "T-01",
        "x y",
        "{{ deps.a.result }}",
        "|`#",
        "é\n",
    ];
    const PATHS: &[&str] = &[
        "a.txt",
        "src/**/*.rs",
        "src/[",
        "../x",
        "/abs",
        "./b/../c",
        "o*",
    ];
    const DURATIONS: &[&str] = &["90s", "2m30s", "1h", "500ms", "0s", "-1s", "5 fortnights"];
    let typed: BoxedStrategy<toml::Value> = match field {
        "title" | "prompt" | "run" | "verify" => strings(WORDS),
        "prompt_file" | "state_dir" => strings(PATHS),
        "agent" | "default_agent" | "preset" => strings(&["claude", "sim", "llm", "fake", "nope"]),
        "prompt_via" => strings(&["stdin", "arg", "file", "smoke"]),
        "result" => strings(&["stdout", "json:result", "json:", "file:o.md", "file:", "x"]),
        "strategy" => strings(&["concat", "structured", "agent", "other"]),
        "on_missing" => strings(&["rerun", "fail", "ignore"]),
        "inputs" | "outputs" | "locks" | "command" | "retry_on" | "deps" => {
            let pool: &'static [&'static str] = match field {
                "deps" => TASK_IDS,
                "command" => &["fake", "{prompt}", "{prompt_file}", "--x"],
                _ => PATHS,
            };
            prop::collection::vec(prop::sample::select(pool), 0..4)
                .prop_map(|v| {
                    toml::Value::Array(
                        v.into_iter()
                            .map(|s| toml::Value::String(s.to_string()))
                            .collect(),
                    )
                })
                .boxed()
        }
        "timeout" | "estimate" | "kill_grace" | "retry_backoff" | "retry_backoff_max" => {
            prop_oneof![
                strings(DURATIONS),
                (0i64..100).prop_map(toml::Value::Integer),
                (0.0f64..10.0).prop_map(toml::Value::Float),
            ]
            .boxed()
        }
        "retries" | "jobs" | "max_parallel" | "inline_result_limit" => {
            (-1i64..5).prop_map(toml::Value::Integer).boxed()
        }
        "priority" => prop_oneof![
            strings(&["P0", "P1", "P2", "P3", "p2", "P4", "high"]),
            (-1i64..5).prop_map(toml::Value::Integer),
        ]
        .boxed(),
        "keep_going" | "allow_outside_root" => any::<bool>().prop_map(toml::Value::Boolean).boxed(),
        "env" => prop::collection::vec(("[A-Z_]{1,4}", ".{0,4}"), 0..3)
            .prop_map(|kv| {
                toml::Value::Table(
                    kv.into_iter()
                        .map(|(k, v)| (k, toml::Value::String(v)))
                        .collect(),
                )
            })
            .boxed(),
        _ => toml_value().boxed(),
    };
    prop_oneof![12 => typed, 1 => toml_value()].boxed()
}

/// A task table that is mostly well-typed, so validation gets past serde: an action, deps
/// among the known ids, then random extra fields.
fn task_table() -> impl Strategy<Value = toml::Value> {
    (
        prop::sample::select(vec!["run", "prompt", "prompt_file"]),
        ".{0,10}",
        prop::collection::vec(prop::sample::select(TASK_IDS), 0..3),
        table_of(TASK_FIELDS, 4),
    )
        .prop_map(|(action, text, deps, extra)| {
            let mut t = toml::map::Map::new();
            t.insert(action.to_string(), toml::Value::String(text));
            t.insert(
                "deps".into(),
                toml::Value::Array(
                    deps.into_iter()
                        .map(|d| toml::Value::String(d.to_string()))
                        .collect(),
                ),
            );
            t.extend(extra);
            toml::Value::Table(t)
        })
}

fn orchfile_doc() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((prop::sample::select(TASK_IDS), task_table()), 0..6),
        prop::collection::vec(
            (
                prop::sample::select(vec!["claude", "fake", "sim", "llm", "x y"]),
                table_of(AGENT_FIELDS, 5),
            ),
            0..3,
        ),
        prop::option::of(table_of(SETTINGS_FIELDS, 4)),
        prop::option::of(table_of(AGGREGATE_FIELDS, 3)),
        prop::option::of(field_value("title")),
    )
        .prop_map(|(tasks, agents, settings, aggregate, request)| {
            let mut doc = toml::map::Map::new();
            let table = |kv: Vec<(&str, toml::Value)>| {
                toml::Value::Table(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            };
            doc.insert("tasks".into(), table(tasks));
            doc.insert(
                "agents".into(),
                table(
                    agents
                        .into_iter()
                        .map(|(k, v)| (k, toml::Value::Table(v)))
                        .collect(),
                ),
            );
            if let Some(s) = settings {
                doc.insert("settings".into(), toml::Value::Table(s));
            }
            if let Some(a) = aggregate {
                doc.insert("aggregate".into(), toml::Value::Table(a));
            }
            if let Some(r) = request {
                doc.insert("request".into(), r);
            }
            // NaN and the infinities are valid TOML (`nan`, `inf`) but not every serializer
            // writes them; fall back to Display, which does.
            toml::to_string(&doc).unwrap_or_else(|_| toml::Value::Table(doc).to_string())
        })
}

#[test]
fn random_orchfile_structures_never_panic() {
    runner(512, 2)
        .run(&orchfile_doc(), |text| {
            exercise_orchfile(&text);
            Ok(())
        })
        .unwrap();
}

/// Every duration field with extreme values: a parse error or a plan, never a panic.
#[test]
fn extreme_durations_never_panic() {
    let values = [
        "inf",
        "-inf",
        "nan",
        "1e300",
        "1.8e19",
        "18446744073709551615",
        "9223372036854775807",
        "-1",
        "0",
        "\"1e300s\"",
        "\"1e20\"",
        "\"99999999999999999999h\"",
        "\"213503982334601d\"",
        "\"18446744073709551615s\"",
        "\"1e-300ms\"",
        "\"inf\"",
        "\"nan\"",
        "\"1.5.5s\"",
        "\"s\"",
        "\"5\"",
    ];
    for v in values {
        for text in [
            format!("[settings]\nkill_grace = {v}\n[tasks.a]\nrun = \"x\"\n"),
            format!("[settings]\nretry_backoff = {v}\nretry_backoff_max = {v}\n[tasks.a]\nrun = \"x\"\n"),
            format!("[agents.claude]\ntimeout = {v}\n[tasks.a]\nprompt = \"x\"\n"),
            format!("[tasks.a]\nrun = \"x\"\ntimeout = {v}\nestimate = {v}\n"),
        ] {
            exercise_orchfile(&text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// master_plan.md

#[rustfmt::skip]
const MD_TOKENS: &[&str] = &[
    "|", "\\|", "||", "`", "``", "```", "````", "~~~", "\n```\n", "#", "## ", "### ", "\n## ",
    "\n### ", "- **", "**:", "**", "- ", "* ", "1. ", "> ", "\n", "\n\n", "  ", "\t", "\r",
    "<!--", "-->", "<div>", "[x](y)", "\\", "✅", "🔵", "🟡", "⏸️", "❌", "⏭️", "Pending", "Agent-",
    "Agent-01", "Agent-999999999999", "None", ",", "P0", "P9", ":", "é", "\u{200b}", "\u{0}",
    "|---|", "| a | b |", "\n| x | y | z |\n", "- **Agent**: Agent-01 (claude)\n",
    "- **Run**: `x`\n", "- **Timeout**: 1e300s\n", "- **Retries**: 99999999999\n",
    "- **Deps**: T-01\n", "- **Bogus**: 1\n", "\n### T-09: new\n", "\n## Task Details\n",
    "\n## Task Status\n", "\n## Request\n",
];

fn master_plan_seeds() -> Vec<String> {
    let mut seeds: Vec<String> = orchfile_seeds()
        .iter()
        .filter_map(|s| toml_plan::parse(&orchfile_path(), s).ok())
        .map(|p| render_master_plan(&p))
        .collect();
    seeds.push(SAMPLE_MASTER_PLAN.to_string());
    seeds
}

fn exercise_markdown(text: &str) {
    let (root, state_dir) = markdown::layout_of(&master_plan_path());
    let r = markdown::parse(&master_plan_path(), text, root, state_dir);
    if let Ok(plan) = r {
        let graph = orchfile::graph::TaskGraph::from_plan(&plan);
        assert!(graph.is_ok(), "a parsed master plan has no cycle");
        // What orch would write for this plan reads back.
        let again = render_master_plan(&plan);
        let (root, state_dir) = markdown::layout_of(&master_plan_path());
        let _ = markdown::parse(&master_plan_path(), &again, root, state_dir);
    } else if let Err(e) = markdown::parse(
        &master_plan_path(),
        text,
        PathBuf::from("/project"),
        PathBuf::from(".orchestrator"),
    ) {
        let _ = format!("{:?}", miette::Report::new(*e));
    }
    for (_, status) in markdown::table_statuses(text) {
        let _ = Status::parse(&status);
    }
    let sections = Sections::parse(text);
    // Rewriting keeps the person's sections; the result splits again without a panic.
    let rewritten = master_plan::render(
        &sections,
        &master_plan::Generated {
            request: "r",
            table: master_plan::TABLE_HEADER,
            details: "",
            graph: "",
            log: sections.get("Execution Log").unwrap_or(""),
        },
    );
    let _ = Sections::parse(&rewritten);
}

#[test]
fn mutated_master_plans_never_panic() {
    let seeds = master_plan_seeds();
    for s in &seeds {
        exercise_markdown(s);
    }
    let strategy = (
        prop::sample::select(seeds),
        prop::collection::vec(edit_strategy(MD_TOKENS), 1..8),
    );
    runner(384, 3)
        .run(&strategy, |(seed, edits)| {
            exercise_markdown(&mutate(&seed, &edits));
            Ok(())
        })
        .unwrap();
}

/// Markdown built from random lines of master-plan-like shapes.
fn markdown_doc() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        prop::sample::select(MD_TOKENS).prop_map(str::to_string),
        "[ -~]{0,20}",
        ".{0,10}",
        (
            prop::sample::select(vec!["T-01", "T-02", "a", "", "x y", "`b`"]),
            ".{0,6}",
            prop::sample::select(vec!["✅", "🟡", "Pending", "❌", "", "?"]),
            prop::sample::select(vec!["None", "T-01", "T-01,T-02", "a, b", "", "zzz"]),
        )
            .prop_map(|(id, title, status, deps)| format!(
                "| {id} | {title} | Agent-01 | {status} | P1 | {deps} | - | - | 0 |"
            )),
        (
            prop::sample::select(vec!["T-01", "T-02", "a", "T-01: x", ""]),
            ".{0,6}"
        )
            .prop_map(|(id, t)| format!("### {id}: {t}")),
        (
            prop::sample::select(vec![
                "Agent",
                "Input",
                "Output",
                "Estimated Time",
                "Timeout",
                "Retries",
                "Locks",
                "Verify",
                "Run",
                "Prompt file",
                "Prompt",
                "Deps",
                "Priority",
                "Nope",
            ]),
            ".{0,10}"
        )
            .prop_map(|(f, v)| format!("- **{f}**: {v}")),
    ];
    prop::collection::vec(line, 0..40).prop_map(|lines| {
        let mut s = String::from(
            "# Master Plan\n\n## Task Status\n\n| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        s.push_str(&lines.join("\n"));
        s
    })
}

#[test]
fn random_master_plans_never_panic() {
    runner(384, 4)
        .run(&markdown_doc(), |text| {
            exercise_markdown(&text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_text_never_panics_any_parser() {
    runner(512, 5)
        .run(&".{0,200}", |text| {
            exercise_orchfile(&text);
            exercise_markdown(&text);
            exercise_agent_plan(&text);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The JSON plan an agent returns to `orch plan`

fn exercise_agent_plan(reply: &str) {
    if let Ok(v) = orchfile::planner::extract_json(reply) {
        let (tasks, _problems) = orchfile::planner::read_tasks(&v);
        let agents = orchfile::agent::presets::builtin_agents();
        let _ = orchfile::planner::validate(&tasks, &agents);
    }
}

#[rustfmt::skip]
const JSON_TOKENS: &[&str] = &[
    "{", "}", "[", "]", "\"", ":", ",", "null", "true", "1e999", "-0", "\"tasks\"", "\"deps\"",
    "\"id\"", "[\"T-01\"]", "```json\n", "\n```", "\\u0000", "\\ud800", "é", "\n", "1e300",
    "\"estimate\": 1e300, ",
];

#[test]
fn mutated_agent_plans_never_panic() {
    let seed = r#"Here is the plan:

```json
{"tasks": [
  {"id": "T-01", "title": "Read", "prompt": "read src", "inputs": ["src/*.rs"], "priority": "P0", "estimate": "2m"},
  {"id": "T-02", "title": "Lines", "run": "wc -l src/*.rs > lines.txt", "outputs": ["lines.txt"], "deps": ["T-01"]},
  {"id": "T-03", "title": "Report", "prompt": "write it", "deps": "T-01, T-02", "agent": "claude", "verify": "true"}
]}
```
"#;
    exercise_agent_plan(seed);
    exercise_agent_plan(&seed.replace("\"2m\"", "1e300"));
    let strategy = prop::collection::vec(edit_strategy(JSON_TOKENS), 1..8);
    runner(384, 6)
        .run(&strategy, |edits| {
            exercise_agent_plan(&mutate(seed, &edits));
            Ok(())
        })
        .unwrap();
}

/// A master plan as `orch build` writes it, with a person's own section and odd cells.
const SAMPLE_MASTER_PLAN: &str = r#"# Master Plan

## Request

Review the code.

## Task Status

| Task ID | Task Description | Agent | Status | Priority | Deps | Start | End | Retries |
|---------|------------------|-------|--------|----------|------|-------|-----|---------|
| T-01 | Read code | Agent-01 | ✅ | P0 | None | 10:45:47 | 10:45:47 | 0 |
| T-02 | Check \| style | Agent-02 | 🟡 | P1 | T-01 | - | - | 1 |
| T-03 | Shell | Agent-03 | Pending | P2 | T-01,T-02 | - | - | 0 |

## Task Details

### T-01: Read code

- **Agent**: Agent-01 (claude)
- **Input**: `src/**/*.ts`
- **Output**: `reports/stats.md`, ``a`b``
- **Estimated Time**: 1m
- **Timeout**: 2m30s
- **Retries**: 2
- **Locks**: `db`
- **Verify**: `test -s reports/stats.md`
- **Prompt**:

```text
Read all .ts files
## not a heading
```

### T-02: Check | style

- **Agent**: Agent-02 (claude)
- **Prompt file**: `prompts/style.md`

### T-03: Shell

- **Agent**: Agent-03 (shell)
- **Run**:

```sh
echo hi > x
```

## Notes from a person

Keep this.

## Dependency Graph

```mermaid
flowchart LR
    n0["T-01: Read code"]
```

## Execution Log

### [2026-11-27 10:45:47] Initialization
- Loaded plan
"#;

// ---------------------------------------------------------------------------------------------
// Round trip: what orch writes into master_plan.md reads back as the same plan

/// Text for prompts, commands and paths, heavy on what markdown and tables treat specially.
fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => "[a-z0-9 ]{1,6}",
            1 => prop::sample::select(vec![
                "`", "``", "```", "|", "\\|", "\\", "*", "**", "_", "#", "## ", "- ", "> ",
                "<b>", "&amp;", "[x](y)", "{{ inputs }}", "é", "✅", "\t", "  ", ",", ";",
            ])
            .prop_map(str::to_string),
        ],
        1..max,
    )
    .prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
struct GenTask {
    id: String,
    title: String,
    shell: bool,
    body: String,
    agent: Option<&'static str>,
    deps: Vec<usize>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    priority: u8,
    retries: Option<u32>,
    timeout: Option<&'static str>,
    estimate: Option<&'static str>,
    locks: Vec<String>,
    verify: Option<String>,
}

fn gen_task() -> impl Strategy<Value = GenTask> {
    let multiline = || prop::collection::vec(tricky_text(6), 1..4).prop_map(|l| l.join("\n"));
    let path = "[a-z]{1,4}(/[a-z0-9_.-]{1,5}){0,2}";
    let durations = prop::sample::select(vec!["1s", "90s", "2m30s", "1h", "250ms", "1h2m3s"]);
    (
        (
            "[A-Za-z0-9][A-Za-z0-9_.-]{0,5}",
            "[ -~]{0,3}[A-Za-z0-9][ -~]{0,12}",
            any::<bool>(),
            prop_oneof![tricky_text(8), multiline()],
            prop::option::of(prop::sample::select(vec!["claude", "sim", "codex"])),
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        ),
        (
            prop::collection::vec(path, 0..3),
            prop::collection::vec(path, 0..3),
            0u8..4,
            prop::option::of(0u32..5),
            prop::option::of(durations.clone()),
            prop::option::of(durations),
            prop::collection::vec("[a-z]{1,4}", 0..2),
            prop::option::of(prop_oneof![tricky_text(6), multiline()]),
        ),
    )
        .prop_map(
            |(
                (id, title, shell, body, agent, deps),
                (inputs, outputs, priority, retries, timeout, estimate, locks, verify),
            )| GenTask {
                id,
                title: title.trim().to_string(),
                shell,
                body,
                agent,
                // Indexes into the tasks before this one: no cycles.
                deps: deps.iter().map(|i| i.index(usize::MAX)).collect(),
                inputs,
                outputs,
                priority,
                retries,
                timeout,
                estimate,
                locks,
                verify,
            },
        )
}

fn gen_orchfile(tasks: &[GenTask]) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<&str> = Vec::new();
    for t in tasks {
        if !seen.insert(t.id.clone()) {
            continue;
        }
        out.push_str(&format!("[tasks.{}]\ntitle = {}\n", q(&t.id), q(&t.title)));
        if t.shell {
            out.push_str(&format!("run = {}\n", q(&t.body)));
        } else {
            out.push_str(&format!("prompt = {}\n", q(&t.body)));
            if let Some(a) = t.agent {
                out.push_str(&format!("agent = {}\n", q(a)));
            }
        }
        let mut deps: Vec<String> = Vec::new();
        if !ids.is_empty() {
            for d in &t.deps {
                let d = ids[d % ids.len()].to_string();
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        out.push_str(&format!(
            "deps = {}\ninputs = {}\noutputs = {}\nlocks = {}\npriority = \"P{}\"\n",
            list(&deps),
            list(&t.inputs),
            list(&t.outputs),
            list(&t.locks),
            t.priority
        ));
        if let Some(r) = t.retries {
            out.push_str(&format!("retries = {r}\n"));
        }
        if let Some(d) = t.timeout {
            out.push_str(&format!("timeout = {}\n", q(d)));
        }
        if let Some(d) = t.estimate {
            out.push_str(&format!("estimate = {}\n", q(d)));
        }
        if let Some(v) = &t.verify {
            out.push_str(&format!("verify = {}\n", q(v)));
        }
        ids.push(&t.id);
    }
    out
}

/// The parts of a task that master_plan.md carries, with the default agent made explicit.
fn comparable(plan: &Plan) -> Vec<String> {
    plan.tasks
        .iter()
        .map(|t| {
            let agent = match &t.action {
                orchfile::plan::Action::Shell(_) => None,
                _ => Some(
                    t.agent
                        .clone()
                        .unwrap_or(plan.settings.default_agent.clone()),
                ),
            };
            format!(
                "{:?}",
                (
                    (&t.id, &t.title, &t.action, agent, &t.deps, &t.inputs),
                    (&t.outputs, t.priority.0, t.retries, t.timeout),
                    (&t.locks, &t.verify, t.estimate),
                )
            )
        })
        .collect()
}

#[test]
fn plans_read_back_the_same_from_the_master_plan_orch_writes() {
    runner(256, 7)
        .run(&prop::collection::vec(gen_task(), 1..6), |tasks| {
            let text = gen_orchfile(&tasks);
            let plan = match toml_plan::parse(&orchfile_path(), &text) {
                Ok(p) => p,
                // Random bodies may be invalid (e.g. an empty run): not this test's subject.
                Err(_) => return Ok(()),
            };
            let md = render_master_plan(&plan);
            let (root, state_dir) = (plan.root.clone(), plan.settings.state_dir.clone());
            let back = markdown::parse(&master_plan_path(), &md, root, state_dir).map_err(|e| {
                TestCaseError::fail(format!(
                    "{:?}\n--- Orchfile\n{text}\n--- master_plan.md\n{md}",
                    miette::Report::new(*e)
                ))
            })?;
            prop_assert_eq!(comparable(&plan), comparable(&back), "\n{}\n{}", text, md);
            Ok(())
        })
        .unwrap();
}
