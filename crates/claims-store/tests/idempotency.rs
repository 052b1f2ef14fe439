//! At-least-once in, exactly-once effect: a claim or a cancellation delivered again changes
//! nothing and is answered with the very same message.

mod common;

use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::ids::MemberId;
use claims_store::Store;
use common::*;

fn per_visit_charge_2025() -> CounterKey {
    CounterKey {
        subject: Subject::Member(MemberId::parse("M-C1").unwrap()),
        counter: "per_visit_charge".into(),
        period: "2025".into(),
    }
}

async fn counter(store: &Store) -> i64 {
    store.counter(&per_visit_charge_2025()).await.unwrap()
}

#[tokio::test]
async fn a_repeated_claim_gets_the_same_message_and_moves_nothing() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let claim = gp_visit("C-REPEAT", "2025-11-05");

    let first = decide(&store, std::slice::from_ref(&claim), &pack).await;
    let after_first = counter(&store).await;
    // Again in a later batch, and twice more in one batch.
    let second = decide(&store, std::slice::from_ref(&claim), &pack).await;
    let third = decide(&store, &[claim.clone(), claim], &pack).await;

    let original = decision_message(&first[0]);
    for handled in [&second[0], &third[0], &third[1]] {
        let repeat = decision_message(handled);
        assert_eq!(repeat.message_id, original.message_id);
        assert_eq!(repeat.body, original.body);
        assert_eq!(repeat.routing_key, original.routing_key);
        assert_eq!(repeat.outbox_id, None, "a repeat writes no outbox row");
        assert_eq!(published(handled).len(), 1, "payments are not sent again");
    }
    assert_eq!(after_first, 200);
    assert_eq!(counter(&store).await, 200);
    assert_eq!(audit_count(&store).await, 1);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_claim_repeated_within_its_own_batch_is_decided_once() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let claim = gp_visit("C-TWICE", "2025-11-05");

    let handled = decide(&store, &[claim.clone(), claim], &pack).await;

    assert_eq!(decision_message(&handled[0]).message_id, decision_message(&handled[1]).message_id);
    assert_eq!(decision_message(&handled[0]).body, decision_message(&handled[1]).body);
    assert!(decision_message(&handled[1]).outbox_id.is_none());
    assert_eq!(counter(&store).await, 200);
    assert_eq!(audit_count(&store).await, 1);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn cancelling_twice_changes_nothing_the_second_time() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let claim = gp_visit("C-CANCEL", "2025-11-05");
    let cancel = cancellation("P-GP-S1", "C-CANCEL");

    decide(&store, std::slice::from_ref(&claim), &pack).await;
    let first = decide(&store, std::slice::from_ref(&cancel), &pack).await;
    let after_first = (counter(&store).await, audit_count(&store).await);
    let second = decide(&store, std::slice::from_ref(&cancel), &pack).await;

    let reversal = body(decision_message(&first[0]));
    assert_eq!(reversal["outcome"], "reversed");
    assert_eq!(reversal["reverses"], "C-CANCEL");
    assert_eq!(after_first, (0, 2));
    assert_eq!(decision_message(&second[0]).message_id, decision_message(&first[0]).message_id);
    assert_eq!(decision_message(&second[0]).body, decision_message(&first[0]).body);
    assert_eq!((counter(&store).await, audit_count(&store).await), after_first);
    // The reversal's payments recover what was paid, each marked with what it reverses.
    let payments: Vec<_> = published(&first[0]).iter().skip(1).map(body).collect();
    assert_eq!(payments.len(), 2);
    assert!(
        payments.iter().all(|payment| payment["amount"].as_i64().unwrap() < 0 && payment["reverses"] == "C-CANCEL")
    );
    assert_eq!(store.decision("P-GP-S1", "C-CANCEL").await.unwrap(), Some(reversal));
    // The claim itself, sent again, still gets its original decision.
    let again = decide(&store, &[claim], &pack).await;
    assert_eq!(body(decision_message(&again[0]))["outcome"], "complete");

    let expected = ledger_decisions(
        &registry,
        &[gp_visit("C-CANCEL", "2025-11-05"), cancel.clone(), cancel, gp_visit("C-CANCEL", "2025-11-05")],
        &pack,
    );
    assert_eq!(expected[2], without_audit(body(decision_message(&second[0]))));
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_claim_and_its_cancellation_in_one_batch_end_as_the_ledger_ends() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let bodies = vec![
        cancellation("P-GP-S1", "C-SAME"),
        gp_visit("C-SAME", "2025-11-05"),
        gp_visit("C-OTHER", "2025-11-05"),
        cancellation("P-GP-S1", "C-SAME"),
        gp_visit("C-SAME", "2025-11-05"),
        gp_visit("C-LATER", "2025-11-05"),
    ];

    let handled = decide(&store, &bodies, &pack).await;

    let expected = ledger_decisions(&registry, &bodies, &pack);
    let got: Vec<_> = handled.iter().map(|handled| without_audit(body(decision_message(handled)))).collect();
    assert_eq!(got, expected);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn an_invalid_claim_delivered_again_gets_the_same_decision_and_no_new_entry() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    // Valid JSON and schema, but an impossible date: a `rejected` decision, not a dead letter.
    let invalid = gp_visit("C-INVALID", "2025-11-05")
        .replace("\"service_date\":\"2025-11-05\"", "\"service_date\":\"2025-02-30\"");
    assert_ne!(invalid, gp_visit("C-INVALID", "2025-11-05"), "the date was replaced");

    let first = decide(&store, std::slice::from_ref(&invalid), &pack).await;
    let original = decision_message(&first[0]);
    assert_eq!(body(original)["outcome"], "rejected");
    assert!(original.outbox_id.is_some());
    // Redelivered in a later batch, and twice in one batch: same message, nothing recorded.
    let later = decide(&store, std::slice::from_ref(&invalid), &pack).await;
    let twice = decide(&store, &[invalid.clone(), invalid.clone()], &pack).await;
    for handled in [&later[0], &twice[0], &twice[1]] {
        let repeat = decision_message(handled);
        assert_eq!(repeat.message_id, original.message_id);
        assert_eq!(repeat.body, original.body);
        assert_eq!(repeat.outbox_id, None);
    }
    assert_eq!(audit_count(&store).await, 1);
    // A corrected claim under the same ids is decided afresh.
    let corrected = decide(&store, &[gp_visit("C-INVALID", "2025-11-05")], &pack).await;
    assert_eq!(body(decision_message(&corrected[0]))["outcome"], "complete");
    assert_eq!(audit_count(&store).await, 2);
    store.pool().close().await;
    database.drop_database().await;
}
