//! The broker objects the worker relies on (exchanges, queues, bindings), named from one prefix,
//! and their idempotent declaration. Every option is spelled out with the reason it has that value.

use claims_store::Destination;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// How many times the broker delivers a claim before it gives up and dead-letters it. A claim
/// that crashes the worker every time (or that the worker keeps returning) must end in the
/// dead-letter queue, not loop forever (DESIGN "Reliability rules"). Five leaves room for a
/// few worker restarts; on RabbitMQ 3.x a `basic.nack` counts as a delivery too, which is why
/// the worker retries database failures in place instead of nacking (see `consume`).
pub const DELIVERY_LIMIT: i64 = 5;

/// The names of everything the worker declares. `Topology::with_prefix("")` gives the production
/// names; tests use a unique prefix so that they can run side by side on one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Where providers publish claim/v1 and cancellation/v1 (topic exchange).
    pub claims_exchange: String,
    /// Where decision/v1 messages go, routing key `decision.<outcome>`.
    pub decisions_exchange: String,
    /// Where payment messages go, routing key `third_party.<scheme>` or `reimbursement.<scheme>`.
    pub payments_exchange: String,
    /// The dead-letter exchange: poison messages, with the reason in `x-claims-error`.
    pub dead_letter_exchange: String,
    /// The work queue the worker consumes.
    pub submit_queue: String,
    /// Where dead-lettered messages rest until someone looks at them.
    pub dead_queue: String,
    /// The kind of `submit_queue`: quorum in production; classic only to compare (`claimctl bench`).
    pub submit_queue_type: QueueType,
}

/// The kind of the work queue. Quorum is the production choice: replicated, and the only kind
/// with a delivery limit on RabbitMQ 3.x. Classic (version 2) has shorter confirm tails on a slow
/// disk (stack.md 1.9) but no delivery limit, so a poison message that crashes the worker is
/// redelivered forever; it exists to measure what the queue type costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueType {
    #[default]
    Quorum,
    Classic,
}

impl Default for Topology {
    fn default() -> Topology {
        Topology::with_prefix("")
    }
}

impl Topology {
    /// The production names with `prefix` in front of each (`"t-x."` gives `t-x.claims.submit`).
    pub fn with_prefix(prefix: &str) -> Topology {
        Topology {
            claims_exchange: format!("{prefix}claims"),
            decisions_exchange: format!("{prefix}claims.decisions"),
            payments_exchange: format!("{prefix}claims.payments"),
            dead_letter_exchange: format!("{prefix}claims.dlx"),
            submit_queue: format!("{prefix}claims.submit"),
            dead_queue: format!("{prefix}claims.dead"),
            submit_queue_type: QueueType::Quorum,
        }
    }

    /// The same names with a work queue of kind `queue_type`.
    pub fn with_submit_queue_type(self, queue_type: QueueType) -> Topology {
        Topology { submit_queue_type: queue_type, ..self }
    }

    /// The exchange and routing key an outgoing message is published with. A reply goes through
    /// the default exchange (`""`), which routes by queue name.
    pub fn route<'a>(&'a self, destination: &'a Destination, routing_key: &'a str) -> (&'a str, &'a str) {
        match destination {
            Destination::Decisions => (&self.decisions_exchange, routing_key),
            Destination::Payments => (&self.payments_exchange, routing_key),
            Destination::ReplyTo(queue) => ("", queue),
        }
    }

    /// Every exchange, with its kind (all topic: consumers bind with patterns such as
    /// `decision.*` or `third_party.#`).
    pub fn exchanges(&self) -> [(&str, ExchangeKind); 4] {
        [
            (&self.claims_exchange, ExchangeKind::Topic),
            (&self.decisions_exchange, ExchangeKind::Topic),
            (&self.payments_exchange, ExchangeKind::Topic),
            (&self.dead_letter_exchange, ExchangeKind::Topic),
        ]
    }
}

/// The arguments of the work queue (stack.md 1.4).
pub fn submit_queue_arguments(topology: &Topology) -> FieldTable {
    let mut arguments = FieldTable::default();
    if topology.submit_queue_type == QueueType::Classic {
        arguments.insert("x-queue-type".into(), long_string("classic"));
        // Version 2: the message store measured faster on this class of machine (stack.md 1.9).
        arguments.insert("x-queue-version".into(), AMQPValue::LongLongInt(2));
        // Classic queues have no delivery limit and dead-letter at most once on RabbitMQ 3.x.
        arguments.insert("x-dead-letter-exchange".into(), long_string(&topology.dead_letter_exchange));
        arguments.insert("x-overflow".into(), long_string("reject-publish"));
        return arguments;
    }
    // Replicated, fsynced before the publisher's confirm, and the only queue type with a
    // delivery limit on RabbitMQ 3.x.
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    // Poison messages stop being redelivered after DELIVERY_LIMIT deliveries.
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
    // ... and go to the dead-letter exchange instead of being dropped.
    arguments.insert("x-dead-letter-exchange".into(), long_string(&topology.dead_letter_exchange));
    // The broker re-publishes dead letters with confirms and keeps them until confirmed
    // (the default, at-most-once, can lose them).
    arguments.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
    // at-least-once dead lettering requires it; it also means a full queue refuses new claims
    // (the provider's publish is nacked) instead of silently dropping the oldest one.
    arguments.insert("x-overflow".into(), long_string("reject-publish"));
    arguments
}

