//! The RabbitMQ worker: consume claims in micro-batches → the store decides and commits each
//! batch in one transaction → publish the outbox with publisher confirms → acknowledge the
//! batch → mark the outbox published. No business logic lives here; the store and the pure
//! pipeline decide.
//!
//! Reading order: [`topology`] (names and declarations), [`batch`] (micro-batching),
//! `consume` (one broker session and its three overlapping stages), `handle` (one batch: decide,
//! publish, confirm and ack), `decide` (database retries), [`publish`] (confirms), `relay` (the outbox of a
//! crashed worker), `reload` (the rule pack in force, swapped when a new one is published),
//! [`metrics`], [`submit`] (the provider side, for `claimctl`).
//!
//! Failure policy, in one place:
//! - **Acks** only after the store committed and the broker confirmed every message the batch
//!   produced (decisions, payments, replies, dead letters): one `basic.ack` with `multiple` on
//!   the batch's highest delivery tag, on the channel that delivered it.
//! - **Broker connection lost**: the session is dropped whole (its deliveries are redelivered by
//!   the broker, and the store's idempotency on `(provider_id, claim_id)` turns them into
//!   re-publications of the stored decisions); `run` reconnects with capped exponential backoff,
//!   re-declares the topology, re-applies the prefetch and consumes again. A delivery tag never
//!   outlives its channel. lapin's own auto-recovery is off: it is young (stack.md 2.2).
//! - **Database errors**: retried in place with backoff while the batch stays unacknowledged
//!   (a `nack` would count against the queue's delivery limit on RabbitMQ 3.x and dead-letter
//!   good claims during an outage). A data error that only one message triggers is isolated by
//!   deciding the batch one message at a time, and that message is dead-lettered with the error.

pub mod batch;
mod consume;
mod decide;
mod handle;
pub mod metrics;
pub mod publish;
mod relay;
mod reload;
pub mod submit;
pub mod topology;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claims_domain::rules::RulePack;
use claims_store::{Store, StoreError};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use batch::BatchSettings;
pub use metrics::Metrics;
pub use publish::{ERROR_HEADER, publish_once};
pub use topology::{QueueType, Topology, declare_topology};

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("rule pack {dir}: {message}")]
    Rules { dir: PathBuf, message: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a message published to exchange {exchange:?}")]
    Nacked { exchange: String },
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("a publisher channel is not in confirm mode")]
    ConfirmsOff,
    #[error("the channel closed before the batch could be acknowledged")]
    ChannelClosed,
    #[error("the broker cancelled the consumer (was the queue deleted?)")]
    ConsumerCancelled,
    #[error("the store answered {answers} results for {messages} messages")]
    StoreAnswer { messages: usize, answers: usize },
    #[error("the task deciding a batch failed: {0}")]
    DecideTask(String),
    #[error("the outbox relay stopped: {0}")]
    Relay(Box<WorkerError>),
    #[error("name or id longer than 255 bytes: {0}…")]
    TooLong(String),
    #[error("metrics address {address}: {source}")]
    Metrics { address: SocketAddr, source: std::io::Error },
    #[error(
        "the database schema lacks {} migration(s) ({}): run `claimctl db migrate` as the owner role",
        .pending.len(),
        .pending.join(", ")
    )]
    MigrationsPending { pending: Vec<String> },
}

/// What the worker needs to run. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub amqp_url: String,
    pub database_url: String,
    /// The rule pack folder (e.g. `rules/fr`).
    pub rules_dir: PathBuf,
    /// Put in front of every exchange and queue name (`""` in production, unique in tests).
    pub prefix: String,
    /// Unacknowledged deliveries the broker may push ahead (per consumer). 100–300 gives the
    /// best throughput (stack.md 1.3); it also bounds what a crash loop can dead-letter.
    pub prefetch: u16,
    /// Claims per store transaction.
    pub batch_size: usize,
    /// How long the first claim of a batch may wait for company; it waits only while the
    /// previous batch is still being decided (`batch::collect`).
    pub batch_wait: Duration,
    /// Where to serve `/metrics` and `/health`; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// How often to look for a newly published version of the rule pack (`reload`).
    pub rules_poll: Duration,
    /// The kind of the work queue: quorum in production (see [`QueueType`]).
    pub submit_queue_type: QueueType,
}

impl Config {
    pub fn new(amqp_url: impl Into<String>, database_url: impl Into<String>, rules_dir: impl Into<PathBuf>) -> Config {
        Config {
            amqp_url: amqp_url.into(),
            database_url: database_url.into(),
            rules_dir: rules_dir.into(),
            prefix: String::new(),
            prefetch: 256,
            batch_size: 50,
            batch_wait: Duration::from_millis(5),
            metrics_addr: None,
            rules_poll: Duration::from_secs(2),
            submit_queue_type: QueueType::Quorum,
        }
    }

