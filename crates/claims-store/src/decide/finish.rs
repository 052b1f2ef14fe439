//! The end of a batch: place its new decisions in the audit log, then write audit entries,
//! counters, line history, claims rows, refused messages and outbox rows, and move the audit
//! head, in one statement (a data-modifying `WITH`, one `unnest` per table), and say what to
//! publish.
//!
//! One statement rather than one per table, because the batch holds the audit head's row lock from placing its entries
//! until its commit, and every batch of every worker waits for that lock: eight statements,
//! each a round trip between two busy processes on a small machine, made that wait the
//! longest one in a batch under `claimctl bench`.

use serde_json::Value;
use sqlx::{PgConnection, Postgres, Transaction};

use super::{Batch, DecisionRef, Planned};
use crate::audit::{self, AuditRows, Pending, Placed};
use crate::outbox::{self, InsertedRow, OutboxColumns};
use crate::stored::{fingerprints_to_json, moves_to_json, subject_parts};
use crate::{Handled, OutboxMessage, StoreError};

pub(super) async fn finish(
    transaction: &mut Transaction<'static, Postgres>,
    batch: Batch,
    plan: Vec<Planned>,
) -> Result<Vec<Handled>, StoreError> {
    let ready = batch
        .records
        .iter()
        .map(|record| {
            audit::prepare(&Pending {
                input: &record.input,
                effect: &record.effect,
                decision: &record.decision,
                submitted_by: record.user_id.as_deref(),
            })
        })
        .collect();
    // Taken last (after every household lock), held until the commit: see `audit`.
    let (placed, audit) = audit::place(transaction, ready).await?;

    let mut outgoing: Vec<Vec<OutboxMessage>> = batch
        .records
        .iter()
        .zip(&placed)
        .map(|(record, placed)| {
            outbox::for_new_decision(
                &record.decision,
                placed,
                record.reply_to.as_deref(),
                record.correlation_id.as_deref(),
            )
        })
        .collect();
    let mut rows: Vec<&mut OutboxMessage> = outgoing.iter_mut().flatten().collect();
    let writes = Writes {
        audit,
        counters: counter_columns(&batch),
        history: history_columns(&batch),
        claims: claim_columns(&batch, &placed)?,
        rejected: rejected_columns(&batch, &placed)?,
        outbox: outbox::columns(&rows),
    };
    let inserted = writes.execute(transaction).await?;
    outbox::assign_ids(&mut rows, inserted)?;

    let mut outgoing: Vec<Option<Vec<OutboxMessage>>> = outgoing.into_iter().map(Some).collect();
    plan.into_iter()
        .map(|planned| match planned {
            Planned::DeadLetter(reason) => Ok(Handled::DeadLetter { reason }),
            Planned::New(index) => outgoing
                .get_mut(index)
                .and_then(Option::take)
                .map(Handled::Publish)
                .ok_or_else(|| StoreError::Corrupt(format!("batch record {index} planned twice"))),
            Planned::Repeat { decision, reply_to, correlation_id } => {
                let (body, message_id) = resolve(&decision, &placed)?;
                Ok(Handled::Publish(outbox::for_repeat(
                    body,
                    message_id,
                    reply_to.as_deref(),
                    correlation_id.as_deref(),
                )))
            }
        })
        .collect()
}

/// The decision/v1 body and message id a reference stands for.
fn resolve<'a>(decision: &'a DecisionRef, placed: &'a [Placed]) -> Result<(&'a Value, &'a str), StoreError> {
    match decision {
        DecisionRef::Stored { body, message_id } => Ok((body, message_id)),
        DecisionRef::Pending(index) => {
            placed_at(placed, *index).map(|placed| (&placed.body, placed.message_id.as_str()))
        }
    }
}

/// The decision/v1 text and message id a reference stands for: a new decision's is the text
/// already serialized for its outbox rows.
fn resolve_text<'a>(decision: &'a DecisionRef, placed: &'a [Placed]) -> Result<(String, &'a str), StoreError> {
    match decision {
        DecisionRef::Stored { body, message_id } => Ok((body.to_string(), message_id)),
        DecisionRef::Pending(index) => {
            placed_at(placed, *index).map(|placed| (placed.text.clone(), placed.message_id.as_str()))
        }
    }
}

fn placed_at(placed: &[Placed], index: usize) -> Result<&Placed, StoreError> {
    placed.get(index).ok_or_else(|| StoreError::Corrupt(format!("batch record {index} was not placed")))
}

/// Everything a batch writes, as one array per column.
struct Writes {
    audit: AuditRows,
    counters: CounterColumns,
    history: HistoryColumns,
    claims: ClaimColumns,
    rejected: RejectedColumns,
    outbox: OutboxColumns,
}

