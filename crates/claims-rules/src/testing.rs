//! `claimctl rules test`: runs the scenarios in a pack's `tests/` folder (`rules/README.md`,
//! "Tests beside the scripts") through the very pipeline the worker uses, and compares each
//! decision with its partial expectation.

use std::fmt;
use std::path::{Path, PathBuf};

use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::contract::{check_registry_names, decision_to_json, parse_registry};
use claims_domain::ids::{HouseholdId, MemberId};
use claims_domain::ledger::Ledger;
use claims_domain::registry::Registry;
use claims_domain::rules::RulePack;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::pack::{PackError, RhaiPack};

/// Why the tests could not run at all (a failing test is a [`TestReport`] entry instead).
#[derive(Debug, Error)]
pub enum TestRunError {
    #[error("{0}")]
    Pack(#[from] PackError),
    #[error("{dir}: cannot list the tests: {message}")]
    TestsFolder { dir: String, message: String },
}

/// One difference between an expectation and what the engine decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// At `path` (`messages[0].lines[0].compulsory.paid`), `expected` was written and `actual`
    /// decided (`None`: the key is absent).
    Mismatch { path: String, expected: Value, actual: Option<Value> },
    /// The test file itself is wrong (bad JSON, missing registry…).
    Invalid(String),
    /// Context for the problems above it (the rule failure behind an `error` outcome).
    Note(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Mismatch { path, expected, actual: Some(actual) } => {
                write!(f, "{path}: expected {expected}, actual {actual}")
            }
            Problem::Mismatch { path, expected, actual: None } => {
                write!(f, "{path}: expected {expected}, actual absent")
            }
            Problem::Invalid(message) => write!(f, "invalid test: {message}"),
            Problem::Note(message) => write!(f, "note: {message}"),
        }
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// The file name within `tests/`.
    pub file: String,
    pub name: String,
    pub problems: Vec<Problem>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every scenario run, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|result| result.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for result in &self.results {
            let status = if result.passed() { "ok  " } else { "FAIL" };
            writeln!(f, "{status} {} ({})", result.name, result.file)?;
            write_problems(f, &result.problems)?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

/// The problems of one scenario. Differences are grouped by decision line (or message, or
/// counter) and shown as a table, expected and actual side by side, one row per value:
///
/// ```text
///      messages[0].lines[0]   expected  actual
///        compulsory.paid          1900    2100
///        supplementary.paid        900     700
/// ```
fn write_problems(f: &mut fmt::Formatter<'_>, problems: &[Problem]) -> fmt::Result {
    let mut index = 0;
    while index < problems.len() {
        let Problem::Mismatch { path, .. } = &problems[index] else {
            writeln!(f, "     {}", problems[index])?;
            index += 1;
            continue;
        };
        let (group, _) = split_group(path);
        let rows: Vec<(&str, String, String)> = problems[index..]
            .iter()
            .map_while(|problem| match problem {
                Problem::Mismatch { path, expected, actual } if split_group(path).0 == group => Some((
                    split_group(path).1,
                    expected.to_string(),
                    actual.as_ref().map_or_else(|| "absent".to_owned(), Value::to_string),
                )),
                _ => None,
            })
            .collect();
        index += rows.len();
        // A long value (a whole list, a line written in full) would stretch the table: it gets a
        // line of its own.
        let (rows, long): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|(_, expected, actual)| expected.chars().count().max(actual.chars().count()) <= LONGEST_CELL);
        for (name, expected, actual) in long {
            writeln!(f, "     {group}.{name}: expected {expected}, actual {actual}")?;
        }
        if rows.is_empty() {
            continue;
        }
        let name_width =
            rows.iter().map(|(name, ..)| name.chars().count() + 2).chain([group.chars().count()]).max().unwrap_or(0);
        let expected_width =
            rows.iter().map(|(_, expected, _)| expected.chars().count()).chain(["expected".len()]).max().unwrap_or(0);
        let actual_width =
            rows.iter().map(|(.., actual)| actual.chars().count()).chain(["actual".len()]).max().unwrap_or(0);
        writeln!(f, "     {group:<name_width$}  {:>expected_width$}  {:>actual_width$}", "expected", "actual")?;
        for (name, expected, actual) in rows {
            let name = format!("  {name}");
            writeln!(f, "     {name:<name_width$}  {expected:>expected_width$}  {actual:>actual_width$}")?;
        }
    }
    Ok(())
}

/// The longest value shown in a table cell.
const LONGEST_CELL: usize = 30;

/// `messages[0].lines[1].compulsory.paid` → (`messages[0].lines[1]`, `compulsory.paid`); a path
/// outside any line is grouped by message (`messages[0]`, `outcome`), and a counter stands alone.
fn split_group(path: &str) -> (&str, &str) {
    let line_end = path.find(".lines[").and_then(|start| path[start..].find(']').map(|end| start + end + 1));
    let message_end = path.starts_with("messages[").then(|| path.find(']').map(|end| end + 1)).flatten();
    match line_end.or(message_end) {
        Some(end) if path[end..].starts_with('.') => (&path[..end], &path[end + 1..]),
        Some(end) if end == path.len() => (path, "(the whole value)"),
        _ => match path.split_once(" (") {
            Some((counter, subject)) => (counter, subject.trim_end_matches(')')),
            None => (path, "(the whole value)"),
        },
    }
}

/// Loads the pack in `dir` and runs every scenario of `dir/tests` whose name or file name
/// contains `filter`.
pub fn run_pack_tests(dir: &Path, filter: Option<&str>) -> Result<TestReport, TestRunError> {
    let pack = RhaiPack::load(dir)?;
    let tests_dir = dir.join("tests");
    let files = test_files(&tests_dir)?;
    let mut report = TestReport::default();
    let referenced: Vec<String> = files
        .iter()
        .filter_map(|(_, value)| value.as_ref().ok()?.get("registry")?.as_str().map(str::to_owned))
        .collect();
    for (file, value) in files {
        if referenced.contains(&file) || value.as_ref().is_ok_and(looks_like_registry) {
            continue;
        }
        let name = value
            .as_ref()
            .ok()
            .and_then(|value| value.get("name"))
            .and_then(Value::as_str)
            .map_or_else(|| file.clone(), str::to_owned);
        if filter.is_some_and(|filter| !name.contains(filter) && !file.contains(filter)) {
            continue;
        }
        let problems = match value {
            Ok(test) => run_one(&test, &tests_dir, &pack),
            Err(message) => vec![Problem::Invalid(message)],
        };
        report.results.push(TestResult { file, name, problems });
    }
    Ok(report)
}

/// The `.json` files directly in `tests/`, sorted, each parsed (or the parse error).
/// A test file's name and its parsed JSON, or why it could not be read.
type TestFile = (String, Result<Value, String>);

fn test_files(tests_dir: &Path) -> Result<Vec<TestFile>, TestRunError> {
    let folder_error = |message: String| TestRunError::TestsFolder { dir: tests_dir.display().to_string(), message };
    let entries = std::fs::read_dir(tests_dir).map_err(|error| folder_error(error.to_string()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let file = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let value = std::fs::read_to_string(&path)
                .map_err(|error| format!("cannot read the file: {error}"))
                .and_then(|text| serde_json::from_str(&text).map_err(|error| format!("not valid JSON: {error}")));
            (file, value)
        })
        .collect())
}

