//! The jsonb forms the store keeps read back to the very values written: a cancellation
//! reverses the decision read from the `claims` row, so any loss here would change money.
//! (No database needed.)

mod common;

use claims_domain::contract::decision_to_json;
use claims_domain::ledger::Ledger;
use claims_domain::pipeline::LineFingerprint;
use claims_store::StoreError;
use claims_store::stored::{
    decision_from_json, fingerprints_from_json, fingerprints_to_json, moves_from_json, moves_to_json,
};
use common::*;

#[test]
fn every_example_decision_and_effect_reads_back_unchanged() {
    let pack = french_pack();
    let mut ledger = Ledger::new(registry("examples/fr/registry.json"));
    let mut outcomes = std::collections::BTreeSet::new();
    for text in example_messages() {
        let recorded = ledger.record(&text, &pack);
        let written = decision_to_json(&recorded.decision);
        let read = decision_from_json(&written).unwrap_or_else(|error| panic!("{error}: {written}"));
        assert_eq!(read, recorded.decision);
        outcomes.insert(recorded.decision.outcome.name());
        let effect = recorded.effect.expect("a new decision");
        assert_eq!(moves_from_json(&moves_to_json(&effect.moves)).unwrap(), effect.moves);
        let lines: Vec<LineFingerprint> = effect.history.iter().cloned().collect();
        assert_eq!(fingerprints_from_json(&fingerprints_to_json(&lines)).unwrap(), lines);
    }
    // The file exercises every outcome a stored decision can have, and reversals.
    assert!(
        outcomes.is_superset(&["complete", "partial", "rejected", "reversed"].into_iter().collect()),
        "{outcomes:?}"
    );
}

#[test]
fn a_damaged_decision_names_the_field() {
    let mut decision = serde_json::json!({
        "schema": "decision/v1", "claim_id": "C-1", "provider_id": "P-1", "member_id": "M-1",
        "outcome": "complete", "currency": "EUR", "payments": [], "recoveries": [], "reasons": [],
        "rules": null, "audit": null,
        "lines": [{"line": 1, "act": "G", "charged": 3000, "eligible": 3000, "compulsory": null,
                   "supplementary": null, "member_share": 3000, "denied": false, "reasons": []}],
    });
    assert!(decision_from_json(&decision).is_ok());
    decision["lines"][0]["charged"] = serde_json::json!("30.00");
    match decision_from_json(&decision) {
        Err(StoreError::Corrupt(text)) => assert!(text.contains("decision.lines[0].charged"), "{text}"),
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }
}
