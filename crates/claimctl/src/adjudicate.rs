//! `claimctl adjudicate`: the embedded mode. Runs the same pipeline as the worker with the
//! in-memory ledger: claims in file order, counters carried from one to the next, one
//! decision/v1 line per input line, and optionally the hash-chained audit log.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use claims_audit::{ChainHead, EntryContent};
use claims_domain::accumulators::{CounterKey, Subject};
use claims_domain::contract::{check_registry_names, decision_to_json, not_utf8, parse_registry, with_audit};
use claims_domain::decision::Outcome;
use claims_domain::ids::{HouseholdId, MemberId};
use claims_domain::ledger::Ledger;
use claims_domain::pipeline;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct AdjudicateArgs {
    /// The rule pack directory (e.g. rules/fr).
    #[arg(long)]
    rules: PathBuf,
    /// The registry file (members, households, providers).
    #[arg(long)]
    registry: PathBuf,
    /// Counter values to start from: a JSON list of {subject, id, counter, period, value}.
    #[arg(long)]
    counters: Option<PathBuf>,
    /// Write the hash-chained audit log (audit/v1, one JSON entry per line) to this file.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Claims and cancellations, one JSON message per line; `-` reads standard input.
    claims: PathBuf,
}

pub fn run(args: &AdjudicateArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let pack = RhaiPack::load(&args.rules)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("loading rule pack {}", args.rules.display()))?;
    let registry_text = std::fs::read_to_string(&args.registry)
        .with_context(|| format!("reading the registry file {}", args.registry.display()))?;
    let registry =
        parse_registry(&registry_text).with_context(|| format!("in registry file {}", args.registry.display()))?;
    check_registry_names(&registry, pack.settings())
        .with_context(|| format!("in registry file {}", args.registry.display()))?;
    let mut ledger = Ledger::new(registry);
    if let Some(path) = &args.counters {
        load_counters(&mut ledger, path)?;
    }

    let input: Box<dyn Read> = if crate::is_stdin(&args.claims) {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&args.claims).with_context(|| format!("opening claims file {}", args.claims.display()))?)
    };
    let mut audit = match &args.audit {
        Some(path) => {
            Some(BufWriter::new(File::create(path).with_context(|| format!("creating audit file {}", path.display()))?))
        }
        None => None,
    };
    let mut head = ChainHead::default();
    // Where each decision sits in the audit log, so a repeated claim gets its original place.
    let mut audit_places: HashMap<(String, String, bool), (u64, String)> = HashMap::new();
    let mut out = BufWriter::new(out);
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    let started = Instant::now();

    for (index, line) in BufReader::new(input).split(b'\n').enumerate() {
        let mut bytes = line.with_context(|| format!("reading line {} of {}", index + 1, args.claims.display()))?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                // The worker dead-letters such a message and records nothing; here it gets the
                // same reason as a rejected decision (one decision per input line), unaudited.
                let decision = pipeline::rejected_message(&not_utf8(&error.utf8_error()), pack.settings());
                *counts.entry(decision.outcome.name()).or_insert(0) += 1;
                serde_json::to_writer(&mut out, &decision_to_json(&decision))?;
                out.write_all(b"\n")?;
                continue;
            }
        };
        let recorded = ledger.record(&text, &pack);
        *counts.entry(recorded.decision.outcome.name()).or_insert(0) += 1;
        let mut message = decision_to_json(&recorded.decision);
        if let Some(audit) = audit.as_mut() {
            let place_key = (
                recorded.decision.provider_id.clone(),
                recorded.decision.claim_id.clone(),
                recorded.decision.outcome == Outcome::Reversed,
            );
            match &recorded.effect {
                Some(effect) => {
                    let recorded_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    let sequence = head.next_sequence;
                    let entry = claims_audit::append(
                        &mut head,
                        &EntryContent { recorded_at: &recorded_at, input: &text, effect, decision: &message },
                    );
                    serde_json::to_writer(&mut *audit, &entry)?;
                    audit.write_all(b"\n")?;
                    audit_places.insert(place_key, (sequence, head.previous_hash.clone()));
                    message = with_audit(message, sequence, &head.previous_hash);
                }
                None => {
                    if let Some((sequence, hash)) = audit_places.get(&place_key) {
                        message = with_audit(message, *sequence, hash);
                    }
                }
            }
        }
        serde_json::to_writer(&mut out, &message)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(mut audit) = audit {
        audit.flush().context("writing the audit file")?;
    }
    let total: u64 = counts.values().sum();
    let elapsed = started.elapsed();
    let mut summary: Vec<String> = ["complete", "partial", "rejected", "error", "reversed"]
        .iter()
        .filter_map(|outcome| counts.get(outcome).map(|count| format!("{count} {outcome}")))
        .collect();
    if summary.is_empty() {
        summary.push("nothing".to_owned());
    }
    eprintln!(
        "adjudicated {total} messages in {:.3} s ({} per second): {}",
        elapsed.as_secs_f64(),
        (total as u128 * 1_000_000).checked_div(elapsed.as_micros().max(1)).unwrap_or(0),
        summary.join(", ")
    );
    Ok(0)
}

fn load_counters(ledger: &mut Ledger, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading counters file {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("counters file {} is not valid JSON", path.display()))?;
    for (key, amount) in parse_counters(&value).with_context(|| format!("in counters file {}", path.display()))? {
        ledger.set_counter(key, amount);
    }
    Ok(())
}

/// Parses a list of `{subject, id, counter, period, value}` (the pack tests use the same shape).
pub fn parse_counters(value: &Value) -> anyhow::Result<Vec<(CounterKey, i64)>> {
    let Some(items) = value.as_array() else { bail!("expected a list of counters") };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let text = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .with_context(|| format!("counters[{index}].{name}: expected a string"))
            };
            let id = text("id")?;
            let subject = match text("subject")? {
                "member" => Subject::Member(
                    MemberId::parse(id).map_err(|error| anyhow::anyhow!("counters[{index}].id: {error}"))?,
                ),
                "household" => Subject::Household(
                    HouseholdId::parse(id).map_err(|error| anyhow::anyhow!("counters[{index}].id: {error}"))?,
                ),
                other => bail!("counters[{index}].subject: expected member or household, got {other:?}"),
            };
            let value = item
                .get("value")
                .and_then(Value::as_i64)
                .with_context(|| format!("counters[{index}].value: expected a whole number"))?;
            Ok((
                CounterKey { subject, counter: text("counter")?.to_owned(), period: text("period")?.to_owned() },
                value,
            ))
        })
        .collect()
}