fn looks_like_registry(value: &Value) -> bool {
    value.get("messages").is_none() && (value.get("members").is_some() || value.get("providers").is_some())
}

fn run_one(test: &Value, tests_dir: &Path, pack: &RhaiPack) -> Vec<Problem> {
    match prepare(test, tests_dir, pack) {
        Ok((ledger, messages, expectations)) => play(test, ledger, &messages, &expectations, pack),
        Err(message) => vec![Problem::Invalid(message)],
    }
}

fn prepare(test: &Value, tests_dir: &Path, pack: &RhaiPack) -> Result<(Ledger, Vec<Value>, Vec<Value>), String> {
    let Some(object) = test.as_object() else {
        return Err("expected a JSON object with registry, messages and expect".to_owned());
    };
    let allowed = ["name", "registry", "counters", "messages", "expect", "expect_counters"];
    if let Some(key) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(format!("unknown key {key:?} (allowed: {})", allowed.join(", ")));
    }
    let registry = registry(object, tests_dir)?;
    check_registry_names(&registry, pack.settings()).map_err(|error| format!("registry: {error}"))?;
    let mut ledger = Ledger::new(registry);
    for (index, entry) in list(object, "counters")?.iter().enumerate() {
        let (key, value) = counter_entry(entry).map_err(|message| format!("counters[{index}]: {message}"))?;
        ledger.set_counter(key, value);
    }
    let messages = list(object, "messages")?;
    let expectations = list(object, "expect")?;
    if messages.is_empty() {
        return Err("\"messages\" is empty".to_owned());
    }
    if messages.len() != expectations.len() {
        return Err(format!(
            "\"expect\" has {} entries for {} messages: write one (partial) decision per message",
            expectations.len(),
            messages.len()
        ));
    }
    Ok((ledger, messages, expectations))
}

