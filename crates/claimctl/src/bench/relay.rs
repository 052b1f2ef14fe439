//! The relay ceiling: a consumer with the worker's delivery guarantees and nothing else.
//! Micro-batches as the worker's (same size and prefetch, closed the same way), one reply per claim
//! published persistent with a confirm, one `multiple` ack per batch once every confirm is in;
//! confirms of batch N are awaited while batch N+1 is collected and published, as the worker
//! overlaps its stages. No database, no rules, no decision, payment or dead-letter messages.
//!
//! Given what the engine announced per claim ([`Replies::announced`]), it also publishes, for
//! each claim, the decision/v1 and payment messages the worker published for the claim of the
//! same index: same exchanges, routing keys and sizes. That run is the broker work of the engine
//! without its database and rules.
//!
//! It runs on a runtime (and threads) of its own, so the load generator's runtime does not
//! schedule it; its CPU time is counted with the bench process's.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use claims_worker::Topology;
use claims_worker::batch::{self, BatchEnd, BatchSettings, Collected};
use claims_worker::publish::{CONFIRM_TIMEOUT, Pending, send_in_order};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::{mpsc, watch};

use crate::bench::setup::{Announced, AnnouncedTo};

/// What the relay publishes for each claim.
#[derive(Debug, Clone)]
pub struct Replies {
    /// The size of the reply to every claim.
    pub reply_bytes: usize,
    /// Besides the reply, what the engine published for the claim whose correlation id ends in
    /// the same index; `None`: the reply only.
    pub announced: Option<Arc<HashMap<usize, Vec<Announced>>>>,
}

pub struct Relay {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<anyhow::Result<u64>>,
}

impl Relay {
    /// Starts consuming `topology`'s work queue; returns once the consumer is registered.
    pub fn start(
        amqp_url: &str,
        topology: &Topology,
        prefetch: u16,
        settings: BatchSettings,
        replies: Replies,
    ) -> anyhow::Result<Relay> {
        let (stop, stopped) = watch::channel(false);
        let (ready, is_ready) = std::sync::mpsc::channel();
        let amqp_url = amqp_url.to_owned();
        let topology = topology.clone();
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the relay's runtime")?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(relay(&amqp_url, &topology, prefetch, settings, replies, ready, stopped))
        });
        match is_ready.recv() {
            Ok(()) => Ok(Relay { stop, thread }),
            // The thread ended before it was ready: its error says why.
            Err(_) => match thread.join() {
                Ok(Err(error)) => Err(error.context("starting the relay")),
                _ => bail!("the relay stopped before consuming"),
            },
        }
    }

    /// Stops consuming once the batch in hand is acknowledged.
    /// Returns how many decision and payment messages it published besides the replies.
    pub fn stop(self) -> anyhow::Result<u64> {
        let _ = self.stop.send(true);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the relay thread panicked"),
        }
    }
}

