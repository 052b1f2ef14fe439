//! `claimctl db migrate`, `claimctl registry import`, `claimctl claims errors|retry`: the
//! operator's commands on the PostgreSQL store (DATABASE_URL) and, for a retry, the broker
//! (AMQP_URL). Each builds its own small tokio runtime: `claimctl::run` is synchronous.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use claims_domain::contract::parse_registry;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::{Store, StoreError};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the schema migrations.
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Import a registry file; refuses the whole file if it names a plan or agreement the pack does not know.
    Import {
        file: PathBuf,
        /// The rule pack whose plans and agreements the registry must use.
        #[arg(long, default_value = "rules/fr")]
        rules: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClaimsCommand {
    /// List the claims whose rules failed, grouped by script position.
    Errors,
    /// Re-adjudicate the claims whose rules failed, with the pack in DIR (default: the active
    /// published pack), and publish the decisions.
    Retry {
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Prefix of the exchange and queue names (as given to the worker).
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

pub fn run_db(command: &DbCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        DbCommand::Migrate => block_on(async {
            let store = connect().await?;
            let applied = store.apply_migrations().await.context("applying the migrations")?;
            if applied.is_empty() {
                writeln!(out, "the schema is up to date")?;
            }
            for migration in &applied {
                writeln!(out, "applied {migration}")?;
            }
            store.pool().close().await;
            Ok(0)
        }),
    }
}

pub fn run_registry(command: &RegistryCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    let RegistryCommand::Import { file, rules } = command;
    let pack = load_pack(rules)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading the registry file {}", file.display()))?;
    let registry = parse_registry(&text).with_context(|| format!("in registry file {}", file.display()))?;
    block_on(async {
        let store = connect().await?;
        let imported = store.import_registry(&registry, pack.settings()).await;
        store.pool().close().await;
        match imported {
            Ok(summary) => {
                writeln!(
                    out,
                    "imported {} members and {} providers from {}",
                    summary.members,
                    summary.providers,
                    file.display()
                )?;
                Ok(0)
            }
            // The file names plans or agreements the pack does not know: nothing was imported.
            Err(StoreError::Registry(error)) => {
                eprintln!("claimctl: registry file {}: {error}; nothing imported", file.display());
                Ok(2)
            }
            Err(error) => Err(error).with_context(|| format!("importing {}", file.display())),
        }
    })
}

pub fn run_claims(command: &ClaimsCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        ClaimsCommand::Errors => block_on(async {
            let store = connect().await?;
            let errors = store.error_claims().await.context("listing the claims in error")?;
            store.pool().close().await;
            let mut by_position: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for claim in &errors {
                let position = if claim.position.is_empty() { claim.message.as_str() } else { claim.position.as_str() };
                by_position.entry(position).or_default().push(format!("{} {}", claim.provider_id, claim.claim_id));
            }
            for (position, claims) in &by_position {
                writeln!(out, "{} claim(s): {position}", claims.len())?;
                for claim in claims {
                    writeln!(out, "  {claim}")?;
                }
            }
            writeln!(out, "{} claim(s) in error", errors.len())?;
            Ok(0)
        }),
        ClaimsCommand::Retry { rules, prefix } => {
            let folder = rules.as_deref().map(load_pack).transpose()?;
            block_on(async {
                let store = connect().await?;
                let pack = match folder {
                    Some(pack) => pack,
                    None => crate::rules_publish::active_published_pack(&store).await?,
                };
                let sources: Vec<(String, String)> =
                    pack.sources().iter().map(|source| (source.path.clone(), source.text.clone())).collect();
                // Stored before anything is decided with it: every decision's pack can be replayed.
                store
                    .save_rule_pack(&pack.settings().version.pack, pack.version(), &sources)
                    .await
                    .context("saving the rule pack sources")?;
                let messages = store.retry_errors(&pack).await.context("re-adjudicating the claims in error")?;
                let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
                for message in &messages {
                    if let Some(outcome) = message.routing_key.strip_prefix("decision.") {
                        *outcomes.entry(outcome).or_default() += 1;
                    }
                }
                if !messages.is_empty() {
                    let amqp_url = std::env::var("AMQP_URL")
                        .context("AMQP_URL is not set: it names the broker to publish the new decisions to")?;
                    claims_worker::publish_once(&amqp_url, prefix, &messages)
                        .await
                        .context("publishing the new decisions")?;
                    let ids: Vec<i64> = messages.iter().filter_map(|message| message.outbox_id).collect();
                    // Only after the broker confirmed: a crash before this leaves the rows to the
                    // worker's outbox relay, which publishes them again under the same ids.
                    store.mark_published(&ids).await.context("marking the outbox rows published")?;
                }
                store.pool().close().await;
                let total: usize = outcomes.values().sum();
                let summary: Vec<String> =
                    outcomes.iter().map(|(outcome, count)| format!("{count} {outcome}")).collect();
                writeln!(
                    out,
                    "re-adjudicated {total} claim(s) with {} {}{}",
                    pack.settings().version.pack,
                    pack.version(),
                    if summary.is_empty() { String::new() } else { format!(": {}", summary.join(", ")) }
                )?;
                Ok(0)
            })
        }
    }
}

fn load_pack(dir: &Path) -> anyhow::Result<RhaiPack> {
    RhaiPack::load(dir)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading rule pack {}", dir.display()))
}

async fn connect() -> anyhow::Result<Store> {
    let url = std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set: it names the PostgreSQL database, e.g. postgres://user@host:5432/claims")?;
    Store::connect(&url).await.context("connecting to the database named by DATABASE_URL")
}

/// Runs one command's async work on a small runtime of its own.
fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(work)
}
