//! Transaction-scoped advisory locks that serialize the workers touching the same claim or the
//! same household, in an order that cannot deadlock.
//!
//! A batch locks in three phases, each in ascending key order:
//! 1. one lock per claim key `(provider_id, claim_id)` of its claims and cancellations (and
//!    per invalid message's body hash). Every writer of a `claims` row holds its claim lock,
//!    so once held, the rows read next cannot appear or change under us — in particular the
//!    row a cancellation reverses, which names the household to lock next;
//! 2. one lock per message refused for its submitter (by its bytes and submitter): which
//!    messages those are is known only once the registry is read, after phase 1;
//! 3. one lock per household involved (the member id when the member is unknown), since the
//!    counters a claim reads and moves are the member's and the household's.
//!
//! A worker waiting in a phase holds locks of earlier phases only and waits only for locks of
//! that phase, taken in one global order; the holders of those never wait on a lock of an
//! earlier phase again. No cycle can form. The audit head row, locked last, closes the same
//! argument. Keys are 64-bit hashes: a collision only serializes two unrelated batches (or,
//! across phases, lets PostgreSQL's deadlock detector abort one batch, which is retried).

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::StoreError;

/// The lock key of a claim (by provider and provider's claim id).
pub(crate) fn claim_key(provider_id: &str, claim_id: &str) -> i64 {
    key(&format!("claim\0{provider_id}\0{claim_id}"))
}

/// The lock key of the record of a message refused for its submitter.
pub(crate) fn refused_key(record_key: &str) -> i64 {
    key(&format!("refused\0{record_key}"))
}

/// The lock key guarding a household's (and its members') counters and line history.
pub(crate) fn household_key(household_id: &str) -> i64 {
    key(&format!("household\0{household_id}"))
}

/// For a member the registry does not know: nothing is counted, but the claim row is still
/// written under a stable key.
pub(crate) fn unknown_member_key(member_id: &str) -> i64 {
    key(&format!("member\0{member_id}"))
}

fn key(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes every lock in `keys` (sorted and deduplicated here), waiting as needed; they are
/// released when the transaction ends.
pub(crate) async fn lock_all(
    transaction: &mut Transaction<'static, Postgres>,
    keys: impl IntoIterator<Item = i64>,
) -> Result<(), StoreError> {
    let mut keys: Vec<i64> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    let connection: &mut PgConnection = transaction;
    // One round trip for the whole set: a function scan over the array yields its elements in
    // array order and the lock is taken as each row is produced, so the locks are acquired in
    // the ascending order sorted above (were it ever otherwise, PostgreSQL's deadlock detector
    // would abort one transaction and the worker would retry it: no wrong result, only a retry).
    sqlx::query("SELECT pg_advisory_xact_lock(key) FROM unnest($1::int8[]) AS key")
        .bind(&keys)
        .execute(connection)
        .await?;
    Ok(())
}
