//! PostgreSQL, the mutual's system of record: the registry, rule pack sources by content hash,
//! counters, received claims keyed by `(provider_id, claim_id)`, decisions, the hash-chained
//! audit log and the outbox of messages to publish. The only crate that speaks SQL.
//!
//! [`Store::decide`] is step 10 of the pipeline for a micro-batch: in one transaction (with
//! synchronous commit) it locks the households involved, reads what the pure pipeline needs,
//! adjudicates, and records the decision, the counter moves, the audit entry and the outbox
//! rows. The caller publishes the outbox messages and only then acknowledges the inputs.
//!
//! Code map: `registry` (import, rule sources, the snapshot a batch reads), `decide` (the
//! batch: `locks`, the in-memory `cache` of counters and history, `record` = the ledger's rules
//! per message, `finish` = audit, bulk writes, outbox), `audit` (the chain in PostgreSQL),
//! `outbox` (messages, relay), `publications` (which rule pack version is in force, and who
//! put it there: an append-only history), `queries` (reads), [`stored`] (jsonb forms). The
//! schema and why it is so: `migrations/`; the regulator's read-only role `claims_regulator` (the audit log,
//! its head, the decisions, the rule sources) and the audit head that only moves forward:
//! `migrations/*_regulator.sql`.

mod audit;
mod decide;
mod outbox;
mod publications;
mod queries;
mod registry;
pub mod stored;

use std::collections::BTreeSet;
use std::time::Duration;

use claims_domain::accumulators::CounterKey;
use claims_domain::registry::Registry;
use claims_domain::rules::{PackSettings, RulePack};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Registry(#[from] claims_domain::contract::RegistryError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A message as it came off the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The body, as UTF-8 text (a body that is not UTF-8 is dead-lettered by the caller).
    pub body: String,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The broker user that published it: the AMQP `user_id` property, which RabbitMQ checks
    /// against the publishing connection's user. A claim or cancellation is decided only when
    /// the registry lists this user among its provider's `submitters`; `None` is refused.
    pub user_id: Option<String>,
}

/// Where an outgoing message goes; the worker maps these to its exchange names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `claims.decisions`, routing key `decision.<outcome>`.
    Decisions,
    /// `claims.payments`, routing key `third_party.<scheme>` or `reimbursement.<scheme>`.
    Payments,
    /// The default exchange, routing key = the claim's `reply_to` queue.
    ReplyTo(String),
}

/// A message to publish. `outbox_id` is set for rows of the outbox (mark them published after
/// the broker confirms); repeats of stored decisions are published without a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub outbox_id: Option<i64>,
    pub destination: Destination,
    pub routing_key: String,
    /// Stable per decision (and per payment): duplicates after a crash carry the same id.
    pub message_id: String,
    pub correlation_id: Option<String>,
    pub body: Vec<u8>,
}

/// What became of one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Recorded (or found already recorded): publish these, then ack.
    Publish(Vec<OutboxMessage>),
    /// Not JSON, not an object, or an unknown schema: nothing recorded; the worker sends it to
    /// the dead-letter queue with this reason, then acks.
    DeadLetter { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub members: usize,
    pub providers: usize,
}

/// A claim whose last decision is `error`, with the script position that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorClaim {
    pub provider_id: String,
    pub claim_id: String,
    pub position: String,
    pub message: String,
}

/// The pool size: enough concurrent committers for PostgreSQL's group commit on a small box,
/// few enough not to thrash two cores (stack.md 4.5).
pub const MAX_CONNECTIONS: u32 = 8;

/// How many error claims [`Store::retry_errors`] re-adjudicates per transaction.
const RETRY_BATCH: usize = 50;

