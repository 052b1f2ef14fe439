//! The registry in PostgreSQL: importing a registry file (all or nothing), storing rule pack
//! sources by content hash, and reading the snapshot one batch of claims needs.
//!
//! Members and providers are kept as documents in their registry-file form
//! (`member_to_json`/`provider_to_json`), so what a claim read is exactly what the audit entry
//! records, and a new registry field needs no migration.

use std::collections::BTreeSet;

use claims_domain::contract::{check_registry_names, member_from_json, member_to_json, provider_to_json};
use claims_domain::ids::{MemberId, ProviderId};
use claims_domain::registry::{Member, Provider, Registry, RegistrySnapshot};
use claims_domain::rules::PackSettings;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};

use crate::{ImportSummary, StoreError};

pub(crate) async fn import(
    pool: &PgPool,
    registry: &Registry,
    pack: &PackSettings,
) -> Result<ImportSummary, StoreError> {
    // Refuse the whole file before touching the database: a member on a plan the pack cannot
    // price would get `error` decisions until someone noticed.
    check_registry_names(registry, pack)?;
    let members: Vec<&Member> = registry.members.values().collect();
    let providers: Vec<&Provider> = registry.providers.values().collect();
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO members (member_id, household_id, document, updated_at)
         SELECT member_id, household_id, document, now()
         FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS m(member_id, household_id, document)
         ON CONFLICT (member_id) DO UPDATE
         SET household_id = excluded.household_id, document = excluded.document, updated_at = excluded.updated_at",
    )
    .bind(members.iter().map(|member| member.member_id.to_string()).collect::<Vec<_>>())
    .bind(members.iter().map(|member| member.household_id.to_string()).collect::<Vec<_>>())
    .bind(members.iter().map(|member| member_to_json(member)).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "INSERT INTO providers (provider_id, document, updated_at)
         SELECT provider_id, document, now() FROM unnest($1::text[], $2::jsonb[]) AS p(provider_id, document)
         ON CONFLICT (provider_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
    )
    .bind(providers.iter().map(|provider| provider.provider_id.to_string()).collect::<Vec<_>>())
    .bind(providers.iter().map(|provider| provider_to_json(provider)).collect::<Vec<_>>())
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    // A bulk load leaves the planner without statistics until autovacuum gets to the tables:
    // meanwhile the worker's registry lookups scanned all 40 000 members of a bench for every
    // batch. (A role that does not own the tables only gets a warning.)
    sqlx::query("ANALYZE members, providers").execute(pool).await?;
    Ok(ImportSummary { members: members.len(), providers: providers.len() })
}

pub(crate) async fn save_rule_pack(
    pool: &PgPool,
    pack: &str,
    version: &str,
    sources: &[(String, String)],
) -> Result<(), StoreError> {
    let sources: Vec<Value> = sources.iter().map(|(path, text)| json!({"path": path, "text": text})).collect();
    // A version is a content hash: the same version always has the same sources, so a second
    // save has nothing to add. No conflict target: two workers starting together may collide on
    // either unique index (the key, or `(version, pack)` that publications refer to), and a
    // target names only one of them.
    sqlx::query("INSERT INTO rule_sources (version, pack, sources) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(version)
        .bind(pack)
        .bind(Value::Array(sources))
        .execute(pool)
        .await?;
    Ok(())
}

/// The part of the registry one batch reads: the members asked for, everyone in their
/// households, and the providers asked for.
#[derive(Default)]
pub(crate) struct RegistryCache {
    /// The part of the registry this batch reads, as the domain's registry, so a snapshot is
    /// built by the very function the embedded mode uses.
    registry: Registry,
}

impl RegistryCache {
    pub(crate) async fn load(
        connection: &mut PgConnection,
        member_ids: &BTreeSet<String>,
        provider_ids: &BTreeSet<String>,
    ) -> Result<RegistryCache, StoreError> {
        let member_ids: Vec<&String> = member_ids.iter().collect();
        let provider_ids: Vec<&String> = provider_ids.iter().collect();
        // One round trip for both tables.
        let rows: Vec<(bool, String, Value)> = sqlx::query_as(
            // Every member is in a household, so the members' households include the members
            // themselves. (Written `member_id = ANY($1) OR …`, the planner scanned the whole
            // table: 11 ms a batch with 40 000 members.)
            "SELECT true, member_id, document FROM members
             WHERE household_id IN (SELECT household_id FROM members WHERE member_id = ANY($1))
             UNION ALL
             SELECT false, provider_id, document FROM providers WHERE provider_id = ANY($2)",
        )
        .bind(&member_ids)
        .bind(&provider_ids)
        .fetch_all(&mut *connection)
        .await?;
        let mut cache = RegistryCache::default();
        for (is_member, id, document) in rows {
            if is_member {
                let member = member_from_json(&document).map_err(|error| corrupt("member", &id, error))?;
                cache.registry.members.insert(member.member_id.clone(), member);
            } else {
                let provider = claims_domain::contract::provider_from_json(&document)
                    .map_err(|error| corrupt("provider", &id, error))?;
                cache.registry.providers.insert(provider.provider_id.clone(), provider);
            }
        }
        Ok(cache)
    }

    pub(crate) fn member(&self, member_id: &MemberId) -> Option<&Member> {
        self.registry.members.get(member_id)
    }

    pub(crate) fn provider(&self, provider_id: &ProviderId) -> Option<&Provider> {
        self.registry.providers.get(provider_id)
    }

    /// The snapshot one claim needs, exactly as the embedded ledger builds it.
    pub(crate) fn snapshot(&self, member_id: &MemberId, provider_id: &ProviderId) -> RegistrySnapshot {
        self.registry.snapshot(member_id, provider_id)
    }
}

fn corrupt(kind: &str, id: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{kind} {id}: stored document does not parse: {error}"))
}
