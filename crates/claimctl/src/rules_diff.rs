//! `claimctl rules diff OLD NEW`: what changed between two versions of a rule pack, each a pack
//! folder or a version stored in the database (`sha256:…` or a unique prefix of it). The diff
//! itself is `claims_rules::diff`; this module only finds the two packs and prints.
//!
//! Exit codes, like diff(1): 0 identical ("no change"), 1 they differ, 2 it could not run.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use claims_domain::rules::RulePack;
use claims_rules::diff::diff_packs;
use claims_rules::{RhaiPack, SourceFile};
use claims_store::Store;
use clap::Args;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The pack before the change: a folder (rules/fr) or a stored version (sha256:… or a prefix).
    pub old: String,
    /// The pack after the change, likewise.
    pub new: String,
    /// The database holding stored versions (default: DATABASE_URL); only read for a version.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// A pack found and loaded: how it is named in the output, and the pack.
struct Side {
    label: String,
    pack: RhaiPack,
}

pub fn run(args: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let old = find(&args.old, args.database_url.as_deref()).context("OLD")?;
    let new = find(&args.new, args.database_url.as_deref()).context("NEW")?;
    let diff = diff_packs(old.pack.sources(), new.pack.sources()).map_err(|error| anyhow::anyhow!("{error}"))?;
    writeln!(out, "--- {} ({} {})", old.label, old.pack.settings().version.pack, old.pack.version())?;
    writeln!(out, "+++ {} ({} {})", new.label, new.pack.settings().version.pack, new.pack.version())?;
    if diff.is_empty() {
        writeln!(out, "no change")?;
        return Ok(0);
    }
    write!(out, "{diff}")?;
    Ok(1)
}

/// The pack named by `name`: a folder when one exists at that path, otherwise a stored version.
fn find(name: &str, database_url: Option<&str>) -> anyhow::Result<Side> {
    let path = Path::new(name);
    if path.is_dir() {
        let pack = RhaiPack::load(path)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| format!("loading rule pack {name}"))?;
        return Ok(Side { label: name.to_owned(), pack });
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.is_empty() || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        bail!("{name:?} is neither a pack folder nor a rule pack version (sha256:… or a prefix of one)");
    }
    let (version, files) = stored(&format!("sha256:{}", hex.to_ascii_lowercase()), database_url)
        .with_context(|| format!("finding rule pack version {name}"))?;
    let pack = RhaiPack::from_sources("", &files)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading the stored sources of {version}"))?;
    Ok(Side { label: format!("stored {version}"), pack })
}

/// The one stored version starting with `prefix`, and its sources.
fn stored(prefix: &str, database_url: Option<&str>) -> anyhow::Result<(String, Vec<SourceFile>)> {
    let url = match database_url {
        Some(url) => url.to_owned(),
        None => std::env::var("DATABASE_URL")
            .context("a stored version needs the database: set DATABASE_URL or give --database-url")?,
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::connect(&url).await.context("connecting to the database")?;
        let versions = store.rule_versions().await.context("reading the stored rule versions")?;
        let matching: Vec<&String> = versions.iter().filter(|version| version.starts_with(prefix)).collect();
        let version = match matching.as_slice() {
            [version] => (*version).clone(),
            [] => bail!("no stored rule pack version starts with {prefix}"),
            several => bail!(
                "{} stored versions start with {prefix}: give more digits ({})",
                several.len(),
                several.iter().map(|version| version.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        let files = store
            .rule_pack_sources(&version)
            .await
            .context("reading the stored sources")?
            .with_context(|| format!("no sources stored for {version}"))?;
        store.pool().close().await;
        Ok((version, files.into_iter().map(|(path, text)| SourceFile { path, text }).collect()))
    })
}
