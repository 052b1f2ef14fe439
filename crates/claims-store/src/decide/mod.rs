//! [`crate::Store::decide`]: step 10 of the pipeline for a micro-batch, in one transaction.
//!
//! Order of work, and why:
//! 1. parse every message (pure);
//! 2. lock the batch's claim keys, then read their `claims` rows and the registry (see
//!    [`locks`] for the order of the phases); check each message's broker user against its
//!    provider's `submitters` and lock the records of the messages refused;
//! 3. lock the households involved, then load the counters and line history they need;
//! 4. decide message after message against an in-memory working copy ([`cache`]), so a later
//!    message of the batch sees what an earlier one did, exactly as the embedded ledger would;
//! 5. lock the audit head, chain the batch's entries, write everything in bulk, commit
//!    ([`finish`]).

mod cache;
mod finish;
mod locks;
mod record;

use std::collections::{BTreeSet, HashMap};

use claims_domain::accumulators::{CounterMove, Subject};
use claims_domain::contract::{Message, Rejection, RejectionKind, parse_message, submitter_refusal};
use claims_domain::date::Date;
use claims_domain::decision::{Decision, Outcome};
use claims_domain::ids::MemberId;
use claims_domain::ledger::Effect;
use claims_domain::pipeline::LineFingerprint;
use claims_domain::rules::{PackSettings, RulePack};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::registry::RegistryCache;
use crate::stored::{fingerprints_from_json, moves_from_json};
use crate::{Handled, Incoming, StoreError};
use cache::{CounterCache, HistoryCache};

/// `(provider_id, claim_id)`.
type ClaimKey = (String, String);

/// Periods whose counters are loaded whole for a claim besides its lines' years and days:
/// frequencies (`last`), lifetime counters (`all`) and member debts (period = scheme).
const ALWAYS_LOADED_PERIODS: [&str; 4] = ["last", "all", "compulsory", "supplementary"];

/// A decision/v1 message of the `claims` table, or one placed in the audit log at the end of
/// this batch (the index of its [`NewRecord`]).
#[derive(Debug, Clone)]
pub(crate) enum DecisionRef {
    Stored { body: Value, message_id: String },
    Pending(usize),
}

/// A `claims` row as this batch sees it.
struct ClaimRow {
    member_id: String,
    household_id: Option<String>,
    input: String,
    outcome: Outcome,
    decision: DecisionRef,
    /// The domain decision when decided in this batch; a row read from the table decodes
    /// `decision` when it is reversed.
    decided: Option<Decision>,
    moves: Vec<CounterMove>,
    fingerprints: Vec<LineFingerprint>,
    reversal: Option<DecisionRef>,
    changed: bool,
}

/// A new decision: an audit entry and outbox rows at the end of the batch.
pub(crate) struct NewRecord {
    input: String,
    effect: Effect,
    decision: Decision,
    reply_to: Option<String>,
    correlation_id: Option<String>,
    user_id: Option<String>,
}

/// What each message will become once the batch is placed in the audit log.
enum Planned {
    DeadLetter(String),
    New(usize),
    Repeat { decision: DecisionRef, reply_to: Option<String>, correlation_id: Option<String> },
}

struct Batch {
    registry: RegistryCache,
    counters: CounterCache,
    history: HistoryCache,
    claims: HashMap<ClaimKey, ClaimRow>,
    records: Vec<NewRecord>,
    /// Invalid messages by the SHA-256 of their bytes, and messages refused for their
    /// submitter by [`refused_key`]: decided before, or earlier in this batch.
    rejected: HashMap<String, DecisionRef>,
    /// Those first decided in this batch (key, record index), written at the end.
    new_rejected: Vec<(String, usize)>,
}

/// The key of an invalid message: the SHA-256 of its exact bytes, hex.
fn body_key(body: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body.as_bytes()))
}

/// The key of a message refused for its submitter: its bytes and who sent them. Never the
/// claim's `(provider_id, claim_id)`: a forged claim must not take the key of the provider's
/// real one. The same bytes from the same user (a redelivery) get the same refusal again.
fn refused_key(incoming: &Incoming) -> String {
    let body = body_key(&incoming.body);
    match &incoming.user_id {
        Some(user) => format!("{body} from user {user:?}"),
        None => format!("{body} with no user_id"),
    }
}

