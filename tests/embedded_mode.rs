//! `claimctl adjudicate` on the shipped French examples: one decision per line in order, the
//! money invariants on every line, identical bytes on a second run, idempotency of repeated
//! claims and cancellations, a verifiable audit chain, and hostile scripts stopped by the
//! sandbox for their claim only.

use std::path::{Path, PathBuf};

use claims_e2e::{claimctl, copy_dir, decisions, repo, scratch};
use serde_json::Value;

fn examples() -> (PathBuf, PathBuf, PathBuf) {
    let root = repo();
    (root.join("rules/fr"), root.join("examples/fr/registry.json"), root.join("examples/fr/claims.jsonl"))
}

fn adjudicate(pack: &Path, registry: &Path, claims: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["adjudicate", "--rules"];
    let pack = pack.to_string_lossy().into_owned();
    let registry = registry.to_string_lossy().into_owned();
    let claims = claims.to_string_lossy().into_owned();
    args.extend([pack.as_str(), "--registry", registry.as_str()]);
    args.extend_from_slice(extra);
    args.push(&claims);
    let (code, output) = claimctl(&args);
    assert_eq!(code, 0, "claimctl adjudicate failed");
    decisions(&output)
}

fn amount(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

#[test]
fn every_example_line_gets_a_decision_that_keeps_the_invariants() {
    let (pack, registry, claims) = examples();
    let input = std::fs::read_to_string(&claims).expect("examples/fr/claims.jsonl");
    let output = adjudicate(&pack, &registry, &claims, &[]);
    assert_eq!(output.len(), input.lines().count(), "one decision per input line");
    let mut outcomes = std::collections::BTreeMap::new();
    for (line, decision) in input.lines().zip(&output) {
        let message: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        if let Some(claim_id) = message.get("claim_id").and_then(Value::as_str) {
            assert_eq!(decision["claim_id"], claim_id, "decisions come in input order");
        }
        let outcome = decision["outcome"].as_str().unwrap_or("?").to_owned();
        assert_ne!(outcome, "error", "no rule error on the examples: {decision}");
        *outcomes.entry(outcome.clone()).or_insert(0) += 1;
        for decided in decision["lines"].as_array().into_iter().flatten() {
            let compulsory = amount(&decided["compulsory"]["paid"]);
            let supplementary = amount(&decided["supplementary"]["paid"]);
            assert_eq!(
                compulsory + supplementary + amount(&decided["member_share"]),
                amount(&decided["charged"]),
                "{decided}"
            );
            if outcome != "reversed" {
                assert!(compulsory >= 0 && supplementary >= 0 && amount(&decided["member_share"]) >= 0, "{decided}");
            }
        }
    }
    // The examples are meant to show every kind of answer.
    for outcome in ["complete", "partial", "rejected", "reversed"] {
        assert!(outcomes.contains_key(outcome), "no {outcome} decision in the examples: {outcomes:?}");
    }
}

#[test]
fn same_input_same_bytes_and_repeats_change_nothing() {
    let (pack, registry, claims) = examples();
    let dir = scratch("repeat");
    let first = adjudicate(&pack, &registry, &claims, &[]);
    let second = adjudicate(&pack, &registry, &claims, &[]);
    assert_eq!(first, second, "two runs on the same input differ");
    // The whole file submitted twice: every repeated claim and cancellation gets its earlier
    // decision again, and nothing moves (later decisions would differ if counters had moved).
    let input = std::fs::read_to_string(&claims).expect("claims");
    let doubled = dir.join("doubled.jsonl");
    std::fs::write(&doubled, format!("{input}{input}")).expect("write");
    let output = adjudicate(&pack, &registry, &doubled, &[]);
    let (once, again) = output.split_at(first.len());
    assert_eq!(once, first.as_slice());
    assert_eq!(again, first.as_slice(), "a repeated message got a different decision");
}

#[test]
fn the_audit_log_chains_every_new_decision() {
    let (pack, registry, claims) = examples();
    let dir = scratch("audit");
    let audit = dir.join("audit.jsonl");
    let output = adjudicate(&pack, &registry, &claims, &["--audit", &audit.to_string_lossy()]);
    let text = std::fs::read_to_string(&audit).expect("audit file written");
    let mut head = claims_audit::ChainHead::default();
    for (index, line) in text.lines().enumerate() {
        claims_audit::verify_next(&mut head, index as u64 + 1, line).unwrap_or_else(|error| panic!("{error}"));
    }
    assert_eq!(text.lines().count(), output.len(), "one entry per new decision");
    assert_eq!(output.last().map(|d| d["audit"]["seq"].clone()), Some(Value::from(output.len())));
    // Altering one amount in one entry breaks the chain at exactly that entry.
    let lines: Vec<&str> = text.lines().collect();
    let target =
        lines.iter().position(|line| line.contains("\\\"charged\\\":3000")).expect("an entry with a 30,00 line");
    let altered = lines[target].replacen("\\\"charged\\\":3000", "\\\"charged\\\":3001", 1);
    let mut head = claims_audit::ChainHead::default();
    for (index, line) in lines.iter().enumerate() {
        let line = if index == target { altered.as_str() } else { line };
        if let Err(error) = claims_audit::verify_next(&mut head, index as u64 + 1, line) {
            assert_eq!(error, claims_audit::ChainError::HashMismatch { sequence: target as u64 + 1 });
            return;
        }
    }
    panic!("altered entry was not detected");
}

/// Replaces the doctors' agreement of a copy of the French pack with `script`.
fn pack_with_doctors_script(name: &str, script: &str) -> PathBuf {
    let dir = scratch(name);
    let pack = dir.join("fr");
    copy_dir(&repo().join("rules/fr"), &pack);
    let manifest = std::fs::read_to_string(pack.join("pack.rhai")).expect("pack.rhai");
    let path = manifest
        .split("\"fr-medecins\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .expect("fr-medecins script path in pack.rhai")
        .to_owned();
    std::fs::write(pack.join(&path), script).expect("write script");
    pack
}

#[test]
fn hostile_scripts_fail_their_claim_only() {
    let (_, registry, claims) = examples();
    let hostile = [
        ("loop", "fn tariff(line, member, provider, claim) {\n    loop { }\n}\n", "operations"),
        (
            "recursion",
            "fn deeper(n) { deeper(n + 1) + deeper(n + 2) }\nfn tariff(line, member, provider, claim) {\n    deeper(0)\n}\n",
            "",
        ),
        ("string", "fn tariff(line, member, provider, claim) {\n    let s = \"x\";\n    loop { s += s; }\n}\n", ""),
        ("array", "fn tariff(line, member, provider, claim) {\n    let a = [1];\n    loop { a += a; }\n}\n", ""),
    ];
    let reference = adjudicate(&repo().join("rules/fr"), &registry, &claims, &[]);
    for (name, script, expected_text) in hostile {
        let pack = pack_with_doctors_script(name, script);
        let output = adjudicate(&pack, &registry, &claims, &[]);
        let errors: Vec<&Value> = output.iter().filter(|d| d["outcome"] == "error").collect();
        assert!(!errors.is_empty(), "{name}: no claim failed");
        for error in &errors {
            let file = error["error"]["file"].as_str().unwrap_or_default();
            assert!(file.ends_with(".rhai"), "{name}: error names no script: {error}");
            assert!(error["error"]["line"].as_u64().unwrap_or(0) >= 1, "{name}: no line: {error}");
            assert!(error["error"]["message"].as_str().unwrap_or_default().contains(expected_text), "{name}: {error}");
            assert!(error["payments"].as_array().is_some_and(Vec::is_empty));
        }
        // The sandbox stopped only the claims that reached a doctor's tariff: the others are
        // still decided, and every claim still gets exactly one decision.
        assert_eq!(output.len(), reference.len(), "{name}: one decision per line");
        let completed = output.iter().filter(|d| d["outcome"] == "complete").count();
        assert!(completed > 0, "{name}: no claim was decided after the failures");
        assert!(
            errors.len() < reference.iter().filter(|d| d["outcome"] != "rejected").count(),
            "{name}: every claim failed"
        );
    }
}
