//! The provider's side, for `claimctl submit`: publish claim/v1 and cancellation/v1 lines to the
//! claims exchange with publisher confirms and, on request, wait for every decision on a
//! private reply queue.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

use crate::WorkerError;
use crate::publish::{CONFIRM_TIMEOUT, Pending};
use crate::topology::{Topology, declare_topology};

/// Unconfirmed publishes allowed before waiting for their confirms: enough to keep the broker
/// busy, bounded so a stalled broker does not pile up the whole file in memory.
const CONFIRM_WINDOW: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Wait for a decision per message (on a private reply queue).
    pub wait: bool,
    /// How long to wait for the decisions, counted from the last confirm.
    pub timeout: Duration,
}

/// A message whose decision did not arrive in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// 1-based line number in the input.
    pub line: usize,
    /// `provider_id:claim_id` when the line says so.
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitReport {
    pub published: usize,
    pub decisions: usize,
    pub missing: Vec<Missing>,
}

/// `provider_id:claim_id`, the idempotency key of a claim or cancellation, when readable.
pub fn message_id(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    let provider = value.get("provider_id")?.as_str()?;
    let claim = value.get("claim_id")?.as_str()?;
    let id = format!("{provider}:{claim}");
    // An AMQP short string holds 255 bytes; a longer id is simply not set.
    (id.len() <= 255).then_some(id)
}

/// The broker user an AMQP URL connects as (RabbitMQ's default `guest` when it names none), the
/// `user_id` a message published on that connection must carry. `None` when the URL does not
/// parse (connecting then fails with the reason).
pub fn amqp_user(amqp_url: &str) -> Option<String> {
    amqp_url.parse::<AMQPUri>().ok().map(|uri| uri.authority.userinfo.username)
}

/// Publishes every non-blank line of `lines` (1-based line numbers are kept for messages).
/// With `options.wait`, calls `on_decision` with each decision/v1 body as it arrives and
/// reports the messages still without one after `options.timeout`.
pub async fn submit(
    amqp_url: &str,
    prefix: &str,
    lines: &[String],
    options: SubmitOptions,
    mut on_decision: impl FnMut(&[u8]),
) -> Result<SubmitReport, WorkerError> {
    let topology = Topology::with_prefix(prefix);
    let connection =
        Connection::connect(amqp_url, ConnectionProperties::default().with_connection_name("claimctl submit".into()))
            .await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions { nowait: false }).await?;
    // Claims sent before any worker ever ran must wait in the queue, not vanish at an
    // exchange with no binding.
    declare_topology(&channel, &topology).await?;

    let mut replies = None;
    if options.wait {
        let mut arguments = FieldTable::default();
        // Classic: quorum queues cannot be exclusive or server-named, and replies are
        // disposable (a lost one shows up as missing).
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
        let queue = channel
            .queue_declare(
                // Server-named (amq.gen-…): unique without coordination.
                ShortString::default(),
                // Only this connection reads it; it disappears with us.
                QueueDeclareOptions {
                    passive: false,
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    nowait: false,
                },
                arguments,
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                ShortString::default(),
                // Automatic acks: the queue is private and transient, so there is nobody to
                // redeliver to.
                BasicConsumeOptions { no_local: false, no_ack: true, exclusive: true, nowait: false },
                FieldTable::default(),
            )
            .await?;
        replies = Some((queue.name().clone(), consumer));
    }

    // The worker decides a claim only if its `user_id` is a user the registry lists for the
    // claim's provider, and the broker accepts only our own user there.
    let user_id = amqp_user(amqp_url);
    let run_id = run_id();
    let mut waiting: BTreeMap<String, Missing> = BTreeMap::new();
    let mut pending = Pending::default();
    let mut published = 0;
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut headers = FieldTable::default();
        // Milliseconds, for the worker's end-to-end histogram (the property has seconds).
        headers.insert(
            "timestamp_in_ms".into(),
            AMQPValue::LongLongInt(i64::try_from(now.as_millis()).unwrap_or(i64::MAX)),
        );
        let message_id = message_id(line);
        let correlation_id = format!("{run_id}-{}", index + 1);
        let mut properties = BasicProperties::default()
            // Persistent, so a claim survives a broker restart (quorum queues persist anyway).
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_timestamp(now.as_secs())
            .with_headers(headers)
            .with_correlation_id(correlation_id.as_str().into());
        if let Some(id) = &message_id {
            properties = properties.with_message_id(id.as_str().into());
        }
        if let Some(user) = &user_id {
            properties = properties.with_user_id(user.as_str().into());
        }
        if let Some((queue, _)) = &replies {
            properties = properties.with_reply_to(queue.clone());
        }
        let confirm = channel
            .basic_publish(
                ShortString::from(topology.claims_exchange.as_str()),
                "claim".into(),
                // Mandatory would only matter if the queue were unbound; we just declared it.
                BasicPublishOptions { mandatory: false, immediate: false },
                line.as_bytes(),
                properties,
            )
            .await?;
        pending.push(topology.claims_exchange.clone(), confirm);
        if pending.len() >= CONFIRM_WINDOW {
            std::mem::take(&mut pending).confirmed(CONFIRM_TIMEOUT).await?;
        }
        published += 1;
        waiting.insert(correlation_id, Missing { line: index + 1, message_id });
    }
    pending.confirmed(CONFIRM_TIMEOUT).await?;

    let mut report = SubmitReport { published, ..SubmitReport::default() };
    if let Some((_, mut consumer)) = replies {
        let deadline = tokio::time::Instant::now() + options.timeout;
        while !waiting.is_empty() {
            let Ok(next) = tokio::time::timeout_at(deadline, consumer.next()).await else { break };
            let Some(delivery) = next.transpose()? else { break };
            let correlation = delivery.properties.correlation_id().as_ref().map(ShortString::as_str);
            // Repeats (a worker redelivery publishes the stored decision again) are dropped.
            if let Some(correlation) = correlation
                && waiting.remove(correlation).is_some()
            {
                report.decisions += 1;
                on_decision(&delivery.data);
            }
        }
        report.missing = waiting.into_values().collect();
        report.missing.sort_by_key(|missing| missing.line);
    }
    let _ = connection.close(200, "submitted".into()).await;
    Ok(report)
}

/// Unique enough per run to tell our replies apart: process id and start time.
fn run_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("submit-{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_the_idempotency_key() {
        let line = r#"{"schema":"claim/v1","claim_id":"C-1","provider_id":"P-GP-0001"}"#;
        assert_eq!(message_id(line).as_deref(), Some("P-GP-0001:C-1"));
        assert_eq!(message_id("not json"), None);
        assert_eq!(message_id(r#"{"claim_id":"C-1"}"#), None);
        assert_eq!(message_id(r#"{"claim_id":1,"provider_id":"P"}"#), None);
    }

    #[test]
    fn the_user_id_is_the_user_the_url_connects_as() {
        assert_eq!(amqp_user("amqp://clinic-42:secret@broker:5672/%2f").as_deref(), Some("clinic-42"));
        assert_eq!(amqp_user("amqp://billing%40agent:pw@broker/%2f").as_deref(), Some("billing@agent"));
        // No user in the URL: RabbitMQ's default, which the connection logs in as.
        assert_eq!(amqp_user("amqp://broker:5672/%2f").as_deref(), Some("guest"));
        assert_eq!(amqp_user("not a url"), None);
    }
}