/// The provider a claim or cancellation is submitted for.
fn provider_id(message: &Message) -> &claims_domain::ids::ProviderId {
    match message {
        Message::Claim(claim) => &claim.provider_id,
        Message::Cancellation(cancellation) => &cancellation.provider_id,
    }
}

/// How a batch's transaction starts (see `decide`).
const BEGIN_BATCH: &str = "BEGIN; SET LOCAL synchronous_commit = on; SET LOCAL plan_cache_mode = force_generic_plan; \
                           SET LOCAL enable_seqscan = off";

pub(crate) async fn decide(
    pool: &PgPool,
    messages: &[Incoming],
    pack: &dyn RulePack,
    on_locked: &mut (dyn FnMut() + Send),
) -> Result<Vec<Handled>, StoreError> {
    #[expect(clippy::result_large_err, reason = "the contract's own type; parsed once per message")]
    fn parse(incoming: &Incoming) -> Result<Message, Rejection> {
        parse_message(&incoming.body)
    }
    let parsed: Vec<Result<Message, Rejection>> = messages.iter().map(parse).collect();
    // Explicit, whatever the server or role default: the caller acknowledges the inputs to the
    // broker right after this commit, so the commit must be on disk first. An asynchronous
    // commit lost in a crash would lose claims RabbitMQ has already forgotten.
    //
    // Plans: each statement of a batch is planned once per connection and its plan kept
    // (`force_generic_plan`), with sequential scans priced out (`enable_seqscan = off`). Every
    // statement here reads by key (see `PROBE` in `cache`), so the plan that is right for a
    // table of millions of rows is an index probe, and the kept plan is that one whatever the
    // table held when it was made. Planning each statement anew (custom plans, as before)
    // cost more than running it for small batches: 1.1 ms of planning against 0.85 ms of
    // execution per batch of one claim (pg_stat_statements, paced 250 claims/s).
    //
    // Sent with the BEGIN as one simple query: one round trip instead of two. `SET LOCAL`
    // ends with the transaction, so a pooled connection goes back with its defaults.
    let mut transaction = pool.begin_with(BEGIN_BATCH).await?;
    let (mut batch, refusals) = Batch::prepare(&mut transaction, messages, &parsed, pack.settings()).await?;
    on_locked();
    let mut plan = Vec::with_capacity(messages.len());
    for ((incoming, message), refusal) in messages.iter().zip(parsed).zip(refusals) {
        plan.push(match refusal {
            Some(decision) => batch.refused(incoming, decision),
            None => batch.record(&mut transaction, incoming, message, pack).await?,
        });
    }
    let handled = finish::finish(&mut transaction, batch, plan).await?;
    transaction.commit().await?;
    Ok(handled)
}

