//! The report of a replay: entries replayed, identical and different (with the first differing
//! fields of each), the total paid per scheme before and after, and for a what-if the ten
//! largest changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use claims_domain::money::{Amount, Currency};
use serde_json::Value;

use crate::replay::{Difference, RecordedEntry, Replayed};

/// How many differing fields the report shows per entry.
pub const FIELDS_PER_ENTRY: usize = 3;
/// How many differing entries a replay of the recorded rules lists (all are counted).
pub const LISTED_ENTRIES: usize = 100;
/// How many of the largest changes a what-if lists.
pub const LARGEST_CHANGES: usize = 10;

/// One entry whose replay differs from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub seq: u64,
    /// `provider_id/claim_id`.
    pub claim: String,
    pub currency: Option<String>,
    /// Paid per scheme, recorded and replayed (minor units): the schemes whose amount differs.
    pub paid: BTreeMap<String, (i64, i64)>,
    /// The first differing fields.
    pub differences: Vec<Difference>,
    /// How many fields differ in all.
    pub fields: usize,
}

impl Changed {
    /// How much money moved between schemes and payees: the sum of the changes per scheme.
    fn magnitude(&self) -> u128 {
        self.paid.values().map(|(before, after)| (i128::from(*after) - i128::from(*before)).unsigned_abs()).sum()
    }
}

/// Totals per `(scheme, currency)`: recorded and replayed.
type Totals = BTreeMap<(String, String), (i64, i64)>;

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub what_if: bool,
    pub replayed: u64,
    pub identical: u64,
    pub different: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Differing entries, in log order (at most [`LISTED_ENTRIES`]).
    pub listed: Vec<Changed>,
    /// The largest changes of paid amounts, largest first (at most [`LARGEST_CHANGES`]).
    pub largest: Vec<Changed>,
    totals: Totals,
}

impl Report {
    pub fn new(what_if: bool) -> Report {
        Report { what_if, ..Report::default() }
    }

    /// Counts one replayed entry and its differences (from `replay::compare`).
    pub fn add(&mut self, entry: &RecordedEntry, replayed: &Replayed, differences: Vec<Difference>) {
        self.replayed += 1;
        self.first_seq.get_or_insert(entry.seq);
        self.last_seq = Some(entry.seq);
        let currency = entry.decision.get("currency").and_then(Value::as_str).map(str::to_owned);
        let before = add_payments(&mut self.totals, &entry.decision, currency.as_deref(), true);
        let after = add_payments(&mut self.totals, &replayed.decision, currency.as_deref(), false);
        let mut paid: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (scheme, amount) in before {
            paid.entry(scheme).or_default().0 = amount;
        }
        for (scheme, amount) in after {
            paid.entry(scheme).or_default().1 = amount;
        }
        paid.retain(|_, (before, after)| before != after);
        if differences.is_empty() {
            self.identical += 1;
            return;
        }
        self.different += 1;
        let fields = differences.len();
        let changed = Changed {
            seq: entry.seq,
            claim: entry.claim_label(),
            currency,
            paid,
            differences: differences.into_iter().take(FIELDS_PER_ENTRY).collect(),
            fields,
        };
        if self.what_if && !changed.paid.is_empty() {
            self.largest.push(changed.clone());
            if self.largest.len() > 4 * LARGEST_CHANGES {
                self.keep_largest();
            }
        }
        if self.listed.len() < LISTED_ENTRIES {
            self.listed.push(changed);
        }
    }

    fn keep_largest(&mut self) {
        self.largest.sort_by(|a, b| b.magnitude().cmp(&a.magnitude()).then(a.seq.cmp(&b.seq)));
        self.largest.truncate(LARGEST_CHANGES);
    }

    /// Total paid per scheme: `(scheme, currency, recorded, replayed)`.
    pub fn totals(&self) -> impl Iterator<Item = (&str, &str, i64, i64)> {
        self.totals
            .iter()
            .map(|((scheme, currency), (before, after))| (scheme.as_str(), currency.as_str(), *before, *after))
    }

