//! Who may submit, with two real broker users: the registry lets `prov-a` submit for provider A
//! and `prov-b` for provider B. RabbitMQ itself refuses a `user_id` that is not the
//! publisher's own user; the worker refuses a user the registry does not map to the claim's
//! provider, or no user at all, without taking the claim's key, so the provider's real claim
//! is decided afterwards. The users are created with `rabbitmqctl` (so the broker must run on
//! this machine, and the test as a user allowed to run `rabbitmqctl`, here root) with the
//! permissions SECURITY.md gives providers, and deleted at the end, even on failure.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::process::Command;

use claims_domain::contract::parse_registry;
use claims_domain::ids::ProviderId;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde_json::{Value, json};
use tokio::time::Instant;
use worker_support::{DEADLINE, Fixture, WorkerThread, correlation, json, registry_file, rules_dir};

const PROVIDER_A: &str = "P-GP-0001";
const PROVIDER_B: &str = "P-GP-0002";

/// Runs `rabbitmqctl ARGS`, failing the test with its output if it fails.
fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl").args(args).output().unwrap_or_else(|error| {
        panic!("running rabbitmqctl (this test creates broker users; it needs RabbitMQ on this machine): {error}")
    });
    assert!(
        output.status.success(),
        "rabbitmqctl {}: {}{}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A regular expression matching exactly `text`.
fn exactly(text: &str) -> String {
    let mut pattern = String::from("^");
    for character in text.chars() {
        if !character.is_ascii_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('$');
    pattern
}

/// Two provider users on vhost `/`, deleted when dropped (a failing test too).
struct BrokerUsers {
    names: Vec<String>,
}

impl BrokerUsers {
    /// Users `<prefix>prov-a` and `<prefix>prov-b`, each with a provider's permissions: configure
    /// and read only server-named reply queues, write only the claims exchange.
    fn create(prefix: &str, claims_exchange: &str, password: &str) -> BrokerUsers {
        let mut users = BrokerUsers { names: Vec::new() };
        for role in ["prov-a", "prov-b"] {
            let name = format!("{prefix}{role}");
            rabbitmqctl(&["add_user", &name, password]);
            users.names.push(name.clone());
            rabbitmqctl(&[
                "set_permissions",
                "-p",
                "/",
                &name,
                "^amq\\.gen-.*",
                &exactly(claims_exchange),
                "^amq\\.gen-.*",
            ]);
        }
        users
    }
}

impl Drop for BrokerUsers {
    fn drop(&mut self) {
        for name in &self.names {
            // Deleting a user closes its connections too.
            let _ = Command::new("rabbitmqctl").args(["delete_user", name]).output();
        }
    }
}

/// `url` logging in as `user:password` instead.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("not a URL: {url}"));
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

/// A provider as a least-privileged broker user: publishes with confirms, reads its decisions
/// on a server-named reply queue.
struct Provider {
    connection: Connection,
    channel: Channel,
    reply_queue: ShortString,
    replies: Consumer,
    exchange: String,
}

impl Provider {
    async fn connect(url: &str, exchange: &str) -> Provider {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
        let channel = confirming_channel(&connection).await;
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
        let queue = channel
            .queue_declare(
                ShortString::default(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                arguments,
            )
            .await
            .unwrap_or_else(|error| panic!("declaring a reply queue: {error}"));
        let replies = channel
            .basic_consume(
                queue.name().clone(),
                ShortString::default(),
                BasicConsumeOptions { no_ack: true, exclusive: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("consuming replies: {error}"));
        Provider { connection, channel, reply_queue: queue.name().clone(), replies, exchange: exchange.to_owned() }
    }

    fn properties(&self, correlation_id: &str, user_id: Option<&str>) -> BasicProperties {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_reply_to(self.reply_queue.clone())
            .with_correlation_id(correlation_id.into());
        match user_id {
            Some(user) => properties.with_user_id(user.into()),
            None => properties,
        }
    }

    /// Publishes on `channel` and waits for the broker's answer: `Err` when it closed the
    /// channel instead of confirming.
    async fn publish_on(
        &self,
        channel: &Channel,
        body: &str,
        correlation_id: &str,
        user_id: Option<&str>,
    ) -> Result<(), lapin::Error> {
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                "claim".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                self.properties(correlation_id, user_id),
            )
            .await?;
        let confirmation = confirm.await?;
        assert!(confirmation.is_ack(), "the broker nacked {correlation_id}");
        Ok(())
    }

    async fn publish(&self, body: &str, correlation_id: &str, user_id: Option<&str>) {
        self.publish_on(&self.channel, body, correlation_id, user_id)
            .await
            .unwrap_or_else(|error| panic!("publishing {correlation_id}: {error}"));
    }

    /// The decision replied under `correlation_id` (replies arrive in the order published).
    async fn decision(&mut self, correlation_id: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        let delivery = match tokio::time::timeout_at(deadline, self.replies.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            other => panic!("no decision for {correlation_id} within {DEADLINE:?}: {other:?}"),
        };
        assert_eq!(correlation(&delivery), correlation_id);
        json(&delivery.data)
    }

    async fn close(self) {
        let _ = self.connection.close(200, "test done".into()).await;
    }
}

async fn confirming_channel(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.unwrap_or_else(|error| panic!("opening a channel: {error}"));
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap_or_else(|error| panic!("{error}"));
    channel
}

fn gp_visit(claim_id: &str, provider_id: &str, member_id: &str) -> String {
    json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": provider_id, "member_id": member_id,
        "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": "2025-11-05", "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}]
    })
    .to_string()
}

fn reason(decision: &Value) -> String {
    let reason = &decision["reasons"][0];
    let text = |name: &str| reason[name].as_str().unwrap_or_default().to_owned();
    format!("{}-{}: {}", text("group"), text("code"), text("text"))
}

#[tokio::test]
async fn a_provider_submits_only_as_itself_and_only_for_itself() {
    let fixture = Fixture::new("submitters").await;
    let password = format!("pw{}", std::process::id());
    let users = BrokerUsers::create(&fixture.prefix, &fixture.topology.claims_exchange, &password);
    let (prov_a, prov_b) = (users.names[0].clone(), users.names[1].clone());

    // The example registry, with provider A's claims coming from prov-a only and B's from
    // prov-b only.
    let pack = RhaiPack::load(rules_dir()).unwrap_or_else(|error| panic!("{error}"));
    let mut registry =
        parse_registry(&std::fs::read_to_string(registry_file()).unwrap_or_else(|error| panic!("{error}")))
            .unwrap_or_else(|error| panic!("{error}"));
    for (provider, user) in [(PROVIDER_A, &prov_a), (PROVIDER_B, &prov_b)] {
        let provider = registry.providers.get_mut(&ProviderId::parse(provider).unwrap()).unwrap();
        provider.submitters = [user.clone()].into();
    }
    fixture.store.import_registry(&registry, pack.settings()).await.unwrap_or_else(|error| panic!("{error}"));
    let sources: Vec<(String, String)> =
        pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    fixture.store.save_rule_pack("fr", pack.version(), &sources).await.unwrap_or_else(|error| panic!("{error}"));
    // Declared by the operator (here the worker's user), never by providers: they may not
    // configure anything but their reply queues.
    let admin = Connection::connect(&fixture.amqp_url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("connecting: {error}"));
    let admin_channel = admin.create_channel().await.unwrap_or_else(|error| panic!("{error}"));
    claims_worker::declare_topology(&admin_channel, &fixture.topology).await.unwrap_or_else(|error| panic!("{error}"));
    let _ = admin.close(200, "declared".into()).await;
    let worker = WorkerThread::start(fixture.config());
    let exchange = fixture.topology.claims_exchange.clone();
    let mut a = Provider::connect(&as_user(&fixture.amqp_url, &prov_a, &password), &exchange).await;
    let mut b = Provider::connect(&as_user(&fixture.amqp_url, &prov_b, &password), &exchange).await;

    // prov-a for A: decided normally.
    a.publish(&gp_visit("C-SUB-1", PROVIDER_A, "M-000001"), "own", Some(&prov_a)).await;
    let own = a.decision("own").await;
    assert_eq!((own["outcome"].as_str(), own["provider_id"].as_str()), (Some("complete"), Some(PROVIDER_A)));

    // prov-a for B, as itself: rejected, naming both.
    let forged = gp_visit("C-SUB-2", PROVIDER_B, "M-000002");
    a.publish(&forged, "forged", Some(&prov_a)).await;
    let refused = a.decision("forged").await;
    assert_eq!(refused["outcome"], "rejected");
    assert_eq!(
        reason(&refused),
        format!("CO-208: broker user {prov_a:?} may not submit claims for provider \"{PROVIDER_B}\"")
    );

    // prov-a pretending to be prov-b: the broker closes the channel; nothing reaches the queue.
    let impersonating = confirming_channel(&a.connection).await;
    let outcome =
        a.publish_on(&impersonating, &gp_visit("C-SUB-3", PROVIDER_B, "M-000002"), "impersonated", Some(&prov_b)).await;
    let error = outcome.expect_err("the broker must refuse another user's user_id");
    assert!(error.to_string().contains("PRECONDITION_FAILED"), "{error}");
    assert!(!impersonating.status().connected(), "the channel is closed");

    // No user_id at all: rejected.
    a.publish(&gp_visit("C-SUB-4", PROVIDER_A, "M-000001"), "anonymous", None).await;
    let anonymous = a.decision("anonymous").await;
    assert_eq!(
        reason(&anonymous),
        format!(
            "CO-208: the message has no user_id: only a broker user the registry names may submit claims for provider \"{PROVIDER_A}\""
        )
    );

    // B's real claim under the forged claim's id: not blocked by the forgery.
    b.publish(&forged, "genuine", Some(&prov_b)).await;
    let genuine = b.decision("genuine").await;
    assert_eq!((genuine["outcome"].as_str(), genuine["claim_id"].as_str()), (Some("complete"), Some("C-SUB-2")));
    assert_ne!(genuine["audit"]["seq"], refused["audit"]["seq"]);

    let stored = |claim_id: &'static str, provider_id: &'static str| {
        let store = fixture.store.clone();
        async move { store.decision(provider_id, claim_id).await.unwrap_or_else(|error| panic!("{error}")) }
    };
    assert_eq!(
        stored("C-SUB-2", PROVIDER_B).await.map(|decision| decision["outcome"].clone()),
        Some(json!("complete"))
    );
    // Published before the anonymous claim, which was decided: the broker kept it out.
    assert_eq!(stored("C-SUB-3", PROVIDER_B).await, None);
    assert_eq!(stored("C-SUB-4", PROVIDER_A).await, None, "a refusal takes no claim key");

    // Every entry, refusals included, replays to the same decision from the database.
    let entries = fixture.store.audit_entries(0, 100).await.unwrap_or_else(|error| panic!("{error}"));
    let submitted_by: Vec<Value> = entries
        .iter()
        .map(|(_, text)| {
            serde_json::from_str::<Value>(text).unwrap_or_else(|error| panic!("{error}"))["submitted_by"].clone()
        })
        .collect();
    assert_eq!(submitted_by, [json!(prov_a), json!(prov_a), Value::Null, json!(prov_b)]);
    let url = fixture.database.url.clone();
    let (code, output) =
        tokio::task::spawn_blocking(move || claims_e2e::claimctl(&["audit", "replay", "--database-url", &url]))
            .await
            .unwrap_or_else(|error| panic!("claimctl audit replay: {error}"));
    assert_eq!(code, 0, "{output}");
    let identical = output.lines().find_map(|line| line.strip_prefix("identical:")).map(str::trim);
    assert_eq!(identical, Some(entries.len().to_string().as_str()), "{output}");

    a.close().await;
    b.close().await;
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    drop(users);
    fixture.cleanup().await;
}
