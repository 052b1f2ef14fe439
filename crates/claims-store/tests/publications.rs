//! The history of rule pack publications: the active version is the latest row, a rollback is a
//! new row, the history cannot be edited (even by the role that owns it), unknown or ambiguous
//! versions are refused by name, and the regulator reads it.

mod common;

use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::{PublicationAction, PublicationError, Published, Store};
use common::*;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

fn sources(pack: &RhaiPack) -> Vec<(String, String)> {
    pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect()
}

async fn publish(store: &Store, pack: &RhaiPack, by: &str, note: Option<&str>) -> Published {
    store
        .publish_rule_pack(&pack.settings().version.pack, pack.version(), &sources(pack), by, note)
        .await
        .unwrap_or_else(|error| panic!("publishing {}: {error}", pack.version()))
}

fn recorded(published: Published) -> claims_store::Publication {
    match published {
        Published::Recorded(publication) => publication,
        Published::AlreadyActive { version, .. } => panic!("expected a new publication, {version} was already active"),
    }
}

/// The French pack with the GP fee of 2024-12-22 at 31,00 instead of 30,00: another version.
fn revalued_pack() -> RhaiPack {
    patched_pack("publications", "params.rhai", "[\"2024-12-22\", 3000]", "[\"2024-12-22\", 3100]")
}

