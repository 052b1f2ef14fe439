//! Chaos: a steady load of French claims (with history per member, cancellations, invalid
//! claims and a few unreadable messages) published with confirms to a `claimctl worker` child
//! process while the worker is killed with SIGKILL three times, RabbitMQ is restarted once and
//! PostgreSQL once. At the end every message has exactly one recorded decision, every decision
//! reached the decisions exchange (repeats with the same message id and body), the counters equal
//! the sum of the moves in the audit log, the chain verifies and replays identically, and the
//! dead-letter queue holds the unreadable messages and nothing else.
//!
//! Size: `CHAOS_RATE` claims a second (200) for `CHAOS_SECONDS` seconds (20); the full size is
//! `CHAOS_RATE=500 CHAOS_SECONDS=60`, with a release worker (`--release`, or
//! `CHAOS_CLAIMCTL=target/release/claimctl`). The faults are scheduled by progress
//! (a share of the messages decided), so each one hits a worker with work in hand.
//!
//! It restarts the real servers named by `AMQP_URL` and `DATABASE_URL`: by default with
//! `rabbitmqctl shutdown && rabbitmq-server -detached` and `pg_ctlcluster … main restart`, which
//! need the servers to run on this machine and the test to run as root (CI does); set
//! `CHAOS_RABBITMQ_RESTART` / `CHAOS_POSTGRES_RESTART` to other shell commands elsewhere (e.g.
//! `docker compose restart rabbitmq`). A PostgreSQL restart drops every connection of every
//! database, and a broker restart every connection: acceptable because cargo runs test binaries
//! one after another, but never run this beside other tests against the same servers.

#[path = "chaos_support.rs"]
mod chaos_support;
#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses the fixture only")]
mod worker_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use chaos_support::{DecisionConsumer, Kind, Outgoing, Received, Settings, WAIT, WorkerCommand};
use claims_audit::{ChainHead, verify_next};
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use tokio::time::Instant;
use worker_support::{Fixture, json, rules_dir};

/// Unreadable messages injected among the claims.
const POISON: usize = 5;

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    RestartRabbitMq,
    RestartPostgres,
}

/// Each fault and the share of the messages (per mille) decided before it strikes.
const FAULTS: [(Fault, usize); 5] = [
    (Fault::KillWorker, 100),
    (Fault::RestartPostgres, 250),
    (Fault::KillWorker, 400),
    (Fault::RestartRabbitMq, 550),
    (Fault::KillWorker, 750),
];

