//! Hostile messages through the real worker (RabbitMQ and PostgreSQL, one worker for the whole
//! corpus) and through `claimctl adjudicate`, each with its exact outcome: a `rejected` decision
//! whose reason names the problem, or a dead letter with a given `x-claims-error`. The corpus is
//! `tests/hostile/cases.json` (one file per case beside it) plus the cases too large to commit,
//! built here. After the corpus a valid claim is still decided: the worker never stops.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::collections::BTreeMap;

use claims_domain::contract::{MAX_AMOUNT, MAX_LINES, MAX_MESSAGE_BYTES};
use claims_worker::ERROR_HEADER;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use worker_support::{
    Client, DEADLINE, Fixture, WorkerThread, correlation, json, registry_file, rules_dir, without_audit,
};

/// What must happen to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// A `rejected` decision with exactly this one claim-level reason.
    Rejected { reason: String, text: String },
    /// Dead-lettered with this `x-claims-error`.
    DeadLetter(String),
    /// Decided by the rules: this many line decisions, each adding up, and no claim-level reason
    /// from the contract (`CO-16`).
    Decided { lines: usize },
}

struct Case {
    name: String,
    body: Vec<u8>,
    expect: Expect,
    /// The embedded mode's reason where it differs: it has no broker user to check.
    embedded: Option<(String, String)>,
}

fn hostile_dir() -> std::path::PathBuf {
    claims_e2e::repo().join("tests/hostile")
}

/// The committed cases, as `cases.json` describes them.
fn committed_cases() -> Vec<Case> {
    let index = std::fs::read_to_string(hostile_dir().join("cases.json")).unwrap_or_else(|error| panic!("{error}"));
    let index: Value = serde_json::from_str(&index).unwrap_or_else(|error| panic!("cases.json: {error}"));
    let cases = index["cases"].as_array().unwrap_or_else(|| panic!("cases.json: no cases list"));
    cases
        .iter()
        .map(|case| {
            let file = case["file"].as_str().unwrap_or_else(|| panic!("a case without file: {case}"));
            let body = std::fs::read(hostile_dir().join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
            let expect = &case["expect"];
            let expect = if let Some(text) = expect["dead_letter"].as_str() {
                Expect::DeadLetter(text.to_owned())
            } else if let Some(rejected) = expect.get("rejected") {
                let text = |name: &str| rejected[name].as_str().unwrap_or_else(|| panic!("{file}: {name}")).to_owned();
                Expect::Rejected { reason: text("reason"), text: text("text") }
            } else if let Some(lines) = expect["decided"]["lines"].as_u64() {
                Expect::Decided { lines: usize::try_from(lines).unwrap_or(usize::MAX) }
            } else {
                panic!("{file}: unknown expectation {expect}")
            };
            let embedded = case["expect"].get("embedded").map(|reason| {
                let text = |name: &str| reason[name].as_str().unwrap_or_else(|| panic!("{file}: {name}")).to_owned();
                (text("reason"), text("text"))
            });
            let name = file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_owned();
            Case { name, body, expect, embedded }
        })
        .collect()
}

/// A valid one-line GP visit; the cases below change it.
fn visit(claim_id: &str) -> Value {
    json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": "P-GP-0001", "member_id": "M-000003",
        "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": "2025-11-05", "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}]
    })
}

/// A pharmacy claim of `count` lines charging `charged` each, on days spread over the year.
fn many_lines(claim_id: &str, count: usize, charged: i64) -> Value {
    let lines: Vec<Value> = (1..=count)
        .map(|number| {
            let day = format!("2025-{:02}-{:02}", 1 + number % 10, 1 + number % 28);
            json!({"line": number, "act": "PH7", "service_date": day, "quantity": 1, "charged": charged})
        })
        .collect();
    json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": "P-PHA-0001", "member_id": "M-000005",
        "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": ["compulsory"], "lines": lines
    })
}

fn rejected(text: impl Into<String>) -> Expect {
    Expect::Rejected { reason: "CO-16".to_owned(), text: text.into() }
}