pub use outbox::PUBLISH_LEASE;
pub use publications::{Publication, PublicationAction, PublicationError, Published};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects with a small pool (the worker's hot path checks out connections itself).
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // Skips a round trip on every checkout; a dead connection fails its statement and
            // the caller retries the batch, which it must be able to do anyway.
            .test_before_acquire(false)
            .connect(database_url)
            .await?;
        Ok(Store { pool })
    }

    /// A store over an existing pool (tests, or a caller that tunes its own pool).
    pub fn from_pool(pool: PgPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations (safe when several processes start at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.apply_migrations().await.map(|_| ())
    }

    /// Applies the embedded migrations and returns the ones this call applied, as
    /// `"<version> <description>"` (empty when the schema was up to date). sqlx's migrator
    /// takes an advisory lock, so workers starting together apply each migration once.
    pub async fn apply_migrations(&self) -> Result<Vec<String>, StoreError> {
        let applied_before = queries::applied_migrations(&self.pool).await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(MIGRATOR
            .iter()
            .filter(|migration| !applied_before.contains(&migration.version))
            .map(|migration| format!("{} {}", migration.version, migration.description))
            .collect())
    }

    /// The embedded migrations not yet applied, as `"<version> <description>"`: the worker's
    /// check at start, since its role (`claims_worker`) may read the schema's version but not
    /// change the schema. Migrations applied by a newer release are not a problem.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let applied = queries::applied_migrations(&self.pool).await?;
        Ok(MIGRATOR
            .iter()
            .filter(|migration| !applied.contains(&migration.version))
            .map(|migration| format!("{} {}", migration.version, migration.description))
            .collect())
    }

    /// Imports a registry: all or nothing; refuses (naming them) plans and agreements the pack
    /// does not know.
    pub async fn import_registry(&self, registry: &Registry, pack: &PackSettings) -> Result<ImportSummary, StoreError> {
        registry::import(&self.pool, registry, pack).await
    }

    /// Stores a pack's sources under its content hash (idempotent).
    pub async fn save_rule_pack(
        &self,
        pack: &str,
        version: &str,
        sources: &[(String, String)],
    ) -> Result<(), StoreError> {
        registry::save_rule_pack(&self.pool, pack, version, sources).await
    }

    /// The sources stored for a pack version, as `(path, text)` sorted by path: what a replay
    /// loads to run the very scripts that decided.
    pub async fn rule_pack_sources(&self, version: &str) -> Result<Option<Vec<(String, String)>>, StoreError> {
        queries::rule_pack_sources(&self.pool, version).await
    }

    /// Decides a micro-batch in one transaction. Returns one [`Handled`] per message, in order.
    pub async fn decide(&self, messages: &[Incoming], pack: &dyn RulePack) -> Result<Vec<Handled>, StoreError> {
        decide::decide(&self.pool, messages, pack, &mut || {}).await
    }

    /// [`Store::decide`], calling `on_locked` once the batch holds every lock it takes (its
    /// claims, its members' households, the messages it refuses) and before it reads anything
    /// those locks protect. A batch started after that point and sharing any of those keys
    /// waits for this one's commit, so it sees this one's effects exactly as if it had started
    /// after the commit: the worker starts its next batch there instead of after the commit.
    /// Not called if the transaction fails before taking its locks.
    pub async fn decide_signalling(
        &self,
        messages: &[Incoming],
        pack: &dyn RulePack,
        on_locked: &mut (dyn FnMut() + Send),
    ) -> Result<Vec<Handled>, StoreError> {
        decide::decide(&self.pool, messages, pack, on_locked).await
    }

    /// Outbox rows not yet confirmed and older than `older_than` (a crashed publisher's), locked
    /// so two workers do not send the same rows at once: each row handed out is kept from other
    /// callers for [`PUBLISH_LEASE`].
    pub async fn pending_outbox(&self, older_than: Duration, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        outbox::pending(&self.pool, older_than, limit).await
    }

    pub async fn mark_published(&self, outbox_ids: &[i64]) -> Result<(), StoreError> {
        outbox::mark_published(&self.pool, outbox_ids).await
    }

    /// Claims whose last decision is `error`, by script position, then provider and claim.
    pub async fn error_claims(&self) -> Result<Vec<ErrorClaim>, StoreError> {
        queries::error_claims(&self.pool).await
    }

    /// Re-adjudicates every claim whose last decision is `error` with `pack`; returns what to
    /// publish (outbox rows: mark them published once confirmed).
    pub async fn retry_errors(&self, pack: &dyn RulePack) -> Result<Vec<OutboxMessage>, StoreError> {
        let inputs = queries::error_inputs(&self.pool).await?;
        let mut to_publish = Vec::new();
        // Through `decide`, so a retry takes the same locks and records exactly like a claim
        // arriving again; small transactions keep the locks short.
        for chunk in inputs.chunks(RETRY_BATCH) {
            // The original submitter, as its audit entry recorded it: a retry is that
            // provider's claim again, not the operator's.
            let messages: Vec<Incoming> = chunk
                .iter()
                .map(|(body, user_id)| Incoming {
                    body: body.clone(),
                    reply_to: None,
                    correlation_id: None,
                    user_id: user_id.clone(),
                })
                .collect();
            for handled in decide::decide(&self.pool, &messages, pack, &mut || {}).await? {
                // A claim another worker re-decided meanwhile comes back as a repeat (no outbox
                // row): it was published when it was decided.
                if let Handled::Publish(messages) = handled {
                    to_publish.extend(messages.into_iter().filter(|message| message.outbox_id.is_some()));
                }
            }
        }
        Ok(to_publish)
    }

    /// The last decision/v1 recorded for a claim (the original, or its reversal once cancelled).
    pub async fn decision(&self, provider_id: &str, claim_id: &str) -> Result<Option<Value>, StoreError> {
        queries::decision(&self.pool, provider_id, claim_id).await
    }

    pub async fn counter(&self, key: &CounterKey) -> Result<i64, StoreError> {
        queries::counter(&self.pool, key).await
    }

    /// Up to `limit` audit entries after sequence `after` (0 for the first), as
    /// `(seq, exact JSON line)` in order, for `claims_audit::verify_next` and exports.
    pub async fn audit_entries(&self, after: u64, limit: i64) -> Result<Vec<(u64, String)>, StoreError> {
        audit::entries(&self.pool, after, limit).await
    }

    /// The head of the audit chain: the last sequence number and its hash (`0` and the genesis
    /// hash while the log is empty).
    pub async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        audit::head(&self.pool).await
    }

    /// Every rule pack version (content hash) whose sources are stored.
    pub async fn rule_versions(&self) -> Result<BTreeSet<String>, StoreError> {
        queries::rule_versions(&self.pool).await
    }
}