impl Batch {
    /// Takes the locks and loads what the batch reads (steps 2 and 3 above). Returns, per
    /// message, the refusal to give instead of deciding it (its submitter may not submit).
    async fn prepare(
        transaction: &mut Transaction<'static, Postgres>,
        messages: &[Incoming],
        parsed: &[Result<Message, Rejection>],
        settings: &PackSettings,
    ) -> Result<(Batch, Vec<Option<Decision>>), StoreError> {
        let invalid_keys: BTreeSet<String> = messages
            .iter()
            .zip(parsed)
            .filter(|(_, message)| matches!(message, Err(rejection) if rejection.kind == RejectionKind::Invalid))
            .map(|(incoming, _)| body_key(&incoming.body))
            .collect();
        let mut claim_keys: BTreeSet<ClaimKey> = BTreeSet::new();
        let mut member_ids: BTreeSet<String> = BTreeSet::new();
        let mut provider_ids: BTreeSet<String> = BTreeSet::new();
        for message in parsed.iter().flatten() {
            let (provider_id, claim_id) = match message {
                Message::Claim(claim) => {
                    member_ids.insert(claim.member_id.to_string());
                    (&claim.provider_id, &claim.claim_id)
                }
                Message::Cancellation(cancellation) => (&cancellation.provider_id, &cancellation.claim_id),
            };
            provider_ids.insert(provider_id.to_string());
            claim_keys.insert((provider_id.to_string(), claim_id.to_string()));
        }

        let invalid_locks = invalid_keys.iter().map(|key| locks::claim_key("invalid message", key));
        locks::lock_all(
            transaction,
            claim_keys.iter().map(|(provider, claim)| locks::claim_key(provider, claim)).chain(invalid_locks),
        )
        .await?;
        let mut rejected = load_rejected(transaction, &invalid_keys).await?;
        let claims = load_claims(transaction, &claim_keys).await?;
        member_ids.extend(claims.values().map(|row| row.member_id.clone()));
        let registry = RegistryCache::load(transaction, &member_ids, &provider_ids).await?;

        // Checked before anything is decided, and before a stored decision is given again: a
        // forger resending a provider's claim must not receive that provider's decision.
        let refusals: Vec<Option<Decision>> = messages
            .iter()
            .zip(parsed)
            .map(|(incoming, message)| {
                let message = message.as_ref().ok()?;
                let provider = registry.provider(provider_id(message));
                submitter_refusal(message, incoming.user_id.as_deref(), provider, settings)
            })
            .collect();
        let refused_keys: BTreeSet<String> = messages
            .iter()
            .zip(&refusals)
            .filter(|(_, refusal)| refusal.is_some())
            .map(|(incoming, _)| refused_key(incoming))
            .collect();
        locks::lock_all(transaction, refused_keys.iter().map(|key| locks::refused_key(key))).await?;
        rejected.extend(load_rejected(transaction, &refused_keys).await?);

        let household_of = |member_id: &str| -> i64 {
            let household =
                MemberId::parse(member_id).ok().and_then(|id| registry.member(&id).map(|member| &member.household_id));
            match household {
                Some(household_id) => locks::household_key(household_id.as_str()),
                None => locks::unknown_member_key(member_id),
            }
        };
        let mut household_locks: Vec<i64> = member_ids.iter().map(|member_id| household_of(member_id)).collect();
        // A stored claim moved the counters of the household it was decided in, which is the
        // one to lock for its reversal even if the member has moved since.
        household_locks.extend(claims.values().map(|row| match &row.household_id {
            Some(household_id) => locks::household_key(household_id),
            None => locks::unknown_member_key(&row.member_id),
        }));
        locks::lock_all(transaction, household_locks).await?;

        let mut batch = Batch {
            registry,
            counters: CounterCache::default(),
            history: HistoryCache::default(),
            claims,
            records: Vec::new(),
            rejected,
            new_rejected: Vec::new(),
        };
        let accepted: Vec<&Message> = parsed
            .iter()
            .zip(&refusals)
            .filter(|(_, refusal)| refusal.is_none())
            .filter_map(|(message, _)| message.as_ref().ok())
            .collect();
        batch.preload(transaction, &accepted).await?;
        Ok((batch, refusals))
    }

    /// Loads, in a few queries for the whole batch, the counters and history its messages will
    /// most likely read; [`Batch::record`] loads anything else on demand.
    async fn preload(&mut self, connection: &mut PgConnection, accepted: &[&Message]) -> Result<(), StoreError> {
        let mut periods: BTreeSet<(Subject, String)> = BTreeSet::new();
        let mut days: BTreeSet<(String, Date)> = BTreeSet::new();
        for message in accepted {
            let Message::Claim(claim) = message else { continue };
            for line in &claim.lines {
                days.insert((claim.member_id.to_string(), line.service_date));
            }
            let Some(member) = self.registry.member(&claim.member_id) else { continue };
            let mut claim_periods: BTreeSet<String> = ALWAYS_LOADED_PERIODS.iter().map(|p| (*p).to_owned()).collect();
            for line in &claim.lines {
                claim_periods.insert(line.service_date.year().to_string());
                claim_periods.insert(line.service_date.to_string());
            }
            for subject in [Subject::Member(member.member_id.clone()), Subject::Household(member.household_id.clone())]
            {
                periods.extend(claim_periods.iter().map(|period| (subject.clone(), period.clone())));
            }
        }
        let mut reversed_keys = Vec::new();
        for row in self.claims.values().filter(|row| row.reversal.is_none()) {
            days.extend(row.fingerprints.iter().map(|line| (row.member_id.clone(), line.service_date)));
            reversed_keys.extend(row.moves.iter().map(|counter_move| counter_move.key.clone()));
        }
        cache::preload(connection, &mut self.counters, periods, &mut self.history, days).await?;
        self.counters.load_keys(connection, reversed_keys).await?;
        Ok(())
    }
}

