//! The worker's role, `claims_worker`, logged in for real: it decides claims, cancels, retries
//! the claims in error, relays the outbox and reads the rule publications, and everything else
//! is refused with a permission error. In particular it owns no table, so it cannot drop or
//! disable the triggers that keep the audit log append-only; it cannot write the registry
//! (imported by the owner) nor publish rules; it cannot create anything.
//!
//! The tests log in as `claims_worker` with the test database's URL, user changed. The role has
//! no password: the development machines and CI accept loopback logins (`trust`). A server that
//! asks for one gets it from `CLAIMS_WORKER_PASSWORD`.

mod common;

use std::time::Duration;

use common::*;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const ROLE: &str = "claims_worker";

/// `url` with its user (and password) replaced by `claims_worker`.
fn as_worker(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("not a URL: {url}"));
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    match std::env::var("CLAIMS_WORKER_PASSWORD") {
        Ok(password) => format!("{scheme}://{ROLE}:{password}@{host}"),
        Err(_) => format!("{scheme}://{ROLE}@{host}"),
    }
}

/// Runs `statement` on the worker's connection in a transaction of its own (rolled back).
async fn run(connection: &mut PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    let mut transaction = connection.begin().await.unwrap();
    let result = sqlx::query(AssertSqlSafe(statement.to_owned())).execute(&mut *transaction).await.map(|_| ());
    transaction.rollback().await.unwrap();
    result
}

/// Asserts `statement` fails with SQLSTATE 42501 (insufficient_privilege), whose message must
/// say why: a missing privilege, a missing ownership, or an append-only trigger.
async fn refused(connection: &mut PgConnection, statement: &str, why: &str) {
    match run(connection, statement).await {
        Err(sqlx::Error::Database(error)) => {
            assert_eq!(error.code().as_deref(), Some("42501"), "{statement}: {error}");
            assert!(error.message().contains(why), "{statement}: expected {why:?} in {:?}", error.message());
        }
        other => panic!("{statement}: expected a permission error, got {other:?}"),
    }
}

/// The doctors' agreement failing on every GP visit, as a script being rewritten would.
fn broken_pack() -> claims_rules::RhaiPack {
    patched_pack(
        "least-privilege",
        "agreements/medecins.rhai",
        "fn tariff(line, member, provider, claim) {",
        "fn tariff(line, member, provider, claim) {\n    if line.act == \"G\" { throw \"G fee table is being rebuilt\"; }",
    )
}