struct Recovery {
    fault: Fault,
    /// From the fault to the server (or a new worker) being back.
    down: Duration,
    /// From the fault to the arrival of the first decision recorded once it was back.
    recovered: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_is_decided_exactly_once_through_worker_kills_and_server_restarts() {
    let settings = Settings::from_env();
    let setup = Instant::now();
    let _services = KeepServicesUp;
    let fixture = Fixture::new("chaos").await;
    let scratch = claims_e2e::scratch("chaos");
    let messages = Arc::new(chaos_support::load(&settings, POISON));
    let expected = messages.iter().filter(|message| message.kind != Kind::Poison).count();

    declare_topology(&fixture).await;
    let decisions_queue = format!("{}chaos.decisions", fixture.prefix);
    let _queue = DeleteQueueOnDrop { amqp_url: fixture.amqp_url.clone(), queue: decisions_queue.clone() };
    let mut decisions =
        DecisionConsumer::start(&fixture.amqp_url, &fixture.topology.decisions_exchange, decisions_queue).await;
    let command = WorkerCommand {
        binary: chaos_support::claimctl_binary(),
        rules: rules_dir(),
        prefix: fixture.prefix.clone(),
        amqp_url: fixture.amqp_url.clone(),
        database_url: fixture.database.url.clone(),
        log: scratch.join("worker.log"),
    };
    let _show_log = ShowLogOnFailure(command.log.clone());
    let mut worker = command.spawn();

    let setup = setup.elapsed();
    let started = Instant::now();
    let publisher = tokio::spawn(chaos_support::publish(
        fixture.amqp_url.clone(),
        fixture.topology.claims_exchange.clone(),
        Arc::clone(&messages),
        settings.rate,
    ));
    let mut recoveries = Vec::new();
    for (fault, per_mille) in FAULTS {
        decisions.wait_for(expected * per_mille / 1000, &format!("progress before {fault:?}")).await;
        worker.assert_running();
        let struck = Instant::now();
        match fault {
            Fault::KillWorker => {
                worker.kill_9();
                worker = command.spawn();
            }
            Fault::RestartRabbitMq => {
                chaos_support::restart_rabbitmq(&fixture.amqp_url, scratch.join("rabbitmq.log")).await;
            }
            Fault::RestartPostgres => {
                chaos_support::restart_postgres(&fixture.database.url, scratch.join("postgres.log")).await;
            }
        }
        let back = Instant::now();
        assert!(decisions.distinct_now() < expected, "every message was decided before {fault:?} was over");
        // Decisions recorded before the fault may still arrive (published late, or again):
        // recovery is the first decision recorded once the server (or new worker) was back.
        let head = audit_head(&fixture.database.url).await;
        let first_new = decisions.wait_after(head, &format!("the first new decision after {fault:?}")).await;
        recoveries.push(Recovery { fault, down: back - struck, recovered: first_new - struck });
    }
    let published = tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap_or_else(|_| {
            panic!("the publisher did not get every message confirmed within {WAIT:?} of the last fault")
        })
        .unwrap_or_else(|error| panic!("the publisher failed: {error}"));
    let published_in = started.elapsed();
    decisions.wait_for(expected, "a decision for every message").await;
    let decided_in = started.elapsed();
    worker.assert_running();
    let exit = worker.terminate().await;
    assert!(exit.success(), "the worker exits 0 after SIGTERM: {exit}");
    let received = decisions.stop().await;

    // A fresh pool: the fixture's connections died with the PostgreSQL restart.
    let store = claims_store::Store::connect(&fixture.database.url).await.unwrap_or_else(|error| panic!("{error}"));
    let entries = audit_entries(&store).await;
    check_one_decision_per_message(&store, &messages, &entries).await;
    let repeats = check_decisions_published(&received, &entries);
    let counters = check_counters(&store, &entries).await;
    let dead_letters = check_dead_letters(&fixture, &messages).await;
    store.pool().close().await;
    let checked = Instant::now();
    let (verify, replay) = verify_and_replay(&fixture.database.url).await;
    let checked = checked.elapsed();

    let count = |kind: Kind| messages.iter().filter(|message| message.kind == kind).count();
    eprintln!(
        "chaos: {} claims/s for {} s (seed {}); setup (claimctl build, load, database) {setup:.1?}",
        settings.rate, settings.seconds, settings.seed
    );
    eprintln!(
        "  submitted {} messages: {} claims, {} cancellations, {} invalid claims, {} poison",
        messages.len(),
        count(Kind::Claim),
        count(Kind::Cancellation),
        count(Kind::Invalid),
        count(Kind::Poison)
    );
    eprintln!(
        "  publisher: {} sends, {} re-sent after a lost connection or nack, {} reconnects; all confirmed after {:.1?}",
        published.sends, published.resent, published.reconnects, published_in
    );
    eprintln!(
        "  decided {} (one audit entry each) after {decided_in:.1?}; {} decision deliveries, {repeats} repeats absorbed \
         (same message id and body); decisions consumer reconnected {} times",
        entries.len(),
        received.deliveries,
        received.reconnects
    );
    eprintln!("  {counters} counters equal the sum of their moves; dead letters: {dead_letters}");
    eprintln!("  audit verify: {verify}; replay: {replay}; both through claimctl in {checked:.1?}");
    eprintln!("  faults survived: {}", recoveries.len());
    for recovery in &recoveries {
        eprintln!(
            "    {:<16} back after {:>7.1?}, first new decision {:>7.1?} after the fault",
            format!("{:?}", recovery.fault),
            recovery.down,
            recovery.recovered
        );
    }
    fixture.cleanup().await;
}

/// The last audit sequence recorded, through a connection of its own (a PostgreSQL restart
/// kills pooled ones).
async fn audit_head(database_url: &str) -> u64 {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(database_url)
        .await
        .unwrap_or_else(|error| panic!("connecting to the test database: {error}"));
    let (seq,): (i64,) = sqlx::query_as("SELECT coalesce(max(seq), 0) FROM audit_log")
        .fetch_one(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("reading the audit head: {error}"));
    let _ = connection.close().await;
    u64::try_from(seq).unwrap_or_default()
}

async fn declare_topology(fixture: &Fixture) {
    let connection = Connection::connect(&fixture.amqp_url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("connecting to RabbitMQ: {error}"));
    let channel = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    claims_worker::declare_topology(&channel, &fixture.topology).await.unwrap_or_else(|error| panic!("{error}"));
    let _ = connection.close(200, "declared".into()).await;
}

/// Every audit entry, in order, with its hash chain checked on the way.
async fn audit_entries(store: &claims_store::Store) -> Vec<Value> {
    let mut head = ChainHead::default();
    let mut entries = Vec::new();
    loop {
        let after = entries.len() as u64;
        let page =
            store.audit_entries(after, 5000).await.unwrap_or_else(|error| panic!("reading the audit log: {error}"));
        if page.is_empty() {
            return entries;
        }
        for (seq, text) in page {
            let entry = verify_next(&mut head, seq, &text).unwrap_or_else(|error| panic!("audit chain: {error}"));
            entries.push(entry);
        }
    }
}

/// Each message that is not poison is the input of exactly one audit entry (no loss, no second
/// decision), every valid claim has its claims row and no other claim has one, and every invalid
/// claim its rejected_messages row.
async fn check_one_decision_per_message(store: &claims_store::Store, messages: &[Outgoing], entries: &[Value]) {
    let mut inputs: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        *inputs.entry(entry["input"].as_str().unwrap_or_default()).or_default() += 1;
    }
    let mut expected_keys = BTreeSet::new();
    let mut invalid = 0_i64;
    for message in messages.iter().filter(|message| message.kind != Kind::Poison) {
        let text = std::str::from_utf8(&message.body).unwrap_or_else(|error| panic!("generated text: {error}"));
        let recorded = inputs.remove(text).unwrap_or(0);
        assert_eq!(recorded, 1, "{recorded} audit entries (decisions) for {text}");
        match message.kind {
            Kind::Claim => {
                let claim = json(&message.body);
                expected_keys.insert((claim["provider_id"].to_string(), claim["claim_id"].to_string()));
            }
            Kind::Invalid => invalid += 1,
            Kind::Cancellation | Kind::Poison => {}
        }
    }
    assert!(inputs.is_empty(), "audit entries for inputs never sent: {:?}", inputs.keys().take(3).collect::<Vec<_>>());
    assert_eq!(entries.len(), messages.iter().filter(|message| message.kind != Kind::Poison).count());

