//! The RabbitMQ worker end to end, against the real broker and database (`AMQP_URL`,
//! `DATABASE_URL`): the README's promise (the queue decides like `claimctl adjudicate`),
//! idempotent redelivery, poison messages, two workers sharing one member's annual cap, and
//! the topology's declarations.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with the other worker tests; this one reads the examples by path")]
mod worker_support;

use std::collections::BTreeMap;

use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::ids::MemberId;
use claims_worker::{ERROR_HEADER, Topology, declare_topology};
use futures_util::StreamExt;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use tokio::time::Instant;
use worker_support::{
    Client, DEADLINE, Fixture, WorkerThread, claims_file, correlation, json, message_id, queue_decides_like_embedded,
    registry_file, rules_dir,
};

#[tokio::test]
async fn the_french_examples_through_the_queue_decide_like_the_embedded_mode() {
    let fixture = Fixture::new("examples").await;
    let worker = WorkerThread::start(fixture.config());
    queue_decides_like_embedded(&fixture, &registry_file(), &claims_file()).await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
}

/// The worker starts deciding a batch as soon as the previous one holds its database locks, so
/// batches that share no household are decided at the same time. Over 400 members in 220
/// households, in batches of 5 (several batches in flight at once, most sharing nothing, some
/// sharing a household or a cancelled claim), every decision is still the one the embedded
/// mode makes deciding the claims one after the other: no counter, history row or claim is
/// lost or crossed between batches in flight. (Whether a batch that shares a household really
/// waits is the lock's job, `Store::decide_signalling`; a race there would show here only by
/// chance.)
#[tokio::test]
async fn batches_decided_at_the_same_time_decide_like_the_embedded_mode() {
    let dir = std::env::temp_dir().join(format!("claims-concurrent-batches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{error}"));
    let (registry, claims) = (dir.join("registry.json"), dir.join("claims.jsonl"));
    generate(&registry, &["--members", "400", "--registry"]);
    generate(&claims, &["--members", "400", "--count", "1500", "--seed", "11"]);

    let fixture = Fixture::new("concurrent").await;
    let text = std::fs::read_to_string(&registry).unwrap_or_else(|error| panic!("{error}"));
    let parsed = claims_domain::contract::parse_registry(&text).unwrap_or_else(|error| panic!("registry: {error}"));
    let pack = claims_rules::RhaiPack::load(rules_dir()).unwrap_or_else(|error| panic!("{error}"));
    fixture
        .store
        .import_registry(&parsed, claims_domain::rules::RulePack::settings(&pack))
        .await
        .unwrap_or_else(|error| panic!("importing: {error}"));
    let mut config = fixture.config();
    config.batch_size = 5;
    let worker = WorkerThread::start(config);
    queue_decides_like_embedded(&fixture, &registry, &claims).await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes what `examples/fr/generate.py` prints with `arguments` to `path`.
fn generate(path: &std::path::Path, arguments: &[&str]) {
    let output = std::process::Command::new("python3")
        .arg(claims_e2e::repo().join("examples/fr/generate.py"))
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("running python3 examples/fr/generate.py: {error}"));
    assert!(output.status.success(), "generate.py {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::write(path, output.stdout).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// A GP visit of `member` on `date` (2025 or later: a 2,00 per-visit charge).
fn gp_visit(claim_id: &str, provider_id: &str, member_id: &str, date: &str) -> String {
    json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": provider_id, "member_id": member_id,
        "submitted_on": date, "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": date, "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}]
    })
    .to_string()
}

fn per_visit_counter(member_id: &str, year: &str) -> CounterKey {
    let member = MemberId::parse(member_id).unwrap_or_else(|error| panic!("{error}"));
    CounterKey { subject: Subject::Member(member), counter: "per_visit_charge".to_owned(), period: year.to_owned() }
}

async fn audit_count(fixture: &Fixture) -> usize {
    fixture.store.audit_entries(0, 100_000).await.unwrap_or_else(|error| panic!("reading the audit log: {error}")).len()
}