#[tokio::test]
async fn the_worker_role_decides_relays_and_retries() {
    let pack = french_pack();
    let registry = registry("examples/fr/registry.json");
    let (owner, database) = store_with(&registry, &pack).await;
    let worker = claims_store::Store::connect(&as_worker(&database.url))
        .await
        .unwrap_or_else(|error| panic!("logging in as {ROLE}: {error}"));

    // What `claimctl worker` does at start: check the schema, read the publications, store the
    // folder's pack.
    assert_eq!(worker.pending_migrations().await.unwrap(), Vec::<String>::new());
    assert_eq!(worker.active_rule_version("fr").await.unwrap(), None);
    let sources: Vec<(String, String)> =
        pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    worker.save_rule_pack("fr", pack.version(), &sources).await.unwrap();

    // The first 60 French examples (cancellations among them), in batches of 20, as the ledger
    // decides them.
    let messages: Vec<String> = example_messages().into_iter().take(60).collect();
    assert!(messages.iter().any(|message| message.contains("cancellation/v1")), "no cancellation among them");
    let mut decided = Vec::new();
    for batch in messages.chunks(20) {
        decided.extend(
            decide(&worker, batch, &pack).await.iter().map(|handled| without_audit(body(decision_message(handled)))),
        );
    }
    assert_eq!(decided, ledger_decisions(&registry, &messages, &pack));
    assert!(decided.iter().any(|decision| decision["outcome"] == "complete"));
    assert!(decided.iter().any(|decision| decision["outcome"] == "reversed"));
    // A repeat is answered from the stored decision.
    let again = decide(&worker, &messages[..1], &pack).await;
    assert_eq!(without_audit(body(decision_message(&again[0]))), decided[0]);

    // The outbox relay: lease the rows, mark them published.
    let pending = worker.pending_outbox(Duration::ZERO, 1000).await.unwrap();
    assert!(pending.len() >= messages.len(), "{} outbox rows for {} messages", pending.len(), messages.len());
    let ids: Vec<i64> = pending.iter().filter_map(|message| message.outbox_id).collect();
    worker.mark_published(&ids).await.unwrap();
    let (unpublished,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(owner.pool()).await.unwrap();
    assert_eq!(unpublished, 0);

    // `claimctl claims errors|retry`: a claim in error, listed and re-decided by the worker.
    let broken = broken_pack();
    let visit = r#"{"schema":"claim/v1","claim_id":"C-LP-1","provider_id":"P-GP-0001","member_id":"M-000037","submitted_on":"2025-05-06","currency":"EUR","third_party_payment":[],"lines":[{"line":1,"act":"G","service_date":"2025-05-05","quantity":1,"charged":3000,"attributes":{"care_pathway":"in"}}]}"#;
    let handled = decide(&worker, &[visit.to_owned()], &broken).await;
    assert_eq!(body(decision_message(&handled[0]))["outcome"], "error");
    let errors = worker.error_claims().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].position.contains("medecins.rhai"), "{:?}", errors[0]);
    let retried = worker.retry_errors(&pack).await.unwrap();
    let decisions: Vec<_> = retried.iter().filter(|message| message.routing_key.starts_with("decision.")).collect();
    assert_eq!(decisions.len(), 1);
    assert_eq!(body(decisions[0])["outcome"], "complete");
    assert!(worker.error_claims().await.unwrap().is_empty());

    // The audit chain the worker wrote verifies.
    let entries = owner.audit_entries(0, i64::MAX).await.unwrap();
    let mut head = claims_audit::ChainHead::default();
    for (sequence, line) in &entries {
        claims_audit::verify_next(&mut head, *sequence, line).unwrap_or_else(|error| panic!("audit chain: {error}"));
    }
    assert_eq!(owner.audit_head().await.unwrap().0 + 1, head.next_sequence);

    worker.pool().close().await;
    owner.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn the_worker_role_can_change_nothing_else() {
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (owner, database) = store_with(&registry, &pack).await;
    // A decided claim, so the audit log and outbox have rows to attack.
    decide(&owner, &[gp_visit("C-LP-2", "2025-05-05")], &pack).await;
    let mut connection = PgConnection::connect(&as_worker(&database.url))
        .await
        .unwrap_or_else(|error| panic!("logging in as {ROLE}: {error}"));

    // The role is an ordinary login: no superuser, no role or database creation, owns nothing.
    let (superuser, create_role, create_database, bypass_rls): (bool, bool, bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1")
            .bind(ROLE)
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!((superuser, create_role, create_database, bypass_rls), (false, false, false, false));
    let (owned,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)",
    )
    .bind(ROLE)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(owned, 0, "{ROLE} owns objects of schema public");
    let (can_create,): (bool,) = sqlx::query_as("SELECT has_schema_privilege($1, 'public', 'CREATE')")
        .bind(ROLE)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert!(!can_create, "{ROLE} may create in schema public");

    let denied = "permission denied";
    let not_owner = "must be owner";
    for (statement, why) in [
        // Nothing new in the schema.
        ("CREATE TABLE public.worker_notes (note text)", denied),
        ("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", denied),
        // The append-only audit log: no edit, no removal, no way around its triggers.
        ("UPDATE audit_log SET entry = entry", denied),
        ("DELETE FROM audit_log", denied),
        ("TRUNCATE audit_log", denied),
        ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete", not_owner),
        ("ALTER TABLE audit_log ADD COLUMN note text", not_owner),
        ("DROP TRIGGER audit_log_no_update_or_delete ON audit_log", not_owner),
        ("DROP TABLE audit_log", not_owner),
        (
            "CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
            denied,
        ),
        // The chain's head moves forward through its trigger only; it cannot be removed.
        ("UPDATE audit_head SET seq = 0", "audit_head only moves forward"),
        // Forward, but to an entry that does not exist (checked after the statement).
        ("UPDATE audit_head SET seq = seq + 1", "audit_head only moves forward"),
        ("UPDATE audit_head SET id = id", denied),
        ("DELETE FROM audit_head", denied),
        ("TRUNCATE audit_head", denied),
        // Decisions and counters are never removed, and nothing is truncated.
        ("DELETE FROM claims", denied),
        ("DELETE FROM counters", denied),
        ("TRUNCATE claims, counters, line_history, outbox", denied),
        // A message's body is never changed once recorded.
        ("UPDATE outbox SET body = body", denied),
        ("DELETE FROM outbox", denied),
        // The registry and the publications are the owner's.
        ("INSERT INTO members (member_id, household_id, document) VALUES ('M-X', 'H-X', '{}')", denied),
        ("UPDATE members SET document = document", denied),
        ("INSERT INTO providers (provider_id, document) VALUES ('P-X', '{}')", denied),
        ("DELETE FROM providers", denied),
        (
            "INSERT INTO rule_publications (pack, version, action, published_by) SELECT pack, version, 'activate', 'x' FROM rule_sources LIMIT 1",
            denied,
        ),
        ("UPDATE rule_sources SET sources = sources", denied),
        ("DELETE FROM rule_sources", denied),
        // Nor can it become someone else or give itself more.
        ("SET ROLE postgres", denied),
        ("ALTER ROLE claims_worker CREATEROLE", denied),
    ] {
        refused(&mut connection, statement, why).await;
    }
    // Granting itself more is not an error in PostgreSQL (only a warning), and grants nothing.
    let mut transaction = connection.begin().await.unwrap();
    sqlx::query("GRANT DELETE ON audit_log TO claims_worker").execute(&mut *transaction).await.unwrap();
    let (can_delete,): (bool,) =
        sqlx::query_as("SELECT has_table_privilege('audit_log', 'DELETE')").fetch_one(&mut *transaction).await.unwrap();
    transaction.rollback().await.unwrap();
    assert!(!can_delete, "{ROLE} granted itself DELETE on audit_log");
    connection.close().await.unwrap();
    assert_eq!(audit_count(&owner).await, 1);
    owner.pool().close().await;
    database.drop_database().await;
}

