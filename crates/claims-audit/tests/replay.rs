//! Replaying the entries the embedded ledger records: every kind of entry (claims, rejected
//! messages, reversals, refused cancellations) replays to the very decision and moves; an
//! altered entry or another pack shows the fields that differ.

use std::path::PathBuf;

use claims_audit::replay::{RecordedEntry, compare, replay};
use claims_audit::report::Report;
use claims_audit::verify::Verifier;
use claims_audit::{ChainHead, EntryContent, append};
use claims_domain::contract::{decision_to_json, parse_registry};
use claims_domain::ledger::Ledger;
use claims_rules::{RhaiPack, SourceFile};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn french_pack() -> RhaiPack {
    RhaiPack::load(repo().join("rules/fr")).unwrap_or_else(|error| panic!("{error}"))
}

/// The example claims, plus a line that is not JSON, an invalid claim, a cancellation of a
/// claim never decided, a cancellation of a rejected claim and a second cancellation.
fn messages() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("examples/fr/claims.jsonl")).unwrap();
    let mut messages: Vec<String> = text.lines().map(str::to_owned).collect();
    messages.push("this is not JSON".to_owned());
    messages.push(json!({"schema": "claim/v1", "claim_id": "C-BAD"}).to_string());
    let cancel = |provider: &str, claim: &str| {
        json!({"schema": "cancellation/v1", "provider_id": provider, "claim_id": claim, "reason": "test"}).to_string()
    };
    messages.push(cancel("P-GP-0001", "C-NEVER"));
    messages.push(cancel("P-GP-0002", "C-000005"));
    messages
}

/// The audit log the ledger writes for `messages`, as JSON lines.
fn audit_log(pack: &RhaiPack) -> Vec<String> {
    let registry = parse_registry(&std::fs::read_to_string(repo().join("examples/fr/registry.json")).unwrap()).unwrap();
    let mut ledger = Ledger::new(registry);
    let mut head = ChainHead::default();
    let mut lines = Vec::new();
    for text in messages() {
        let recorded = ledger.record(&text, pack);
        if let Some(effect) = &recorded.effect {
            let decision = decision_to_json(&recorded.decision);
            let content =
                EntryContent { recorded_at: "2026-06-01T00:00:00Z", input: &text, effect, decision: &decision };
            lines.push(append(&mut head, &content).to_string());
        }
    }
    lines
}

fn entries(lines: &[String]) -> Vec<RecordedEntry> {
    let mut verifier = Verifier::new(ChainHead::default(), None, None);
    lines
        .iter()
        .map(|line| RecordedEntry::from_json(verifier.next(line).unwrap_or_else(|error| panic!("{error}"))).unwrap())
        .collect()
}

#[test]
fn every_kind_of_entry_replays_to_the_recorded_decision() {
    let pack = french_pack();
    let lines = audit_log(&pack);
    let mut outcomes = std::collections::BTreeSet::new();
    let mut report = Report::new(false);
    for entry in entries(&lines) {
        let replayed = replay(&entry, &pack).unwrap_or_else(|error| panic!("seq {}: {error}", entry.seq));
        let differences = compare(&entry, &replayed, false);
        assert!(differences.is_empty(), "seq {}: {differences:?}", entry.seq);
        let kind = if entry.input.contains("cancellation/v1") { "cancellation" } else { "message" };
        outcomes.insert(format!("{kind} {}", entry.decision["outcome"].as_str().unwrap()));
        report.add(&entry, &replayed, differences);
    }
    for expected in
        ["message complete", "message partial", "message rejected", "cancellation reversed", "cancellation rejected"]
    {
        assert!(outcomes.contains(expected), "no {expected} among {outcomes:?}");
    }
    assert!(report.all_identical());
    assert_eq!(report.replayed, lines.len() as u64);
}

