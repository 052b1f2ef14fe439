//! The outbox: messages written in the same transaction as the decision they announce, so a
//! decision can never be recorded and then forgotten. The worker publishes them right after
//! the commit and marks them published once the broker confirms; rows a crashed publisher left
//! behind are handed out again by [`pending`].
//!
//! Message ids are derived from the audit sequence (`decision-<seq>`,
//! `payment-<seq>-<scheme>-<payee>`), so a message published twice carries the same id and a
//! consumer can drop the duplicate.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use claims_domain::decision::{Decision, Outcome, Payee};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::audit::Placed;
use crate::{Destination, OutboxMessage, StoreError};

/// How long a row handed out by [`pending`] is kept from other publishers: by then the one that
/// took it has had it confirmed (and marked) or has died.
pub const PUBLISH_LEASE: Duration = Duration::from_secs(60);

/// The messages announcing a new decision: the decision, one payment/v1 per payment, and the
/// decision again to the reply queue when the claim asked for one.
pub(crate) fn for_new_decision(
    decision: &Decision,
    placed: &Placed,
    reply_to: Option<&str>,
    correlation_id: Option<&str>,
) -> Vec<OutboxMessage> {
    let body = placed.text.as_bytes();
    let mut messages = vec![decision_message(&placed.body, body, &placed.message_id)];
    let mut payment_ids: HashSet<String> = HashSet::new();
    for payment in &decision.payments {
        let scheme = payment.scheme.name();
        let payee = payment.payee.name();
        let mut message_id = format!("payment-{}-{scheme}-{payee}", placed.sequence);
        // One payment per scheme and payee is the rule; should a decision ever hold two, each
        // still gets its own stable id.
        let mut suffix = 1;
        while !payment_ids.insert(message_id.clone()) {
            suffix += 1;
            message_id = format!("payment-{}-{scheme}-{payee}-{suffix}", placed.sequence);
        }
        let mut body = json!({
            "schema": "payment/v1",
            "message_id": message_id,
            "claim_id": decision.claim_id,
            "provider_id": decision.provider_id,
            "member_id": decision.member_id,
            "currency": decision.currency.map(|currency| currency.code().to_owned()),
            "scheme": scheme,
            "payee": payee,
            "payee_id": payment.payee_id,
            "amount": payment.amount.minor_units(),
            "outcome": decision.outcome.name(),
            "audit": {"seq": placed.sequence, "hash": placed.hash},
        });
        if decision.outcome == Outcome::Reversed
            && let Some(reversed) = &decision.reverses
        {
            body["reverses"] = json!(reversed);
        }
        let routing = match payment.payee {
            Payee::Provider => "third_party",
            Payee::Member => "reimbursement",
        };
        messages.push(OutboxMessage {
            outbox_id: None,
            destination: Destination::Payments,
            routing_key: format!("{routing}.{scheme}"),
            message_id,
            correlation_id: None,
            body: body.to_string().into_bytes(),
        });
    }
    if let Some(queue) = reply_to {
        messages.push(reply(body, &placed.message_id, queue, correlation_id));
    }
    messages
}

/// A stored decision given again: the same body and message id, with no outbox row (nothing
/// new was recorded; if this publish is lost, the redelivered input asks again).
pub(crate) fn for_repeat(
    body: &Value,
    message_id: &str,
    reply_to: Option<&str>,
    correlation_id: Option<&str>,
) -> Vec<OutboxMessage> {
    let text = body.to_string().into_bytes();
    let mut messages = vec![decision_message(body, &text, message_id)];
    if let Some(queue) = reply_to {
        messages.push(reply(&text, message_id, queue, correlation_id));
    }
    messages
}

/// The decision message: `text` is `body` serialized.
fn decision_message(body: &Value, text: &[u8], message_id: &str) -> OutboxMessage {
    let outcome = body.get("outcome").and_then(Value::as_str).unwrap_or("rejected");
    OutboxMessage {
        outbox_id: None,
        destination: Destination::Decisions,
        routing_key: format!("decision.{outcome}"),
        message_id: message_id.to_owned(),
        correlation_id: None,
        body: text.to_vec(),
    }
}

fn reply(text: &[u8], message_id: &str, queue: &str, correlation_id: Option<&str>) -> OutboxMessage {
    OutboxMessage {
        outbox_id: None,
        destination: Destination::ReplyTo(queue.to_owned()),
        routing_key: queue.to_owned(),
        message_id: message_id.to_owned(),
        correlation_id: correlation_id.map(str::to_owned),
        body: text.to_vec(),
    }
}

fn destination_columns(destination: &Destination) -> (&'static str, Option<String>) {
    match destination {
        Destination::Decisions => ("decisions", None),
        Destination::Payments => ("payments", None),
        Destination::ReplyTo(queue) => ("reply", Some(queue.clone())),
    }
}