    let rows: Vec<(String, String)> = sqlx::query_as("SELECT provider_id, claim_id FROM claims")
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|error| panic!("reading claims: {error}"));
    let stored: BTreeSet<(String, String)> = rows
        .into_iter()
        .map(|(provider, claim)| (Value::from(provider).to_string(), Value::from(claim).to_string()))
        .collect();
    let missing: Vec<_> = expected_keys.difference(&stored).take(5).collect();
    let extra: Vec<_> = stored.difference(&expected_keys).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "claims rows: missing {missing:?}, unexpected {extra:?}");
    let (rejected,): (i64,) = sqlx::query_as("SELECT count(*) FROM rejected_messages")
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|error| panic!("reading rejected_messages: {error}"));
    assert_eq!(rejected, invalid, "one rejected_messages row per invalid claim");
}

/// Every audit entry's decision reached the decisions queue as `decision-<seq>`, each time with
/// the same body, equal to the recorded decision plus its place in the chain; nothing else
/// arrived. Returns how many deliveries were repeats.
fn check_decisions_published(received: &Received, entries: &[Value]) -> usize {
    for entry in entries {
        let seq = entry["seq"].as_u64().unwrap_or_default();
        let message_id = format!("decision-{seq}");
        let Some(bodies) = received.bodies.get(&message_id) else {
            panic!("{message_id} never reached the decisions queue: {}", entry["input"])
        };
        assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]), "{message_id} arrived with different bodies");
        let mut published = json(&bodies[0]);
        let audit = published.as_object_mut().and_then(|fields| fields.remove("audit")).unwrap_or_default();
        assert_eq!(published, entry["decision"], "{message_id}: the published decision is not the recorded one");
        assert_eq!((&audit["seq"], &audit["hash"]), (&entry["seq"], &entry["hash"]), "{message_id}: audit place");
    }
    assert_eq!(received.bodies.len(), entries.len(), "message ids on the decisions queue with no audit entry");
    received.deliveries - received.bodies.len()
}

