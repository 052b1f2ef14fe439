//! Which rule pack version is in force: the append-only history of publications (`claimctl
//! rules publish`, `claimctl rules activate`) in table `rule_publications`. The active version
//! of a pack is its latest publication; workers poll it and swap packs between batches.
//!
//! Kept beside the audit chain, not in it: the audit/v1 entry is the regulator's contract, one
//! per decision, and every decision already names the pack version that made it. The history is
//! append-only in the database itself (triggers), so a rollback is a new row, never an edit.

use std::collections::BTreeMap;
use std::fmt;

use sqlx::{PgPool, Postgres, Transaction};
use thiserror::Error;

use crate::{Store, StoreError, registry};

/// What a publication did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationAction {
    /// A pack checked and tested from a folder became active.
    Publish,
    /// A version already stored became active again (a rollback or a roll forward).
    Activate,
}

impl PublicationAction {
    fn as_str(self) -> &'static str {
        match self {
            PublicationAction::Publish => "publish",
            PublicationAction::Activate => "activate",
        }
    }

    fn parse(text: &str) -> Result<PublicationAction, StoreError> {
        match text {
            "publish" => Ok(PublicationAction::Publish),
            "activate" => Ok(PublicationAction::Activate),
            other => Err(StoreError::Corrupt(format!("rule_publications.action {other:?}"))),
        }
    }
}

impl fmt::Display for PublicationAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Order of the history: the highest `seq` of a pack is its active version.
    pub seq: i64,
    pub pack: String,
    pub version: String,
    pub action: PublicationAction,
    /// The name the analyst gave (`--by`, default the OS user).
    pub by: String,
    /// The database role that wrote the row.
    pub db_role: String,
    /// When, in UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
    pub note: Option<String>,
}

/// What a publish or an activate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new row: the version is active from now on.
    Recorded(Publication),
    /// The version was already the pack's active one: nothing recorded.
    AlreadyActive { pack: String, version: String },
}

/// Why a version cannot be activated.
#[derive(Debug, Error)]
pub enum PublicationError {
    #[error("{0:?} is not a rule pack version: expected sha256:<hex> or a prefix of its hex digits")]
    NotAVersion(String),
    #[error("no stored rule pack version {0}")]
    UnknownVersion(String),
    #[error("{prefix} matches {} stored versions: {}; give more digits", .candidates.len(), .candidates.join(", "))]
    AmbiguousVersion { prefix: String, candidates: Vec<String> },
    #[error("the publication needs a name for who makes it (--by)")]
    NoAuthor,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PublicationError {
    fn from(error: sqlx::Error) -> PublicationError {
        PublicationError::Store(StoreError::Database(error))
    }
}

/// The columns of a [`Publication`], in order.
const COLUMNS: &str = "seq, pack, version, action, published_by, db_role,
     to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), note";

type Row = (i64, String, String, String, String, String, String, Option<String>);

fn publication(row: Row) -> Result<Publication, StoreError> {
    let (seq, pack, version, action, by, db_role, at, note) = row;
    Ok(Publication { seq, pack, version, action: PublicationAction::parse(&action)?, by, db_role, at, note })
}

impl Store {
    /// Stores a pack's sources and makes `version` the active version of `pack`, unless it
    /// already is (then nothing is recorded and the answer says so).
    pub async fn publish_rule_pack(
        &self,
        pack: &str,
        version: &str,
        sources: &[(String, String)],
        by: &str,
        note: Option<&str>,
    ) -> Result<Published, PublicationError> {
        // Idempotent, and committed before the row that names it (the row's foreign key).
        registry::save_rule_pack(&self.pool, pack, version, sources).await?;
        record(&self.pool, pack, version, PublicationAction::Publish, by, note).await
    }

