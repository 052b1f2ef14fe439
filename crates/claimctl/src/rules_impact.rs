//! `claimctl rules impact DIR [--last N] [--audit FILE] [--json]`: what the pack in DIR would
//! have decided for the last N claim decisions recorded, compared with what was decided. The
//! decisions come from the audit log, in the database (DATABASE_URL) or in a file written by
//! `claimctl adjudicate --audit` (or an `audit export`); the report is
//! `claims_audit::impact`. Nothing is written anywhere.
//!
//! The entries read are checked as the regulator's tools check them (each entry's hash is its
//! content's, and each follows the one before), but only over the entries read: the chain
//! before them is `claimctl audit verify`'s business.
//!
//! Exit codes: 0 the report was made, 2 it could not be (an unreadable pack or log).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use claims_audit::export::ExportHeader;
use claims_audit::impact::{EntryKind, Impact, Redecided, Selection, entry_kind, redecide};
use claims_audit::replay::RecordedEntry;
use claims_audit::{ChainHead, Checked};
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use claims_store::Store;
use clap::Args;
use serde_json::{Value, json};

/// Entries read from the database per query, going back from the head.
const PAGE: u64 = 2000;

#[derive(Debug, Args)]
pub struct ImpactArgs {
    /// The pack to try (e.g. a copy of rules/fr with a new tariff row).
    pub dir: PathBuf,
    /// How many of the most recent claim decisions to re-adjudicate.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub last: usize,
    /// Read the decisions from this audit file (`adjudicate --audit` or `audit export`) instead
    /// of the database.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// The database (default: DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print the report as one JSON object (amounts in minor units).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ImpactArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    if args.last == 0 {
        bail!("--last 0: give how many claim decisions to re-adjudicate (at least 1)");
    }
    let pack = RhaiPack::load(&args.dir)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading rule pack {}", args.dir.display()))?;
    let pack_name = pack.settings().version.pack.clone();
    let mut selection = Selection::new(args.last, &pack_name);
    let source = match &args.audit {
        Some(path) => {
            read_file(path, &mut selection)?;
            path.display().to_string()
        }
        None => {
            read_database(args.database_url.as_deref(), args.last, &pack_name, &mut selection)?;
            "the database".to_owned()
        }
    };
    let selected = selection.finish();
    let found = selected.claims.len();
    let mut impact = Impact::new(selected.skipped);
    for redecided in redecide_all(&selected.claims, &pack)? {
        impact.add(redecided);
    }
    if args.json {
        let mut report = impact.to_json();
        report["rules"] = json!({"dir": args.dir.display().to_string(), "pack": pack_name, "version": pack.version()});
        report["source"] = Value::String(source);
        report["asked"] = json!(args.last);
        writeln!(out, "{report}")?;
        return Ok(0);
    }
    let all = if found < args.last { format!(", all there are (--last {})", args.last) } else { String::new() };
    let title = format!(
        "impact of {} ({pack_name} {}) on the last {found} claim decision(s) in {source}{all}",
        args.dir.display(),
        pack.version()
    );
    write!(out, "{}", impact.render(&title))?;
    Ok(0)
}

