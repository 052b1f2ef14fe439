//! `claimctl rules publish|history|activate`: putting a rule pack in force in the database,
//! where running workers pick it up at their next poll, and rolling back. A pack is published
//! only once `rules check` finds nothing and `rules test` passes; the history is append-only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use claims_domain::rules::RulePack;
use claims_rules::{RhaiPack, SourceFile};
use claims_store::{Publication, PublicationError, Published, Store};

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The pack directory (e.g. rules/fr); it must pass `rules check` and `rules test`.
    pub dir: PathBuf,
    /// Who publishes (recorded in the history); defaults to the USER environment variable.
    #[arg(long)]
    pub by: Option<String>,
    /// Why, in a few words (recorded in the history).
    #[arg(long)]
    pub note: Option<String>,
    /// The database; defaults to the environment variable DATABASE_URL.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only this pack's publications (e.g. fr).
    #[arg(long)]
    pub pack: Option<String>,
    /// The database; defaults to the environment variable DATABASE_URL.
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    /// A stored pack version, `sha256:<hex>`, or a unique prefix of its hex digits.
    pub version: String,
    /// Who activates it (recorded in the history); defaults to the USER environment variable.
    #[arg(long)]
    pub by: Option<String>,
    /// Why, in a few words (recorded in the history).
    #[arg(long)]
    pub note: Option<String>,
    /// The database; defaults to the environment variable DATABASE_URL.
    #[arg(long)]
    pub database_url: Option<String>,
}

pub fn publish(args: &PublishArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let dir = &args.dir;
    let diagnostics = claims_rules::check_pack(dir);
    if !diagnostics.is_empty() {
        for diagnostic in &diagnostics {
            writeln!(out, "{diagnostic}")?;
        }
        writeln!(out, "{} problem(s) in {}: nothing published", diagnostics.len(), dir.display())?;
        return Ok(1);
    }
    let report = match claims_rules::run_pack_tests(dir, None) {
        Ok(report) => report,
        Err(error) => {
            writeln!(out, "{error}")?;
            writeln!(out, "the tests of {} could not run: nothing published", dir.display())?;
            return Ok(1);
        }
    };
    if report.results.is_empty() {
        writeln!(out, "no tests in {}: a pack is published only once its tests pass", dir.join("tests").display())?;
        return Ok(1);
    }
    if report.failed() > 0 {
        writeln!(out, "{report}")?;
        writeln!(out, "{} test(s) failed in {}: nothing published", report.failed(), dir.display())?;
        return Ok(1);
    }
    writeln!(out, "{} passed, 0 failed", report.passed())?;

    let pack = RhaiPack::load(dir)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading rule pack {}", dir.display()))?;
    let by = author(args.by.as_deref())?;
    let name = pack.settings().version.pack.clone();
    let sources: Vec<(String, String)> =
        pack.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    let published = block_on(async {
        let store = connect(args.database_url.as_deref()).await?;
        let published = store.publish_rule_pack(&name, pack.version(), &sources, &by, args.note.as_deref()).await;
        store.pool().close().await;
        published.with_context(|| format!("publishing {name} {}", pack.version()))
    })?;
    match published {
        Published::Recorded(publication) => writeln!(
            out,
            "published {} {} (by {}); running workers switch to it at their next poll",
            publication.pack, publication.version, publication.by
        )?,
        Published::AlreadyActive { pack, version } => {
            writeln!(out, "{pack} {version} is already the active version: nothing recorded")?;
        }
    }
    Ok(0)
}