fn play(test: &Value, mut ledger: Ledger, messages: &[Value], expectations: &[Value], pack: &RhaiPack) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, (message, expected)) in messages.iter().zip(expectations).enumerate() {
        let decision = ledger.submit(&message.to_string(), pack);
        let actual = decision_to_json(&decision);
        let before = problems.len();
        compare(expected, &actual, &format!("messages[{index}]"), &mut problems);
        if problems.len() > before
            && let Some(error) = actual.get("error").and_then(|error| error.get("position")).and_then(Value::as_str)
        {
            problems.push(Problem::Note(format!("messages[{index}]: the rules failed: {error}")));
        }
    }
    let expected_counters = match test.get("expect_counters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries.clone(),
        Some(_) => return vec![Problem::Invalid("\"expect_counters\" must be a list".to_owned())],
    };
    for (index, entry) in expected_counters.iter().enumerate() {
        match counter_entry(entry) {
            Ok((key, expected)) => {
                let actual = ledger.counter(&key);
                if actual != expected {
                    problems.push(Problem::Mismatch {
                        path: format!("expect_counters[{index}] ({})", describe_key(&key)),
                        expected: Value::from(expected),
                        actual: Some(Value::from(actual)),
                    });
                }
            }
            Err(message) => problems.push(Problem::Invalid(format!("expect_counters[{index}]: {message}"))),
        }
    }
    problems
}

fn registry(object: &Map<String, Value>, tests_dir: &Path) -> Result<Registry, String> {
    match object.get("registry") {
        Some(Value::String(file)) => {
            let path = tests_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|error| format!("registry {}: cannot read the file: {error}", path.display()))?;
            parse_registry(&text).map_err(|error| format!("registry {}: {error}", path.display()))
        }
        Some(inline @ Value::Object(_)) => {
            parse_registry(&inline.to_string()).map_err(|error| format!("registry: {error}"))
        }
        _ => Err("\"registry\" must be a file name relative to tests/ or a registry object".to_owned()),
    }
}

fn list(object: &Map<String, Value>, key: &str) -> Result<Vec<Value>, String> {
    match object.get(key) {
        None | Some(Value::Null) if key == "counters" => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        None => Err(format!("missing key {key:?}")),
        Some(_) => Err(format!("{key:?} must be a list")),
    }
}

/// `{"subject": "member", "id": "M-1", "counter": "deductible", "period": "2025", "value": 4850}`.
fn counter_entry(entry: &Value) -> Result<(CounterKey, i64), String> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing text {key:?}"));
    let id = text("id")?;
    let subject = match text("subject")? {
        "member" => Subject::Member(MemberId::parse(id).map_err(|error| format!("member id {id:?} {error}"))?),
        "household" => {
            Subject::Household(HouseholdId::parse(id).map_err(|error| format!("household id {id:?} {error}"))?)
        }
        other => return Err(format!("unknown subject {other:?} (expected \"member\" or \"household\")")),
    };
    let value = entry.get("value").and_then(Value::as_i64).ok_or_else(|| "missing integer \"value\"".to_owned())?;
    Ok((CounterKey { subject, counter: text("counter")?.to_owned(), period: text("period")?.to_owned() }, value))
}

fn describe_key(key: &CounterKey) -> String {
    let subject = match &key.subject {
        Subject::Member(id) => format!("member {id}"),
        Subject::Household(id) => format!("household {id}"),
    };
    format!("{subject}, {} for {}", key.counter, key.period)
}