#[tokio::test]
async fn publishing_makes_a_version_active_and_publishing_it_again_records_nothing() {
    let pack = french_pack();
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    assert_eq!(store.active_rule_pack("fr").await.unwrap(), None);

    let first = recorded(publish(&store, &pack, " alice ", Some("convention 2024")).await);
    assert_eq!(
        (first.pack.as_str(), first.version.as_str(), first.action, first.by.as_str(), first.note.as_deref()),
        ("fr", pack.version(), PublicationAction::Publish, "alice", Some("convention 2024"))
    );
    assert_eq!(first.db_role, "postgres");
    assert!(first.at.len() == 20 && first.at.ends_with('Z') && first.at.as_bytes()[10] == b'T', "{}", first.at);

    let (version, stored) = store.active_rule_pack("fr").await.unwrap().expect("an active version");
    assert_eq!(version, pack.version());
    assert_eq!(stored, sources(&pack));
    // The sources are stored under the hash: a replay and a worker load the very same scripts.
    let replayed: Vec<claims_rules::SourceFile> =
        stored.into_iter().map(|(path, text)| claims_rules::SourceFile { path, text }).collect();
    assert_eq!(RhaiPack::from_sources("stored", &replayed).unwrap().version(), pack.version());

    assert_eq!(
        publish(&store, &pack, "bob", None).await,
        Published::AlreadyActive { pack: "fr".to_owned(), version: pack.version().to_owned() }
    );
    assert_eq!(store.rule_publications(None).await.unwrap(), vec![first]);
    assert_eq!(store.active_rule_pack("be").await.unwrap(), None);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn activate_rolls_back_with_a_new_row_and_the_history_keeps_its_order() {
    let (old, new) = (french_pack(), revalued_pack());
    assert_ne!(old.version(), new.version());
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &old).await;

    let published_old = recorded(publish(&store, &old, "alice", None).await);
    let published_new = recorded(publish(&store, &new, "alice", Some("G at 31,00")).await);
    assert_eq!(store.active_rule_version("fr").await.unwrap().as_deref(), Some(new.version()));

    // A unique prefix names the old version, with or without "sha256:".
    let digits = old.version().strip_prefix("sha256:").unwrap();
    let short = &digits[..12];
    assert_eq!(store.resolve_rule_version(short).await.unwrap(), old.version());
    assert_eq!(store.resolve_rule_version(&format!("sha256:{short}")).await.unwrap(), old.version());
    let rollback = recorded(store.activate_rule_version(old.version(), "carol", Some("wrong fee")).await.unwrap());
    assert_eq!(
        (rollback.version.as_str(), rollback.action, rollback.by.as_str()),
        (old.version(), PublicationAction::Activate, "carol")
    );
    assert_eq!(store.active_rule_version("fr").await.unwrap().as_deref(), Some(old.version()));
    assert!(matches!(
        store.activate_rule_version(old.version(), "carol", None).await.unwrap(),
        Published::AlreadyActive { .. }
    ));

    let history = store.rule_publications(Some("fr")).await.unwrap();
    let summary: Vec<(&str, PublicationAction)> =
        history.iter().map(|row| (row.version.as_str(), row.action)).collect();
    assert_eq!(
        summary,
        vec![
            (old.version(), PublicationAction::Publish),
            (new.version(), PublicationAction::Publish),
            (old.version(), PublicationAction::Activate),
        ]
    );
    assert!(published_old.seq < published_new.seq && published_new.seq < rollback.seq);
    assert!(store.rule_publications(Some("be")).await.unwrap().is_empty());
    assert_eq!(
        store.active_rule_versions().await.unwrap().into_iter().collect::<Vec<_>>(),
        vec![("fr".to_owned(), old.version().to_owned())]
    );
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn unknown_ambiguous_and_malformed_versions_are_refused_by_name() {
    let pack = french_pack();
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    let text = vec![("pack.rhai".to_owned(), "// stub".to_owned())];
    store.save_rule_pack("fr", "sha256:abc1", &text).await.unwrap();
    store.save_rule_pack("fr", "sha256:abc2", &text).await.unwrap();

    let unknown = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let error = store.activate_rule_version(unknown, "alice", None).await.unwrap_err();
    assert!(matches!(&error, PublicationError::UnknownVersion(version) if version == unknown), "{error:?}");
    assert_eq!(error.to_string(), format!("no stored rule pack version {unknown}"));

    let error = store.resolve_rule_version("ffff").await.unwrap_err();
    assert_eq!(error.to_string(), "no stored rule pack version ffff");
    let error = store.resolve_rule_version("abc").await.unwrap_err();
    assert_eq!(error.to_string(), "abc matches 2 stored versions: sha256:abc1, sha256:abc2; give more digits");
    assert_eq!(store.resolve_rule_version("ABC2").await.unwrap(), "sha256:abc2");
    for bad in ["", "sha256:", "abc%", "_", "latest"] {
        let error = store.resolve_rule_version(bad).await.unwrap_err();
        assert!(matches!(&error, PublicationError::NotAVersion(text) if text == bad), "{bad:?}: {error:?}");
    }
    let error = store.activate_rule_version("sha256:abc1", "  ", None).await.unwrap_err();
    assert!(matches!(error, PublicationError::NoAuthor), "{error:?}");
    assert!(store.rule_publications(None).await.unwrap().is_empty());
    store.pool().close().await;
    database.drop_database().await;
}

fn database_code(error: &sqlx::Error) -> Option<String> {
    error.as_database_error().and_then(|error| error.code().map(|code| code.into_owned()))
}

#[tokio::test]
async fn the_history_cannot_be_edited_and_the_regulator_reads_it() {
    let pack = french_pack();
    let (store, database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    let first = recorded(publish(&store, &pack, "alice", None).await);

    // As the owner of the table, i.e. the role claimctl and the workers use.
    for statement in [
        format!("UPDATE rule_publications SET published_by = 'mallory' WHERE seq = {}", first.seq),
        "UPDATE rule_publications SET version = version".to_owned(),
        "DELETE FROM rule_publications".to_owned(),
        "TRUNCATE rule_publications".to_owned(),
    ] {
        let error = sqlx::query(AssertSqlSafe(statement.clone())).execute(store.pool()).await.expect_err(&statement);
        assert_eq!(database_code(&error).as_deref(), Some("42501"), "{statement}: {error}");
        assert!(error.to_string().contains("rule_publications is append-only"), "{statement}: {error}");
    }
    // A publication names a stored version of that very pack.
    for (pack_name, version) in [("be", pack.version()), ("fr", "sha256:00")] {
        let error = sqlx::query(
            "INSERT INTO rule_publications (pack, version, action, published_by) VALUES ($1, $2, 'publish', 'x')",
        )
        .bind(pack_name)
        .bind(version)
        .execute(store.pool())
        .await
        .expect_err("a publication of a version not stored for that pack");
        assert_eq!(database_code(&error).as_deref(), Some("23503"), "{pack_name} {version}: {error}");
    }
    assert_eq!(store.rule_publications(None).await.unwrap(), vec![first.clone()]);

    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE claims_regulator").execute(&mut *transaction).await.unwrap();
    let (by, version): (String, String) = sqlx::query_as("SELECT published_by, version FROM rule_publications")
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
    assert_eq!((by.as_str(), version.as_str()), ("alice", pack.version()));
    let error = sqlx::query(
        "INSERT INTO rule_publications (pack, version, action, published_by) VALUES ('fr', $1, 'activate', 'x')",
    )
    .bind(pack.version())
    .execute(&mut *transaction)
    .await
    .expect_err("the regulator writes nothing");
    assert_eq!(database_code(&error).as_deref(), Some("42501"), "{error}");
    transaction.rollback().await.unwrap();
    connection.close().await.unwrap();
    store.pool().close().await;
    database.drop_database().await;
}