impl Writes {
    /// Runs the batch's write statement, which also moves the audit head; returns the outbox
    /// rows inserted.
    ///
    /// Every part reads the snapshot the statement started with, which is what running them one
    /// after the other gave too: the history rows deleted (lines a cancellation reversed) are
    /// rows loaded before the batch, never rows the batch inserts; no key repeats within an
    /// `unnest`, so no `ON CONFLICT` meets a row twice. Empty arrays write nothing.
    async fn execute(self, connection: &mut PgConnection) -> Result<Vec<InsertedRow>, StoreError> {
        let Writes { audit, counters, history, claims, rejected, outbox } = self;
        // No new entry (a batch of repeats and refusals): the head stays where it is.
        let (head_sequence, head_hash) = audit.head.unzip();
        let rows = sqlx::query_as(
            "WITH audit AS (
                 INSERT INTO audit_log (seq, entry, hash)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[])),
             counters AS (
                 INSERT INTO counters (subject_kind, subject_id, counter, period, value)
                 SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int8[])
                 ON CONFLICT (subject_kind, subject_id, period, counter) DO UPDATE SET value = excluded.value),
             -- Every row holding a reversed line goes, whatever claim wrote it: the history is a
             -- set of lines, as in the ledger.
             forgotten AS (
                 DELETE FROM line_history h
                 USING unnest($9::text[], $10::date[], $11::text[], $12::text[], $13::int8[])
                       AS d(member_id, service_date, provider_id, act, charged)
                 WHERE h.member_id = d.member_id AND h.service_date = d.service_date
                   AND h.provider_id = d.provider_id AND h.act = d.act AND h.charged = d.charged),
             history AS (
                 INSERT INTO line_history
                     (member_id, service_date, provider_id, act, charged, origin_provider_id, origin_claim_id)
                 SELECT * FROM unnest($14::text[], $15::date[], $16::text[], $17::text[], $18::int8[],
                                      $19::text[], $20::text[])),
             claims AS (
                 INSERT INTO claims (provider_id, claim_id, member_id, household_id, input, outcome, decision,
                                     message_id, moves, fingerprints, reversal, reversal_message_id, updated_at)
                 SELECT *, now() FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::text[],
                                             $26::text[], $27::text[]::jsonb[], $28::text[], $29::jsonb[],
                                             $30::jsonb[], $31::text[]::jsonb[], $32::text[])
                 ON CONFLICT (provider_id, claim_id) DO UPDATE SET
                     member_id = excluded.member_id, household_id = excluded.household_id,
                     input = excluded.input, outcome = excluded.outcome, decision = excluded.decision,
                     message_id = excluded.message_id, moves = excluded.moves,
                     fingerprints = excluded.fingerprints, reversal = excluded.reversal,
                     reversal_message_id = excluded.reversal_message_id, updated_at = excluded.updated_at),
             rejected AS (
                 INSERT INTO rejected_messages (body_sha256, decision, message_id)
                 SELECT * FROM unnest($33::text[], $34::text[]::jsonb[], $35::text[])),
             outbox AS (
                 INSERT INTO outbox (destination, reply_to, routing_key, message_id, correlation_id, body)
                 SELECT * FROM unnest($36::text[], $37::text[], $38::text[], $39::text[], $40::text[],
                                      $41::bytea[])
                 RETURNING id, destination, reply_to, message_id),
             -- The head's AFTER trigger checks, once the statement is done, that the entry it
             -- now names was inserted above (migration 20261206000001).
             head AS (
                 UPDATE audit_head SET seq = $42, hash = $43 WHERE id AND $42::int8 IS NOT NULL)
             SELECT id, destination, reply_to, message_id FROM outbox",
        )
        .bind(audit.sequences)
        .bind(audit.entries)
        .bind(audit.hashes)
        .bind(counters.kinds)
        .bind(counters.ids)
        .bind(counters.counters)
        .bind(counters.periods)
        .bind(counters.values)
        .bind(history.deleted.member_ids)
        .bind(history.deleted.service_dates)
        .bind(history.deleted.provider_ids)
        .bind(history.deleted.acts)
        .bind(history.deleted.charged)
        .bind(history.inserted.member_ids)
        .bind(history.inserted.service_dates)
        .bind(history.inserted.provider_ids)
        .bind(history.inserted.acts)
        .bind(history.inserted.charged)
        .bind(history.origin_provider_ids)
        .bind(history.origin_claim_ids)
        .bind(claims.provider_ids)
        .bind(claims.claim_ids)
        .bind(claims.member_ids)
        .bind(claims.household_ids)
        .bind(claims.inputs)
        .bind(claims.outcomes)
        .bind(claims.decisions)
        .bind(claims.message_ids)
        .bind(claims.moves)
        .bind(claims.fingerprints)
        .bind(claims.reversals)
        .bind(claims.reversal_message_ids)
        .bind(rejected.keys)
        .bind(rejected.decisions)
        .bind(rejected.message_ids)
        .bind(outbox.destinations)
        .bind(outbox.reply_tos)
        .bind(outbox.routing_keys)
        .bind(outbox.message_ids)
        .bind(outbox.correlation_ids)
        .bind(outbox.bodies)
        .bind(head_sequence)
        .bind(head_hash)
        .fetch_all(connection)
        .await?;
        Ok(rows)
    }
}

