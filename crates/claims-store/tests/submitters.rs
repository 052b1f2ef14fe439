//! Who may submit: a claim or cancellation is decided only when its broker user is one of its
//! provider's `submitters`; a refusal is recorded under the message's bytes and user, never
//! under the claim's key, so a forgery cannot block (or read) the provider's real claim. Every
//! entry records its submitter and replays to the same decision.

mod common;

use claims_audit::replay::{RecordedEntry, compare, replay};
use claims_domain::registry::Registry;
use claims_domain::rules::RulePack;
use claims_store::{Incoming, Store};
use common::*;
use serde_json::{Value, json};

fn from(user: Option<&str>, body: &str) -> Incoming {
    Incoming { body: body.to_owned(), reply_to: None, correlation_id: None, user_id: user.map(str::to_owned) }
}

/// Decides one message; returns its decision/v1 and message id.
async fn decide_one(store: &Store, message: Incoming, pack: &dyn RulePack) -> (Value, String) {
    let handled = store.decide(&[message], pack).await.unwrap_or_else(|error| panic!("decide: {error}"));
    let decision = decision_message(&handled[0]);
    (body(decision), decision.message_id.clone())
}

fn reason(decision: &Value) -> String {
    let reason = &decision["reasons"][0];
    format!(
        "{}-{}: {}",
        reason["group"].as_str().unwrap(),
        reason["code"].as_str().unwrap(),
        reason["text"].as_str().unwrap()
    )
}

async fn entries(store: &Store) -> Vec<Value> {
    let entries = store.audit_entries(0, 1000).await.unwrap();
    entries.iter().map(|(_, text)| serde_json::from_str(text).unwrap()).collect()
}

