//! What happens to one micro-batch: [`decide_batch`] (bodies to the store, one transaction),
//! [`publish_batch`] (publish everything it produced, confirms requested) and [`acknowledge`]
//! (wait for the confirms, one `multiple` ack on the batch's highest delivery tag, mark the
//! outbox).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claims_store::{Destination, Handled, Incoming, Store};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, ShortString};
use tokio::sync::watch;

use crate::publish::{self, CONFIRM_TIMEOUT, Outgoing, Pending, Publisher};
use crate::{Shared, WorkerError, decide};

/// A batch the store has answered, on its way to being published and acknowledged.
pub(crate) struct Decided {
    /// In delivery order, all from the session's one consumer channel.
    deliveries: Vec<Delivery>,
    /// One answer per delivery; `None`: hand the batch back to the queue (a stop came while
    /// the database was unreachable).
    handled: Option<Vec<Handled>>,
}

/// Has the store decide the UTF-8 bodies of `deliveries` (the others are dead-lettered).
pub(crate) async fn decide_batch(
    shared: &Shared,
    deliveries: Vec<Delivery>,
    stop: &mut watch::Receiver<bool>,
    on_locked: &mut (dyn FnMut() + Send),
) -> Result<Decided, WorkerError> {
    shared.metrics.received(deliveries.len());
    let mut handled: Vec<Option<Handled>> = vec![None; deliveries.len()];
    let mut incoming = Vec::with_capacity(deliveries.len());
    for (slot, delivery) in handled.iter_mut().zip(&deliveries) {
        match std::str::from_utf8(&delivery.data) {
            Ok(text) => incoming.push(Incoming {
                body: text.to_owned(),
                reply_to: delivery.properties.reply_to().as_ref().map(ToString::to_string),
                correlation_id: delivery.properties.correlation_id().as_ref().map(ToString::to_string),
                // RabbitMQ closes the channel of a publisher that sets `user_id` to anyone but
                // its own user, so this names who published: the store checks it against the
                // provider's submitters.
                user_id: delivery.properties.user_id().as_ref().map(ToString::to_string),
            }),
            Err(error) => {
                *slot = Some(Handled::DeadLetter { reason: claims_domain::contract::not_utf8(&error).reason.text });
            }
        }
    }
    let Some(answers) = decide::decide(shared, &incoming, stop, on_locked).await else {
        return Ok(Decided { deliveries, handled: None });
    };
    if answers.len() != incoming.len() {
        return Err(WorkerError::StoreAnswer { messages: incoming.len(), answers: answers.len() });
    }
    let mut answers = answers.into_iter();
    let handled = handled.into_iter().filter_map(|slot| slot.or_else(|| answers.next())).collect();
    Ok(Decided { deliveries, handled: Some(handled) })
}

/// A batch whose messages are published and whose confirms are awaited next.
pub(crate) enum Published {
    /// The store could not decide the batch (a stop was asked for while the database was
    /// failing): hand it back to the queue.
    HandBack(Delivery),
    Sent(Sent),
}

pub(crate) struct Sent {
    /// The batch's last delivery: one `multiple` ack on it covers the batch.
    last: Delivery,
    batch: usize,
    pending: Pending,
    outbox_ids: Vec<i64>,
    /// Sent times (the submitter's `timestamp_in_ms`) of the decided messages.
    sent_at: Vec<SystemTime>,
    /// The routing outcome (`complete`, `partial`, …) of every decision published.
    outcomes: Vec<String>,
    dead_letters: usize,
}

/// Publishes what the store returned and the dead letters, without waiting for the confirms
/// ([`acknowledge`] does, so that the next batch is published meanwhile).
pub(crate) async fn publish_batch(publisher: &Publisher, batch: Decided) -> Result<Option<Published>, WorkerError> {
    let Decided { mut deliveries, handled } = batch;
    let Some(handled) = handled else {
        return Ok(deliveries.pop().map(Published::HandBack));
    };
    let mut outgoing = Vec::new();
    let mut outbox_ids = Vec::new();
    let mut outcomes = Vec::new();
    let mut sent = Vec::new();
    let mut dead_letters = 0_usize;
    for (delivery, handled) in deliveries.iter().zip(&handled) {
        match handled {
            Handled::Publish(messages) => {
                for message in messages {
                    outgoing.push(Outgoing::Message(message));
                    if message.destination == Destination::Decisions {
                        let outcome = message.routing_key.strip_prefix("decision.").unwrap_or(&message.routing_key);
                        outcomes.push(outcome.to_owned());
                    }
                }
                outbox_ids.extend(publish::outbox_ids(messages));
                sent.extend(sent_at(&delivery.properties));
            }
            Handled::DeadLetter { reason } => {
                tracing::warn!(
                    message_id = delivery.properties.message_id().as_ref().map(ShortString::as_str),
                    reason = %without_excerpts(reason),
                    "dead-lettering a message"
                );
                outgoing.push(Outgoing::DeadLetter {
                    routing_key: delivery.routing_key.as_str(),
                    original: &delivery.properties,
                    body: &delivery.data,
                    reason,
                });
                dead_letters += 1;
            }
        }
    }
    let mut pending = Pending::default();
    publisher.publish_all(&outgoing, &mut pending).await?;
    drop(outgoing);
    let batch = deliveries.len();
    let Some(last) = deliveries.pop() else { return Ok(None) };
    Ok(Some(Published::Sent(Sent { last, batch, pending, outbox_ids, sent_at: sent, outcomes, dead_letters })))
}

