//! Helpers for the worker's end-to-end tests (included with `#[path]`): a database of its own,
//! migrated, with the French registry imported; a unique broker prefix; a worker on a thread
//! of its own; a provider-side client with a private reply queue; cleanup of everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claims_domain::contract::parse_registry;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::Store;
use claims_testkit::TestDatabase;
use claims_worker::submit::{SubmitOptions, submit};
use claims_worker::{Config, Topology, WorkerError};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long any test waits for something to happen before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn rules_dir() -> PathBuf {
    claims_e2e::repo().join("rules/fr")
}

pub fn registry_file() -> PathBuf {
    claims_e2e::repo().join("examples/fr/registry.json")
}

pub fn claims_file() -> PathBuf {
    claims_e2e::repo().join("examples/fr/claims.jsonl")
}

/// The non-blank lines of the French examples.
pub fn french_examples() -> Vec<String> {
    let text = std::fs::read_to_string(claims_file()).unwrap_or_else(|error| panic!("reading examples: {error}"));
    text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect()
}

pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(bytes)))
}

/// One test's database and broker names.
pub struct Fixture {
    pub database: TestDatabase,
    pub store: Store,
    pub amqp_url: String,
    pub prefix: String,
    pub topology: Topology,
    cleaned: bool,
}

impl Fixture {
    pub async fn new(name: &str) -> Fixture {
        let database = claims_testkit::database().await;
        let store = Store::connect(&database.url).await.unwrap_or_else(|error| panic!("connecting: {error}"));
        store.migrate().await.unwrap_or_else(|error| panic!("migrating: {error}"));
        let pack = RhaiPack::load(rules_dir()).unwrap_or_else(|error| panic!("loading rules/fr: {error}"));
        let registry_text = std::fs::read_to_string(registry_file()).unwrap_or_else(|error| panic!("{error}"));
        let registry = parse_registry(&registry_text).unwrap_or_else(|error| panic!("registry: {error}"));
        store.import_registry(&registry, pack.settings()).await.unwrap_or_else(|error| panic!("importing: {error}"));
        let prefix = claims_testkit::unique_prefix(name);
        let topology = Topology::with_prefix(&prefix);
        Fixture { database, store, amqp_url: claims_testkit::amqp_url().await, prefix, topology, cleaned: false }
    }

    pub fn config(&self) -> Config {
        let mut config = Config::new(&self.amqp_url, &self.database.url, rules_dir());
        config.prefix.clone_from(&self.prefix);
        config
    }

    /// Deletes this test's queues and exchanges and drops its database.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        self.store.pool().close().await;
        remove(self.amqp_url.clone(), self.topology.clone(), self.database.clone()).await;
    }
}

impl Drop for Fixture {
    /// A failed test cleans up too, so a shared broker does not collect dead test queues.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (url, topology, database) = (self.amqp_url.clone(), self.topology.clone(), self.database.clone());
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(remove(url, topology, database));
            }
        });
        let _ = cleanup.join();
    }
}

async fn remove(amqp_url: String, topology: Topology, database: TestDatabase) {
    if let Ok(connection) = Connection::connect(&amqp_url, ConnectionProperties::default()).await {
        if let Ok(channel) = connection.create_channel().await {
            for queue in [&topology.submit_queue, &topology.dead_queue] {
                let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
            }
            for (exchange, _) in topology.exchanges() {
                let _ = channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await;
            }
        }
        let _ = connection.close(200, "test done".into()).await;
    }
    database.drop_database().await;
}

/// A worker running `claims_worker::run` on a thread (and runtime) of its own, as a separate
/// process would; stopped through its shutdown future.
pub struct WorkerThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), WorkerError>>>,
}

impl WorkerThread {
    pub fn start(config: Config) -> WorkerThread {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|error| panic!("worker runtime: {error}"));
            runtime.block_on(claims_worker::run(config, async {
                let _ = stopped.await;
            }))
        });
        WorkerThread { stop: Some(stop), thread: Some(thread) }
    }

    /// Asks the worker to stop and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take().unwrap_or_else(|| panic!("worker already stopped"));
        let joined = tokio::time::timeout(DEADLINE, tokio::task::spawn_blocking(move || thread.join()))
            .await
            .unwrap_or_else(|_| panic!("the worker did not stop within {DEADLINE:?}"));
        match joined {
            Ok(Ok(result)) => result,
            _ => panic!("the worker thread panicked"),
        }
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        // A failing test must not leave a worker consuming behind it.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A provider: publishes to the claims exchange with publisher confirms and reads its replies
/// on a private, server-named queue.
pub struct Client {
    connection: Connection,
    pub channel: Channel,
    pub reply_queue: ShortString,
    replies: Consumer,
    /// The broker user the connection logged in as: the `user_id` its messages carry.
    pub user_id: String,
}