#[tokio::test]
async fn the_role_works_in_every_database_of_the_cluster() {
    // Roles are cluster-wide, grants per database: the second migration finds the role made
    // and grants it all the same.
    let pack = french_pack();
    let registry = registry("rules/fr/tests/registry.json");
    let (first, first_database) = store_with(&registry, &pack).await;
    let (second, second_database) = store_with(&registry, &pack).await;
    for (database, claim_id) in [(&first_database, "C-LP-A"), (&second_database, "C-LP-B")] {
        let worker = claims_store::Store::connect(&as_worker(&database.url)).await.unwrap();
        let handled = decide(&worker, &[gp_visit(claim_id, "2025-05-05")], &pack).await;
        assert_eq!(body(decision_message(&handled[0]))["outcome"], "complete");
        worker.pool().close().await;
    }
    for (store, database) in [(first, first_database), (second, second_database)] {
        store.pool().close().await;
        database.drop_database().await;
    }
}

#[tokio::test]
async fn pending_migrations_are_listed_for_the_worker_to_refuse() {
    let database = claims_testkit::database().await;
    let store = claims_store::Store::connect(&database.url).await.unwrap();
    let pending = store.pending_migrations().await.unwrap();
    assert!(pending.iter().any(|migration| migration.ends_with("worker role")), "{pending:?}");
    assert_eq!(pending.len(), store.apply_migrations().await.unwrap().len());
    assert_eq!(store.pending_migrations().await.unwrap(), Vec::<String>::new());
    store.pool().close().await;
    database.drop_database().await;
}