    /// Makes a stored `version` (as [`Store::resolve_rule_version`] returns it) the active
    /// version of its pack again; refuses a version whose sources are not stored.
    pub async fn activate_rule_version(
        &self,
        version: &str,
        by: &str,
        note: Option<&str>,
    ) -> Result<Published, PublicationError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT pack FROM rule_sources WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        let Some((pack,)) = row else { return Err(PublicationError::UnknownVersion(version.to_owned())) };
        record(&self.pool, &pack, version, PublicationAction::Activate, by, note).await
    }

    /// The stored version that `prefix` names: a whole `sha256:<hex>`, or a prefix of it with
    /// or without `sha256:`, matching exactly one stored version.
    pub async fn resolve_rule_version(&self, prefix: &str) -> Result<String, PublicationError> {
        let digits = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(PublicationError::NotAVersion(prefix.to_owned()));
        }
        // Hex digits only from here on, so the pattern holds no LIKE wildcard.
        let pattern = format!("sha256:{}%", digits.to_ascii_lowercase());
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT version FROM rule_sources WHERE version LIKE $1 ORDER BY version LIMIT 6")
                .bind(pattern)
                .fetch_all(&self.pool)
                .await?;
        let mut versions: Vec<String> = rows.into_iter().map(|(version,)| version).collect();
        match versions.len() {
            0 => Err(PublicationError::UnknownVersion(prefix.to_owned())),
            1 => Ok(versions.remove(0)),
            _ => Err(PublicationError::AmbiguousVersion { prefix: prefix.to_owned(), candidates: versions }),
        }
    }

    /// The active version of `pack` (its latest publication), if it was ever published.
    pub async fn active_rule_version(&self, pack: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT version FROM rule_publications WHERE pack = $1 ORDER BY seq DESC LIMIT 1")
                .bind(pack)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(version,)| version))
    }

    /// The active version of `pack` and its sources (`(path, text)`, sorted by path).
    pub async fn active_rule_pack(&self, pack: &str) -> Result<Option<(String, Vec<(String, String)>)>, StoreError> {
        let Some(version) = self.active_rule_version(pack).await? else { return Ok(None) };
        let sources = self
            .rule_pack_sources(&version)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("rule_publications names {version}, whose sources are gone")))?;
        Ok(Some((version, sources)))
    }

    /// The active version of every pack ever published, by pack name.
    pub async fn active_rule_versions(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT DISTINCT ON (pack) pack, version FROM rule_publications ORDER BY pack, seq DESC")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// The publications of `pack` (every pack when `None`), oldest first.
    pub async fn rule_publications(&self, pack: Option<&str>) -> Result<Vec<Publication>, StoreError> {
        let statement =
            format!("SELECT {COLUMNS} FROM rule_publications WHERE $1::text IS NULL OR pack = $1 ORDER BY seq");
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(statement)).bind(pack).fetch_all(&self.pool).await?;
        rows.into_iter().map(publication).collect()
    }
}

/// Appends a publication unless `version` is already the pack's active one.
async fn record(
    pool: &PgPool,
    pack: &str,
    version: &str,
    action: PublicationAction,
    by: &str,
    note: Option<&str>,
) -> Result<Published, PublicationError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(PublicationError::NoAuthor);
    }
    let mut transaction = pool.begin().await?;
    lock_history(&mut transaction).await?;
    let active: Option<(String,)> =
        sqlx::query_as("SELECT version FROM rule_publications WHERE pack = $1 ORDER BY seq DESC LIMIT 1")
            .bind(pack)
            .fetch_optional(&mut *transaction)
            .await?;
    if active.is_some_and(|(active,)| active == version) {
        transaction.rollback().await?;
        return Ok(Published::AlreadyActive { pack: pack.to_owned(), version: version.to_owned() });
    }
    let statement = format!(
        "INSERT INTO rule_publications (pack, version, action, published_by, note) VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    );
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(pack)
        .bind(version)
        .bind(action.as_str())
        .bind(by)
        .bind(note.map(str::trim).filter(|note| !note.is_empty()))
        .fetch_one(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Published::Recorded(publication(row)?))
}

/// Serializes publishers, so "already active?" and the new row are one step: two analysts
/// publishing at once are ordered, and readers (workers, the regulator) are not blocked.
async fn lock_history(transaction: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("LOCK TABLE rule_publications IN SHARE ROW EXCLUSIVE MODE").execute(&mut **transaction).await?;
    Ok(())
}