/// The cases too large to commit.
fn generated_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, body: Vec<u8>, expect: Expect| {
        cases.push(Case { name: name.to_owned(), body, expect, embedded: None })
    };

    // 10 MB: a valid claim with a padding field; refused by size before any parsing.
    let mut large = visit("C-TEN-MEGABYTES");
    large["padding"] = Value::String("x".repeat(10 * 1024 * 1024));
    let large = large.to_string().into_bytes();
    let size = format!("message of {} bytes is larger than the {MAX_MESSAGE_BYTES} allowed", large.len());
    add("ten-megabytes", large, Expect::DeadLetter(size));

    // serde_json stops at 128 levels, so 100 000 opening brackets cannot exhaust the stack.
    let deep = "[".repeat(100_000).into_bytes();
    add(
        "deep-nesting",
        deep,
        Expect::DeadLetter("not valid JSON: recursion limit exceeded at line 1 column 128".into()),
    );
    let deep_objects = "{\"a\":".repeat(100_000).into_bytes();
    add(
        "deep-nesting-objects",
        deep_objects,
        Expect::DeadLetter("not valid JSON: recursion limit exceeded at line 1 column 636".into()),
    );

    let too_many = many_lines("C-TOO-MANY-LINES", MAX_LINES + 1, 1000).to_string().into_bytes();
    add(
        "too-many-lines",
        too_many,
        rejected(format!("lines: {} lines, at most {MAX_LINES} are allowed", MAX_LINES + 1)),
    );
    let most = many_lines("C-MOST-LINES", MAX_LINES, 1000).to_string().into_bytes();
    add("most-lines", most, Expect::Decided { lines: MAX_LINES });
    // The largest amounts on the most lines: sums stay far below i64::MAX.
    let largest = many_lines("C-LARGEST-SUMS", MAX_LINES, MAX_AMOUNT).to_string().into_bytes();
    add("largest-sums", largest, Expect::Decided { lines: MAX_LINES });

    let long_id = visit(&"C".repeat(100_000)).to_string().into_bytes();
    add("id-hundred-thousand-characters", long_id, rejected("claim_id: is longer than 64 characters"));
    cases
}

/// What actually happened to a case, in the corpus's terms, and the decision if there was one.
#[derive(Debug, Clone)]
enum Outcome {
    Decision(Value),
    DeadLetter(String),
}

fn check(case: &Case, outcome: &Outcome) -> Result<(), String> {
    match (&case.expect, outcome) {
        (Expect::DeadLetter(expected), Outcome::DeadLetter(actual)) if expected == actual => Ok(()),
        (Expect::Rejected { reason, text }, Outcome::Decision(decision)) => {
            let actual = claim_reasons(decision);
            if decision["outcome"] == "rejected" && actual == [(reason.clone(), text.clone())] {
                Ok(())
            } else {
                Err(format!("expected rejected {reason} {text:?}, got {} {actual:?}", decision["outcome"]))
            }
        }
        (Expect::Decided { lines }, Outcome::Decision(decision)) => check_decided(decision, *lines),
        (expected, actual) => Err(format!("expected {expected:?}, got {}", shown(actual))),
    }
}

fn claim_reasons(decision: &Value) -> Vec<(String, String)> {
    let reasons = decision["reasons"].as_array().cloned().unwrap_or_default();
    reasons
        .iter()
        .map(|reason| {
            let text = |name: &str| reason[name].as_str().unwrap_or_default().to_owned();
            (format!("{}-{}", text("group"), text("code")), text("text"))
        })
        .collect()
}

fn check_decided(decision: &Value, count: usize) -> Result<(), String> {
    let lines = decision["lines"].as_array().cloned().unwrap_or_default();
    if !matches!(decision["outcome"].as_str(), Some("complete" | "partial")) || lines.len() != count {
        return Err(format!("expected {count} lines decided, got {} with {} lines", decision["outcome"], lines.len()));
    }
    for line in &lines {
        let amount = |part: &str| line[part]["paid"].as_i64().unwrap_or(0);
        let (charged, share) = (line["charged"].as_i64().unwrap_or(-1), line["member_share"].as_i64().unwrap_or(-1));
        if amount("compulsory") + amount("supplementary") + share != charged || share < 0 {
            return Err(format!("line {} does not add up: {line}", line["line"]));
        }
    }
    Ok(())
}

fn shown(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Decision(decision) => {
            format!("a decision {} with reasons {:?}", decision["outcome"], claim_reasons(decision))
        }
        Outcome::DeadLetter(error) => format!("a dead letter {error:?}"),
    }
}

