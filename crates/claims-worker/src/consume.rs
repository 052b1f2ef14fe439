//! One broker session: connections, topology, prefetch, the consumer, and the three stages a
//! micro-batch goes through. The first collects a batch and starts its decision (one
//! transaction, on a task of its own); the second waits for each batch's decisions in turn and
//! publishes what the store returned; the third waits for each batch's confirms, then
//! acknowledges it and has its outbox rows marked published. A batch starts being decided as
//! soon as the previous one holds its database locks, so batches that share no claim or
//! household are decided at the same time while any that do are decided in queue order; batch
//! N+1 is published while batch N waits for its confirms; batches are published and
//! acknowledged strictly in order, so a `multiple` ack never covers an unfinished batch.

use std::time::Duration;

use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::batch::{self, BatchEnd, Collected};
use crate::handle::{self, Decided, Published};
use crate::publish::Publisher;
use crate::{Shared, WorkerError, relay, topology};

/// How a session ended: `consumed` tells the reconnect loop whether it ever got going.
pub(crate) struct SessionOutcome {
    pub consumed: bool,
    pub result: Result<(), WorkerError>,
}

/// How long closing a channel or connection may take at the end of a session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn session(shared: &Arc<Shared>, stop: &mut watch::Receiver<bool>) -> SessionOutcome {
    let url = &shared.config.amqp_url;
    let connect = |name: &str| {
        // The name shows in the management UI, which tells the two connections apart.
        Connection::connect(url, ConnectionProperties::default().with_connection_name(name.into()))
    };
    let connected = tokio::select! {
        connected = async { tokio::try_join!(connect("claims-worker consume"), connect("claims-worker publish")) } => connected,
        // An unreachable broker can keep a TCP connect waiting for minutes: a stop must not.
        _ = batch::stopped(stop) => return SessionOutcome { consumed: false, result: Ok(()) },
    };
    let (consume_connection, publish_connection) = match connected {
        Ok(connections) => connections,
        Err(error) => return SessionOutcome { consumed: false, result: Err(error.into()) },
    };
    let (session_stop, relay_stop) = watch::channel(false);
    let mut consumed = false;
    let result = async {
        let channel = consume_connection.create_channel().await?;
        topology::declare_topology(&channel, &shared.topology).await?;
        // Per consumer, not per channel: quorum queues do not support global QoS.
        channel.basic_qos(shared.config.prefetch, BasicQosOptions { global: false }).await?;
        let publisher = Publisher::open(&publish_connection, &shared.topology).await?;
        // The relay publishes on a channel of its own so its confirms never mix with a batch's.
        let relay_publisher = Publisher::open(&publish_connection, &shared.topology).await?;
        let consumer = channel
            .basic_consume(
                ShortString::from(shared.topology.submit_queue.as_str()),
                // Let the server name the consumer: several workers share the queue.
                ShortString::default(),
                BasicConsumeOptions {
                    // Meaningless for RabbitMQ, stated for completeness.
                    no_local: false,
                    // Manual acks: a claim is acknowledged only after its decision is committed
                    // and confirmed.
                    no_ack: false,
                    // Other workers consume the same queue.
                    exclusive: false,
                    nowait: false,
                },
                FieldTable::default(),
            )
            .await?;
        consumed = true;
        shared.metrics.set_consuming(true);
        tracing::info!(queue = %shared.topology.submit_queue, prefetch = shared.config.prefetch, "consuming");
        let relay = tokio::spawn(relay::run(shared.store.clone(), relay_publisher, relay_stop));
        tokio::pin!(relay);
        tokio::select! {
            result = stages(shared, &channel, consumer, &publisher, stop) => result,
            // The relay only ends by itself on a broker error: rebuild the session. Dropping the
            // consumer loop mid-batch is safe: whatever it had not acknowledged is redelivered.
            ended = &mut relay => Err(WorkerError::Relay(Box::new(match ended {
                Ok(Err(error)) => error,
                _ => WorkerError::ChannelClosed,
            }))),
        }
    }
    .await;
    shared.metrics.set_consuming(false);
    let _ = session_stop.send(true);
    // Closing the consumer's connection hands its unacknowledged deliveries back to the queue.
    for connection in [&consume_connection, &publish_connection] {
        if connection.status().connected() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "worker session ends".into())).await;
        }
    }
    SessionOutcome { consumed, result }
}

/// Decided batches waiting for the publishing stage, at most. With the batch that stage is
/// finishing and the one stage one is handing over, at most `IN_FLIGHT + 2` batches are being
/// decided at once: well inside the prefetch window and the database pool.
const IN_FLIGHT: usize = 1;

/// Runs the three stages until a stop (then `Ok`, once the last batch is acknowledged) or an
/// error in any (the others are dropped: what they held unacknowledged is redelivered).
async fn stages(
    shared: &Arc<Shared>,
    channel: &Channel,
    consumer: Consumer,
    publisher: &Publisher,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let (to_publish, deciding) = mpsc::channel(IN_FLIGHT);
    // One published batch may wait for its confirms while the next is published.
    let (to_acknowledge, published) = mpsc::channel(1);
    tokio::try_join!(
        receive_and_decide(shared, channel, consumer, to_publish, stop),
        publish(publisher, deciding, to_acknowledge),
        acknowledge(shared, published),
    )?;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "worker stops".into())).await;
    tracing::info!("stopped consuming");
    Ok(())
}

