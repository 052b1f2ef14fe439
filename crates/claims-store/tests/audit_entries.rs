//! What the store records for a replay is what the embedded ledger records: the registry
//! snapshot, the counters read, the history and the moves — including counters of a period the
//! batch did not preload.

mod common;

use claims_audit::{ChainHead, EntryContent};
use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::contract::{decision_to_json, provider_to_json};
use claims_domain::ids::{MemberId, ProviderId};
use claims_domain::ledger::Ledger;
use claims_rules::RhaiPack;
use common::*;
use serde_json::Value;

/// The parts of an audit entry that do not depend on when or where it was recorded.
fn replay_inputs(entry: &Value) -> Value {
    let mut entry = entry.clone();
    for volatile in ["recorded_at", "prev_hash", "hash", "seq"] {
        entry.as_object_mut().unwrap().remove(volatile);
    }
    entry
}

#[tokio::test]
async fn entries_record_what_the_ledger_records() {
    let pack = french_pack();
    let registry = registry("examples/fr/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let messages = example_messages();
    for batch in messages.chunks(40) {
        decide(&store, batch, &pack).await;
    }

    let mut ledger = Ledger::new(registry.clone());
    let mut head = ChainHead::default();
    let expected: Vec<Value> = messages
        .iter()
        .map(|text| {
            let recorded = ledger.record(text, &pack);
            let effect = recorded.effect.expect("every message of the file is new");
            let decision = decision_to_json(&recorded.decision);
            let content = EntryContent { recorded_at: "-", input: text, effect: &effect, decision: &decision };
            let mut want = replay_inputs(&claims_audit::append(&mut head, &content));
            // The store also checks who submitted each message (the ledger has no broker): its
            // entries say who, and a cancellation's entry records the provider that check read.
            want["submitted_by"] = Value::from(SUBMITTER);
            if !want["cancels"].is_null() && want["registry"]["provider"].is_null() {
                let provider = ProviderId::parse(decision["provider_id"].as_str().unwrap()).unwrap();
                want["registry"]["provider"] = provider_to_json(&registry.providers[&provider]);
            }
            want
        })
        .collect();
    let stored = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(stored.len(), expected.len());
    for ((sequence, text), want) in stored.iter().zip(&expected) {
        let got: Value = serde_json::from_str(text).unwrap();
        assert_eq!(&replay_inputs(&got), want, "entry {sequence}");
    }
    store.pool().close().await;
    database.drop_database().await;
}

/// The French pack with the per-visit annual cap counted on the year *before* the visit: a
/// period no batch preloads.
fn pack_reading_last_year() -> RhaiPack {
    patched_pack(
        "last-year",
        "plans/rg.rhai",
        "per_year(\"per_visit_charge\", date,",
        "per_year(\"per_visit_charge\", add_days(date, -365),",
    )
}

#[tokio::test]
async fn a_counter_outside_the_preloaded_periods_is_loaded_and_the_claim_decided_again() {
    let pack = pack_reading_last_year();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let last_year = CounterKey {
        subject: Subject::Member(MemberId::parse("M-C1").unwrap()),
        counter: "per_visit_charge".into(),
        period: "2024".into(),
    };
    sqlx::query("INSERT INTO counters (subject_kind, subject_id, counter, period, value) VALUES ('member', 'M-C1', 'per_visit_charge', '2024', 4900)")
        .execute(store.pool())
        .await
        .unwrap();
    let claims = [gp_visit("C-LY-1", "2025-11-05"), gp_visit("C-LY-2", "2025-11-12")];

    let handled = decide(&store, &claims, &pack).await;

    let mut ledger = Ledger::new(registry.clone());
    ledger.set_counter(last_year.clone(), 4900);
    for (handled, claim) in handled.iter().zip(&claims) {
        let want = without_audit(decision_to_json(&ledger.submit(claim, &pack)));
        assert_eq!(without_audit(body(decision_message(handled))), want);
    }
    // Only 1,00 € of room was left: taken by the first visit, none by the second.
    let first = body(decision_message(&handled[0]));
    assert_eq!(first["lines"][0]["compulsory"]["deductions"][0]["amount"], 100);
    assert_eq!(store.counter(&last_year).await.unwrap(), 5000);
    // The audit entry holds the true value read, so a replay decides the same.
    let (_, entry) = &store.audit_entries(0, 1).await.unwrap()[0];
    let entry: Value = serde_json::from_str(entry).unwrap();
    let read = entry["counters_before"].as_array().unwrap();
    assert!(read.iter().any(|counter| counter["period"] == "2024" && counter["value"] == 4900), "{read:?}");
    store.pool().close().await;
    database.drop_database().await;
}
