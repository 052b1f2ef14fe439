//! The worker logged in as `claims_worker`, the least-privileged role the migrations create: it
//! decides the French examples through the queue exactly as the embedded mode does. It does
//! not migrate: on a database whose migrations are pending it stops at start, saying to run
//! `claimctl db migrate` as the owner role, and as `claims_worker` that command is refused.
//!
//! The role has no password: the development machines and CI accept loopback logins
//! (`trust`). A server that asks for one gets it from `CLAIMS_WORKER_PASSWORD`.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use claims_worker::{Config, WorkerError};
use worker_support::{Fixture, WorkerThread, claims_file, queue_decides_like_embedded, registry_file, rules_dir};

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

#[tokio::test]
async fn the_worker_role_decides_the_french_examples_like_the_embedded_mode() {
    let fixture = Fixture::new("least-privilege").await;
    let mut config = fixture.config();
    config.database_url = as_worker(&fixture.database.url);
    let worker = WorkerThread::start(config);
    queue_decides_like_embedded(&fixture, &registry_file(), &claims_file()).await;

    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    // Everything it wrote is in the owner's tables, the outbox relayed and marked.
    let (decided, unpublished): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM claims), (SELECT count(*) FROM outbox WHERE published_at IS NULL)",
    )
    .fetch_one(fixture.store.pool())
    .await
    .unwrap_or_else(|error| panic!("{error}"));
    assert!(decided > 300, "{decided} claims rows");
    assert_eq!(unpublished, 0);
    fixture.cleanup().await;
}

#[tokio::test]
async fn the_worker_does_not_start_on_a_database_with_pending_migrations() {
    let database = claims_testkit::database().await;
    let worker_url = as_worker(&database.url);

    // As the worker's role, migrating is refused: it cannot create the migrations' table.
    let as_role = claims_store::Store::connect(&worker_url).await.unwrap_or_else(|error| panic!("{error}"));
    let refused = as_role.apply_migrations().await.expect_err("claims_worker cannot migrate");
    assert!(refused.to_string().contains("permission denied for schema public"), "{refused}");
    as_role.pool().close().await;

    // The broker is never reached: the schema check comes first.
    let config = Config::new("amqp://guest:guest@127.0.0.1:1/%2f", database.url.clone(), rules_dir());
    let error = claims_worker::run(config, std::future::pending()).await.expect_err("the worker refuses to start");
    let WorkerError::MigrationsPending { pending } = &error else { panic!("expected pending migrations, got {error}") };
    assert!(pending.iter().any(|migration| migration.ends_with("worker role")), "{pending:?}");
    let message = error.to_string();
    assert!(message.ends_with("run `claimctl db migrate` as the owner role"), "{message}");
    assert!(message.starts_with(&format!("the database schema lacks {} migration(s) (", pending.len())), "{message}");
    database.drop_database().await;
}