#[test]
fn a_reversal_replays_from_what_it_recorded_it_cancelled() {
    let pack = french_pack();
    let lines = audit_log(&pack);
    let reversal = entries(&lines).into_iter().find(|entry| entry.decision["outcome"] == "reversed").unwrap();
    let mut bare: Value = serde_json::from_str(&lines[reversal.seq as usize - 1]).unwrap();
    assert!(bare["cancels"]["decision"]["outcome"].is_string(), "{}", bare["cancels"]);
    assert!(!bare["moves"].as_array().unwrap().is_empty(), "a reversal moves counters back");
    bare["cancels"] = Value::Null;
    let error = replay(&RecordedEntry::from_json(bare).unwrap(), &pack).unwrap_err();
    assert_eq!(error.path, "cancels");
}

#[test]
fn an_altered_amount_is_named_by_its_path() {
    let pack = french_pack();
    let lines = audit_log(&pack);
    let mut entry = entries(&lines).into_iter().find(|entry| entry.decision["outcome"] == "complete").unwrap();
    let paid = entry.decision["lines"][0]["compulsory"]["paid"].as_i64().unwrap();
    entry.decision["lines"][0]["compulsory"]["paid"] = json!(paid + 100);
    let differences = compare(&entry, &replay(&entry, &pack).unwrap(), false);
    assert_eq!(differences[0].path, "decision.lines[0].compulsory.paid");
    assert_eq!(
        differences[0].to_string(),
        format!("decision.lines[0].compulsory.paid: recorded {}, replayed {paid}", paid + 100)
    );
}

#[test]
fn another_pack_changes_what_is_paid_and_the_report_says_how_much() {
    let pack = french_pack();
    let lines = audit_log(&pack);
    let sources: Vec<SourceFile> = pack
        .sources()
        .iter()
        .map(|file| SourceFile {
            path: file.path.clone(),
            text: file.text.replace("[\"2024-12-22\", 3000]", "[\"2024-12-22\", 3300]"),
        })
        .collect();
    let other = RhaiPack::from_sources("rules/fr-what-if", &sources).unwrap();
    assert_ne!(other.version(), pack.version());
    let mut report = Report::new(true);
    for entry in entries(&lines) {
        let replayed = replay(&entry, &other).unwrap();
        let differences = compare(&entry, &replayed, true);
        report.add(&entry, &replayed, differences);
    }
    assert!(report.different > 0 && report.identical > 0, "{} different", report.different);
    let (_, _, before, after) = report.totals().find(|(scheme, ..)| *scheme == "compulsory").unwrap();
    assert!(after > before, "a dearer G fee makes the compulsory scheme pay more: {before} → {after}");
    let text = report.render("what-if");
    assert!(text.contains("changed decisions: "), "{text}");
    assert!(text.contains("largest changes"), "{text}");
    assert!(text.contains("compulsory: "), "{text}");
}

#[test]
fn a_rule_failure_replays_to_the_same_script_position_wherever_the_pack_was_installed() {
    let pack = french_pack();
    let sources: Vec<SourceFile> = pack
        .sources()
        .iter()
        .map(|file| SourceFile {
            path: file.path.clone(),
            text: file.text.replacen(
                "fn tariff(line, member, provider, claim) {",
                "fn tariff(line, member, provider, claim) {\n    if line.act == \"G\" { throw \"G fee table is being rebuilt\"; }",
                1,
            ),
        })
        .collect();
    let installed = RhaiPack::from_sources("/srv/claims/rules/fr", &sources).unwrap();
    let lines = audit_log(&installed);
    let replaying = RhaiPack::from_sources("", &sources).unwrap();
    let mut errors = 0;
    for entry in entries(&lines) {
        let replayed = replay(&entry, &replaying).unwrap();
        if entry.decision["outcome"] == "error" {
            errors += 1;
            let file = entry.decision["error"]["file"].as_str().unwrap();
            assert!(file.starts_with("/srv/claims/rules/fr/agreements/"), "{file}");
        }
        assert_eq!(compare(&entry, &replayed, false), Vec::new(), "seq {}", entry.seq);
    }
    assert!(errors > 0, "the broken G tariff failed no claim");
}