type CounterKey = (String, String, String, String);

fn counter_key(item: &Value) -> CounterKey {
    let text =
        |field: &str| item[field].as_str().unwrap_or_else(|| panic!("counter without {field}: {item}")).to_owned();
    (text("subject"), text("id"), text("counter"), text("period"))
}

/// Replays the counters from the audit log, in order: every value a decision read and every
/// move's `before` is where the previous moves left that counter (so no move was lost, doubled
/// or made on a stale value), and where they end is the counters table. Returns how many
/// counters were compared.
async fn check_counters(store: &claims_store::Store, entries: &[Value]) -> usize {
    let mut values: BTreeMap<CounterKey, i64> = BTreeMap::new();
    for entry in entries {
        let seq = &entry["seq"];
        for read in entry["counters_before"].as_array().into_iter().flatten() {
            let key = counter_key(read);
            let now = values.get(&key).copied().unwrap_or(0);
            assert_eq!(read["value"].as_i64(), Some(now), "entry {seq} read counter {key:?} at a stale value");
        }
        for counter_move in entry["moves"].as_array().into_iter().flatten() {
            let key = counter_key(counter_move);
            let now = values.get(&key).copied().unwrap_or(0);
            assert_eq!(
                counter_move["before"].as_i64(),
                Some(now),
                "entry {seq} moved counter {key:?} from a stale value"
            );
            let after = counter_move["after"].as_i64().unwrap_or_else(|| panic!("entry {seq}: move without after"));
            values.insert(key, after);
        }
    }
    let rows: Vec<(String, String, String, String, i64)> =
        sqlx::query_as("SELECT subject_kind, subject_id, counter, period, value FROM counters")
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|error| panic!("reading counters: {error}"));
    let mut table: BTreeMap<CounterKey, i64> = BTreeMap::new();
    for (kind, id, counter, period, value) in rows {
        table.insert((kind, id, counter, period), value);
    }
    let keys: BTreeSet<&CounterKey> = values.keys().chain(table.keys()).collect();
    for key in &keys {
        let (replayed, stored) = (values.get(*key).copied().unwrap_or(0), table.get(*key).copied().unwrap_or(0));
        assert_eq!(stored, replayed, "counter {key:?}: the table says {stored}, the audit log's moves {replayed}");
    }
    assert!(values.values().any(|value| *value != 0), "the load moved no counter: the check would prove nothing");
    keys.len()
}

