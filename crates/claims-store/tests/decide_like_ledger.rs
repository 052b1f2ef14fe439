//! `Store::decide` gives exactly the embedded ledger's decisions, message after message, and
//! records what it should: worked case 1, the whole French example file in batches, invalid
//! and unreadable messages, replies.

mod common;

use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::ids::MemberId;
use claims_store::{Destination, Handled, Incoming};
use common::*;

#[tokio::test]
async fn worked_case_1_is_decided_as_the_ledger_decides_it() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let claim = gp_visit("C1-1", "2025-11-05");

    let handled = decide(&store, std::slice::from_ref(&claim), &pack).await;

    let expected = ledger_decisions(&registry, std::slice::from_ref(&claim), &pack);
    let message = decision_message(&handled[0]);
    let decision = body(message);
    assert_eq!(without_audit(decision.clone()), expected[0]);
    assert_eq!(decision["outcome"], "complete");
    assert_eq!(decision["audit"]["seq"], 1);
    assert_eq!(message.message_id, "decision-1");
    assert_eq!(message.routing_key, "decision.complete");
    // One payment message per scheme, to the member who paid the doctor.
    let payments: Vec<_> =
        published(&handled[0]).iter().filter(|message| message.destination == Destination::Payments).collect();
    assert_eq!(payments.len(), 2);
    let compulsory = body(payments[0]);
    assert_eq!(payments[0].routing_key, "reimbursement.compulsory");
    assert_eq!(payments[0].message_id, "payment-1-compulsory-member");
    assert_eq!(compulsory["amount"], 1900);
    assert_eq!(compulsory["schema"], "payment/v1");
    assert_eq!(compulsory["audit"], decision["audit"]);
    assert_eq!(body(payments[1])["amount"], 900);
    assert!(published(&handled[0]).iter().all(|message| message.outbox_id.is_some()));

    let key = CounterKey {
        subject: Subject::Member(MemberId::parse("M-C1").unwrap()),
        counter: "per_visit_charge".into(),
        period: "2025".into(),
    };
    assert_eq!(store.counter(&key).await.unwrap(), 200);
    assert_eq!(store.decision("P-GP-S1", "C1-1").await.unwrap(), Some(decision));
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn the_example_file_in_batches_of_50_gives_the_ledgers_decisions_in_order() {
    let pack = french_pack();
    let registry = registry("examples/fr/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let messages = example_messages();
    assert_eq!(messages.len(), 360);

    let started = std::time::Instant::now();
    let mut decisions = Vec::new();
    for batch in messages.chunks(50) {
        for handled in decide(&store, batch, &pack).await {
            decisions.push(without_audit(body(decision_message(&handled))));
        }
    }
    eprintln!("360 messages decided in {:?}", started.elapsed());

    let started = std::time::Instant::now();
    let expected = ledger_decisions(&registry, &messages, &pack);
    eprintln!("the same 360 messages through the in-memory ledger: {:?}", started.elapsed());
    assert_eq!(decisions.len(), expected.len());
    for (index, (got, want)) in decisions.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "message {} differs: {}", index + 1, messages[index]);
    }
    // Every decision has its audit entry.
    assert_eq!(audit_count(&store).await, 360);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn an_invalid_claim_is_rejected_recorded_and_published_and_not_json_is_dead_lettered() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let invalid = gp_visit("C-BAD", "2025-11-05").replace("\"charged\":3000", "\"charged\":\"30.00\"");
    assert!(invalid.contains("\"30.00\""));
    let bodies = vec![invalid.clone(), "this is not JSON".to_owned(), r#"{"schema": "claim/v9"}"#.to_owned()];

    let handled = decide(&store, &bodies, &pack).await;

    let decision = body(decision_message(&handled[0]));
    assert_eq!(decision["outcome"], "rejected");
    assert_eq!(decision["claim_id"], "C-BAD");
    assert!(decision["reasons"][0]["text"].as_str().unwrap().contains("charged"), "{decision}");
    assert_eq!(without_audit(decision), ledger_decisions(&registry, &[invalid], &pack)[0]);
    match &handled[1] {
        Handled::DeadLetter { reason } => assert!(reason.contains("not valid JSON"), "{reason}"),
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert!(matches!(&handled[2], Handled::DeadLetter { reason } if reason.contains("claim/v9")));
    // The rejection is in the audit log, but no claim row holds it: a corrected claim under
    // the same id is decided afresh, as in the ledger.
    assert_eq!(audit_count(&store).await, 1);
    assert_eq!(store.decision("P-GP-S1", "C-BAD").await.unwrap(), None);
    let corrected = decide(&store, &[gp_visit("C-BAD", "2025-11-05")], &pack).await;
    assert_eq!(body(decision_message(&corrected[0]))["outcome"], "complete");
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_reply_queue_gets_the_decision_with_the_correlation_id() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let message = Incoming {
        body: gp_visit("C-REPLY", "2025-11-05"),
        reply_to: Some("amq.gen-reply".into()),
        correlation_id: Some("corr-7".into()),
        user_id: Some(SUBMITTER.into()),
    };

    let handled = store.decide(std::slice::from_ref(&message), &pack).await.unwrap();
    let again = store.decide(&[message], &pack).await.unwrap();

    for (handled, outboxed) in [(&handled[0], true), (&again[0], false)] {
        let reply = published(handled)
            .iter()
            .find(|message| message.destination == Destination::ReplyTo("amq.gen-reply".into()))
            .expect("a reply");
        assert_eq!(reply.correlation_id.as_deref(), Some("corr-7"));
        assert_eq!(reply.routing_key, "amq.gen-reply");
        assert_eq!(reply.body, decision_message(handled).body);
        assert_eq!(reply.outbox_id.is_some(), outboxed);
    }
    store.pool().close().await;
    database.drop_database().await;
}
