//! A database holding the French examples decided through `Store::decide` (included with
//! `#[path]` by the tests that read a recorded log: audit exports and replays, rules impact).

use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::{Incoming, Store};

/// Imports the examples' registry, stores `pack`'s sources and decides every example message
/// with `pack`, in batches of 40, as the demo gateway user the example registry lets submit for
/// every provider.
pub async fn record_french_examples(store: &Store, pack: &RhaiPack) {
    let repo = claims_e2e::repo();
    let registry_text = std::fs::read_to_string(repo.join("examples/fr/registry.json"))
        .unwrap_or_else(|error| panic!("reading examples/fr/registry.json: {error}"));
    let registry = claims_domain::contract::parse_registry(&registry_text)
        .unwrap_or_else(|error| panic!("examples/fr/registry.json: {error}"));
    let messages = std::fs::read_to_string(repo.join("examples/fr/claims.jsonl"))
        .unwrap_or_else(|error| panic!("reading examples/fr/claims.jsonl: {error}"));
    let messages: Vec<&str> = messages.lines().collect();
    store.import_registry(&registry, pack.settings()).await.unwrap_or_else(|error| panic!("importing: {error}"));
    let sources: Vec<(String, String)> =
        pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    store
        .save_rule_pack("fr", pack.version(), &sources)
        .await
        .unwrap_or_else(|error| panic!("saving the pack: {error}"));
    for batch in messages.chunks(40) {
        let incoming: Vec<Incoming> = batch
            .iter()
            .map(|body| Incoming {
                body: (*body).to_owned(),
                reply_to: None,
                correlation_id: None,
                user_id: Some("guest".to_owned()),
            })
            .collect();
        store.decide(&incoming, pack).await.unwrap_or_else(|error| panic!("deciding: {error}"));
    }
}