    fn batch_settings(&self) -> BatchSettings {
        BatchSettings { max_size: self.batch_size.max(1), max_wait: self.batch_wait }
    }
}

/// Everything a broker session needs that outlives it.
#[derive(Debug)]
struct Shared {
    config: Config,
    topology: Topology,
    store: Store,
    /// Swapped whole by the reload task; each batch takes its own `Arc` of it.
    pack: Arc<reload::ActivePack>,
    metrics: Arc<Metrics>,
}

/// First wait before reconnecting to the broker; doubled after each failure up to the cap,
/// which keeps the gap after a broker restart under the 10 s of goal G5 (stack.md 8.3).
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// Runs the worker until `shutdown` resolves, then stops consuming, finishes the batch in
/// hand, closes its channels and returns `Ok`. Fails fast on what only a person can fix (the
/// pack, the database, the first broker connection, the metrics address); once running, it
/// rides out broker restarts (see the crate documentation).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
    let (stop_sender, stop) = watch::channel(false);
    let worker = start(config, stop);
    tokio::pin!(worker);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut worker => return result,
        () = &mut shutdown => {
            tracing::info!("shutdown requested: finishing the batch in hand");
            let _ = stop_sender.send(true);
        }
    }
    worker.await
}

async fn start(config: Config, stop: watch::Receiver<bool>) -> Result<(), WorkerError> {
    let store = Store::connect(&config.database_url).await?;
    // The worker does not migrate: its role (`claims_worker`) cannot change the schema, and a
    // schema changed under running workers of an older release is the operator's call.
    let pending = store.pending_migrations().await?;
    if !pending.is_empty() {
        return Err(WorkerError::MigrationsPending { pending });
    }
    // The pack's active publication if it has one, else the folder's.
    let pack = reload::initial_pack(&store, &config.rules_dir).await?;
    tracing::info!(pack = %pack.settings().version.pack, version = %pack.version(), "rule pack loaded");

    let metrics = Arc::new(Metrics::default());
    metrics.rules_in_use(&pack.settings().version.pack, pack.version());
    let pack = Arc::new(reload::ActivePack::new(pack));
    tokio::spawn(reload::poll(
        store.clone(),
        config.rules_dir.clone(),
        Arc::clone(&pack),
        Arc::clone(&metrics),
        config.rules_poll,
        stop.clone(),
    ));
    if let Some(address) = config.metrics_addr {
        let listener = TcpListener::bind(address).await.map_err(|source| WorkerError::Metrics { address, source })?;
        tracing::info!(address = %listener.local_addr().unwrap_or(address), "serving /metrics and /health");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics), stop.clone()));
    }
    let topology = Topology::with_prefix(&config.prefix).with_submit_queue_type(config.submit_queue_type);
    let shared = Arc::new(Shared { topology, config, store, pack, metrics });
    reconnecting(&shared, stop).await
}

/// Runs broker sessions one after the other until a stop is asked for.
async fn reconnecting(shared: &Arc<Shared>, mut stop: watch::Receiver<bool>) -> Result<(), WorkerError> {
    let mut delay = RECONNECT_FIRST;
    let mut ever_connected = false;
    loop {
        let outcome = consume::session(shared, &mut stop).await;
        match outcome.result {
            Ok(()) => return Ok(()),
            // A first connection that fails is most likely a wrong URL or password: say so now.
            Err(error) if !ever_connected && !outcome.consumed => return Err(error),
            Err(error) => {
                if outcome.consumed {
                    delay = RECONNECT_FIRST;
                }
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "broker session lost; reconnecting");
            }
        }
        ever_connected |= outcome.consumed;
        tokio::select! {
            _ = batch::stopped(&mut stop) => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RECONNECT_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawnable<T: Future + Send + 'static>(_: T) {}

    #[test]
    fn the_worker_can_run_on_a_spawned_task() {
        // Tests and embedders spawn `run`; it must stay `Send`.
        spawnable(run(Config::new("amqp://x", "postgres://x", "rules/fr"), async {}));
    }

    #[test]
    fn defaults_follow_the_recommendations() {
        let config = Config::new("amqp://x", "postgres://x", "rules/fr");
        assert_eq!((config.prefetch, config.batch_size, config.batch_wait), (256, 50, Duration::from_millis(5)));
        assert_eq!(config.prefix, "");
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.rules_poll, Duration::from_secs(2));
        assert_eq!(config.submit_queue_type, QueueType::Quorum);
    }
}
