//! The audit log verifies as a chain and refuses changes; the outbox hands out what was not
//! published, once, and forgets it when marked.

mod common;

use std::time::Duration;

use claims_audit::{ChainHead, verify_next};
use claims_store::OutboxMessage;
use common::*;

#[tokio::test]
async fn the_audit_chain_verifies_and_cannot_be_altered() {
    let pack = french_pack();
    let registry = registry("examples/fr/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let messages: Vec<String> = example_messages().into_iter().take(60).collect();
    for batch in messages.chunks(25) {
        decide(&store, batch, &pack).await;
    }

    let entries = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(entries.len(), 60);
    let mut head = ChainHead::default();
    for (sequence, text) in &entries {
        let entry = verify_next(&mut head, *sequence, text).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(entry["input"], messages[usize::try_from(*sequence).unwrap() - 1].as_str());
    }
    // The head row is where the next batch will chain from.
    let (last, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head").fetch_one(store.pool()).await.unwrap();
    assert_eq!((last, hash), (60, head.previous_hash.clone()));

    for statement in [
        "UPDATE audit_log SET entry = '{}' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 60",
        "TRUNCATE audit_log",
    ] {
        let error = sqlx::query(statement).execute(store.pool()).await.expect_err(statement);
        assert!(error.to_string().contains("append-only"), "{statement}: {error}");
    }
    assert_eq!(store.audit_entries(0, 1000).await.unwrap(), entries);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn pending_outbox_hands_out_unpublished_rows_once_until_marked() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let handled = decide(&store, &[gp_visit("C-OUT-1", "2025-03-03"), gp_visit("C-OUT-2", "2025-03-04")], &pack).await;
    let written: Vec<&OutboxMessage> = handled.iter().flat_map(published).collect();
    assert_eq!(written.len(), 6, "a decision and two payments per claim");

    // Not stale yet for a relay that waits a minute.
    assert!(store.pending_outbox(Duration::from_secs(60), 100).await.unwrap().is_empty());
    let pending = store.pending_outbox(Duration::ZERO, 100).await.unwrap();
    assert_eq!(pending.len(), 6);
    for (got, want) in pending.iter().zip(&written) {
        assert_eq!(&got, want);
    }
    // Taken: another publisher gets none of them while the first is at work.
    assert!(store.pending_outbox(Duration::ZERO, 100).await.unwrap().is_empty());

    let ids: Vec<i64> = pending.iter().filter_map(|message| message.outbox_id).collect();
    store.mark_published(&ids).await.unwrap();
    let (unpublished,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(store.pool()).await.unwrap();
    assert_eq!(unpublished, 0);
    // Once the lease is over, only unpublished rows would come back: none.
    sqlx::query("UPDATE outbox SET claimed_until = now() - interval '1 second'").execute(store.pool()).await.unwrap();
    assert!(store.pending_outbox(Duration::ZERO, 100).await.unwrap().is_empty());
    store.pool().close().await;
    database.drop_database().await;
}
