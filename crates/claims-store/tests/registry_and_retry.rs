//! The registry import is all or nothing; claims whose rules failed are listed and, once the
//! rules are fixed, re-adjudicated.

mod common;

use claims_domain::ids::PlanName;
use claims_domain::registry::Registry;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::{Store, StoreError};
use common::*;

#[tokio::test]
async fn a_registry_naming_an_unknown_plan_is_refused_whole() {
    let pack = french_pack();
    let mut registry: Registry = registry("rules/fr/tests/registry.json");
    let member = registry.members.values_mut().next().unwrap();
    member.coverages[0].plan = PlanName::parse("NO-SUCH-PLAN").unwrap();
    let database = claims_testkit::database().await;
    let store = Store::connect(&database.url).await.unwrap();
    store.migrate().await.unwrap();

    let error = store.import_registry(&registry, pack.settings()).await.expect_err("an unknown plan");

    assert!(matches!(error, StoreError::Registry(_)), "{error:?}");
    assert!(error.to_string().contains("NO-SUCH-PLAN"), "{error}");
    let (members, providers): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM providers)")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((members, providers), (0, 0));
    // Migrating again applies nothing.
    assert!(store.apply_migrations().await.unwrap().is_empty());
    store.pool().close().await;
    database.drop_database().await;
}

/// The French pack with the doctors' agreement failing on every GP visit.
fn broken_pack() -> RhaiPack {
    patched_pack(
        "broken",
        "agreements/medecins.rhai",
        "fn tariff(line, member, provider, claim) {",
        "fn tariff(line, member, provider, claim) {\n    if line.act == \"G\" { throw \"G fee table is being rebuilt\"; }",
    )
}

#[tokio::test]
async fn claims_in_error_are_listed_and_retried_with_the_fixed_pack() {
    let good = french_pack();
    let broken = broken_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &good).await;
    let claims = [gp_visit("C-ERR-1", "2025-05-05"), gp_visit("C-ERR-2", "2025-05-06")];

    let handled = decide(&store, &claims, &broken).await;

    assert!(handled.iter().all(|handled| body(decision_message(handled))["outcome"] == "error"));
    let errors = store.error_claims().await.unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors[0].position.contains("medecins.rhai"), "{:?}", errors[0]);
    assert!(errors[0].message.contains("G fee table"), "{:?}", errors[0]);
    assert_eq!((errors[0].claim_id.as_str(), errors[1].claim_id.as_str()), ("C-ERR-1", "C-ERR-2"));

    let sources: Vec<(String, String)> =
        good.sources().iter().map(|source| (source.path.clone(), source.text.clone())).collect();
    store.save_rule_pack("fr", good.version(), &sources).await.unwrap();
    store.save_rule_pack("fr", good.version(), &sources).await.unwrap();
    assert_eq!(store.rule_pack_sources(good.version()).await.unwrap(), Some(sources));

    let published = store.retry_errors(&good).await.unwrap();

    assert!(store.error_claims().await.unwrap().is_empty());
    let decisions: Vec<_> = published.iter().filter(|message| message.routing_key.starts_with("decision.")).collect();
    assert_eq!(decisions.len(), 2);
    assert!(published.iter().all(|message| message.outbox_id.is_some()));
    let expected = ledger_decisions(&registry, &claims, &good);
    for (message, want) in decisions.iter().zip(&expected) {
        assert_eq!(&without_audit(body(message)), want);
    }
    // Nothing left to retry: a second run publishes nothing.
    assert!(store.retry_errors(&good).await.unwrap().is_empty());
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn decide_can_run_on_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let messages = [incoming(&gp_visit("C-SEND", "2025-05-05"))];
    let future = store.decide(&messages, &pack);
    assert_send(&future);
    assert_eq!(future.await.unwrap().len(), 1);
    store.pool().close().await;
    database.drop_database().await;
}