    /// All entries identical to their record.
    pub fn all_identical(&self) -> bool {
        self.different == 0
    }

    /// The report as text; `title` says what was replayed with what.
    pub fn render(&mut self, title: &str) -> String {
        self.keep_largest();
        let mut text = String::new();
        let range = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => format!("seq {first}..={last}"),
            _ => "no entries".to_owned(),
        };
        let _ = writeln!(text, "{title} ({range})");
        let _ = writeln!(text, "entries replayed: {}", self.replayed);
        let _ = writeln!(text, "identical: {}", self.identical);
        let _ = writeln!(text, "{}: {}", if self.what_if { "changed decisions" } else { "different" }, self.different);
        if self.what_if {
            let _ = writeln!(text, "total paid per scheme (recorded → with these rules):");
            for (scheme, currency, before, after) in self.totals() {
                let _ = writeln!(
                    text,
                    "  {scheme}: {} → {} ({})",
                    money(before, Some(currency)),
                    money(after, Some(currency)),
                    signed(after - before, Some(currency))
                );
            }
            if !self.largest.is_empty() {
                let _ = writeln!(text, "largest changes of the amounts paid:");
                for changed in &self.largest {
                    let currency = changed.currency.as_deref();
                    let schemes: Vec<String> = changed
                        .paid
                        .iter()
                        .map(|(scheme, (before, after))| {
                            format!(
                                "{scheme} {} → {} ({})",
                                money(*before, currency),
                                money(*after, currency),
                                signed(after - before, currency)
                            )
                        })
                        .collect();
                    let _ = writeln!(text, "  seq {} {}: {}", changed.seq, changed.claim, schemes.join(", "));
                }
            }
        } else {
            let _ = writeln!(text, "total paid per scheme (recorded):");
            for (scheme, currency, before, _) in self.totals() {
                let _ = writeln!(text, "  {scheme}: {}", money(before, Some(currency)));
            }
        }
        if !self.listed.is_empty() {
            let _ = writeln!(text, "{} (first differing fields):", if self.what_if { "changed" } else { "different" });
            for changed in &self.listed {
                let _ = writeln!(text, "  seq {} {}: {}", changed.seq, changed.claim, fields(changed));
            }
            if self.different > self.listed.len() as u64 {
                let _ = writeln!(text, "  … and {} more", self.different - self.listed.len() as u64);
            }
        }
        text
    }
}

/// Adds a decision's payments to the totals; returns its own per scheme.
fn add_payments(
    totals: &mut Totals,
    decision: &Value,
    currency: Option<&str>,
    recorded: bool,
) -> BTreeMap<String, i64> {
    let mut paid: BTreeMap<String, i64> = BTreeMap::new();
    for payment in decision.get("payments").and_then(Value::as_array).into_iter().flatten() {
        let scheme = payment.get("scheme").and_then(Value::as_str).unwrap_or("?");
        let amount = payment.get("amount").and_then(Value::as_i64).unwrap_or(0);
        let total = totals.entry((scheme.to_owned(), currency.unwrap_or("").to_owned())).or_default();
        if recorded {
            total.0 = total.0.saturating_add(amount);
        } else {
            total.1 = total.1.saturating_add(amount);
        }
        let own = paid.entry(scheme.to_owned()).or_default();
        *own = own.saturating_add(amount);
    }
    paid
}

fn fields(changed: &Changed) -> String {
    let shown: Vec<String> = changed.differences.iter().map(ToString::to_string).collect();
    let more = changed.fields.saturating_sub(shown.len());
    if more > 0 { format!("{}; … {more} more", shown.join("; ")) } else { shown.join("; ") }
}

/// `1234.50 EUR`, or the minor units when the currency is unknown.
fn money(minor: i64, currency: Option<&str>) -> String {
    match currency.and_then(|code| Currency::parse(code).ok()) {
        Some(currency) => currency.format(Amount::from_minor(minor)),
        None => format!("{minor} (minor units)"),
    }
}

fn signed(minor: i64, currency: Option<&str>) -> String {
    let text = money(minor, currency);
    if minor >= 0 { format!("+{text}") } else { text }
}
