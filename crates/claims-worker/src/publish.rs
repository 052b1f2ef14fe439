//! Publishing with publisher confirms: outbox messages (decisions, payments, replies) and dead
//! letters. Nothing is acknowledged upstream until every confirm of a batch has come back, and
//! every wait for the broker is bounded (lapin `#409`: a publish can hang on broker shutdown).

use std::time::Duration;

use claims_store::OutboxMessage;
use futures_util::future::{join_all, maybe_done};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};

use crate::WorkerError;
use crate::topology::{Topology, declare_topology};

/// How long to wait for the broker to confirm a batch of publishes. A quorum queue's confirm
/// waits for an fsync; on this class of disk the p99 is well under a second, so 30 s means the
/// broker is in trouble and the session should be rebuilt.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying why the worker dead-lettered a message.
pub const ERROR_HEADER: &str = "x-claims-error";

/// AMQP `delivery_mode` 2: the broker writes the message to disk (classic queues; quorum
/// queues always do), so a decision survives a broker restart once confirmed.
const PERSISTENT: u8 = 2;

/// One confirm-mode channel and the names it publishes to.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Topology,
}

/// Publishes awaiting their confirms, with what to name in an error.
#[derive(Debug, Default)]
pub struct Pending {
    confirms: Vec<(String, PublisherConfirm)>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.confirms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.confirms.is_empty()
    }

    /// Adds the confirm of a message published to `exchange`.
    pub fn push(&mut self, exchange: String, confirm: PublisherConfirm) {
        self.confirms.push((exchange, confirm));
    }

    /// Waits for every confirm, at most `timeout`. A nack (the broker could not take the
    /// message, e.g. a full `reject-publish` queue) is an error, like a timeout.
    pub async fn confirmed(self, timeout: Duration) -> Result<(), WorkerError> {
        let (exchanges, confirms): (Vec<String>, Vec<PublisherConfirm>) = self.confirms.into_iter().unzip();
        let results = tokio::time::timeout(timeout, join_all(confirms))
            .await
            .map_err(|_| WorkerError::ConfirmTimeout(timeout))?;
        for (exchange, result) in exchanges.into_iter().zip(results) {
            match result? {
                // Unroutable messages are acked too (we never set `mandatory`), which is right:
                // a decisions exchange nobody listens to yet is not an error.
                Confirmation::Ack(_) => {}
                Confirmation::Nack(_) => return Err(WorkerError::Nacked { exchange }),
                // Every publisher channel is in confirm mode; if not, that is a bug worth a
                // loud failure rather than an ack on faith.
                Confirmation::NotRequested => return Err(WorkerError::ConfirmsOff),
            }
        }
        Ok(())
    }
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection, topology: &Topology) -> Result<Publisher, lapin::Error> {
        let channel = connection.create_channel().await?;
        // nowait false: the channel must be in confirm mode before the first publish.
        channel.confirm_select(ConfirmSelectOptions { nowait: false }).await?;
        Ok(Publisher { channel, topology: topology.clone() })
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes a batch's messages, in order, keeping their confirms in `pending`.
    pub async fn publish_all(&self, outgoing: &[Outgoing<'_>], pending: &mut Pending) -> Result<(), WorkerError> {
        let mut exchanges = Vec::with_capacity(outgoing.len());
        let mut sends = Vec::with_capacity(outgoing.len());
        for item in outgoing {
            let (exchange, routing_key, body, properties) = match item {
                Outgoing::Message(message) => {
                    let (exchange, routing_key) = self.topology.route(&message.destination, &message.routing_key);
                    (exchange, routing_key, message.body.as_slice(), message_properties(message)?)
                }
                Outgoing::DeadLetter { routing_key, original, body, reason } => (
                    self.topology.dead_letter_exchange.as_str(),
                    *routing_key,
                    *body,
                    dead_letter_properties(original, reason),
                ),
            };
            exchanges.push(exchange.to_owned());
            sends.push(self.channel.basic_publish(
                short_string(exchange)?,
                short_string(routing_key)?,
                // Not mandatory: nobody may be bound to the decisions, payments or dead-letter
                // exchange yet, and a reply queue may be gone (its submitter left); neither is
                // the worker's problem, and returns would only have to be ignored.
                BasicPublishOptions { mandatory: false, immediate: false },
                body,
                properties,
            ));
        }
        for (exchange, sent) in exchanges.into_iter().zip(send_in_order(sends).await) {
            pending.push(exchange, sent?);
        }
        Ok(())
    }

    /// Publishes one outbox message (a batch: [`Publisher::publish_all`]).
    pub async fn publish(&self, message: &OutboxMessage, pending: &mut Pending) -> Result<(), WorkerError> {
        self.publish_all(&[Outgoing::Message(message)], pending).await
    }
}

/// One message of a batch to publish.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// A decision, payment or reply from the outbox.
    Message(&'a OutboxMessage),
    /// A message the worker cannot decide, sent to the dead-letter exchange: the original body,
    /// routing key and properties, plus the reason in the `x-claims-error` header.
    DeadLetter { routing_key: &'a str, original: &'a BasicProperties, body: &'a [u8], reason: &'a str },
}

fn message_properties(message: &OutboxMessage) -> Result<BasicProperties, WorkerError> {
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(short_string(&message.message_id)?);
    if let Some(correlation_id) = &message.correlation_id {
        properties = properties.with_correlation_id(short_string(correlation_id)?);
    }
    Ok(properties)
}

fn dead_letter_properties(original: &BasicProperties, reason: &str) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(LongString::from(reason)));
    // Persistent: at-least-once dead lettering requires it, and the dead queue is where an
    // operator finds the message later.
    original.clone().with_headers(headers).with_delivery_mode(PERSISTENT)
}

