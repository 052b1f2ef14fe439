//! The hash-chained audit log in PostgreSQL: one `audit_log` row per audit/v1 entry, the exact
//! JSON line kept as text (the hash covers those bytes, so they are never re-encoded), and
//! the single `audit_head` row that orders the chain across workers.
//!
//! A batch locks the head row once, as its last lock, just before committing: entries are
//! chained in commit order, and the contended row is held for the few milliseconds of the
//! batch's writes, not for its adjudication.

use claims_audit::{ChainHead, PreparedEntry};
use claims_domain::contract::{decision_to_json, with_audit};
use claims_domain::decision::Decision;
use claims_domain::ledger::Effect;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// What one decision needs to be placed in the log.
pub(crate) struct Pending<'a> {
    pub input: &'a str,
    pub effect: &'a Effect,
    pub decision: &'a Decision,
    /// The broker user that published the message (`None`: it had no `user_id`).
    pub submitted_by: Option<&'a str>,
}

/// A decision placed in the log: its decision/v1 message (with `audit`) and message id.
pub(crate) struct Placed {
    pub sequence: u64,
    pub hash: String,
    pub body: Value,
    /// `body` as published and stored, serialized once for the outbox rows and the claim row.
    pub text: String,
    pub message_id: String,
}

/// The message id of the decision at `sequence`: stable, so a decision published twice after
/// a crash carries the same id.
pub(crate) fn decision_message_id(sequence: u64) -> String {
    format!("decision-{sequence}")
}

/// The audit rows of a batch, written by the batch's one write statement
/// (`decide::finish`), and the head they move the chain to (`None`: nothing to append).
#[derive(Default)]
pub(crate) struct AuditRows {
    pub sequences: Vec<i64>,
    pub entries: Vec<String>,
    pub hashes: Vec<String>,
    pub head: Option<(i64, String)>,
}

/// A decision made ready to be placed before the head is locked: its entry encoded but for its
/// place in the chain, and its decision/v1 message (without `audit`).
pub(crate) struct Ready {
    entry: PreparedEntry,
    decision: Value,
}

/// Encodes everything of a decision's entry that does not depend on its place in the chain,
/// so that the section every batch of every worker waits for (from the head's lock to the
/// commit) only numbers, hashes and writes it.
pub(crate) fn prepare(item: &Pending<'_>) -> Ready {
    let decision = decision_to_json(item.decision);
    // Every message the store decides came through the broker: the entry says who sent it.
    let entry = claims_audit::prepare_submitted(item.input, item.effect, &decision, item.submitted_by);
    Ready { entry, decision }
}

/// Locks the head and places the entries, in order, after it; the caller writes them (and the
/// new head) before committing.
pub(crate) async fn place(
    connection: &mut PgConnection,
    ready: Vec<Ready>,
) -> Result<(Vec<Placed>, AuditRows), StoreError> {
    if ready.is_empty() {
        return Ok((Vec::new(), AuditRows::default()));
    }
    let (last_sequence, last_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id FOR UPDATE").fetch_one(&mut *connection).await?;
    let last_sequence = u64::try_from(last_sequence)
        .map_err(|_| StoreError::Corrupt(format!("audit_head.seq is negative: {last_sequence}")))?;
    let mut head = ChainHead { next_sequence: last_sequence + 1, previous_hash: last_hash };
    let mut placed = Vec::with_capacity(ready.len());
    let mut rows = AuditRows {
        sequences: Vec::with_capacity(ready.len()),
        entries: Vec::with_capacity(ready.len()),
        hashes: Vec::with_capacity(ready.len()),
        head: None,
    };
    for Ready { entry, decision } in ready {
        let recorded_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let sequence = head.next_sequence;
        rows.sequences.push(to_column(sequence)?);
        rows.entries.push(entry.place(&mut head, &recorded_at));
        rows.hashes.push(head.previous_hash.clone());
        let body = with_audit(decision, sequence, &head.previous_hash);
        placed.push(Placed {
            sequence,
            hash: head.previous_hash.clone(),
            text: body.to_string(),
            body,
            message_id: decision_message_id(sequence),
        });
    }
    rows.head = Some((to_column(head.next_sequence - 1)?, head.previous_hash));
    Ok((placed, rows))
}

fn to_column(sequence: u64) -> Result<i64, StoreError> {
    i64::try_from(sequence).map_err(|_| StoreError::Corrupt(format!("audit sequence {sequence} out of range")))
}

pub(crate) async fn head(pool: &PgPool) -> Result<(u64, String), StoreError> {
    let (sequence, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id").fetch_one(pool).await?;
    let sequence =
        u64::try_from(sequence).map_err(|_| StoreError::Corrupt(format!("audit_head.seq is negative: {sequence}")))?;
    Ok((sequence, hash))
}

/// Up to `limit` entries after sequence `after`, as `(seq, exact JSON line)`, in order: what
/// `claims_audit::verify_next` walks and what an export writes.
pub(crate) async fn entries(pool: &PgPool, after: u64, limit: i64) -> Result<Vec<(u64, String)>, StoreError> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, entry FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(to_column(after)?)
            .bind(limit)
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(sequence, entry)| {
            u64::try_from(sequence)
                .map(|sequence| (sequence, entry))
                .map_err(|_| StoreError::Corrupt(format!("audit_log.seq is negative: {sequence}")))
        })
        .collect()
}
