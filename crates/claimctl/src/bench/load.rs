//! The load generator: publishes claims to the work queue with publisher confirms, as a provider
//! would, and times each one until its decision comes back on a private reply queue.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, PublisherConfirm};
use tokio::sync::Mutex;
use tokio::time::Instant;

use claims_worker::{Topology, declare_topology};

/// Unconfirmed publishes in flight: a sliding window as large as `claimctl submit`'s batch, so
/// the broker is never idle waiting for the publisher and never buried either.
const CONFIRM_WINDOW: usize = 256;

/// How claims are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the broker confirms them (within the confirm window).
    Saturate,
    /// One every 1/rate s from the start; latency counts from when each was due.
    PerSecond(u32),
}

/// What one run measured.
#[derive(Debug)]
pub struct Run {
    pub published: usize,
    /// Latency of each claim whose decision arrived, sorted.
    pub latencies: Vec<Duration>,
    /// From the first publish to the last decision received.
    pub elapsed: Duration,
    /// The decision bodies received (for outcomes and sizes), in arrival order.
    pub replies: Vec<Vec<u8>>,
}

/// Two connections, as in production: publishing (confirm mode) and receiving replies.
pub struct Client {
    publish_connection: Connection,
    reply_connection: Connection,
    channel: Channel,
    reply_queue: ShortString,
    replies: Mutex<Consumer>,
    topology: Topology,
    /// The `user_id` every claim carries: the URL's user, which the broker checks and the
    /// worker maps to the providers it may submit for (as `claimctl submit` does).
    user_id: ShortString,
}

impl Client {
    pub async fn connect(amqp_url: &str, topology: &Topology) -> anyhow::Result<Client> {
        let connect = |name: &str| {
            Connection::connect(amqp_url, ConnectionProperties::default().with_connection_name(name.into()))
        };
        let publish_connection = connect("claimctl bench publish").await.context("connecting to AMQP_URL")?;
        let reply_connection = connect("claimctl bench replies").await.context("connecting to AMQP_URL")?;
        let channel = publish_connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions { nowait: false }).await?;
        // Declared before the worker starts, so it finds the queue of the kind asked for.
        declare_topology(&channel, topology).await.context("declaring the bench's exchanges and queues")?;

        let reply_channel = reply_connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        // As `claimctl submit`: classic, exclusive, server-named, gone when we disconnect.
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
        let queue = reply_channel
            .queue_declare(
                ShortString::default(),
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
        let replies = reply_channel
            .basic_consume(
                queue.name().clone(),
                ShortString::default(),
                // Automatic acks: a private, transient queue; a lost reply shows up as missing.
                BasicConsumeOptions { no_local: false, no_ack: true, exclusive: true, nowait: false },
                FieldTable::default(),
            )
            .await?;
        Ok(Client {
            publish_connection,
            reply_connection,
            channel,
            reply_queue: queue.name().clone(),
            replies: Mutex::new(replies),
            topology: topology.clone(),
            user_id: claims_worker::submit::amqp_user(amqp_url).unwrap_or_else(|| "guest".to_owned()).into(),
        })
    }

    pub async fn close(self) {
        for connection in [&self.publish_connection, &self.reply_connection] {
            crate::bench::setup::close_connection(connection, "bench done").await;
        }
    }

