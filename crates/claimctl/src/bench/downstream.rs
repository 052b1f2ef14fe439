//! The systems downstream of the worker: a queue bound to the decisions exchange and one bound
//! to the payments exchange, each drained by a consumer that acknowledges in batches.
//!
//! Production has them (the payment system, whoever follows decisions); a bare topology does
//! not, and a message published to an exchange with no queue bound is dropped on arrival. Without
//! them the broker would never store or deliver 2.7 of the 3.7 messages a claim publishes, which
//! flatters the engine and makes the relay's one reply per claim look like the same work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use claims_worker::batch::{self, BatchSettings, Collected};
use claims_worker::{QueueType, Topology};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bench::queue_type_name;
use crate::bench::setup::close_connection;

/// Deliveries a downstream consumer may hold unacknowledged.
const PREFETCH: u16 = 512;
/// Deliveries acknowledged at once (`multiple`), at most.
const ACK_BATCH: BatchSettings = BatchSettings { max_size: 100, max_wait: Duration::from_millis(5) };

/// The queues the run binds downstream: `(queue, exchange)`.
pub fn queues(topology: &Topology) -> [(String, String); 2] {
    let prefix = topology.submit_queue.strip_suffix("claims.submit").unwrap_or_default();
    [
        (format!("{prefix}bench.decisions"), topology.decisions_exchange.clone()),
        (format!("{prefix}bench.payments"), topology.payments_exchange.clone()),
    ]
}

pub struct Downstream {
    connection: Connection,
    stop: watch::Sender<bool>,
    consumers: JoinSet<anyhow::Result<Channel>>,
    consumed: Arc<AtomicU64>,
}

/// How long `stop` waits for the last expected messages to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Downstream {
    /// Declares the two queues (durable, of the work queue's kind, every routing key bound) and
    /// starts draining them.
    pub async fn start(amqp_url: &str, topology: &Topology) -> anyhow::Result<Downstream> {
        let connection = Connection::connect(
            amqp_url,
            ConnectionProperties::default().with_connection_name("claimctl bench downstream".into()),
        )
        .await
        .context("connecting the downstream consumers")?;
        let (stop, stopped) = watch::channel(false);
        let mut consumers = JoinSet::new();
        let consumed = Arc::new(AtomicU64::new(0));
        for (queue, exchange) in queues(topology) {
            let channel = connection.create_channel().await?;
            declare(&channel, &queue, &exchange, topology.submit_queue_type)
                .await
                .with_context(|| format!("declaring the downstream queue {queue}"))?;
            consumers.spawn(drain(channel, queue, stopped.clone(), Arc::clone(&consumed)));
        }
        Ok(Downstream { connection, stop, consumers, consumed })
    }

    /// Waits until at least `expected` messages were consumed (at most [`DRAIN_TIMEOUT`]), stops
    /// the consumers and returns how many messages they took.
    pub async fn stop(mut self, expected: u64) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.consumed.load(Ordering::Relaxed) < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        // The channels are kept until the connection is closed, so they do not close on drop
        // while it does.
        let mut channels = Vec::new();
        while let Some(ended) = self.consumers.join_next().await {
            channels.push(ended.context("a downstream consumer panicked")??);
        }
        close_connection(&self.connection, "bench done").await;
        drop(channels);
        Ok(self.consumed.load(Ordering::Relaxed))
    }
}

async fn declare(channel: &Channel, queue: &str, exchange: &str, queue_type: QueueType) -> Result<(), lapin::Error> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from(queue_type_name(queue_type))));
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions { passive: false, durable: true, exclusive: false, auto_delete: false, nowait: false },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            "#".into(),
            QueueBindOptions { nowait: false },
            FieldTable::default(),
        )
        .await
}

/// Consumes `queue` until `stop`, acknowledging what is buffered with one `multiple` ack.
async fn drain(
    channel: Channel,
    queue: String,
    mut stop: watch::Receiver<bool>,
    consumed: Arc<AtomicU64>,
) -> anyhow::Result<Channel> {
    channel.basic_qos(PREFETCH, BasicQosOptions { global: false }).await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::default(),
            BasicConsumeOptions { no_local: false, no_ack: false, exclusive: false, nowait: false },
            FieldTable::default(),
        )
        .await?;
    loop {
        let Collected { items, end } = batch::collect(&mut consumer, ACK_BATCH, &mut None, &mut stop).await;
        if let Some(last) = items.last() {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
        consumed.fetch_add(items.len() as u64, Ordering::Relaxed);
        if end.is_some() {
            return Ok(channel);
        }
    }
}

/// Deletes the downstream queues (best effort, as the rest of the topology).
pub async fn remove(channel: &Channel, topology: &Topology) {
    for (queue, _) in queues(topology) {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
}