/// The counters the batch changed, with their new values.
#[derive(Default)]
struct CounterColumns {
    kinds: Vec<String>,
    ids: Vec<String>,
    counters: Vec<String>,
    periods: Vec<String>,
    values: Vec<i64>,
}

fn counter_columns(batch: &Batch) -> CounterColumns {
    let mut columns = CounterColumns::default();
    for (key, value) in batch.counters.changes() {
        let (kind, id) = subject_parts(&key.subject);
        columns.kinds.push(kind.to_owned());
        columns.ids.push(id.to_owned());
        columns.counters.push(key.counter.clone());
        columns.periods.push(key.period.clone());
        columns.values.push(value);
    }
    columns
}

/// History rows: the lines' fingerprints.
#[derive(Default)]
struct LineColumns {
    member_ids: Vec<String>,
    service_dates: Vec<String>,
    provider_ids: Vec<String>,
    acts: Vec<String>,
    charged: Vec<i64>,
}

impl LineColumns {
    fn push(&mut self, row: &super::cache::HistoryRow<'_>) {
        self.member_ids.push(row.member_id.to_owned());
        self.service_dates.push(row.fingerprint.service_date.to_string());
        self.provider_ids.push(row.fingerprint.provider_id.to_string());
        self.acts.push(row.fingerprint.act.to_string());
        self.charged.push(row.fingerprint.charged.minor_units());
    }
}

/// The history rows the batch deletes and inserts (with the claim each inserted line came from).
#[derive(Default)]
struct HistoryColumns {
    deleted: LineColumns,
    inserted: LineColumns,
    origin_provider_ids: Vec<String>,
    origin_claim_ids: Vec<String>,
}

fn history_columns(batch: &Batch) -> HistoryColumns {
    let (deleted, inserted) = batch.history.changes();
    let mut columns = HistoryColumns::default();
    for row in &deleted {
        columns.deleted.push(row);
    }
    for row in &inserted {
        columns.inserted.push(row);
        columns.origin_provider_ids.push(row.origin.0.clone());
        columns.origin_claim_ids.push(row.origin.1.clone());
    }
    columns
}

fn claim_columns(batch: &Batch, placed: &[Placed]) -> Result<ClaimColumns, StoreError> {
    let mut columns = ClaimColumns::default();
    for ((provider_id, claim_id), row) in batch.claims.iter().filter(|(_, row)| row.changed) {
        let (decision, message_id) = resolve_text(&row.decision, placed)?;
        let reversal = row.reversal.as_ref().map(|reversal| resolve_text(reversal, placed)).transpose()?;
        columns.provider_ids.push(provider_id.clone());
        columns.claim_ids.push(claim_id.clone());
        columns.member_ids.push(row.member_id.clone());
        columns.household_ids.push(row.household_id.clone());
        columns.inputs.push(row.input.clone());
        columns.outcomes.push(row.outcome.name().to_owned());
        columns.decisions.push(decision);
        columns.message_ids.push(message_id.to_owned());
        columns.moves.push(moves_to_json(&row.moves));
        columns.fingerprints.push(fingerprints_to_json(&row.fingerprints));
        columns.reversal_message_ids.push(reversal.as_ref().map(|(_, message_id)| (*message_id).to_owned()));
        columns.reversals.push(reversal.map(|(body, _)| body));
    }
    Ok(columns)
}

/// The invalid messages first decided in this batch, by the hash of their bytes, and the
/// messages refused for their submitter, by their bytes and submitter.
#[derive(Default)]
struct RejectedColumns {
    keys: Vec<String>,
    decisions: Vec<String>,
    message_ids: Vec<String>,
}

fn rejected_columns(batch: &Batch, placed: &[Placed]) -> Result<RejectedColumns, StoreError> {
    let mut columns = RejectedColumns::default();
    for (key, index) in &batch.new_rejected {
        let pending = DecisionRef::Pending(*index);
        let (body, message_id) = resolve_text(&pending, placed)?;
        columns.keys.push(key.clone());
        columns.decisions.push(body);
        columns.message_ids.push(message_id.to_owned());
    }
    Ok(columns)
}

/// One array per column of `claims`, for a single `unnest` insert.
#[derive(Default)]
struct ClaimColumns {
    provider_ids: Vec<String>,
    claim_ids: Vec<String>,
    member_ids: Vec<String>,
    household_ids: Vec<Option<String>>,
    inputs: Vec<String>,
    outcomes: Vec<String>,
    /// decision/v1 as text (`Placed::text`): cast to `jsonb` by the server, not serialized again.
    decisions: Vec<String>,
    message_ids: Vec<String>,
    moves: Vec<Value>,
    fingerprints: Vec<Value>,
    reversals: Vec<Option<String>>,
    reversal_message_ids: Vec<Option<String>>,
}
