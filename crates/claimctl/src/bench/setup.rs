//! What a bench run stands on: generated claims, its own database, its own broker names, and
//! the worker as a child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use claims_domain::contract::parse_registry;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::Store;
use claims_worker::Topology;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection as _, PgConnection};

use crate::bench::{BenchArgs, queue_type_name};

/// `count` messages from the generator, each claim id prefixed by `tag` (cancellations name
/// the claim they cancel by the same field): every run of a bench decides new claims, never
/// replays of an earlier run's.
pub fn generate_claims(
    generator: &Path,
    members: usize,
    count: usize,
    seed: u64,
    tag: &str,
) -> anyhow::Result<Vec<String>> {
    let arguments = ["--members", &members.to_string(), "--count", &count.to_string(), "--seed", &seed.to_string()];
    let output = run_generator(generator, &arguments)?;
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            let mut message: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", generator.display(), index + 1))?;
            let Some(Value::String(claim_id)) = message.get_mut("claim_id") else {
                bail!("{} line {}: no claim_id", generator.display(), index + 1);
            };
            claim_id.insert_str(0, tag);
            Ok(message.to_string())
        })
        .collect()
}

pub fn generate_registry(generator: &Path, members: usize) -> anyhow::Result<String> {
    run_generator(generator, &["--registry", "--members", &members.to_string()])
}

fn run_generator(generator: &Path, arguments: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("python3")
        .arg(generator)
        .args(arguments)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running python3 {} (is python3 installed?)", generator.display()))?;
    if !output.status.success() {
        bail!("{} {} failed: {}", generator.display(), arguments.join(" "), output.status);
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed something that is not UTF-8", generator.display()))
}

/// A database of the bench's own, on the server `DATABASE_URL` names.
pub struct BenchDatabase {
    pub name: String,
    pub url: String,
}

impl BenchDatabase {
    /// Creates `claims_bench_<pid>`, migrates it and imports `registry` checked against the pack.
    pub async fn create(server_url: &str, rules: &Path, registry: &str) -> anyhow::Result<BenchDatabase> {
        let name = format!("claims_bench_{}", std::process::id());
        let url = with_database(server_url, &name);
        sqlx::Postgres::create_database(&url).await.with_context(|| format!("creating database {name}"))?;
        let database = BenchDatabase { name, url };
        let prepared = async {
            let pack = RhaiPack::load(rules)
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("loading rule pack {}", rules.display()))?;
            let registry = parse_registry(registry).context("in the generated registry")?;
            let store = Store::connect(&database.url).await.context("connecting to the bench database")?;
            store.migrate().await.context("migrating the bench database")?;
            store.import_registry(&registry, pack.settings()).await.context("importing the generated registry")?;
            store.pool().close().await;
            anyhow::Ok(())
        }
        .await;
        match prepared {
            Ok(()) => Ok(database),
            Err(error) => {
                let _ = database.drop().await;
                Err(error)
            }
        }
    }

    /// What the worker published for each claim of the run tagged `tag` besides its reply (its
    /// decision/v1 and payment messages), by the index in the claim's correlation id
    /// `<tag>-<index>`. Read from the outbox, where a decision's rows are contiguous and end with
    /// its reply; call it before the next run adds rows.
    pub async fn announced(&self, tag: &str) -> anyhow::Result<HashMap<usize, Vec<Announced>>> {
        let mut connection = PgConnection::connect(&self.url).await.context("connecting to the bench database")?;
        let rows: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
            "SELECT destination, routing_key, octet_length(body), correlation_id FROM outbox ORDER BY id",
        )
        .fetch_all(&mut connection)
        .await
        .context("reading the outbox of the engine run")?;
        let _ = connection.close().await;
        let prefix = format!("{tag}-");
        let mut announced = HashMap::new();
        let mut pending = Vec::new();
        for (destination, routing_key, bytes, correlation_id) in rows {
            let bytes = usize::try_from(bytes).unwrap_or_default();
            let exchange = match destination.as_str() {
                "decisions" => AnnouncedTo::Decisions,
                "payments" => AnnouncedTo::Payments,
                // The reply ends the decision's rows: they belong to the claim it answers.
                _ => {
                    let rows = std::mem::take(&mut pending);
                    let index = correlation_id
                        .as_deref()
                        .and_then(|id| id.strip_prefix(&prefix))
                        .and_then(|index| index.parse::<usize>().ok());
                    if let Some(index) = index {
                        announced.insert(index, rows);
                    }
                    continue;
                }
            };
            pending.push(Announced { exchange, routing_key, bytes });
        }
        Ok(announced)
    }

    /// Decision/v1 and payment messages the worker has recorded in the outbox so far.
    pub async fn announced_total(&self) -> anyhow::Result<u64> {
        let mut connection = PgConnection::connect(&self.url).await.context("connecting to the bench database")?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE destination <> 'reply'")
            .fetch_one(&mut connection)
            .await
            .context("counting the outbox")?;
        let _ = connection.close().await;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        sqlx::Postgres::force_drop_database(&self.url).await.with_context(|| format!("dropping database {}", self.name))
    }
}