/// The dead-letter queue holds the poison messages, each with the worker's reason, and nothing
/// else. A poison message the worker dead-lettered just before a kill is dead-lettered again on
/// redelivery (at-least-once), so copies of a poison body are allowed. Returns a summary.
async fn check_dead_letters(fixture: &Fixture, messages: &[Outgoing]) -> String {
    let poison: BTreeSet<&[u8]> =
        messages.iter().filter(|message| message.kind == Kind::Poison).map(|message| message.body.as_slice()).collect();
    let connection = Connection::connect(&fixture.amqp_url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("connecting to RabbitMQ: {error}"));
    let channel = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    let deadline = Instant::now() + WAIT;
    let mut found: Vec<Vec<u8>> = Vec::new();
    loop {
        let got = channel
            .basic_get(fixture.topology.dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("reading {}: {error}", fixture.topology.dead_queue));
        match got {
            Some(message) => {
                let delivery = message.delivery;
                let body = String::from_utf8_lossy(&delivery.data).into_owned();
                assert!(poison.contains(delivery.data.as_slice()), "dead-lettered but not poison: {body}");
                let headers = delivery.properties.headers().clone().unwrap_or_default();
                assert!(
                    headers.inner().contains_key(claims_worker::ERROR_HEADER),
                    "dead letter without {}: {body}",
                    claims_worker::ERROR_HEADER
                );
                found.push(delivery.data);
            }
            None => {
                let distinct: BTreeSet<&[u8]> = found.iter().map(Vec::as_slice).collect();
                if distinct == poison {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {} poison messages in {} after {WAIT:?}",
                    distinct.len(),
                    poison.len(),
                    fixture.topology.dead_queue
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = connection.close(200, "checked".into()).await;
    format!("{} (the {} poison messages, {} repeats)", found.len(), poison.len(), found.len() - poison.len())
}

/// `claimctl audit verify` and `audit replay` on the test database: both exit 0. Returns their
/// last output lines.
async fn verify_and_replay(database_url: &str) -> (String, String) {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let last_line = |output: &str| output.lines().last().unwrap_or_default().to_owned();
        let (code, output) = claims_e2e::claimctl(&["audit", "verify", "--database-url", &url]);
        assert_eq!(code, 0, "audit verify failed:\n{output}");
        let verify = last_line(&output);
        let (code, output) = claims_e2e::claimctl(&["audit", "replay", "--database-url", &url]);
        assert_eq!(code, 0, "audit replay found differences:\n{output}");
        (verify, last_line(&output))
    })
    .await
    .unwrap_or_else(|error| panic!("audit verify/replay: {error}"))
}

/// Deletes the test's decisions queue, also when the test fails.
struct DeleteQueueOnDrop {
    amqp_url: String,
    queue: String,
}

impl Drop for DeleteQueueOnDrop {
    fn drop(&mut self) {
        let (url, queue) = (self.amqp_url.clone(), self.queue.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(connection) = Connection::connect(&url, ConnectionProperties::default()).await {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                    }
                    let _ = connection.close(200, "test done".into()).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Shows the end of the workers' log when the test fails.
struct ShowLogOnFailure(std::path::PathBuf);

impl Drop for ShowLogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of {} ---", self.0.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts the local servers again if a failure left one down mid-restart (only with the
/// default restart commands: custom ones belong to whoever set them).
struct KeepServicesUp;

impl Drop for KeepServicesUp {
    fn drop(&mut self) {
        let down = |url: Option<String>, port: u16| {
            let Some(url) = url else { return false };
            let authority = url.split("://").nth(1).unwrap_or_default();
            let host_port =
                authority.rsplit('@').next().unwrap_or_default().split(['/', '?']).next().unwrap_or_default();
            let address = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:{port}") };
            let reachable = address
                .to_socket_addrs()
                .ok()
                .and_then(|mut addresses| addresses.next())
                .is_some_and(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok());
            !reachable
        };
        if std::env::var("CHAOS_POSTGRES_RESTART").is_err() && down(std::env::var("DATABASE_URL").ok(), 5432) {
            let start = chaos_support::postgres_restart_command().replace(" restart", " start");
            let _ = std::process::Command::new("sh").args(["-c", &start]).status();
        }
        if std::env::var("CHAOS_RABBITMQ_RESTART").is_err() && down(std::env::var("AMQP_URL").ok(), 5672) {
            let _ = std::process::Command::new("sh")
                .args(["-c", "rabbitmq-server -detached"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
