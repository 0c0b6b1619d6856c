//! `orch schema` against a real JSON Schema validator (the `jsonschema` crate): it accepts
//! every Orchfile the project ships, refuses unknown fields, agrees with the parser on the
//! values a schema can judge, documents every field; and `orch init` points at it.

mod common;

use std::path::{Path, PathBuf};

use common::Project;
use serde_json::Value;

fn schema() -> Value {
    let out = Project::empty().orch(&["schema"]).ok().stdout();
    serde_json::from_str(&out).expect("orch schema prints JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("a valid JSON Schema")
}

/// A TOML document as the JSON a schema validator reads.
fn as_json(toml_text: &str) -> Value {
    let v: toml::Value = toml::from_str(toml_text).expect("valid TOML");
    serde_json::to_value(v).unwrap()
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, what: &str, text: &str) {
    let doc = as_json(text);
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

fn shipped_orchfiles() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("Orchfile.toml.example")];
    for e in std::fs::read_dir(root.join("examples")).unwrap().flatten() {
        let f = e.path().join("Orchfile.toml");
        if f.is_file() {
            files.push(f);
        }
    }
    assert!(files.len() >= 3, "the example and the examples: {files:?}");
    files
}

#[test]
fn every_orchfile_the_project_ships_is_valid() {
    let v = validator();
    for f in shipped_orchfiles() {
        assert_valid(
            &v,
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
        );
    }
}

/// The schema judges shapes; orch's own checks go further (a field valid only with another,
/// a glob, a placeholder): every shipped Orchfile passes those too.
#[test]
fn every_orchfile_the_project_ships_is_accepted_by_orch() {
    for f in shipped_orchfiles() {
        let p = Project::new(&std::fs::read_to_string(&f).unwrap());
        let run = p.orch(&["list"]);
        assert_eq!(run.code(), 0, "{}:\n{}", f.display(), run.stderr());
    }
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let v = validator();
    let base = "[tasks.a]\nrun = \"true\"\n";
    assert_valid(&v, "base", base);
    for (what, text) in [
        ("top level", format!("{base}colour = \"red\"\n")),
        (
            "task",
            "[tasks.a]\nrun = \"true\"\nouputs = [\"x\"]\n".to_string(),
        ),
        ("settings", format!("{base}[settings]\njbos = 2\n")),
        (
            "agent",
            format!("{base}[agents.x]\ncommand = [\"x\"]\nmodel = \"m\"\n"),
        ),
        (
            "aggregate",
            format!("{base}[aggregate]\nstyle = \"concat\"\n"),
        ),
    ] {
        assert!(!v.is_valid(&as_json(&text)), "{what}: {text}");
    }
}