fn destination_from_columns(name: &str, reply_to: Option<String>) -> Result<Destination, StoreError> {
    match (name, reply_to) {
        ("decisions", _) => Ok(Destination::Decisions),
        ("payments", _) => Ok(Destination::Payments),
        ("reply", Some(queue)) => Ok(Destination::ReplyTo(queue)),
        (other, _) => Err(StoreError::Corrupt(format!("outbox destination {other:?}"))),
    }
}

/// One array per column of `outbox`, for a single `unnest` insert.
#[derive(Default)]
pub(crate) struct OutboxColumns {
    pub destinations: Vec<String>,
    pub reply_tos: Vec<Option<String>>,
    pub routing_keys: Vec<String>,
    pub message_ids: Vec<String>,
    pub correlation_ids: Vec<Option<String>>,
    pub bodies: Vec<Vec<u8>>,
}

/// The messages as outbox columns.
pub(crate) fn columns(messages: &[&mut OutboxMessage]) -> OutboxColumns {
    let mut columns = OutboxColumns::default();
    for message in messages {
        let (destination, reply_to) = destination_columns(&message.destination);
        columns.destinations.push(destination.to_owned());
        columns.reply_tos.push(reply_to);
        columns.routing_keys.push(message.routing_key.clone());
        columns.message_ids.push(message.message_id.clone());
        columns.correlation_ids.push(message.correlation_id.clone());
        columns.bodies.push(message.body.clone());
    }
    columns
}

/// An inserted row as `RETURNING id, destination, reply_to, message_id` gives it.
pub(crate) type InsertedRow = (i64, String, Option<String>, String);

/// Sets each message's `outbox_id` from the rows its insert returned.
pub(crate) fn assign_ids(messages: &mut [&mut OutboxMessage], rows: Vec<InsertedRow>) -> Result<(), StoreError> {
    // RETURNING's row order is not promised; (destination, queue, message id) is unique within
    // a batch, so match on it.
    let ids: HashMap<(String, Option<String>, String), i64> = rows
        .into_iter()
        .map(|(id, destination, reply_to, message_id)| ((destination, reply_to, message_id), id))
        .collect();
    for message in messages.iter_mut() {
        let (destination, reply_to) = destination_columns(&message.destination);
        let key = (destination.to_owned(), reply_to, message.message_id.clone());
        message.outbox_id =
            Some(*ids.get(&key).ok_or_else(|| StoreError::Corrupt(format!("outbox row for {} not returned", key.2)))?);
    }
    Ok(())
}

/// Rows not yet published and older than `older_than`, oldest first, taken for
/// [`PUBLISH_LEASE`]: `FOR UPDATE SKIP LOCKED` keeps two publishers from taking the same rows
/// at the same instant, the lease keeps them apart while the first is publishing.
pub(crate) async fn pending(pool: &PgPool, older_than: Duration, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
    type Row = (i64, String, Option<String>, String, String, Option<String>, Vec<u8>);
    let rows: Vec<Row> = sqlx::query_as(
        "WITH taken AS (
             SELECT id FROM outbox
             WHERE published_at IS NULL
               AND created_at <= now() - $1::int8 * interval '1 millisecond'
               AND (claimed_until IS NULL OR claimed_until <= now())
             ORDER BY id
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE outbox o SET claimed_until = now() + $3::int8 * interval '1 millisecond'
         FROM taken WHERE o.id = taken.id
         RETURNING o.id, o.destination, o.reply_to, o.routing_key, o.message_id, o.correlation_id, o.body",
    )
    .bind(milliseconds(older_than))
    .bind(limit)
    .bind(milliseconds(PUBLISH_LEASE))
    .fetch_all(pool)
    .await?;
    let mut messages = rows
        .into_iter()
        .map(|(id, destination, reply_to, routing_key, message_id, correlation_id, body)| {
            Ok(OutboxMessage {
                outbox_id: Some(id),
                destination: destination_from_columns(&destination, reply_to)?,
                routing_key,
                message_id,
                correlation_id,
                body,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    messages.sort_by_key(|message| message.outbox_id);
    Ok(messages)
}

pub(crate) async fn mark_published(pool: &PgPool, outbox_ids: &[i64]) -> Result<(), StoreError> {
    if outbox_ids.is_empty() {
        return Ok(());
    }
    // Committed without waiting for the disk (the statement's own transaction sets
    // `synchronous_commit = off` before its commit). The mark only spares the relay work: if a
    // crash loses it, the relay publishes those rows again, which consumers already expect
    // (at-least-once, one `message_id` per decision). Waiting for an fsync here held up the
    // worker's next acknowledgement by a disk flush.
    sqlx::query(
        "UPDATE outbox SET published_at = now()
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS without_flush
         WHERE id = ANY($1) AND published_at IS NULL",
    )
    .bind(outbox_ids)
    .execute(pool)
    .await?;
    Ok(())
}

fn milliseconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