pub fn history(args: &HistoryArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let (publications, active) = block_on(async {
        let store = connect(args.database_url.as_deref()).await?;
        let publications = store.rule_publications(args.pack.as_deref()).await.context("reading the history");
        let active = store.active_rule_versions().await.context("reading the active versions");
        store.pool().close().await;
        Ok((publications?, active?))
    })?;
    if publications.is_empty() {
        match &args.pack {
            Some(pack) => writeln!(out, "pack {pack} was never published")?,
            None => writeln!(out, "no rule pack was ever published")?,
        }
        return Ok(0);
    }
    // The latest row of each pack is its active version.
    let latest: Vec<i64> = active
        .keys()
        .filter_map(|pack| publications.iter().filter(|row| &row.pack == pack).map(|row| row.seq).max())
        .collect();
    let header = ["when", "who", "action", "pack", "version", "note"].map(str::to_owned);
    let rows: Vec<[String; 6]> = publications.iter().map(columns).collect();
    let mut widths = header.clone().map(|title| title.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    write_row(out, "  ", &header, &widths)?;
    for (publication, row) in publications.iter().zip(&rows) {
        let marker = if latest.contains(&publication.seq) { "* " } else { "  " };
        write_row(out, marker, row, &widths)?;
    }
    writeln!(out, "* = active")?;
    Ok(0)
}

pub fn activate(args: &ActivateArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let by = author(args.by.as_deref())?;
    let outcome = block_on(async {
        let store = connect(args.database_url.as_deref()).await?;
        let outcome = activate_in(&store, &args.version, &by, args.note.as_deref()).await;
        store.pool().close().await;
        outcome
    })?;
    match outcome {
        Ok((Published::Recorded(publication), previous)) => {
            let was = previous.map_or_else(String::new, |previous| format!(" (was {previous})"));
            writeln!(
                out,
                "activated {} {}{was}; running workers switch to it at their next poll",
                publication.pack, publication.version
            )?;
            Ok(0)
        }
        Ok((Published::AlreadyActive { pack, version }, _)) => {
            writeln!(out, "{pack} {version} is already the active version: nothing recorded")?;
            Ok(0)
        }
        Err(error) => {
            eprintln!("claimctl: rules activate: {error}; nothing activated");
            Ok(2)
        }
    }
}

/// Resolves `version` and activates it; returns the pack's version before.
async fn activate_in(
    store: &Store,
    version: &str,
    by: &str,
    note: Option<&str>,
) -> anyhow::Result<Result<(Published, Option<String>), PublicationError>> {
    let version = match store.resolve_rule_version(version).await {
        Ok(version) => version,
        Err(PublicationError::Store(error)) => return Err(error).context("looking up the version"),
        Err(refused) => return Ok(Err(refused)),
    };
    let before = store.active_rule_versions().await.context("reading the active versions")?;
    match store.activate_rule_version(&version, by, note).await {
        Ok(published) => {
            let pack = match &published {
                Published::Recorded(publication) => publication.pack.as_str(),
                Published::AlreadyActive { pack, .. } => pack.as_str(),
            };
            let previous = before.get(pack).cloned();
            Ok(Ok((published, previous)))
        }
        Err(PublicationError::Store(error)) => Err(error).with_context(|| format!("activating {version}")),
        Err(refused) => Ok(Err(refused)),
    }
}

/// The active published pack, for commands that default to it (`claims retry`): the only pack
/// ever published, loaded from its stored sources.
pub(crate) async fn active_published_pack(store: &Store) -> anyhow::Result<RhaiPack> {
    let active = store.active_rule_versions().await.context("reading the active rule pack versions")?;
    let mut packs = active.keys();
    let (Some(name), None) = (packs.next(), packs.next()) else {
        if active.is_empty() {
            anyhow::bail!("no rule pack was ever published: give the pack folder with --rules DIR");
        }
        let names: Vec<&str> = active.keys().map(String::as_str).collect();
        anyhow::bail!("several packs are published ({}): give the pack folder with --rules DIR", names.join(", "));
    };
    let (version, sources) = store
        .active_rule_pack(name)
        .await
        .context("reading the active rule pack")?
        .with_context(|| format!("pack {name} has no active version"))?;
    let files: Vec<SourceFile> = sources.into_iter().map(|(path, text)| SourceFile { path, text }).collect();
    RhaiPack::from_sources(name, &files)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading the active version of pack {name}, {version}"))
}

fn columns(publication: &Publication) -> [String; 6] {
    [
        publication.at.clone(),
        publication.by.clone(),
        publication.action.to_string(),
        publication.pack.clone(),
        publication.version.clone(),
        publication.note.clone().unwrap_or_default(),
    ]
}

fn write_row(out: &mut dyn Write, marker: &str, cells: &[String; 6], widths: &[usize; 6]) -> std::io::Result<()> {
    let mut line = marker.to_owned();
    for (cell, width) in cells.iter().zip(widths) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    writeln!(out, "{}", line.trim_end())
}

/// `--by`, else the OS user: a publication always names someone.
fn author(by: Option<&str>) -> anyhow::Result<String> {
    let name = match by {
        Some(by) => by.trim().to_owned(),
        None => std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default().trim().to_owned(),
    };
    if name.is_empty() {
        anyhow::bail!("who is publishing? give --by NAME (the USER environment variable is not set)");
    }
    Ok(name)
}

async fn connect(database_url: Option<&str>) -> anyhow::Result<Store> {
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => std::env::var("DATABASE_URL")
            .context("no database: give --database-url or set DATABASE_URL (e.g. postgres://user@host:5432/claims)")?,
    };
    Store::connect(&url).await.context("connecting to the database")
}

/// Runs one command's async work on a small runtime of its own.
fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_author_is_trimmed_and_an_empty_one_refused() {
        assert_eq!(author(Some("  alice ")).unwrap(), "alice");
        let error = author(Some("  ")).unwrap_err().to_string();
        assert!(error.contains("--by NAME"), "{error}");
    }
}