#[tokio::test]
async fn every_hostile_message_gets_its_exact_outcome_and_the_worker_goes_on() {
    let cases: Vec<Case> = committed_cases().into_iter().chain(generated_cases()).collect();
    let fixture = Fixture::new("hostile").await;
    let worker = WorkerThread::start(fixture.config());
    let mut client = Client::connect(&fixture).await;
    let mut dead = client.consume(&fixture.topology.dead_queue).await;
    for case in &cases {
        client.publish(&fixture.topology, &case.body, &case.name).await;
    }

    let deadline = Instant::now() + DEADLINE;
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut decisions = 0;
    let mut dead_letters = 0;
    while decisions + dead_letters < cases.len() {
        tokio::select! {
            reply = client.next_reply(deadline) => {
                let Some(reply) = reply else { break };
                outcomes.insert(correlation(&reply), Outcome::Decision(json(&reply.data)));
                decisions += 1;
            }
            letter = tokio::time::timeout_at(deadline, dead.next()) => {
                let Ok(Some(Ok(letter))) = letter else { break };
                let headers = letter.properties.headers().clone().unwrap_or_default();
                let error = claims_worker::publish::header_text(&headers, ERROR_HEADER).unwrap_or_default();
                outcomes.insert(correlation(&letter), Outcome::DeadLetter(error));
                dead_letters += 1;
            }
        }
    }

    let mut failures = Vec::new();
    for case in &cases {
        match outcomes.get(&case.name) {
            None => failures.push(format!("{}: no outcome within {DEADLINE:?}", case.name)),
            Some(outcome) => {
                if let Err(problem) = check(case, outcome) {
                    failures.push(format!("{}: {problem}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // The worker is still consuming and deciding.
    // Another member: the corpus decided a visit like `visit` (not a duplicate to deny).
    let mut after = visit("C-AFTER-THE-CORPUS");
    after["member_id"] = json!("M-000004");
    client.publish(&fixture.topology, after.to_string().as_bytes(), "after").await;
    let reply = client.next_reply(Instant::now() + DEADLINE).await.unwrap_or_else(|| panic!("no decision after"));
    assert_eq!(correlation(&reply), "after");
    assert_eq!(json(&reply.data)["outcome"], "complete");

    // The same corpus through the embedded mode, in the same order: the same decisions, and a
    // rejected decision carrying the dead letter's reason where the worker dead-letters.
    let embedded = adjudicate_embedded(&cases);
    assert_eq!(embedded.len(), cases.len(), "one decision per input line");
    for (case, decision) in cases.iter().zip(embedded) {
        if let Some(reason) = &case.embedded {
            assert_eq!(decision["outcome"], "rejected", "{}", case.name);
            assert_eq!(claim_reasons(&decision), std::slice::from_ref(reason), "{}", case.name);
            continue;
        }
        match &outcomes[&case.name] {
            Outcome::Decision(through_queue) => {
                assert_eq!(
                    without_audit(through_queue.clone()),
                    without_audit(decision),
                    "{}: embedded and worker differ",
                    case.name
                );
            }
            Outcome::DeadLetter(error) => {
                assert_eq!(decision["outcome"], "rejected", "{}", case.name);
                assert_eq!(claim_reasons(&decision), [("CO-16".to_owned(), error.clone())], "{}", case.name);
            }
        }
    }

    client.close().await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
}

/// Runs `claimctl adjudicate` on the cases, one per line, and returns its decisions.
fn adjudicate_embedded(cases: &[Case]) -> Vec<Value> {
    let dir = claims_e2e::scratch("hostile");
    let mut input = Vec::new();
    for case in cases {
        assert!(!case.body.contains(&b'\n'), "{}: a case must fit on one line", case.name);
        input.extend_from_slice(&case.body);
        input.push(b'\n');
    }
    let path = dir.join("hostile.jsonl");
    std::fs::write(&path, input).unwrap_or_else(|error| panic!("{error}"));
    let (rules, registry) = (rules_dir(), registry_file());
    let decisions = claims_e2e::adjudicate_embedded(&rules, &registry, &path);
    let _ = std::fs::remove_dir_all(&dir);
    decisions
}