#[tokio::test]
async fn a_forged_claim_is_refused_without_blocking_or_reading_the_real_one() {
    let pack = french_pack();
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    let claim = gp_visit("C-F1", "2025-11-05");

    // prov-b sends P-GP-S1's claim first: refused, and no claim row is taken.
    let (forged, forged_id) = decide_one(&store, from(Some("prov-b"), &claim), &pack).await;
    assert_eq!(forged["outcome"], "rejected");
    assert_eq!(reason(&forged), r#"CO-208: broker user "prov-b" may not submit claims for provider "P-GP-S1""#);
    assert_eq!((forged["provider_id"].as_str(), forged["claim_id"].as_str()), (Some("P-GP-S1"), Some("C-F1")));
    assert_eq!(store.decision("P-GP-S1", "C-F1").await.unwrap(), None);
    // Redelivered: the same refusal, no new entry.
    assert_eq!(decide_one(&store, from(Some("prov-b"), &claim), &pack).await.1, forged_id);
    assert_eq!(audit_count(&store).await, 1);

    // The provider's own gateway sends the very same bytes: decided normally.
    let (real, real_id) = decide_one(&store, from(Some(SUBMITTER), &claim), &pack).await;
    assert_eq!(real["outcome"], "complete");
    assert_ne!(real_id, forged_id);
    assert_eq!(store.decision("P-GP-S1", "C-F1").await.unwrap().unwrap()["outcome"], "complete");
    // The forger sending it again gets its refusal, never the provider's decision.
    assert_eq!(decide_one(&store, from(Some("prov-b"), &claim), &pack).await.1, forged_id);

    // With no user_id at all: refused too, under a key of its own.
    let (anonymous, anonymous_id) = decide_one(&store, from(None, &claim), &pack).await;
    assert_eq!(
        reason(&anonymous),
        r#"CO-208: the message has no user_id: only a broker user the registry names may submit claims for provider "P-GP-S1""#
    );
    assert_ne!(anonymous_id, forged_id);

    // A forged cancellation reverses nothing.
    let (cancelled, _) = decide_one(&store, from(Some("prov-b"), &cancellation("P-GP-S1", "C-F1")), &pack).await;
    assert_eq!(
        reason(&cancelled),
        r#"CO-208: broker user "prov-b" may not submit cancellations for provider "P-GP-S1""#
    );
    assert_eq!(cancelled["reverses"], "C-F1");
    assert_eq!(store.decision("P-GP-S1", "C-F1").await.unwrap().unwrap()["outcome"], "complete");

    // In one batch, a forgery before the real claim: each gets its own answer.
    let second = gp_visit("C-F2", "2025-11-06");
    let handled = store.decide(&[from(Some("prov-b"), &second), from(Some(SUBMITTER), &second)], &pack).await.unwrap();
    assert_eq!(body(decision_message(&handled[0]))["outcome"], "rejected");
    assert_eq!(body(decision_message(&handled[1]))["outcome"], "complete");
    assert_eq!(audit_count(&store).await, 6);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn every_entry_records_its_submitter_and_the_replay_checks_it() {
    let pack = french_pack();
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    let claim = gp_visit("C-R1", "2025-11-05");
    let messages = [
        from(Some("prov-b"), &claim),
        from(Some(SUBMITTER), &claim),
        from(None, &cancellation("P-GP-S1", "C-R1")),
        from(Some(SUBMITTER), &cancellation("P-GP-S1", "C-NEVER")),
        from(Some(SUBMITTER), "{\"schema\": \"claim/v1\", \"claim_id\": \"C-BAD\"}"),
    ];
    store.decide(&messages, &pack).await.unwrap();
    let entries = entries(&store).await;
    let submitted_by: Vec<&Value> = entries.iter().map(|entry| &entry["submitted_by"]).collect();
    assert_eq!(submitted_by, [&json!("prov-b"), &json!("guest"), &Value::Null, &json!("guest"), &json!("guest")]);
    // The refused entries record the provider the check read, with its submitters.
    assert_eq!(entries[0]["registry"]["provider"]["submitters"], json!(["guest"]));
    assert_eq!(entries[2]["registry"]["provider"]["provider_id"], "P-GP-S1");
    assert_eq!(entries[3]["registry"]["provider"]["provider_id"], "P-GP-S1");

    let replayed = |entry: &Value| {
        let recorded = RecordedEntry::from_json(entry.clone()).unwrap();
        compare(&recorded, &replay(&recorded, &pack).unwrap(), false)
    };
    for entry in &entries {
        assert_eq!(replayed(entry), [], "entry {}", entry["seq"]);
    }
    // The replay re-derives the answer from `submitted_by`: another user changes it. (The
    // refusal read no member, so the claim then meets an unknown member.)
    let mut refused_as_guest = entries[0].clone();
    refused_as_guest["submitted_by"] = json!("guest");
    let differences = replayed(&refused_as_guest);
    assert!(
        differences.iter().any(|difference| difference.path == "decision.reasons[0].code"
            && difference.recorded == "\"208\""
            && difference.replayed == "\"31\""),
        "{differences:?}"
    );
    let mut decided_as_forger = entries[1].clone();
    decided_as_forger["submitted_by"] = json!("prov-b");
    assert!(replayed(&decided_as_forger).iter().any(|difference| difference.path == "decision.outcome"));
    // Without the field (an entry that checked nobody) the refusal is not re-derived.
    let mut unchecked = entries[0].clone();
    unchecked.as_object_mut().unwrap().remove("submitted_by");
    assert!(replayed(&unchecked).iter().any(|difference| difference.path == "decision.reasons[0].code"));
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn a_retry_is_decided_as_the_original_submitter() {
    let good = french_pack();
    let broken = patched_pack(
        "submitter-retry",
        "agreements/medecins.rhai",
        "fn tariff(line, member, provider, claim) {",
        "fn tariff(line, member, provider, claim) {\n    throw \"fee table is being rebuilt\";",
    );
    let mut registry: Registry = registry("rules/fr/tests/registry.json");
    for provider in registry.providers.values_mut() {
        provider.submitters.insert("clinic-s1".to_owned());
    }
    let (store, database) = store_with(&registry, &good).await;
    let (first, _) = decide_one(&store, from(Some("clinic-s1"), &gp_visit("C-RT", "2025-11-05")), &broken).await;
    assert_eq!(first["outcome"], "error");

    let published = store.retry_errors(&good).await.unwrap();

    let decision = published.iter().find(|message| message.routing_key.starts_with("decision.")).unwrap();
    assert_eq!(body(decision)["outcome"], "complete");
    let entries = entries(&store).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["submitted_by"], "clinic-s1");
    store.pool().close().await;
    database.drop_database().await;
}
