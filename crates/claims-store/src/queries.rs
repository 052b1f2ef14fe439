//! Read-only questions to the store: stored decisions, counters, claims in error, migrations
//! already applied, stored rule sources.

use claims_domain::accumulators::CounterKey;
use serde_json::Value;
use sqlx::PgPool;

use crate::stored::subject_parts;
use crate::{ErrorClaim, StoreError};

pub(crate) async fn decision(pool: &PgPool, provider_id: &str, claim_id: &str) -> Result<Option<Value>, StoreError> {
    let row: Option<(Value,)> =
        sqlx::query_as("SELECT coalesce(reversal, decision) FROM claims WHERE provider_id = $1 AND claim_id = $2")
            .bind(provider_id)
            .bind(claim_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(decision,)| decision))
}

pub(crate) async fn counter(pool: &PgPool, key: &CounterKey) -> Result<i64, StoreError> {
    let (kind, id) = subject_parts(&key.subject);
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT value FROM counters WHERE subject_kind = $1 AND subject_id = $2 AND period = $3 AND counter = $4",
    )
    .bind(kind)
    .bind(id)
    .bind(&key.period)
    .bind(&key.counter)
    .fetch_optional(pool)
    .await?;
    // Absent counters are zero, as everywhere in the domain.
    Ok(row.map_or(0, |(value,)| value))
}

pub(crate) async fn error_claims(pool: &PgPool) -> Result<Vec<ErrorClaim>, StoreError> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT provider_id, claim_id, decision #>> '{error,position}', decision #>> '{error,message}'
         FROM claims WHERE outcome = 'error'
         ORDER BY 3, provider_id, claim_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(provider_id, claim_id, position, message)| ErrorClaim {
            provider_id,
            claim_id,
            position: position.unwrap_or_default(),
            message: message.unwrap_or_default(),
        })
        .collect())
}

/// The inputs of the claims in error, oldest decision first, each with the broker user that
/// submitted it: the `submitted_by` of its decision's audit entry (the row's message id is
/// `decision-<seq>`). `None` when the entry has none (it predates the submitter check).
pub(crate) async fn error_inputs(pool: &PgPool) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.input, a.entry::jsonb ->> 'submitted_by'
         FROM claims c
         LEFT JOIN audit_log a
           ON a.seq = CASE WHEN c.message_id ~ '^decision-[0-9]{1,18}$' THEN substr(c.message_id, 10)::int8 END
         WHERE c.outcome = 'error'
         ORDER BY c.updated_at, c.provider_id, c.claim_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Versions of the migrations already applied (none on an empty database).
pub(crate) async fn applied_migrations(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let (exists,): (bool,) =
        sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(version,)| version).collect())
}

pub(crate) async fn rule_pack_sources(
    pool: &PgPool,
    version: &str,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let row: Option<(Value,)> = sqlx::query_as("SELECT sources FROM rule_sources WHERE version = $1")
        .bind(version)
        .fetch_optional(pool)
        .await?;
    let Some((sources,)) = row else { return Ok(None) };
    let corrupt = || StoreError::Corrupt(format!("rule_sources {version}: expected a list of {{path, text}}"));
    let items = sources.as_array().ok_or_else(corrupt)?;
    items
        .iter()
        .map(|item| {
            let path = item.get("path").and_then(Value::as_str).ok_or_else(corrupt)?;
            let text = item.get("text").and_then(Value::as_str).ok_or_else(corrupt)?;
            Ok((path.to_owned(), text.to_owned()))
        })
        .collect::<Result<Vec<_>, StoreError>>()
        .map(Some)
}

pub(crate) async fn rule_versions(pool: &PgPool) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT version FROM rule_sources").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(version,)| version).collect())
}