#[tokio::test]
async fn a_claim_sent_twice_gets_the_same_decision_and_moves_nothing_more() {
    let fixture = Fixture::new("twice").await;
    let worker = WorkerThread::start(fixture.config());
    let mut client = Client::connect(&fixture).await;
    let claim = gp_visit("C-TWICE", "P-GP-0001", "M-000002", "2025-03-04");
    let counter = per_visit_counter("M-000002", "2025");
    let deadline = Instant::now() + DEADLINE;

    client.publish(&fixture.topology, claim.as_bytes(), "first").await;
    let first = client.next_reply(deadline).await.unwrap_or_else(|| panic!("no first decision"));
    assert_eq!(correlation(&first), "first");
    let counter_after_first = fixture.store.counter(&counter).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(counter_after_first, 200, "the visit took a 2,00 per-visit charge");
    assert_eq!(audit_count(&fixture).await, 1);

    client.publish(&fixture.topology, claim.as_bytes(), "second").await;
    let second = client.next_reply(deadline).await.unwrap_or_else(|| panic!("no second decision"));
    assert_eq!(correlation(&second), "second");
    assert_eq!(message_id(&second), message_id(&first), "a repeat carries the original message id");
    assert!(!message_id(&first).is_empty());
    assert_eq!(second.data, first.data, "a repeat is the stored decision, byte for byte");
    assert_eq!(fixture.store.counter(&counter).await.unwrap_or_else(|error| panic!("{error}")), counter_after_first);
    assert_eq!(audit_count(&fixture).await, 1, "nothing new recorded");
    let stored = fixture.store.decision("P-GP-0001", "C-TWICE").await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(stored.as_ref(), Some(&json(&first.data)));

    client.close().await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_their_error_and_the_worker_goes_on() {
    let fixture = Fixture::new("poison").await;
    let worker = WorkerThread::start(fixture.config());
    let mut client = Client::connect(&fixture).await;
    let mut dead = client.consume(&fixture.topology.dead_queue).await;
    let poisons: [(&[u8], &str, &str); 3] = [
        (b"this is not JSON", "not-json", "not valid JSON"),
        (br#"{"schema":"claim/v9","claim_id":"C-9","provider_id":"P-GP-0001"}"#, "unknown-schema", "claim/v9"),
        (&[0xff, 0xfe, b'{'], "not-utf8", "UTF-8"),
    ];
    for (body, correlation_id, _) in poisons {
        client.publish(&fixture.topology, body, correlation_id).await;
    }
    let claim = gp_visit("C-AFTER", "P-GP-0001", "M-000004", "2025-05-06");
    client.publish(&fixture.topology, claim.as_bytes(), "after").await;

    let deadline = Instant::now() + DEADLINE;
    let reply =
        client.next_reply(deadline).await.unwrap_or_else(|| panic!("the claim after the poison got no decision"));
    assert_eq!(correlation(&reply), "after");
    assert_eq!(json(&reply.data)["outcome"], "complete");

    let mut errors = BTreeMap::new();
    while errors.len() < poisons.len() {
        let next = tokio::time::timeout_at(deadline, dead.next()).await;
        let Ok(Some(Ok(delivery))) = next else { panic!("only {} dead letters: {errors:?}", errors.len()) };
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let error = claims_worker::publish::header_text(&headers, ERROR_HEADER).unwrap_or_default();
        errors.insert(correlation(&delivery), (delivery.data.clone(), error));
    }
    for (body, correlation_id, problem) in poisons {
        let (dead_body, error) = &errors[correlation_id];
        assert_eq!(dead_body.as_slice(), body, "the dead letter keeps the original body");
        assert!(error.contains(problem), "{correlation_id}: {ERROR_HEADER} {error:?} should name {problem:?}");
    }

    client.close().await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
}

#[tokio::test]
async fn two_workers_stop_one_members_per_visit_charges_exactly_at_the_annual_cap() {
    let fixture = Fixture::new("cap").await;
    let mut config = fixture.config();
    // Small windows so that both workers hold claims of the member at the same time.
    config.prefetch = 8;
    config.batch_size = 4;
    let workers = [WorkerThread::start(config.clone()), WorkerThread::start(config)];
    let mut client = Client::connect(&fixture).await;

    // 40 visits at 2,00 = 80,00 of charges against a 50,00 cap; distinct days and doctors so
    // that neither the daily cap nor duplicate detection interferes.
    let providers = ["P-GP-0001", "P-GP-0002", "P-GP-0003"];
    let count = 40;
    for index in 0..count {
        let date = format!("2025-{:02}-{:02}", 1 + index % 12, 1 + index / 12);
        let claim = gp_visit(&format!("C-CAP-{index}"), providers[index % 3], "M-000001", &date);
        client.publish(&fixture.topology, claim.as_bytes(), &index.to_string()).await;
    }
    let deadline = Instant::now() + DEADLINE;
    let mut charges = BTreeMap::new();
    while charges.len() < count {
        let reply = client.next_reply(deadline).await.unwrap_or_else(|| panic!("only {} decisions", charges.len()));
        let decision = json(&reply.data);
        let charged: i64 = decision["lines"][0]["compulsory"]["deductions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|deduction| deduction["kind"] == "per_visit_charge")
            .filter_map(|deduction| deduction["amount"].as_i64())
            .sum();
        charges.insert(correlation(&reply), charged);
    }
    let counter = fixture.store.counter(&per_visit_counter("M-000001", "2025")).await;
    assert_eq!(counter.unwrap_or_else(|error| panic!("{error}")), 5000, "the counter stops at the cap");
    assert_eq!(charges.values().sum::<i64>(), 5000, "the decisions took exactly the cap");

    client.close().await;
    for worker in workers {
        worker.stop().await.unwrap_or_else(|error| panic!("stopping a worker: {error}"));
    }
    fixture.cleanup().await;
}

#[tokio::test]
async fn declaring_the_topology_is_idempotent_and_refuses_a_queue_without_its_safeguards() {
    let amqp_url = claims_testkit::amqp_url().await;
    let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("connecting: {error}"));
    let channel = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    let topology = Topology::with_prefix(&claims_testkit::unique_prefix("topology"));
    declare_topology(&channel, &topology).await.unwrap_or_else(|error| panic!("first declaration: {error}"));
    declare_topology(&channel, &topology).await.unwrap_or_else(|error| panic!("second declaration: {error}"));
    for queue in [&topology.submit_queue, &topology.dead_queue] {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }

    // A plain classic queue under the work queue's name (someone declared it by hand): the
    // worker must refuse to run on it rather than lose the delivery limit.
    let other = Topology::with_prefix(&claims_testkit::unique_prefix("topology"));
    let plain = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    plain
        .queue_declare(other.submit_queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let refused = declare_topology(&plain, &other).await;
    assert!(refused.is_err(), "a classic queue was accepted as the work queue");
    let cleanup = connection.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    for queue in [&other.submit_queue, &other.dead_queue] {
        let _ = cleanup.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for (exchange, _) in topology.exchanges().into_iter().chain(other.exchanges()) {
        let _ = cleanup.exchange_delete(exchange.into(), Default::default()).await;
    }
    let _ = connection.close(200, "test done".into()).await;
}