/// Runs publishes of one channel and returns their results, in order.
///
/// lapin's `basic_publish` queues its frames (and takes its confirm's delivery tag) the first
/// time it is polled, wakes the connection's I/O thread, then waits until the frames are
/// written. Awaiting each publish in turn therefore costs a thread wake-up, a context switch
/// and a `write` per message: profiling the worker under `claimctl bench` found a third of its
/// CPU there. Polling every publish once, in order, before waiting for any queues the whole
/// batch first (the broker still receives it in this order), and the I/O thread writes it in a
/// few system calls.
pub async fn send_in_order<F: Future>(sends: Vec<F>) -> Vec<F::Output> {
    let mut sends: Vec<_> = sends.into_iter().map(|send| Box::pin(maybe_done(send))).collect();
    for send in &mut sends {
        // Ready or not, the frames are queued; a finished publish keeps its output in `MaybeDone`.
        let _ = futures_util::poll!(send.as_mut());
    }
    join_all(sends.iter_mut().map(|send| send.as_mut())).await;
    sends.iter_mut().filter_map(|send| send.as_mut().take_output()).collect()
}

/// An AMQP short string (at most 255 bytes) from our own text, as an error instead of lapin's
/// panic when it is longer.
fn short_string(text: &str) -> Result<ShortString, WorkerError> {
    ShortString::try_new(text).map_err(|_| WorkerError::TooLong(text.chars().take(40).collect()))
}

/// Connects, publishes `messages` with confirms and disconnects: for `claimctl claims retry`,
/// which re-adjudicates outside the worker and must publish what the store returned.
pub async fn publish_once(amqp_url: &str, prefix: &str, messages: &[OutboxMessage]) -> Result<(), WorkerError> {
    let topology = Topology::with_prefix(prefix);
    let connection = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let result = async {
        let publisher = Publisher::open(&connection, &topology).await?;
        // The exchanges may not exist yet on a fresh broker; declaring is idempotent.
        declare_topology(publisher.channel(), &topology).await?;
        let mut pending = Pending::default();
        let outgoing: Vec<Outgoing<'_>> = messages.iter().map(Outgoing::Message).collect();
        publisher.publish_all(&outgoing, &mut pending).await?;
        pending.confirmed(CONFIRM_TIMEOUT).await
    }
    .await;
    // Close even after an error, so the broker does not wait for a heartbeat to notice. Once
    // every message is confirmed a failed close handshake (e.g. the publisher's channel already
    // closing as it is dropped) loses nothing, so it is only worth a warning.
    if let Err(error) = connection.close(200, "done".into()).await {
        tracing::warn!(%error, "closing the publishing connection failed after all messages were confirmed");
    }
    result
}

/// An outbox id for every message that has one (repeats of stored decisions have none).
pub fn outbox_ids(messages: &[OutboxMessage]) -> Vec<i64> {
    messages.iter().filter_map(|message| message.outbox_id).collect()
}

/// Headers as text, for tests and tools reading dead letters.
pub fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::ShortString(value) => Some(value.to_string()),
        _ => None,
    }
}