/// Re-decides every claim with `pack`, on every core, in log order.
fn redecide_all(claims: &[RecordedEntry], pack: &RhaiPack) -> anyhow::Result<Vec<Redecided>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 32);
    let chunk = claims.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = claims
            .chunks(chunk)
            .map(|entries| {
                scope.spawn(move || {
                    entries
                        .iter()
                        .map(|entry| {
                            redecide(entry, pack).map_err(|error| {
                                anyhow::anyhow!("entry seq {}: its recorded inputs cannot be read: {error}", entry.seq)
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(claims.len());
        for worker in workers {
            let done = worker.join().map_err(|_| anyhow::anyhow!("a re-adjudicating thread panicked"))?;
            all.extend(done?);
        }
        Ok(all)
    })
}

/// Checks entries as they are read: each whole, each following the one before.
struct Chain {
    name: String,
    head: Option<ChainHead>,
}

impl Chain {
    fn accept(&mut self, line: u64, text: &[u8]) -> anyhow::Result<RecordedEntry> {
        let mut checked: Checked = claims_audit::check(text);
        let value = checked.value.take();
        let head = self.head.get_or_insert_with(|| ChainHead {
            next_sequence: checked.seq().unwrap_or(1),
            previous_hash: value
                .as_ref()
                .and_then(|value| value.get("prev_hash"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
        claims_audit::link(head, line, &checked)
            .map_err(|error| anyhow::anyhow!("{} does not verify: {error}", self.name))?;
        let value = value.with_context(|| format!("{}: line {line} is not an entry", self.name))?;
        let seq = checked.seq().unwrap_or(0);
        RecordedEntry::from_json(value).map_err(|error| anyhow::anyhow!("{}: entry seq {seq}: {error}", self.name))
    }
}

/// Reads an audit file in order into `selection`; an export's header line is passed over.
fn read_file(path: &Path, selection: &mut Selection) -> anyhow::Result<()> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    let mut reader = BufReader::new(file);
    let mut chain = Chain { name: name.clone(), head: None };
    let mut text = Vec::new();
    let mut line = 0_u64;
    loop {
        text.clear();
        if reader.read_until(b'\n', &mut text).with_context(|| format!("reading {name}"))? == 0 {
            break;
        }
        line += 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line == 1 && serde_json::from_slice::<Value>(&text).is_ok_and(|value| ExportHeader::is_header(&value)) {
            continue;
        }
        selection.push(chain.accept(line, &text)?);
    }
    if line == 0 {
        bail!("{name} is empty: no audit entries");
    }
    Ok(())
}

/// Reads the database's log backwards from its head, a page at a time, until the pages hold
/// `last` different claims decided by `pack` (or the log's start), then hands them to
/// `selection` in log order.
fn read_database(url: Option<&str>, last: usize, pack: &str, selection: &mut Selection) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => std::env::var("DATABASE_URL").context(
            "no --audit file given and DATABASE_URL is not set: name the database with --database-url or DATABASE_URL",
        )?,
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let store = runtime.block_on(Store::connect(&url)).context("connecting to the database")?;
    let (head, _) = runtime.block_on(store.audit_head()).context("reading the head of the audit log")?;
    let mut pages: Vec<Vec<(u64, String)>> = Vec::new();
    let mut claims: HashSet<(String, String)> = HashSet::new();
    let mut end = head;
    while end > 0 && claims.len() < last {
        let after = end.saturating_sub(PAGE);
        let limit = i64::try_from(end - after).unwrap_or(i64::MAX);
        let rows = runtime.block_on(store.audit_entries(after, limit)).context("reading the audit log")?;
        if rows.first().map(|(seq, _)| *seq) != Some(after + 1) || rows.len() as u64 != end - after {
            bail!("the audit log has a gap in seq {}..={end}", after + 1);
        }
        for (_, text) in &rows {
            // Only to know when to stop: the entries are checked when read in order below.
            let Ok(entry) = serde_json::from_str::<Value>(text)
                .map_err(drop)
                .and_then(|value| RecordedEntry::from_json(value).map_err(drop))
            else {
                continue;
            };
            if entry.rules.pack == pack && entry_kind(&entry) == EntryKind::Claim {
                let text = |name: &str| entry.decision.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
                claims.insert((text("provider_id"), text("claim_id")));
            }
        }
        pages.push(rows);
        end = after;
    }
    runtime.block_on(store.pool().close());
    let mut chain = Chain { name: "the database".to_owned(), head: None };
    for (seq, text) in pages.into_iter().rev().flatten() {
        selection.push(chain.accept(seq, text.as_bytes())?);
    }
    Ok(())
}