/// Compares a partial expectation with the actual value: every key written must match; lists
/// must have the same length and match item by item.
pub fn compare(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<Problem>) {
    let mismatch = |problems: &mut Vec<Problem>| {
        problems.push(Problem::Mismatch {
            path: path.to_owned(),
            expected: expected.clone(),
            actual: Some(actual.clone()),
        });
    };
    match (expected, actual) {
        (Value::Object(expected_map), Value::Object(actual_map)) => {
            for (key, expected_value) in expected_map {
                let key_path = format!("{path}.{key}");
                match actual_map.get(key) {
                    Some(actual_value) => compare(expected_value, actual_value, &key_path, problems),
                    None => problems.push(Problem::Mismatch {
                        path: key_path,
                        expected: expected_value.clone(),
                        actual: None,
                    }),
                }
            }
        }
        (Value::Array(expected_items), Value::Array(actual_items)) if expected_items.len() == actual_items.len() => {
            for (index, (expected_item, actual_item)) in expected_items.iter().zip(actual_items).enumerate() {
                compare(expected_item, actual_item, &format!("{path}[{index}]"), problems);
            }
        }
        (Value::Number(expected_number), Value::Number(actual_number)) => {
            let same = match (expected_number.as_i64(), actual_number.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => expected_number.to_string() == actual_number.to_string(),
            };
            if !same {
                mismatch(problems);
            }
        }
        _ if expected == actual => {}
        _ => mismatch(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_partially_with_paths() {
        let actual =
            json!({"outcome": "complete", "lines": [{"line": 1, "compulsory": {"paid": 2100, "gross": 2100}}]});
        let mut problems = Vec::new();
        compare(&json!({"lines": [{"compulsory": {"paid": 2100}}]}), &actual, "messages[0]", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        compare(
            &json!({"outcome": "partial", "lines": [{"compulsory": {"paid": 1900, "deductions": []}}]}),
            &actual,
            "messages[0]",
            &mut problems,
        );
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "messages[0].lines[0].compulsory.deductions: expected [], actual absent",
                "messages[0].lines[0].compulsory.paid: expected 1900, actual 2100",
                "messages[0].outcome: expected \"partial\", actual \"complete\"",
            ]
        );
        let mut problems = Vec::new();
        compare(&json!({"lines": []}), &actual, "m", &mut problems);
        assert_eq!(problems.len(), 1, "lists of different lengths differ");
    }

    #[test]
    fn a_failing_test_shows_expected_and_actual_side_by_side_per_line() {
        let actual = json!({"outcome": "complete", "lines": [
            {"compulsory": {"paid": 2100}, "supplementary": {"paid": 700}, "member_share": 200},
            {"compulsory": {"paid": 500}},
        ]});
        let expected = json!({"outcome": "partial", "lines": [
            {"compulsory": {"paid": 1900}, "supplementary": {"paid": 900, "product": "CONFORT"}, "member_share": 200},
            {"compulsory": {"paid": 400}},
        ]});
        let mut problems = Vec::new();
        compare(&expected, &actual, "messages[0]", &mut problems);
        problems.push(Problem::Note("messages[0]: the rules failed: a.rhai:1:1: boom".to_owned()));
        problems.push(Problem::Mismatch {
            path: "expect_counters[0] (member M-1, deductible for 2025)".to_owned(),
            expected: json!(5000),
            actual: Some(json!(4850)),
        });
        let report = TestReport {
            results: vec![
                TestResult { file: "a.json".into(), name: "case a".into(), problems },
                TestResult { file: "b.json".into(), name: "case b".into(), problems: Vec::new() },
            ],
        };
        assert_eq!(
            report.to_string(),
            "FAIL case a (a.json)\n\
             \x20    messages[0].lines[0]      expected  actual\n\
             \x20      compulsory.paid             1900    2100\n\
             \x20      supplementary.paid           900     700\n\
             \x20      supplementary.product  \"CONFORT\"  absent\n\
             \x20    messages[0].lines[1]  expected  actual\n\
             \x20      compulsory.paid          400     500\n\
             \x20    messages[0]   expected      actual\n\
             \x20      outcome    \"partial\"  \"complete\"\n\
             \x20    note: messages[0]: the rules failed: a.rhai:1:1: boom\n\
             \x20    expect_counters[0]                 expected  actual\n\
             \x20      member M-1, deductible for 2025      5000    4850\n\
             ok   case b (b.json)\n\
             1 passed, 1 failed"
        );
    }
}
