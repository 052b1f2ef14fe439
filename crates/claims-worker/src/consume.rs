//! One broker session: connections, topology, prefetch, the consumer, and the two stages a
//! micro-batch goes through. The first stage collects a batch and has the store decide it (one
//! transaction); the second publishes what the store returned, waits for every confirm, marks
//! the outbox published and only then acknowledges the batch. The stages overlap — batch N is
//! published while batch N+1 is decided — but each runs its batches strictly in order, so
//! claims are decided in queue order and a `multiple` ack never covers an unfinished batch.

use std::time::Duration;

use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{mpsc, watch};

use crate::batch::{self, BatchEnd, Collected};
use crate::handle::{self, Decided};
use crate::publish::Publisher;
use crate::{Shared, WorkerError, relay, topology};

/// How a session ended: `consumed` tells the reconnect loop whether it ever got going.
pub(crate) struct SessionOutcome {
    pub consumed: bool,
    pub result: Result<(), WorkerError>,
}

/// How long closing a channel or connection may take at the end of a session.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn session(shared: &Shared, stop: &mut watch::Receiver<bool>) -> SessionOutcome {
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

/// Runs the two stages until a stop (then `Ok`, once the last batch is acknowledged) or an
/// error in either (the other is dropped: what it held unacknowledged is redelivered).
async fn stages(
    shared: &Shared,
    channel: &Channel,
    consumer: Consumer,
    publisher: &Publisher,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    // One decided batch may wait while another is being published: enough to keep both stages
    // busy, and (with the batch being decided) well inside the prefetch window.
    let (to_publish, decided) = mpsc::channel(1);
    tokio::try_join!(
        receive_and_decide(shared, channel, consumer, to_publish, stop),
        publish_and_ack(shared, publisher, decided)
    )?;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "worker stops".into())).await;
    tracing::info!("stopped consuming");
    Ok(())
}

/// Stage one: collect a batch, have the store decide it, pass it on.
async fn receive_and_decide(
    shared: &Shared,
    channel: &Channel,
    mut consumer: Consumer,
    to_publish: mpsc::Sender<Decided>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let settings = shared.config.batch_settings();
    loop {
        let Collected { items, end } = batch::collect(&mut consumer, settings, stop).await;
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
            let decided = handle::decide_batch(shared, items, stop).await?;
            // A closed receiver means stage two failed; its error is what `try_join!` reports.
            if to_publish.send(decided).await.is_err() {
                return Ok(());
            }
        }
        if end.is_some() {
            // Dropping the sender lets stage two finish the last batch and end.
            return Ok(());
        }
    }
}

/// Stage two: publish, confirm, mark and acknowledge each decided batch, in order.
async fn publish_and_ack(
    shared: &Shared,
    publisher: &Publisher,
    mut decided: mpsc::Receiver<Decided>,
) -> Result<(), WorkerError> {
    while let Some(batch) = decided.recv().await {
        handle::finish_batch(shared, publisher, batch).await?;
    }
    Ok(())
}