/// A batch being decided on a task of its own. Dropping it (the session ends) aborts the task:
/// its transaction rolls back and its deliveries, never acknowledged, are redelivered.
struct Deciding(JoinHandle<Result<Decided, WorkerError>>);

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stage one: collect a batch, start deciding it, pass it on, and start collecting the next
/// one as soon as this one holds its database locks. The next one is closed early once this
/// one is decided (`batch::collect`): waiting for company only pays while the database is busy.
///
/// The store takes a batch's locks (its claims, its members' households, the messages it
/// refuses) before reading anything they protect, and a batch started afterwards that shares
/// any of those keys waits for the first one's commit: it decides exactly as if it had started
/// after that commit, in queue order. Batches that share nothing are decided at the same time,
/// on both cores, instead of one waiting for the other's commit. (Only when the store refuses
/// a whole batch and isolates its messages one by one, or a batch fails after taking its locks
/// and is retried, may a later batch that shares a household be decided first; several
/// workers on one queue never promise more.)
async fn receive_and_decide(
    shared: &Arc<Shared>,
    channel: &Channel,
    mut consumer: Consumer,
    to_publish: mpsc::Sender<Deciding>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let settings = shared.config.batch_settings();
    let mut previous: batch::Previous = None;
    loop {
        let Collected { items, end } = batch::collect(&mut consumer, settings, &mut previous, stop).await;
        match end {
            None => {}
            // Stop the flow first, then finish what is in hand; deliveries still buffered are
            // returned to the queue when the channel closes.
            Some(BatchEnd::Stopped) => {
                channel.basic_cancel(consumer.tag(), BasicCancelOptions { nowait: false }).await?
            }
            // The channel is gone: its tags are void. Drop the batch; the broker redelivers it.
            Some(BatchEnd::Failed(error)) => return Err(error.into()),
            Some(BatchEnd::Closed) => return Err(WorkerError::ConsumerCancelled),
        }
        if !items.is_empty() {
            let (locked, is_locked) = oneshot::channel();
            let (decided, is_decided) = oneshot::channel();
            previous = Some(is_decided);
            let task = tokio::spawn({
                let shared = Arc::clone(shared);
                let mut stop = stop.clone();
                let mut locked = Some(locked);
                async move {
                    let mut on_locked = move || {
                        if let Some(locked) = locked.take() {
                            let _ = locked.send(());
                        }
                    };
                    let outcome = handle::decide_batch(&shared, items, &mut stop, &mut on_locked).await;
                    let _ = decided.send(());
                    outcome
                }
            });
            // A closed receiver means stage two failed; its error is what `try_join!` reports.
            if to_publish.send(Deciding(task)).await.is_err() {
                return Ok(());
            }
            // Locked, or finished or failed without locking (the sender is then dropped).
            let _ = is_locked.await;
        }
        if end.is_some() {
            // Dropping the sender lets stage two finish the last batch and end.
            return Ok(());
        }
    }
}

/// Stage two: wait for each batch's decisions, in the order the batches were received, and
/// publish them.
async fn publish(
    publisher: &Publisher,
    mut deciding: mpsc::Receiver<Deciding>,
    to_acknowledge: mpsc::Sender<Published>,
) -> Result<(), WorkerError> {
    while let Some(mut batch) = deciding.recv().await {
        let decided = (&mut batch.0).await.map_err(|error| WorkerError::DecideTask(error.to_string()))??;
        if let Some(published) = handle::publish_batch(publisher, decided).await?
            && to_acknowledge.send(published).await.is_err()
        {
            // Stage three failed; its error is what `try_join!` reports.
            return Ok(());
        }
    }
    Ok(())
}

/// Stage three: wait for each published batch's confirms, then acknowledge it, in order. Its
/// outbox rows are marked published on tasks of their own: no batch waits for a mark (awaited
/// here, they cost about 7 % of the throughput, the prefetch window filling with deliveries
/// acknowledged late), but a stage that ends normally waits for its marks, so a stopping worker
/// leaves nothing to the relay.
async fn acknowledge(shared: &Shared, mut published: mpsc::Receiver<Published>) -> Result<(), WorkerError> {
    let mut marks = JoinSet::new();
    let result = async {
        while let Some(batch) = published.recv().await {
            let outbox_ids = handle::acknowledge(shared, batch).await?;
            if !outbox_ids.is_empty() {
                marks.spawn(handle::mark(shared.store.clone(), outbox_ids));
            }
            while marks.try_join_next().is_some() {}
        }
        Ok(())
    }
    .await;
    // On an error the session is dropped and the marks with it (the relay covers them).
    if result.is_ok() {
        while marks.join_next().await.is_some() {}
    }
    result
}
