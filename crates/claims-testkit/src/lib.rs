//! Test support: a fresh PostgreSQL database per test and a RabbitMQ URL with unique names,
//! against real servers (never mocks).
//!
//! Where the servers come from, in order:
//! 1. `DATABASE_URL` / `AMQP_URL` when set (a local server, CI service containers);
//! 2. otherwise, when a Docker engine is reachable, one container per test process, started on
//!    first use with testcontainers and shared by every test of the process;
//! 3. otherwise the test panics saying what to set: a test that silently skips cannot fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use testcontainers::ContainerAsync;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ImageExt, TestcontainersError};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::rabbitmq::RabbitMq;
use tokio::sync::OnceCell;

const NO_POSTGRES: &str =
    "no PostgreSQL for tests: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) or start a Docker engine";
const NO_RABBITMQ: &str =
    "no RabbitMQ for tests: set AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/%2f) or start a Docker engine";

/// PostgreSQL 15, as on the Debian machines the project targets.
const POSTGRES_TAG: &str = "15";
/// RabbitMQ 3.10, as in Debian bookworm (the module's default, 3.8, lacks at-least-once
/// dead-lettering).
const RABBITMQ_TAG: &str = "3.10-management";

/// A database created for one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDatabase {
    /// Connection URL of the new database.
    pub url: String,
    /// Its name (`claims_test_<pid>_<n>_<nanos>`).
    pub name: String,
}

impl TestDatabase {
    /// Drops the database (best effort: a failure only leaves a database behind). Connections
    /// still open to it are terminated first.
    pub async fn drop_database(self) {
        let Ok(admin_url) = server_url().await.map(str::to_owned) else { return };
        let Ok(mut admin) = PgConnection::connect(&admin_url).await else { return };
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = sqlx::query(AssertSqlSafe(statement)).execute(&mut admin).await;
        let _ = admin.close().await;
    }
}

/// Creates an empty database for one test (no migrations applied).
pub async fn database() -> TestDatabase {
    let admin_url = match server_url().await {
        Ok(url) => url.to_owned(),
        Err(reason) => panic!("{reason}"),
    };
    let name = format!("claims_test_{}_{}_{}", std::process::id(), next_number(), nanos());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| panic!("connecting to {admin_url} to create a test database: {error}"));
    // The name is made of digits, underscores and ASCII letters only, so quoting it is enough.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("creating test database {name}: {error}"));
    let _ = admin.close().await;
    TestDatabase { url: with_database(&admin_url, &name), name }
}

/// A RabbitMQ URL for tests: `AMQP_URL`, or a RabbitMQ container started once per process.
pub async fn amqp_url() -> String {
    static CONTAINER: OnceCell<Result<Shared<RabbitMq>, String>> = OnceCell::const_new();
    if let Some(url) = env("AMQP_URL") {
        return url;
    }
    if !docker_available() {
        panic!("{NO_RABBITMQ}");
    }
    let shared = CONTAINER
        .get_or_init(|| async {
            let container = RabbitMq::default()
                .with_tag(RABBITMQ_TAG)
                .start()
                .await
                .map_err(|error| container_error("RabbitMQ", error))?;
            let host = container.get_host().await.map_err(|error| container_error("RabbitMQ", error))?;
            let port = container.get_host_port_ipv4(5672).await.map_err(|error| container_error("RabbitMQ", error))?;
            Ok(Shared { url: format!("amqp://guest:guest@{host}:{port}/%2f"), _container: container })
        })
        .await;
    match shared {
        Ok(shared) => shared.url.clone(),
        Err(reason) => panic!("{reason}"),
    }
}

/// A prefix for queue and exchange names unique to this test in this process, e.g.
/// `t-decide-4242-3.`: tests sharing a broker never see each other's messages.
pub fn unique_prefix(name: &str) -> String {
    format!("t-{name}-{}-{}.", std::process::id(), next_number())
}

/// A container kept for the whole test process. Statics are never dropped, so the container
/// outlives every test; it is removed with the Docker engine's own cleanup of test containers.
struct Shared<I: testcontainers::Image> {
    url: String,
    _container: ContainerAsync<I>,
}

/// The URL of a database on the test server from which others can be created.
async fn server_url() -> Result<&'static str, String> {
    static SERVER: OnceCell<Result<String, String>> = OnceCell::const_new();
    static CONTAINER: OnceCell<Result<Shared<Postgres>, String>> = OnceCell::const_new();
    let server = SERVER
        .get_or_init(|| async {
            if let Some(url) = env("DATABASE_URL") {
                return Ok(url);
            }
            if !docker_available() {
                return Err(NO_POSTGRES.to_owned());
            }
            let shared = CONTAINER
                .get_or_init(|| async {
                    let container = Postgres::default()
                        .with_host_auth()
                        .with_tag(POSTGRES_TAG)
                        .start()
                        .await
                        .map_err(|error| container_error("PostgreSQL", error))?;
                    let host = container.get_host().await.map_err(|error| container_error("PostgreSQL", error))?;
                    let port = container
                        .get_host_port_ipv4(5432)
                        .await
                        .map_err(|error| container_error("PostgreSQL", error))?;
                    Ok(Shared { url: format!("postgres://postgres@{host}:{port}/postgres"), _container: container })
                })
                .await;
            shared.as_ref().map(|shared| shared.url.clone()).map_err(Clone::clone)
        })
        .await;
    server.as_ref().map(String::as_str).map_err(Clone::clone)
}

fn container_error(what: &str, error: TestcontainersError) -> String {
    format!("starting a {what} container for tests: {error}")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// Whether a Docker engine answers: `DOCKER_HOST` set, or the default socket accepts a
/// connection (the CLI alone, without an engine, does not count).
fn docker_available() -> bool {
    if env("DOCKER_HOST").is_some() {
        return true;
    }
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// `url` with its database (path) replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

fn next_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h/test?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
    }

    #[test]
    fn prefixes_are_unique() {
        assert_ne!(unique_prefix("a"), unique_prefix("a"));
        assert!(unique_prefix("decide").starts_with("t-decide-"));
    }
}
