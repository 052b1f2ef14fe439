//! The end of a batch: place its new decisions in the audit log, write counters, line history,
//! claims rows and outbox rows in bulk (one statement per table), and say what to publish.

use serde_json::Value;
use sqlx::{PgConnection, Postgres, Transaction};

use super::{Batch, DecisionRef, Planned};
use crate::audit::{self, Pending, Placed};
use crate::stored::{fingerprints_to_json, moves_to_json, subject_parts};
use crate::{Handled, OutboxMessage, StoreError, outbox};

pub(super) async fn finish(
    transaction: &mut Transaction<'static, Postgres>,
    batch: Batch,
    plan: Vec<Planned>,
) -> Result<Vec<Handled>, StoreError> {
    let pending: Vec<Pending<'_>> = batch
        .records
        .iter()
        .map(|record| Pending {
            input: &record.input,
            effect: &record.effect,
            decision: &record.decision,
            submitted_by: record.user_id.as_deref(),
        })
        .collect();
    // Taken last (after every household lock), held only for these writes: see `audit`.
    let placed = audit::append_all(transaction, &pending).await?;
    write_counters(transaction, &batch).await?;
    write_history(transaction, &batch).await?;
    write_claims(transaction, &batch, &placed).await?;
    write_rejected(transaction, &batch, &placed).await?;

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
    outbox::insert(transaction, &mut rows).await?;

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
        DecisionRef::Pending(index) => placed
            .get(*index)
            .map(|placed| (&placed.body, placed.message_id.as_str()))
            .ok_or_else(|| StoreError::Corrupt(format!("batch record {index} was not placed"))),
    }
}

/// The decision/v1 text and message id a reference stands for: a new decision's is the text
/// already serialized for its outbox rows.
fn resolve_text<'a>(decision: &'a DecisionRef, placed: &'a [Placed]) -> Result<(String, &'a str), StoreError> {
    match decision {
        DecisionRef::Stored { body, message_id } => Ok((body.to_string(), message_id)),
        DecisionRef::Pending(index) => placed
            .get(*index)
            .map(|placed| (placed.text.clone(), placed.message_id.as_str()))
            .ok_or_else(|| StoreError::Corrupt(format!("batch record {index} was not placed"))),
    }
}

async fn write_counters(connection: &mut PgConnection, batch: &Batch) -> Result<(), StoreError> {
    let (mut kinds, mut ids, mut counters, mut periods, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, value) in batch.counters.changes() {
        let (kind, id) = subject_parts(&key.subject);
        kinds.push(kind.to_owned());
        ids.push(id.to_owned());
        counters.push(key.counter.clone());
        periods.push(key.period.clone());
        values.push(value);
    }
    if kinds.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO counters (subject_kind, subject_id, counter, period, value)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
         ON CONFLICT (subject_kind, subject_id, period, counter) DO UPDATE SET value = excluded.value",
    )
    .bind(&kinds)
    .bind(&ids)
    .bind(&counters)
    .bind(&periods)
    .bind(&values)
    .execute(connection)
    .await?;
    Ok(())
}

async fn write_history(connection: &mut PgConnection, batch: &Batch) -> Result<(), StoreError> {
    let (deleted, inserted) = batch.history.changes();
    if !deleted.is_empty() {
        // Every row holding a reversed line goes, whatever claim wrote it: the history is a set
        // of lines, as in the ledger.
        sqlx::query(
            "DELETE FROM line_history h
             USING unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::int8[])
                   AS d(member_id, service_date, provider_id, act, charged)
             WHERE h.member_id = d.member_id AND h.service_date = d.service_date
               AND h.provider_id = d.provider_id AND h.act = d.act AND h.charged = d.charged",
        )
        .bind(deleted.iter().map(|row| row.member_id.to_owned()).collect::<Vec<_>>())
        .bind(deleted.iter().map(|row| row.fingerprint.service_date.to_string()).collect::<Vec<_>>())
        .bind(deleted.iter().map(|row| row.fingerprint.provider_id.to_string()).collect::<Vec<_>>())
        .bind(deleted.iter().map(|row| row.fingerprint.act.to_string()).collect::<Vec<_>>())
        .bind(deleted.iter().map(|row| row.fingerprint.charged.minor_units()).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?;
    }
    if !inserted.is_empty() {
        sqlx::query(
            "INSERT INTO line_history
                 (member_id, service_date, provider_id, act, charged, origin_provider_id, origin_claim_id)
             SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[])",
        )
        .bind(inserted.iter().map(|row| row.member_id.to_owned()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.fingerprint.service_date.to_string()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.fingerprint.provider_id.to_string()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.fingerprint.act.to_string()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.fingerprint.charged.minor_units()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.origin.0.clone()).collect::<Vec<_>>())
        .bind(inserted.iter().map(|row| row.origin.1.clone()).collect::<Vec<_>>())
        .execute(connection)
        .await?;
    }
    Ok(())
}

async fn write_claims(connection: &mut PgConnection, batch: &Batch, placed: &[Placed]) -> Result<(), StoreError> {
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
    if columns.provider_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO claims (provider_id, claim_id, member_id, household_id, input, outcome, decision, message_id,
                             moves, fingerprints, reversal, reversal_message_id, updated_at)
         SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                     $7::text[]::jsonb[], $8::text[], $9::jsonb[], $10::jsonb[],
                                     $11::text[]::jsonb[], $12::text[])
         ON CONFLICT (provider_id, claim_id) DO UPDATE SET
             member_id = excluded.member_id, household_id = excluded.household_id, input = excluded.input,
             outcome = excluded.outcome, decision = excluded.decision, message_id = excluded.message_id,
             moves = excluded.moves, fingerprints = excluded.fingerprints, reversal = excluded.reversal,
             reversal_message_id = excluded.reversal_message_id, updated_at = excluded.updated_at",
    )
    .bind(&columns.provider_ids)
    .bind(&columns.claim_ids)
    .bind(&columns.member_ids)
    .bind(&columns.household_ids)
    .bind(&columns.inputs)
    .bind(&columns.outcomes)
    .bind(&columns.decisions)
    .bind(&columns.message_ids)
    .bind(&columns.moves)
    .bind(&columns.fingerprints)
    .bind(&columns.reversals)
    .bind(&columns.reversal_message_ids)
    .execute(connection)
    .await?;
    Ok(())
}

/// Remembers the invalid messages first decided in this batch, by the hash of their bytes, and
/// the messages refused for their submitter, by their bytes and submitter.
async fn write_rejected(connection: &mut PgConnection, batch: &Batch, placed: &[Placed]) -> Result<(), StoreError> {
    let (mut keys, mut decisions, mut message_ids) = (Vec::new(), Vec::new(), Vec::new());
    for (key, index) in &batch.new_rejected {
        let pending = DecisionRef::Pending(*index);
        let (body, message_id) = resolve_text(&pending, placed)?;
        keys.push(key.clone());
        decisions.push(body);
        message_ids.push(message_id.to_owned());
    }
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO rejected_messages (body_sha256, decision, message_id)
         SELECT * FROM unnest($1::text[], $2::text[]::jsonb[], $3::text[])",
    )
    .bind(&keys)
    .bind(&decisions)
    .bind(&message_ids)
    .execute(connection)
    .await?;
    Ok(())
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