    /// Publishes `claims` at `pace` and waits for their decisions (correlation ids
    /// `<tag>-<index>`); gives up `idle_timeout` after the last reply.
    pub async fn run(&self, tag: &str, claims: &[String], pace: Pace, idle_timeout: Duration) -> anyhow::Result<Run> {
        let mut replies = self.replies.lock().await;
        let mut sent_at: Vec<Option<Instant>> = vec![None; claims.len()];
        let mut received_at: Vec<Option<Instant>> = vec![None; claims.len()];
        let mut bodies = Vec::with_capacity(claims.len());
        let publishing = self.publish_all(tag, claims, pace, &mut sent_at);
        let receiving = async {
            let mut count = 0;
            while count < claims.len() {
                let Ok(next) = tokio::time::timeout(idle_timeout, replies.next()).await else { break };
                let Some(delivery) = next.transpose().context("receiving decisions")? else { break };
                let now = Instant::now();
                let Some(index) = correlation_index(&delivery.properties, tag) else { continue };
                // Repeats (a redelivered claim's stored decision) count once.
                if let Some(slot @ None) = received_at.get_mut(index) {
                    *slot = Some(now);
                    count += 1;
                    bodies.push(delivery.data);
                }
            }
            anyhow::Ok(())
        };
        let (published, received) = tokio::join!(publishing, receiving);
        published?;
        received?;

        let first = sent_at.iter().flatten().min().copied();
        let last = received_at.iter().flatten().max().copied();
        let elapsed = match (first, last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let mut latencies: Vec<Duration> = sent_at
            .iter()
            .zip(&received_at)
            .filter_map(|(sent, received)| Some(received.as_ref()?.saturating_duration_since(*sent.as_ref()?)))
            .collect();
        latencies.sort_unstable();
        Ok(Run { published: claims.len(), latencies, elapsed, replies: bodies })
    }

    async fn publish_all(
        &self,
        tag: &str,
        claims: &[String],
        pace: Pace,
        sent_at: &mut [Option<Instant>],
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut window: VecDeque<PublisherConfirm> = VecDeque::with_capacity(CONFIRM_WINDOW);
        for (index, (claim, sent)) in claims.iter().zip(sent_at.iter_mut()).enumerate() {
            let due = match pace {
                Pace::Saturate => Instant::now(),
                Pace::PerSecond(rate) => {
                    let due = start + Duration::from_secs_f64(index as f64 / f64::from(rate));
                    tokio::time::sleep_until(due).await;
                    due
                }
            };
            *sent = Some(due);
            let properties = BasicProperties::default()
                // Persistent, as a provider's claim must be.
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_correlation_id(format!("{tag}-{index}").into())
                .with_reply_to(self.reply_queue.clone())
                .with_user_id(self.user_id.clone());
            let confirm = self
                .channel
                .basic_publish(
                    ShortString::from(self.topology.claims_exchange.as_str()),
                    "claim".into(),
                    BasicPublishOptions { mandatory: false, immediate: false },
                    claim.as_bytes(),
                    properties,
                )
                .await
                .context("publishing a claim")?;
            window.push_back(confirm);
            if window.len() >= CONFIRM_WINDOW
                && let Some(oldest) = window.pop_front()
            {
                confirmed(oldest).await?;
            }
        }
        for confirm in window {
            confirmed(confirm).await?;
        }
        Ok(())
    }
}

async fn confirmed(confirm: PublisherConfirm) -> anyhow::Result<()> {
    match confirm.await.context("waiting for a publisher confirm")? {
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) => bail!("the broker refused (nacked) a claim: is the work queue full?"),
        Confirmation::NotRequested => bail!("the publishing channel is not in confirm mode"),
    }
}

/// The index in `<tag>-<index>`, when the correlation id is one of this run's.
fn correlation_index(properties: &BasicProperties, tag: &str) -> Option<usize> {
    let correlation = properties.correlation_id().as_ref()?.as_str();
    let (found_tag, index) = correlation.rsplit_once('-')?;
    (found_tag == tag).then(|| index.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_runs_correlation_ids_count() {
        let with = |id: &str| BasicProperties::default().with_correlation_id(id.into());
        assert_eq!(correlation_index(&with("P1000-42"), "P1000"), Some(42));
        assert_eq!(correlation_index(&with("E-42"), "P1000"), None);
        assert_eq!(correlation_index(&with("P1000-x"), "P1000"), None);
        assert_eq!(correlation_index(&BasicProperties::default(), "E"), None);
    }
}
