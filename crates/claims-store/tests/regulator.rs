//! The regulator's role reads the audit log, its head, the decisions and the rule sources, and
//! can write nothing; the audit log cannot be changed and its head cannot move backwards, even
//! by the role that owns the tables (the worker's).

mod common;

use common::*;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Every table of the schema (sqlx's own bookkeeping aside).
async fn tables(connection: &mut PgConnection) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '\\_sqlx%'
         ORDER BY tablename",
    )
    .fetch_all(connection)
    .await
    .unwrap();
    rows.into_iter().map(|(name,)| name).collect()
}

/// Runs `statement` as `claims_regulator` in a transaction of its own (rolled back).
async fn as_regulator(connection: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE claims_regulator").execute(&mut *transaction).await.unwrap();
    let result = sqlx::query(AssertSqlSafe(statement.to_owned())).execute(&mut *transaction).await.map(|_| ());
    transaction.rollback().await.unwrap();
    result
}

fn refused(result: Result<(), sqlx::Error>, statement: &str) {
    match result {
        Err(sqlx::Error::Database(error)) => {
            assert_eq!(error.code().as_deref(), Some("42501"), "{statement}: {error}");
        }
        other => panic!("{statement}: expected a permission error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_regulator_reads_the_audit_log_and_decisions_and_writes_nothing() {
    let pack = french_pack();
    let registry = registry("examples/fr/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    let sources: Vec<(String, String)> =
        pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    store.save_rule_pack("fr", pack.version(), &sources).await.unwrap();
    let messages: Vec<String> = example_messages().into_iter().take(30).collect();
    decide(&store, &messages, &pack).await;

    let mut connection = PgConnection::connect(&database.url).await.unwrap();
    let readable = ["audit_log", "audit_head", "claims", "rejected_messages", "rule_publications", "rule_sources"];
    for table in readable {
        let statement = format!("SELECT count(*) FROM {table}");
        as_regulator(&mut connection, &statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    // What the regulator reads is what the store wrote.
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE claims_regulator").execute(&mut *transaction).await.unwrap();
    let (entries,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM audit_log").fetch_one(&mut *transaction).await.unwrap();
    let (decisions,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM claims").fetch_one(&mut *transaction).await.unwrap();
    transaction.rollback().await.unwrap();
    let (owner_decisions,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM claims").fetch_one(store.pool()).await.unwrap();
    assert_eq!((entries, decisions), (30, owner_decisions));

    let all = tables(&mut connection).await;
    for table in ["members", "providers", "counters", "line_history", "outbox", "audit_log", "claims"] {
        assert!(all.contains(&table.to_owned()), "{table} not among {all:?}");
    }
    for table in &all {
        if !readable.contains(&table.as_str()) {
            let statement = format!("SELECT count(*) FROM {table}");
            refused(as_regulator(&mut connection, &statement).await, &statement);
        }
        let (column,): (String,) = sqlx::query_as(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position LIMIT 1",
        )
        .bind(table)
        .fetch_one(&mut connection)
        .await
        .unwrap();
        for statement in [
            format!("INSERT INTO {table} DEFAULT VALUES"),
            format!("INSERT INTO {table} SELECT * FROM {table} LIMIT 1"),
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            refused(as_regulator(&mut connection, &statement).await, &statement);
        }
    }
    for statement in ["CREATE TABLE public.regulator_notes (note text)", "SELECT nextval('outbox_id_seq')"] {
        refused(as_regulator(&mut connection, statement).await, statement);
    }
    connection.close().await.unwrap();
    assert_eq!(audit_count(&store).await, 30);
    store.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn the_migration_can_run_on_a_second_database_of_the_same_cluster() {
    // The role already exists (another test or an earlier run created it): the migration still
    // grants it its reads in this database.
    let pack = french_pack();
    let (first, first_database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    let (second, second_database) = store_with(&registry("rules/fr/tests/registry.json"), &pack).await;
    for database in [&first_database, &second_database] {
        let mut connection = PgConnection::connect(&database.url).await.unwrap();
        as_regulator(&mut connection, "SELECT * FROM audit_head").await.unwrap();
        connection.close().await.unwrap();
    }
    assert!(first.apply_migrations().await.unwrap().is_empty());
    for (store, database) in [(first, first_database), (second, second_database)] {
        store.pool().close().await;
        database.drop_database().await;
    }
}

#[tokio::test]
async fn audit_rows_cannot_change_and_the_head_only_moves_forward() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (store, database) = store_with(&registry, &pack).await;
    decide(&store, &[gp_visit("C-R-1", "2025-11-05"), gp_visit("C-R-2", "2025-11-06")], &pack).await;
    let (seq, hash) = store.audit_head().await.unwrap();
    assert_eq!(seq, 2);
    // As the owner of the tables, i.e. the worker's own role.
    for statement in [
        "UPDATE audit_log SET hash = 'x' WHERE seq = 1".to_owned(),
        "DELETE FROM audit_log WHERE seq = 2".to_owned(),
        "UPDATE audit_head SET seq = 1, hash = (SELECT hash FROM audit_log WHERE seq = 1)".to_owned(),
        format!("UPDATE audit_head SET seq = 3, hash = '{hash}'"),
        "DELETE FROM audit_head".to_owned(),
        "TRUNCATE audit_head".to_owned(),
    ] {
        let error = sqlx::query(AssertSqlSafe(statement.clone())).execute(store.pool()).await.expect_err(&statement);
        let code = error.as_database_error().and_then(|error| error.code().map(|code| code.into_owned()));
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {error}");
    }
    assert_eq!(store.audit_head().await.unwrap(), (seq, hash));
    // The next batch still moves it forward.
    decide(&store, &[gp_visit("C-R-3", "2025-11-07")], &pack).await;
    assert_eq!(store.audit_head().await.unwrap().0, 3);
    store.pool().close().await;
    database.drop_database().await;
}
