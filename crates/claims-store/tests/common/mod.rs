//! Shared by the store's tests: a migrated store on a fresh database, the French pack and
//! registries, the embedded ledger to compare with, and helpers to read what `decide` returns.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::PathBuf;

use claims_domain::contract::{decision_to_json, parse_registry};
use claims_domain::ledger::Ledger;
use claims_domain::registry::Registry;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::{Destination, Handled, Incoming, OutboxMessage, Store};
use claims_testkit::TestDatabase;
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn french_pack() -> RhaiPack {
    RhaiPack::load(repo().join("rules/fr")).unwrap_or_else(|error| panic!("loading rules/fr: {error}"))
}

/// The broker user the tests submit as (RabbitMQ's default user, the demo gateway).
pub const SUBMITTER: &str = "guest";

/// `rules/fr/tests/registry.json` (the worked cases) or `examples/fr/registry.json`, with
/// [`SUBMITTER`] allowed to submit for every provider.
pub fn registry(relative: &str) -> Registry {
    let path = repo().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let mut registry = parse_registry(&text).unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()));
    for provider in registry.providers.values_mut() {
        provider.submitters.insert(SUBMITTER.to_owned());
    }
    registry
}

/// A migrated store on a database of its own, with `registry` imported.
pub async fn store_with(registry: &Registry, pack: &RhaiPack) -> (Store, TestDatabase) {
    let database = claims_testkit::database().await;
    let store = Store::connect(&database.url).await.unwrap_or_else(|error| panic!("connecting: {error}"));
    store.migrate().await.unwrap_or_else(|error| panic!("migrating: {error}"));
    store.import_registry(registry, pack.settings()).await.unwrap_or_else(|error| panic!("importing: {error}"));
    (store, database)
}

/// A message as the broker hands it over, published by [`SUBMITTER`].
pub fn incoming(body: &str) -> Incoming {
    Incoming { body: body.to_owned(), reply_to: None, correlation_id: None, user_id: Some(SUBMITTER.to_owned()) }
}

pub async fn decide(store: &Store, bodies: &[String], pack: &RhaiPack) -> Vec<Handled> {
    let messages: Vec<Incoming> = bodies.iter().map(|body| incoming(body)).collect();
    store.decide(&messages, pack).await.unwrap_or_else(|error| panic!("decide: {error}"))
}

/// The messages of a `Publish`.
pub fn published(handled: &Handled) -> &[OutboxMessage] {
    match handled {
        Handled::Publish(messages) => messages,
        Handled::DeadLetter { reason } => panic!("expected messages to publish, got a dead letter: {reason}"),
    }
}

/// The decision/v1 message among what a message produced.
pub fn decision_message(handled: &Handled) -> &OutboxMessage {
    published(handled)
        .iter()
        .find(|message| message.destination == Destination::Decisions)
        .unwrap_or_else(|| panic!("no decision among {handled:?}"))
}

pub fn body(message: &OutboxMessage) -> Value {
    serde_json::from_slice(&message.body).unwrap_or_else(|error| panic!("body is not JSON: {error}"))
}

/// A decision/v1 without its audit place (the ledger has none).
pub fn without_audit(mut decision: Value) -> Value {
    if let Some(object) = decision.as_object_mut() {
        object.remove("audit");
    }
    decision
}

/// What the embedded ledger decides for the same messages, in order, without audit.
pub fn ledger_decisions(registry: &Registry, bodies: &[String], pack: &RhaiPack) -> Vec<Value> {
    let mut ledger = Ledger::new(registry.clone());
    bodies.iter().map(|body| without_audit(decision_to_json(&ledger.submit(body, pack)))).collect()
}

/// The claim and cancellation lines of `examples/fr/claims.jsonl`.
pub fn example_messages() -> Vec<String> {
    let path = repo().join("examples/fr/claims.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect()
}

/// A GP visit (act G, 30,00 €) of the worked-case registry's member M-C1 on `date`.
pub fn gp_visit(claim_id: &str, date: &str) -> String {
    serde_json::json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": "P-GP-S1", "member_id": "M-C1",
        "submitted_on": date, "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": date, "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}],
    })
    .to_string()
}

pub fn cancellation(provider_id: &str, claim_id: &str) -> String {
    serde_json::json!({"schema": "cancellation/v1", "provider_id": provider_id, "claim_id": claim_id,
                       "reason": "billed in error"})
    .to_string()
}

/// Number of audit entries recorded so far.
pub async fn audit_count(store: &Store) -> usize {
    store.audit_entries(0, i64::MAX).await.unwrap_or_else(|error| panic!("reading the audit log: {error}")).len()
}

/// A copy of the French pack with `from` replaced by `to` (once) in `file`: a pack that
/// differs from the real one in exactly one rule, for one test.
pub fn patched_pack(name: &str, file: &str, from: &str, to: &str) -> RhaiPack {
    let dir = std::env::temp_dir().join(format!("claims-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&repo().join("rules/fr"), &dir);
    let script = dir.join(file);
    let text = std::fs::read_to_string(&script).unwrap_or_else(|error| panic!("reading {}: {error}", script.display()));
    let patched = text.replacen(from, to, 1);
    assert_ne!(patched, text, "{from:?} is not in {file}");
    std::fs::write(&script, patched).unwrap_or_else(|error| panic!("writing {}: {error}", script.display()));
    let pack = RhaiPack::load(&dir).unwrap_or_else(|error| panic!("loading the patched pack: {error}"));
    // The pack keeps its sources in memory; the copy is no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    pack
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("creating {}: {error}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|error| panic!("reading {}: {error}", from.display())).flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copying {}: {error}", entry.path().display()));
        }
    }
}