async fn relay(
    amqp_url: &str,
    topology: &Topology,
    prefetch: u16,
    settings: BatchSettings,
    replies: Replies,
    ready: std::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let connect =
        |name: &str| Connection::connect(amqp_url, ConnectionProperties::default().with_connection_name(name.into()));
    let consume_connection = connect("claimctl bench relay consume").await?;
    let publish_connection = connect("claimctl bench relay publish").await?;
    let channel = consume_connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions { global: false }).await?;
    let publisher = publish_connection.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions { nowait: false }).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(topology.submit_queue.as_str()),
            ShortString::default(),
            BasicConsumeOptions { no_local: false, no_ack: false, exclusive: false, nowait: false },
            FieldTable::default(),
        )
        .await?;
    let _ = ready.send(());
    let body = reply_body(replies.reply_bytes);
    // One body per size announced, made once.
    let announced = replies.announced.unwrap_or_default();
    let bodies: HashMap<usize, Vec<u8>> =
        announced.values().flatten().map(|message| (message.bytes, reply_body(message.bytes))).collect();
    let exchange = |to: AnnouncedTo| match to {
        AnnouncedTo::Decisions => ShortString::from(topology.decisions_exchange.as_str()),
        AnnouncedTo::Payments => ShortString::from(topology.payments_exchange.as_str()),
    };

    let (to_ack, mut acking) = mpsc::channel::<(Pending, Delivery)>(1);
    // Borrowed, not moved into the stage below: a channel closes when its handle is dropped,
    // and the acking stage may still be waiting for the last batch's confirms on it.
    let publisher = &publisher;
    // Owns the sender: when it ends, the acking stage drains what is left and ends too.
    let collect_and_publish = async move {
        let mut announced_sent = 0_u64;
        loop {
            // No previous batch is ever being decided (the relay decides nothing), so batches are
            // closed as the worker closes them when its database is free.
            let Collected { items, end } = batch::collect(&mut consumer, settings, &mut None, &mut stop).await;
            if let Some(BatchEnd::Failed(error)) = end {
                return Err(anyhow::Error::from(error).context("consuming claims"));
            }
            // Queued as the worker queues a batch (`send_in_order`), so that the ceiling stays the
            // best a worker publishing this way could do.
            let mut sends = Vec::with_capacity(items.len());
            for delivery in &items {
                let Some(reply_to) = delivery.properties.reply_to().clone() else { continue };
                let mut properties = BasicProperties::default().with_delivery_mode(2);
                if let Some(correlation) = delivery.properties.correlation_id() {
                    properties = properties.with_correlation_id(correlation.clone());
                }
                let index = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().rsplit_once('-'))
                    .and_then(|(_, index)| index.parse::<usize>().ok());
                for message in index.and_then(|index| announced.get(&index)).into_iter().flatten() {
                    let Some(body) = bodies.get(&message.bytes) else { continue };
                    sends.push(publisher.basic_publish(
                        exchange(message.exchange),
                        message.routing_key.as_str().into(),
                        BasicPublishOptions { mandatory: false, immediate: false },
                        body,
                        BasicProperties::default().with_delivery_mode(2),
                    ));
                    announced_sent += 1;
                }
                sends.push(publisher.basic_publish(
                    ShortString::default(),
                    reply_to,
                    BasicPublishOptions { mandatory: false, immediate: false },
                    &body,
                    properties,
                ));
            }
            let mut pending = Pending::default();
            for sent in send_in_order(sends).await {
                pending.push(String::new(), sent?);
            }
            if let Some(last) = items.into_iter().last()
                && to_ack.send((pending, last)).await.is_err()
            {
                return Ok(announced_sent);
            }
            if end.is_some() {
                return Ok(announced_sent);
            }
        }
    };
    let confirm_and_ack = async {
        while let Some((pending, last)) = acking.recv().await {
            pending.confirmed(CONFIRM_TIMEOUT).await?;
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
        anyhow::Ok(())
    };
    let (published, acked) = tokio::join!(collect_and_publish, confirm_and_ack);
    let announced_sent = published?;
    acked?;
    for connection in [&consume_connection, &publish_connection] {
        crate::bench::setup::close_connection(connection, "relay done").await;
    }
    Ok(announced_sent)
}

/// A JSON body of exactly `bytes` bytes (at least the braces and key), standing in for a decision.
fn reply_body(bytes: usize) -> Vec<u8> {
    let frame = r#"{"pad":""}"#;
    let mut body = String::with_capacity(bytes.max(frame.len()));
    body.push_str(r#"{"pad":""#);
    body.extend(std::iter::repeat_n('x', bytes.saturating_sub(frame.len())));
    body.push_str(r#""}"#);
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_has_the_size_asked_for() {
        assert_eq!(reply_body(1500).len(), 1500);
        assert_eq!(reply_body(0), br#"{"pad":""}"#);
        let parsed: serde_json::Value = serde_json::from_slice(&reply_body(40)).unwrap_or_default();
        assert_eq!(parsed["pad"].as_str().map(str::len), Some(30));
    }
}