async fn load_claims(
    connection: &mut PgConnection,
    keys: &BTreeSet<ClaimKey>,
) -> Result<HashMap<ClaimKey, ClaimRow>, StoreError> {
    type Row = (
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Value,
        String,
        Value,
        Value,
        Option<Value>,
        Option<String>,
    );
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let providers: Vec<String> = keys.iter().map(|(provider, _)| provider.clone()).collect();
    let claim_ids: Vec<String> = keys.iter().map(|(_, claim)| claim.clone()).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.provider_id, c.claim_id, c.member_id, c.household_id, c.input, c.outcome, c.decision,
                c.message_id, c.moves, c.fingerprints, c.reversal, c.reversal_message_id
         FROM claims c JOIN unnest($1::text[], $2::text[]) AS k(provider_id, claim_id)
           ON c.provider_id = k.provider_id AND c.claim_id = k.claim_id",
    )
    .bind(&providers)
    .bind(&claim_ids)
    .fetch_all(connection)
    .await?;
    let mut claims = HashMap::with_capacity(rows.len());
    for (
        provider_id,
        claim_id,
        member_id,
        household_id,
        input,
        outcome,
        body,
        message_id,
        moves,
        fingerprints,
        reversal,
        reversal_message_id,
    ) in rows
    {
        let corrupt = |what: &str| StoreError::Corrupt(format!("claims row {provider_id}/{claim_id}: {what}"));
        let outcome = Outcome::parse(&outcome).ok_or_else(|| corrupt(&format!("unknown outcome {outcome:?}")))?;
        let reversal = match (reversal, reversal_message_id) {
            (Some(body), Some(message_id)) => Some(DecisionRef::Stored { body, message_id }),
            (None, None) => None,
            _ => return Err(corrupt("reversal without its message id, or the other way round")),
        };
        let row = ClaimRow {
            member_id,
            household_id,
            input,
            outcome,
            decision: DecisionRef::Stored { body, message_id },
            decided: None,
            moves: moves_from_json(&moves)?,
            fingerprints: fingerprints_from_json(&fingerprints)?,
            reversal,
            changed: false,
        };
        claims.insert((provider_id, claim_id), row);
    }
    Ok(claims)
}

/// The stored decisions of the batch's invalid (or refused) messages seen before.
async fn load_rejected(
    connection: &mut PgConnection,
    keys: &BTreeSet<String>,
) -> Result<HashMap<String, DecisionRef>, StoreError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<&String> = keys.iter().collect();
    let rows: Vec<(String, Value, String)> =
        sqlx::query_as("SELECT body_sha256, decision, message_id FROM rejected_messages WHERE body_sha256 = ANY($1)")
            .bind(&keys)
            .fetch_all(connection)
            .await?;
    Ok(rows.into_iter().map(|(key, body, message_id)| (key, DecisionRef::Stored { body, message_id })).collect())
}

#[cfg(test)]
mod tests {
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    async fn settings(connection: &mut PgConnection) -> Vec<String> {
        let mut values = Vec::new();
        for name in ["synchronous_commit", "plan_cache_mode", "enable_seqscan"] {
            let value: String =
                sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}"))).fetch_one(&mut *connection).await.unwrap();
            values.push(value);
        }
        values
    }

    #[tokio::test]
    async fn a_batch_starts_with_its_settings_and_leaves_the_session_as_it_was() {
        let database = claims_testkit::database().await;
        let mut connection = PgConnection::connect(&database.url).await.unwrap();
        // A session (or role, or server) whose defaults are the opposite.
        for statement in ["SET synchronous_commit = off", "SET plan_cache_mode = force_custom_plan"] {
            sqlx::query(statement).execute(&mut connection).await.unwrap();
        }
        let before = settings(&mut connection).await;
        assert_eq!(before, ["off", "force_custom_plan", "on"]);

        let mut transaction = connection.begin_with(super::BEGIN_BATCH).await.unwrap();
        assert_eq!(settings(&mut transaction).await, ["on", "force_generic_plan", "off"]);
        transaction.commit().await.unwrap();
        assert_eq!(settings(&mut connection).await, before);

        connection.close().await.unwrap();
        database.drop_database().await;
    }
}