#[test]
fn the_schema_and_the_parser_agree_on_values_a_schema_can_judge() {
    let v = validator();
    let cases = [
        "[settings]\njobs = 0\n",
        "[settings]\njobs = 4\n",
        "[settings]\njobs = 2000\n",
        // A duration string's range is the parser's to judge (`"2h"` for kill_grace), a
        // number's the schema's too.
        "[settings]\nkill_grace = 7200\n",
        "[settings]\nkill_grace = 30\n",
        "[settings]\nkill_grace = \"1m30s\"\n",
        "[settings]\nkill_grace = \"5 parsecs\"\n",
        "[settings]\ninline_result_limit = -1\n",
        "[agents.x]\ncommand = [\"x\"]\nprompt_via = \"pipe\"\n",
        "[agents.x]\ncommand = [\"x\", \"{prompt}\"]\nprompt_via = \"arg\"\n",
        "[agents.x]\ncommand = [\"x\"]\nmax_parallel = 0\n",
        "[agents.x]\ncommand = [\"x\"]\nresult = \"json:result\"\n",
        "[agents.x]\ncommand = [\"x\"]\nresult = \"yaml:result\"\n",
        "[agents.x]\npreset = \"nope\"\n",
        "[agents.x]\npreset = \"ollama\"\n",
        "[settings]\nexecutor = \"slurm\"\n",
        "[settings]\nexecutor = \"cloud\"\n",
        "[settings.slurm]\nmem = \"4G\"\ncpus = 2\nlaunch = \"step\"\n",
        "[settings.slurm]\nmem = \"lots\"\n",
        "[settings.slurm]\ncpus = 0\n",
        "[settings.slurm]\nlaunch = \"array\"\n",
        "[settings.slurm]\nmax_jobs = 100\npoll = \"1s\"\n",
        "[agents.x]\ncommand = [\"x\"]\nslurm = { mem = 512 }\n",
        "[aggregate]\nstrategy = \"merge\"\n",
        "[aggregate]\nstrategy = \"structured\"\non_missing = \"fail\"\n",
    ];
    let task = "[tasks.a]\nrun = \"true\"\n";
    let task_cases = [
        "priority = \"P4\"\n",
        "priority = \"P1\"\n",
        "priority = 2\n",
        "priority = 7\n",
        "timeout = \"2m\"\n",
        "timeout = 0\n",
        "estimate = \"0s\"\n",
        "estimate = \"90\"\n",
        "retries = 1000\n",
        "retries = 3\n",
        "foreach = [\"x\", \"y\"]\n",
        "foreach = 3\n",
    ];
    let mut docs: Vec<String> = cases.iter().map(|c| format!("{task}{c}")).collect();
    docs.extend(task_cases.iter().map(|c| format!("{task}{c}")));
    docs.push("[tasks.\"a b\"]\nrun = \"true\"\n".into());
    docs.push("[tasks.\"T-01.x_y\"]\nrun = \"true\"\n".into());
    for doc in docs {
        let parsed = orchfile::plan::orchfile::parse(Path::new("Orchfile.toml"), &doc);
        assert_eq!(
            v.is_valid(&as_json(&doc)),
            parsed.is_ok(),
            "schema and parser disagree on:\n{doc}\nparser: {:?}",
            parsed.err().map(|e| e.to_string())
        );
    }
}

/// Every property of every object in the schema has a description, and its type is said.
fn check_documented(v: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let here = format!("{at}.{name}");
            if p.get("description").is_none() {
                problems.push(format!("{here}: no description"));
            }
            let typed = ["type", "anyOf", "$ref", "enum"]
                .iter()
                .any(|k| p.get(k).is_some());
            if !typed {
                problems.push(format!("{here}: no type"));
            }
            check_documented(p, &here, problems);
        }
    }
    if let Some(defs) = v.get("$defs").and_then(Value::as_object) {
        for (name, d) in defs {
            check_documented(d, name, problems);
        }
    }
}

#[test]
fn every_field_says_its_type_and_what_it_does_and_defaults_are_given() {
    let s = schema();
    let mut problems = Vec::new();
    check_documented(&s, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    let settings = &s["$defs"]["RawSettings"]["properties"];
    assert_eq!(settings["kill_grace"]["default"], "5s");
    assert_eq!(settings["state_dir"]["default"], ".orchestrator");
    assert_eq!(
        s["$defs"]["RawTask"]["properties"]["priority"]["default"],
        "P2"
    );
    assert_eq!(s["$id"], "urn:orch:orchfile:v2");
}

#[test]
fn orch_init_points_its_schema_line_at_the_schema_it_writes() {
    let p = Project::empty();
    p.orch(&["init"]).ok();
    let text = p.read("Orchfile.toml");
    assert_eq!(
        text.lines().next(),
        Some("#:schema ./orchfile.schema.json"),
        "taplo reads the directive on the first line"
    );
    let written: Value = serde_json::from_str(&p.read("orchfile.schema.json")).unwrap();
    assert_eq!(written, schema());
    assert_valid(&validator(), "the starter", &text);
    p.orch(&["build", "-n"]).ok();
    // `orch schema -o` writes the same file.
    p.orch(&["schema", "-o", "again.json"]).ok();
    assert_eq!(p.read("again.json"), p.read("orchfile.schema.json"));
}