impl Client {
    /// Connects and declares the topology (so that claims wait in the queue even before the
    /// worker starts) and a reply queue.
    pub async fn connect(fixture: &Fixture) -> Client {
        let connection = Connection::connect(&fixture.amqp_url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("connecting to RabbitMQ: {error}"));
        let channel = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
        channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap_or_else(|error| panic!("{error}"));
        claims_worker::declare_topology(&channel, &fixture.topology).await.unwrap_or_else(|error| panic!("{error}"));
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
        let queue = channel
            .queue_declare(
                ShortString::default(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                arguments,
            )
            .await
            .unwrap_or_else(|error| panic!("declaring the reply queue: {error}"));
        let replies = channel
            .basic_consume(
                queue.name().clone(),
                ShortString::default(),
                BasicConsumeOptions { no_ack: true, exclusive: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("consuming replies: {error}"));
        let user_id = claims_worker::submit::amqp_user(&fixture.amqp_url)
            .unwrap_or_else(|| panic!("AMQP_URL does not parse: {}", fixture.amqp_url));
        Client { connection, channel, reply_queue: queue.name().clone(), replies, user_id }
    }

    /// Publishes `body` (persistent, with a confirm) asking for the reply under `correlation_id`,
    /// as the connection's own broker user ("guest", whom the example registry lets submit for
    /// every provider).
    pub async fn publish(&self, topology: &Topology, body: &[u8], correlation_id: &str) {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_reply_to(self.reply_queue.clone())
            .with_correlation_id(correlation_id.into())
            .with_user_id(self.user_id.as_str().into());
        let confirmation = self
            .channel
            .basic_publish(
                topology.claims_exchange.as_str().into(),
                "claim".into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap_or_else(|error| panic!("publishing: {error}"))
            .await
            .unwrap_or_else(|error| panic!("waiting for the confirm: {error}"));
        assert!(confirmation.is_ack(), "the broker refused a claim");
    }

    /// The next reply, or `None` once `deadline` has passed.
    pub async fn next_reply(&mut self, deadline: Instant) -> Option<Delivery> {
        match tokio::time::timeout_at(deadline, self.replies.next()).await {
            Ok(Some(Ok(delivery))) => Some(delivery),
            Ok(Some(Err(error))) => panic!("reading replies: {error}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// Consumes `queue` (acknowledging automatically), for the dead-letter queue.
    pub async fn consume(&self, queue: &str) -> Consumer {
        self.channel
            .basic_consume(
                queue.into(),
                ShortString::default(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("consuming {queue}: {error}"))
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "test done".into()).await;
    }
}

/// The correlation id of a delivery, as text.
pub fn correlation(delivery: &Delivery) -> String {
    delivery.properties.correlation_id().as_ref().map(ToString::to_string).unwrap_or_default()
}

/// The message id of a delivery, as text.
pub fn message_id(delivery: &Delivery) -> String {
    delivery.properties.message_id().as_ref().map(ToString::to_string).unwrap_or_default()
}

/// `(provider_id, claim_id, is a reversal)`: one decision per key in the French examples.
pub fn decision_key(decision: &Value) -> (String, String, bool) {
    let text = |name: &str| decision.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("provider_id"), text("claim_id"), text("outcome") == "reversed")
}

/// A decision without its `audit` field: what the queue and the embedded mode must agree on.
pub fn without_audit(mut decision: Value) -> Value {
    if let Some(object) = decision.as_object_mut() {
        object.remove("audit");
    }
    decision
}

/// Submits every line of `claims` to the running worker and checks each decision against the
/// one `claimctl adjudicate` makes with `registry` (audit places aside: the embedded mode has
/// none).
pub async fn queue_decides_like_embedded(fixture: &Fixture, registry: &Path, claims: &Path) {
    let text = std::fs::read_to_string(claims).unwrap_or_else(|error| panic!("reading {}: {error}", claims.display()));
    let lines: Vec<String> = text.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect();

    let mut received = Vec::new();
    let options = SubmitOptions { wait: true, timeout: DEADLINE };
    let report = submit(&fixture.amqp_url, &fixture.prefix, &lines, options, |body| received.push(json(body)))
        .await
        .unwrap_or_else(|error| panic!("submitting: {error}"));
    assert!(report.missing.is_empty(), "no decision for {:?}", report.missing);
    assert_eq!((report.published, report.decisions), (lines.len(), lines.len()));

    let rules = rules_dir();
    let embedded = claims_e2e::adjudicate_embedded(&rules, registry, claims);
    assert_eq!(embedded.len(), lines.len());

    let mut through_queue: BTreeMap<_, Value> = BTreeMap::new();
    for decision in received {
        assert!(decision.get("audit").is_some(), "a stored decision names its audit entry: {decision}");
        let key = decision_key(&decision);
        assert!(through_queue.insert(key.clone(), without_audit(decision)).is_none(), "two decisions for {key:?}");
    }
    for expected in embedded {
        let key = decision_key(&expected);
        let actual = through_queue.get(&key).unwrap_or_else(|| panic!("no decision through the queue for {key:?}"));
        assert_eq!(actual, &without_audit(expected), "decision for {key:?}");
    }
}