/// The arguments of the dead-letter queue: a quorum queue too, so what lands there survives a
/// broker restart. No limit and no dead-letter exchange of its own: nothing consumes it
/// automatically, an operator inspects and re-publishes.
pub fn dead_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    arguments
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// Declares the exchanges, the two queues and their bindings. Idempotent: declaring what
/// exists with the same options is a no-op; declaring it with different options fails with
/// `PRECONDITION_FAILED`, which is what we want to hear about rather than run on a queue that
/// lacks its delivery limit.
pub async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    for (name, kind) in topology.exchanges() {
        channel
            .exchange_declare(
                ShortString::from(name),
                kind,
                ExchangeDeclareOptions {
                    // Create it if missing: passive would only check.
                    passive: false,
                    // Survives a broker restart, like the quorum queues bound to it.
                    durable: true,
                    // Must outlive its bindings: a decisions exchange with no consumer yet is normal.
                    auto_delete: false,
                    // Publishers (providers, this worker) publish to every one of them directly.
                    internal: false,
                    // Wait for declare-ok so a mismatch fails here, not on a later publish.
                    nowait: false,
                },
                FieldTable::default(),
            )
            .await?;
    }
    let queues = [
        (&topology.submit_queue, submit_queue_arguments(topology), &topology.claims_exchange),
        (&topology.dead_queue, dead_queue_arguments(), &topology.dead_letter_exchange),
    ];
    for (queue, arguments, exchange) in queues {
        channel
            .queue_declare(
                ShortString::from(queue.as_str()),
                QueueDeclareOptions {
                    passive: false,
                    // Quorum queues must be durable.
                    durable: true,
                    // Shared by every worker process (quorum queues cannot be exclusive anyway).
                    exclusive: false,
                    // Claims wait in the queue while no worker runs.
                    auto_delete: false,
                    nowait: false,
                },
                arguments,
            )
            .await?;
        channel
            .queue_bind(
                ShortString::from(queue.as_str()),
                ShortString::from(exchange.as_str()),
                // Every routing key: the claims exchange takes `claim`, `cancellation` or
                // whatever a provider uses; dead letters keep their original key.
                "#".into(),
                QueueBindOptions { nowait: false },
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(table: &FieldTable, key: &str) -> Option<String> {
        match table.inner().get(key) {
            Some(AMQPValue::LongString(value)) => Some(value.to_string()),
            _ => None,
        }
    }

    #[test]
    fn default_names_are_the_production_names() {
        let topology = Topology::default();
        assert_eq!(topology.claims_exchange, "claims");
        assert_eq!(topology.decisions_exchange, "claims.decisions");
        assert_eq!(topology.payments_exchange, "claims.payments");
        assert_eq!(topology.dead_letter_exchange, "claims.dlx");
        assert_eq!(topology.submit_queue, "claims.submit");
        assert_eq!(topology.dead_queue, "claims.dead");
    }

    #[test]
    fn a_prefix_goes_in_front_of_every_name() {
        let topology = Topology::with_prefix("t-x.");
        for (name, _) in topology.exchanges() {
            assert!(name.starts_with("t-x.claims"), "{name}");
        }
        assert_eq!(topology.submit_queue, "t-x.claims.submit");
        assert_eq!(topology.dead_queue, "t-x.claims.dead");
        let arguments = submit_queue_arguments(&topology);
        assert_eq!(text(&arguments, "x-dead-letter-exchange").as_deref(), Some("t-x.claims.dlx"));
    }

    #[test]
    fn the_work_queue_is_a_quorum_queue_with_safe_dead_lettering() {
        let arguments = submit_queue_arguments(&Topology::default());
        assert_eq!(text(&arguments, "x-queue-type").as_deref(), Some("quorum"));
        assert_eq!(arguments.inner().get("x-delivery-limit"), Some(&AMQPValue::LongLongInt(5)));
        assert_eq!(text(&arguments, "x-dead-letter-strategy").as_deref(), Some("at-least-once"));
        assert_eq!(text(&arguments, "x-overflow").as_deref(), Some("reject-publish"));
        assert_eq!(text(&dead_queue_arguments(), "x-queue-type").as_deref(), Some("quorum"));
    }

    #[test]
    fn a_classic_work_queue_drops_only_the_quorum_only_arguments() {
        let topology = Topology::with_prefix("p.").with_submit_queue_type(QueueType::Classic);
        let arguments = submit_queue_arguments(&topology);
        assert_eq!(text(&arguments, "x-queue-type").as_deref(), Some("classic"));
        assert_eq!(arguments.inner().get("x-queue-version"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(text(&arguments, "x-dead-letter-exchange").as_deref(), Some("p.claims.dlx"));
        assert_eq!(text(&arguments, "x-overflow").as_deref(), Some("reject-publish"));
        assert_eq!(arguments.inner().get("x-delivery-limit"), None);
        assert_eq!(arguments.inner().get("x-dead-letter-strategy"), None);
        assert_eq!(Topology::default().submit_queue_type, QueueType::Quorum);
    }

    #[test]
    fn replies_go_through_the_default_exchange() {
        let topology = Topology::with_prefix("p.");
        let reply = Destination::ReplyTo("amq.gen-1".to_owned());
        assert_eq!(topology.route(&reply, "ignored"), ("", "amq.gen-1"));
        assert_eq!(
            topology.route(&Destination::Decisions, "decision.complete"),
            ("p.claims.decisions", "decision.complete")
        );
        assert_eq!(
            topology.route(&Destination::Payments, "third_party.compulsory"),
            ("p.claims.payments", "third_party.compulsory")
        );
    }
}