/// Waits for every confirm of a published batch, then acknowledges the whole batch at once;
/// returns its outbox rows, to [`mark`] published. Batches must come here in the order they
/// were received: a `multiple` ack or nack covers every earlier delivery of the channel.
pub(crate) async fn acknowledge(shared: &Shared, published: Published) -> Result<Vec<i64>, WorkerError> {
    let sent = match published {
        Published::HandBack(last) => {
            // Explicit, though closing the channel would have the same effect.
            last.acker.nack(BasicNackOptions { multiple: true, requeue: true }).await?;
            return Ok(Vec::new());
        }
        Published::Sent(sent) => sent,
    };
    let Sent { last, batch, pending, outbox_ids, sent_at, outcomes, dead_letters } = sent;
    let published = pending.len();
    pending.confirmed(CONFIRM_TIMEOUT).await?;

    let now = SystemTime::now();
    for sent in sent_at {
        if let Ok(elapsed) = now.duration_since(sent) {
            shared.metrics.end_to_end(elapsed);
        }
    }
    for outcome in &outcomes {
        shared.metrics.decided(outcome);
    }
    for _ in 0..dead_letters {
        shared.metrics.dead_lettered();
    }
    // One ack for the whole batch, on the channel that delivered it. `false` means the channel
    // closed under us: the broker will redeliver, and the store will answer with what it kept.
    if !last.acker.ack(BasicAckOptions { multiple: true }).await? {
        return Err(WorkerError::ChannelClosed);
    }
    let outcomes: Vec<&str> = outcomes.iter().map(String::as_str).collect();
    tracing::info!(
        batch,
        published,
        dead_letters,
        complete = count(&outcomes, "complete"),
        partial = count(&outcomes, "partial"),
        rejected = count(&outcomes, "rejected"),
        error = count(&outcomes, "error"),
        reversed = count(&outcomes, "reversed"),
        "batch done"
    );
    Ok(outbox_ids)
}

/// Marks a batch's outbox rows published. This only spares the relay work: if it fails, the
/// rows stay pending and the relay sends them again later (same message ids, so downstream
/// drops the repeats).
pub(crate) async fn mark(store: Store, outbox_ids: Vec<i64>) {
    if let Err(error) = store.mark_published(&outbox_ids).await {
        tracing::warn!(%error, rows = outbox_ids.len(), "could not mark outbox rows published");
    }
}

fn count(outcomes: &[&str], outcome: &str) -> usize {
    outcomes.iter().filter(|candidate| **candidate == outcome).count()
}

/// A dead-letter reason as logged: what it quotes of the message (a string, a number) becomes
/// `…`. A poison message can be a whole claim sent as one JSON string, and the logs hold no
/// health data; the full reason travels in the dead letter's `x-claims-error` header.
fn without_excerpts(reason: &str) -> String {
    let mut logged = String::with_capacity(reason.len());
    let mut characters = reason.chars();
    while let Some(character) = characters.next() {
        logged.push(character);
        if character == '"' {
            // A quoted excerpt (Rust's `{:?}`, so an inner quote is escaped): skip to its end.
            let mut escaped = false;
            for quoted in characters.by_ref() {
                match quoted {
                    '"' if !escaped => break,
                    '\\' if !escaped => escaped = true,
                    _ => escaped = false,
                }
            }
            logged.push_str("…\"");
        }
    }
    match logged.split_once("the number ") {
        Some((before, after)) => {
            let rest =
                after.trim_start_matches(|c: char| c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+'));
            format!("{before}the number …{rest}")
        }
        None => logged,
    }
}

/// When the claim was sent: the `timestamp_in_ms` header (the convention of RabbitMQ's
/// message-timestamp plugin, and what `claimctl submit` sets) or else the AMQP `timestamp`
/// property, which has whole seconds only.
fn sent_at(properties: &BasicProperties) -> Option<SystemTime> {
    let header = properties.headers().as_ref().and_then(|headers| headers.inner().get("timestamp_in_ms"));
    let millis = match header {
        Some(AMQPValue::LongLongInt(millis)) => u64::try_from(*millis).ok(),
        Some(AMQPValue::Timestamp(millis)) => Some(*millis),
        Some(AMQPValue::LongUInt(millis)) => Some(u64::from(*millis)),
        _ => properties.timestamp().and_then(|seconds| seconds.checked_mul(1000)),
    }?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use lapin::types::FieldTable;

    use super::*;

    #[test]
    fn the_millisecond_header_wins_over_the_seconds_property() {
        let mut headers = FieldTable::default();
        headers.insert("timestamp_in_ms".into(), AMQPValue::LongLongInt(1_700_000_000_123));
        let properties = BasicProperties::default().with_timestamp(1_700_000_000).with_headers(headers);
        assert_eq!(sent_at(&properties), UNIX_EPOCH.checked_add(Duration::from_millis(1_700_000_000_123)));
        let seconds_only = BasicProperties::default().with_timestamp(1_700_000_000);
        assert_eq!(sent_at(&seconds_only), UNIX_EPOCH.checked_add(Duration::from_secs(1_700_000_000)));
        assert_eq!(sent_at(&BasicProperties::default()), None);
    }

    #[test]
    fn logged_dead_letter_reasons_quote_nothing_of_the_message() {
        let cases = [
            (
                r#"expected a JSON object, got the string "{\"member_id\":\"M-1\",\"act\":\"G\"""#,
                r#"expected a JSON object, got the string "…""#,
            ),
            (
                r#"schema: unknown schema "G M-1" (expected claim/v1 or cancellation/v1)"#,
                r#"schema: unknown schema "…" (expected claim/v1 or cancellation/v1)"#,
            ),
            ("schema: expected a string, got the number 4150", "schema: expected a string, got the number …"),
            (
                "not valid JSON: EOF while parsing a string at line 1 column 150",
                "not valid JSON: EOF while parsing a string at line 1 column 150",
            ),
        ];
        for (reason, logged) in cases {
            assert_eq!(without_excerpts(reason), logged);
        }
    }
}
