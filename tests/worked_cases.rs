//! Every scenario beside the shipped packs' scripts (rules/*/tests/*.json, which include the
//! worked cases of DOMAIN.md) run through `claimctl adjudicate` — the embedded mode's real entry
//! point — and compared with its expected decisions. The pack test runner checks the same files
//! from inside; this proves the command line gives the same answers.

use std::path::Path;

use claims_e2e::{claimctl, decisions, repo, scratch};
use serde_json::Value;

/// Partial match: every key of `expected` must match in `actual`; lists match item by item.
fn mismatches(path: &str, expected: &Value, actual: &Value, found: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let actual_value = actual.get(key).unwrap_or(&Value::Null);
                mismatches(&format!("{path}.{key}"), value, actual_value, found);
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (index, (expected, actual)) in expected.iter().zip(actual).enumerate() {
                mismatches(&format!("{path}[{index}]"), expected, actual, found);
            }
        }
        (expected, actual) if expected == actual => {}
        (expected, actual) => found.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn run_scenario(pack: &Path, file: &Path, failures: &mut Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
    let scenario: Value =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", file.display()));
    let name = file.file_stem().and_then(|stem| stem.to_str()).unwrap_or("scenario");
    let dir = scratch(&format!("{}-{name}", pack.file_name().and_then(|n| n.to_str()).unwrap_or("pack")));
    let registry = match &scenario["registry"] {
        Value::String(relative) => file.parent().map(|tests| tests.join(relative)).unwrap_or_default(),
        inline => {
            let path = dir.join("registry.json");
            std::fs::write(&path, inline.to_string()).unwrap_or_else(|error| panic!("writing registry: {error}"));
            path
        }
    };
    let messages: Vec<String> =
        scenario["messages"].as_array().map(|m| m.iter().map(Value::to_string).collect()).unwrap_or_default();
    let claims = dir.join("claims.jsonl");
    std::fs::write(&claims, messages.join("\n") + "\n").unwrap_or_else(|error| panic!("writing claims: {error}"));
    let counters = dir.join("counters.json");
    std::fs::write(&counters, scenario.get("counters").cloned().unwrap_or(Value::Array(Vec::new())).to_string())
        .unwrap_or_else(|error| panic!("writing counters: {error}"));
    let (code, output) = claimctl(&[
        "adjudicate",
        "--rules",
        &pack.to_string_lossy(),
        "--registry",
        &registry.to_string_lossy(),
        "--counters",
        &counters.to_string_lossy(),
        &claims.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{}: claimctl adjudicate exit code", file.display());
    let actual = decisions(&output);
    let expected = scenario["expect"].as_array().cloned().unwrap_or_default();
    assert_eq!(actual.len(), messages.len(), "{}: one decision per message", file.display());
    assert_eq!(expected.len(), messages.len(), "{}: one expectation per message", file.display());
    let mut found = Vec::new();
    for (index, (expected, actual)) in expected.iter().zip(&actual).enumerate() {
        mismatches(&format!("messages[{index}]"), expected, actual, &mut found);
    }
    failures.extend(found.into_iter().map(|problem| format!("{}: {problem}", file.display())));
    let _ = std::fs::remove_dir_all(dir);
}

fn run_pack(name: &str) {
    let pack = repo().join("rules").join(name);
    let mut files: Vec<_> = std::fs::read_dir(pack.join("tests"))
        .unwrap_or_else(|error| panic!("reading {}/tests: {error}", pack.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json") && path.file_name().is_some_and(|n| n != "registry.json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}/tests", pack.display());
    let mut failures = Vec::new();
    for file in &files {
        run_scenario(&pack, file, &mut failures);
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn french_scenarios_through_the_command_line() {
    run_pack("fr");
}

#[test]
fn belgian_scenarios_through_the_command_line() {
    run_pack("be");
}

#[test]
fn senegalese_scenarios_through_the_command_line() {
    run_pack("sn");
}

#[test]
fn every_shipped_pack_checks_clean_and_passes_its_own_tests() {
    for name in ["fr", "be", "sn"] {
        let pack = repo().join("rules").join(name);
        let (code, output) = claimctl(&["rules", "check", &pack.to_string_lossy()]);
        assert_eq!(code, 0, "rules check {name}:\n{output}");
        let (code, output) = claimctl(&["rules", "test", &pack.to_string_lossy()]);
        let summary = output.lines().last().unwrap_or_default();
        assert_eq!(code, 0, "rules test {name}:\n{output}");
        let passed: u32 = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(passed >= 8 && summary.ends_with(" passed, 0 failed"), "rules test {name}: {summary}");
    }
}