/// Where an announced message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncedTo {
    Decisions,
    Payments,
}

/// One message the worker published for a claim besides the reply: its exchange, routing key
/// and body size.
#[derive(Debug, Clone)]
pub struct Announced {
    pub exchange: AnnouncedTo,
    pub routing_key: String,
    pub bytes: usize,
}

/// `url` with its database (the path) replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |index| index + 3);
    let server = base[authority..].find('/').map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// How long closing a broker connection may take at the end of a step.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes `connection`, giving up after [`CLOSE_TIMEOUT`]: a close that never completes (seen
/// once, with channels closing on drop at the same time) must not hang the bench, and whatever
/// the broker still holds for the connection goes when this process exits.
pub async fn close_connection(connection: &Connection, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, reason.into())).await;
}

/// Deletes the run's queues and exchanges (best effort: a leftover only costs broker memory).
pub async fn remove_topology(amqp_url: &str, topology: &Topology) {
    let Ok(connection) = Connection::connect(amqp_url, ConnectionProperties::default()).await else { return };
    if let Ok(channel) = connection.create_channel().await {
        for queue in [&topology.submit_queue, &topology.dead_queue] {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        }
        crate::bench::downstream::remove(&channel, topology).await;
        for (exchange, _) in topology.exchanges() {
            let _ = channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await;
        }
    }
    close_connection(&connection, "bench done").await;
}

/// `claimctl worker` as a child process, killed if the bench ends without stopping it.
pub struct WorkerProcess {
    child: Option<Child>,
}

impl WorkerProcess {
    /// Starts the worker and waits until it logs that it is consuming. Its warnings and errors
    /// are passed on to standard error; its per-batch logs are read and dropped.
    pub fn start(
        binary: &Path,
        args: &BenchArgs,
        amqp_url: &str,
        database_url: &str,
        topology: &Topology,
        timeout: Duration,
    ) -> anyhow::Result<WorkerProcess> {
        let prefix = topology.submit_queue.strip_suffix("claims.submit").unwrap_or_default();
        let mut child = Command::new(binary)
            .args(["worker", "--metrics", "127.0.0.1:0", "--prefix", prefix])
            .args(["--queue-type", queue_type_name(args.queue_type)])
            .args(["--batch-size", &args.batch_size.to_string(), "--prefetch", &args.prefetch.to_string()])
            .arg("--rules")
            .arg(&args.rules)
            .env("DATABASE_URL", database_url)
            .env("AMQP_URL", amqp_url)
            // Production's level; also where the worker says it is consuming, which we wait for.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} worker", binary.display()))?;
        let Some(stderr) = child.stderr.take() else { bail!("the worker's standard error was not captured") };
        let mut worker = WorkerProcess { child: Some(child) };
        let (started, consuming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut started = Some(started);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(r#""message":"consuming""#) {
                    if let Some(started) = started.take() {
                        let _ = started.send(Ok(()));
                    }
                } else if !line.contains(r#""level":"INFO""#) && !line.contains(r#""level":"DEBUG""#) {
                    eprintln!("worker: {line}");
                }
            }
            if let Some(started) = started {
                let _ = started.send(Err(()));
            }
        });
        match consuming.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(())) => {
                let status = worker.child.take().map(|mut child| child.wait());
                bail!("the worker exited before consuming ({status:?}); its errors are above")
            }
            Err(_) => bail!("the worker did not start consuming within {timeout:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM (the worker finishes its batch and exits 0), then waits.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !sent.is_ok_and(|status| status.success()) {
            let _ = child.kill();
        }
        let status = child.wait().context("waiting for the worker to exit")?;
        if !status.success() {
            bail!("the worker exited with {status} after SIGTERM");
        }
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_database_replaces_only_the_path() {
        assert_eq!(with_database("postgres://u@h:5432/test", "b"), "postgres://u@h:5432/b");
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "b"),
            "postgres://u@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5432", "b"), "postgres://u@h:5432/b");
    }
}
