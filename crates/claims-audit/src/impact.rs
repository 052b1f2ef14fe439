//! What a rule change would have done to recent decisions: the analyst's impact report
//! (`claimctl rules impact`). Each recorded claim decision is re-decided from its own audit
//! entry with a *given* pack instead of the recorded one ([`redecide`]), and the report counts
//! the decisions whose outcome or an amount would change, the totals per scheme before and
//! after, and the largest changes.
//!
//! It reuses [`crate::replay::replay`], which decides an entry with whatever pack it is handed;
//! the regulator's replay picks the recorded version, this module never does, so neither can
//! change the other. As in a what-if replay, each entry is re-decided from the counters as they
//! really were then: the effect of the change on later claims' counters is not carried over.
//!
//! Only claim decisions are re-decided: a cancellation only negates what it cancelled, and an
//! invalid message is rejected whatever the rules; both are skipped and counted. When a claim
//! was decided more than once (an `error` decision retried), only its latest decision counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use claims_domain::contract::{FieldError, Message, parse_message};
use claims_domain::money::{Amount, Currency};
use claims_domain::rules::RulePack;
use serde_json::{Value, json};

use crate::replay::{RecordedEntry, replay};

/// How many of the largest changes a report lists.
pub const LARGEST_CHANGES: usize = 10;

/// What an audit entry recorded, for choosing the entries an impact report re-decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Claim,
    Cancellation,
    /// The input was not a valid message: rejected whatever the rules.
    Invalid,
}

/// The kind of `entry`, from its input as received.
pub fn entry_kind(entry: &RecordedEntry) -> EntryKind {
    match parse_message(&entry.input) {
        Ok(Message::Claim(_)) => EntryKind::Claim,
        Ok(Message::Cancellation(_)) => EntryKind::Cancellation,
        Err(_) => EntryKind::Invalid,
    }
}

/// Why an entry in the window was not re-decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Cancellation,
    Invalid,
    /// A claim decided again later (an `error` decision retried): the later decision counts.
    Superseded,
    /// Decided by another pack (`be` entries in an `fr` impact).
    OtherPack,
}

enum Slot {
    // Boxed, so the slot of a skipped entry stays small.
    Claim { entry: Box<RecordedEntry>, key: (String, String) },
    Skipped(Skip),
}

/// Picks the last `limit` claim decisions of a log, given its entries in log order; keeps only
/// those (and counts what it skipped between them), so a long log streams through it.
pub struct Selection {
    limit: usize,
    pack: String,
    slots: VecDeque<(u64, Slot)>,
    claims: usize,
    /// Claim key → the `seq` of its latest decision among the slots.
    latest: HashMap<(String, String), u64>,
}

/// The entries chosen, oldest first, and how many others the window held.
pub struct Selected {
    pub claims: Vec<RecordedEntry>,
    pub skipped: Skipped,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub cancellations: u64,
    pub invalid: u64,
    pub superseded: u64,
    pub other_pack: u64,
}

impl Selection {
    /// Keeps the last `limit` claim decisions made by pack `pack` (its name, e.g. `fr`).
    pub fn new(limit: usize, pack: &str) -> Selection {
        Selection { limit, pack: pack.to_owned(), slots: VecDeque::new(), claims: 0, latest: HashMap::new() }
    }

    /// Offers the next entry of the log.
    pub fn push(&mut self, entry: RecordedEntry) {
        let seq = entry.seq;
        let slot = match entry_kind(&entry) {
            EntryKind::Cancellation => Slot::Skipped(Skip::Cancellation),
            EntryKind::Invalid => Slot::Skipped(Skip::Invalid),
            EntryKind::Claim if entry.rules.pack != self.pack => Slot::Skipped(Skip::OtherPack),
            EntryKind::Claim => {
                let text = |name: &str| entry.decision.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
                let key = (text("provider_id"), text("claim_id"));
                if let Some(earlier) = self.latest.insert(key.clone(), seq) {
                    self.supersede(earlier);
                }
                self.claims += 1;
                Slot::Claim { entry: Box::new(entry), key }
            }
        };
        self.slots.push_back((seq, slot));
        while self.claims > self.limit {
            self.pop_front();
        }
    }

    /// The claims chosen and what was skipped after the first of them (everything skipped when
    /// there is no claim, so a log of another pack's decisions says so).
    pub fn finish(mut self) -> Selected {
        while self.claims > 0 && matches!(self.slots.front(), Some((_, Slot::Skipped(_)))) {
            self.slots.pop_front();
        }
        let mut selected = Selected { claims: Vec::with_capacity(self.claims), skipped: Skipped::default() };
        for (_, slot) in self.slots {
            match slot {
                Slot::Claim { entry, .. } => selected.claims.push(*entry),
                Slot::Skipped(Skip::Cancellation) => selected.skipped.cancellations += 1,
                Slot::Skipped(Skip::Invalid) => selected.skipped.invalid += 1,
                Slot::Skipped(Skip::Superseded) => selected.skipped.superseded += 1,
                Slot::Skipped(Skip::OtherPack) => selected.skipped.other_pack += 1,
            }
        }
        selected
    }

    /// How many claim decisions are held: a reader going backwards stops once it has `limit`.
    pub fn claims(&self) -> usize {
        self.claims
    }

    fn supersede(&mut self, seq: u64) {
        if let Ok(index) = self.slots.binary_search_by_key(&seq, |(slot_seq, _)| *slot_seq)
            && matches!(self.slots[index].1, Slot::Claim { .. })
        {
            self.slots[index].1 = Slot::Skipped(Skip::Superseded);
            self.claims -= 1;
        }
    }

    fn pop_front(&mut self) {
        if let Some((seq, Slot::Claim { key, .. })) = self.slots.pop_front() {
            self.claims -= 1;
            if self.latest.get(&key) == Some(&seq) {
                self.latest.remove(&key);
            }
        }
    }
}

/// What a decision paid, summed over its lines (minor units).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Paid {
    pub compulsory: i64,
    pub supplementary: i64,
    pub member_share: i64,
}

impl Paid {
    fn of(decision: &Value) -> Paid {
        let mut paid = Paid::default();
        for line in decision.get("lines").and_then(Value::as_array).into_iter().flatten() {
            let amount = |path: &[&str]| {
                path.iter().try_fold(line, |value, key| value.get(key)).and_then(Value::as_i64).unwrap_or(0)
            };
            paid.compulsory = paid.compulsory.saturating_add(amount(&["compulsory", "paid"]));
            paid.supplementary = paid.supplementary.saturating_add(amount(&["supplementary", "paid"]));
            paid.member_share = paid.member_share.saturating_add(amount(&["member_share"]));
        }
        paid
    }

    /// `(scheme, amount)` in report order.
    pub fn schemes(&self) -> [(&'static str, i64); 3] {
        [("compulsory", self.compulsory), ("supplementary", self.supplementary), ("member share", self.member_share)]
    }

    fn add(&mut self, other: Paid) {
        self.compulsory = self.compulsory.saturating_add(other.compulsory);
        self.supplementary = self.supplementary.saturating_add(other.supplementary);
        self.member_share = self.member_share.saturating_add(other.member_share);
    }
}

/// One claim decision re-decided with the given pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redecided {
    pub seq: u64,
    /// `provider_id/claim_id`.
    pub claim: String,
    pub currency: String,
    pub outcome_before: String,
    pub outcome_after: String,
    pub before: Paid,
    pub after: Paid,
    /// The outcome or an amount differs (a line's, a payment's or a recovery's).
    pub changed: bool,
    /// `file:line:column: message` when the given pack fails on this claim.
    pub rule_error: Option<String>,
}

impl Redecided {
    /// How much money moves: the sum of the changes per scheme.
    pub fn magnitude(&self) -> u128 {
        self.before
            .schemes()
            .iter()
            .zip(self.after.schemes())
            .map(|((_, before), (_, after))| (i128::from(after) - i128::from(*before)).unsigned_abs())
            .sum()
    }
}

/// Re-decides the claim of `entry` with `pack` instead of the pack it recorded, from its recorded
/// inputs, and compares. An error means the entry's recorded inputs cannot be read.
pub fn redecide(entry: &RecordedEntry, pack: &dyn RulePack) -> Result<Redecided, FieldError> {
    let replayed = replay(entry, pack)?;
    let (before, after) = (&entry.decision, &replayed.decision);
    let text = |decision: &Value, name: &str| decision.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let changed = text(before, "outcome") != text(after, "outcome") || amounts(before) != amounts(after);
    let rule_error = after
        .get("error")
        .map(|error| error.get("position").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned));
    Ok(Redecided {
        seq: entry.seq,
        claim: entry.claim_label(),
        currency: text(before, "currency"),
        outcome_before: text(before, "outcome"),
        outcome_after: text(after, "outcome"),
        before: Paid::of(before),
        after: Paid::of(after),
        changed,
        rule_error,
    })
}

/// The fields of a decision/v1 that hold money.
const AMOUNT_FIELDS: [&str; 7] = ["charged", "eligible", "gross", "paid", "amount", "member_share", "ceiling_refund"];

/// Every amount of a decision's lines, payments and recoveries, with its path, in document
/// order: two decisions pay the same when these are equal.
fn amounts(decision: &Value) -> Vec<(String, i64)> {
    fn walk(path: &str, value: &Value, out: &mut Vec<(String, i64)>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    let child = format!("{path}.{key}");
                    match item.as_i64() {
                        Some(amount) if AMOUNT_FIELDS.contains(&key.as_str()) => out.push((child, amount)),
                        _ => walk(&child, item, out),
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(&format!("{path}[{index}]"), item, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for part in ["lines", "payments", "recoveries"] {
        walk(part, decision.get(part).unwrap_or(&Value::Null), &mut out);
    }
    out
}

/// The impact report: what [`redecide`] found for every claim chosen.
#[derive(Debug, Clone, Default)]
pub struct Impact {
    pub redecided: u64,
    pub changed: u64,
    /// Claims the given pack fails on (outcome `error`), and the first failure.
    pub rule_errors: u64,
    pub first_rule_error: Option<String>,
    pub skipped: Skipped,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Totals per currency: recorded, then with the given pack.
    pub totals: BTreeMap<String, (Paid, Paid)>,
    /// The changed decisions that move the most money, largest first.
    pub largest: Vec<Redecided>,
}

impl Impact {
    pub fn new(skipped: Skipped) -> Impact {
        Impact { skipped, ..Impact::default() }
    }

    /// Counts one claim (call in log order).
    pub fn add(&mut self, redecided: Redecided) {
        self.redecided += 1;
        self.first_seq.get_or_insert(redecided.seq);
        self.last_seq = Some(redecided.seq);
        let totals = self.totals.entry(redecided.currency.clone()).or_default();
        totals.0.add(redecided.before);
        totals.1.add(redecided.after);
        if let Some(error) = &redecided.rule_error {
            self.rule_errors += 1;
            self.first_rule_error.get_or_insert_with(|| format!("{}: {error}", redecided.claim));
        }
        if !redecided.changed {
            return;
        }
        self.changed += 1;
        self.largest.push(redecided);
        if self.largest.len() > 4 * LARGEST_CHANGES {
            self.keep_largest();
        }
    }

    fn keep_largest(&mut self) {
        self.largest.sort_by(|a, b| b.magnitude().cmp(&a.magnitude()).then(a.seq.cmp(&b.seq)));
        self.largest.truncate(LARGEST_CHANGES);
    }

    /// The report as text; `title` says which rules were applied to which decisions.
    pub fn render(&mut self, title: &str) -> String {
        self.keep_largest();
        let mut text = String::new();
        let range = match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => format!("seq {first}..={last}"),
            _ => "no claim decisions".to_owned(),
        };
        let _ = writeln!(text, "{title} ({range})");
        let _ = writeln!(text, "re-adjudicated: {}", self.redecided);
        let _ = writeln!(text, "changed (outcome or an amount): {}", self.changed);
        let skipped = self.skipped;
        let _ = write!(
            text,
            "skipped: {} cancellation(s), {} invalid message(s), {} superseded by a later decision",
            skipped.cancellations, skipped.invalid, skipped.superseded
        );
        if skipped.other_pack > 0 {
            let _ = write!(text, ", {} decided by another pack", skipped.other_pack);
        }
        let _ = writeln!(text);
        if self.rule_errors > 0 {
            let first = self.first_rule_error.as_deref().unwrap_or("");
            let _ = writeln!(text, "rule errors with these rules: {} (first: {first})", self.rule_errors);
        }
        let _ = writeln!(text, "total per scheme (recorded → with these rules):");
        for (currency, (before, after)) in &self.totals {
            for ((scheme, before), (_, after)) in before.schemes().iter().zip(after.schemes()) {
                let _ = writeln!(
                    text,
                    "  {:<14} {} → {} ({})",
                    format!("{scheme}:"),
                    money(*before, currency),
                    money(after, currency),
                    signed(after - before, currency)
                );
            }
        }
        if !self.largest.is_empty() {
            let _ = writeln!(text, "largest changes:");
            for change in &self.largest {
                let _ = writeln!(text, "  {}", change_text(change));
            }
        }
        text
    }

    /// The report as JSON (amounts in minor units).
    pub fn to_json(&mut self) -> Value {
        self.keep_largest();
        let totals: Vec<Value> = self
            .totals
            .iter()
            .flat_map(|(currency, (before, after))| {
                before.schemes().into_iter().zip(after.schemes()).map(move |((scheme, before), (_, after))| {
                    json!({"currency": currency, "scheme": scheme, "before": before, "after": after, "difference": after - before})
                })
            })
            .collect();
        let largest: Vec<Value> = self
            .largest
            .iter()
            .map(|change| {
                let schemes: Vec<Value> = change
                    .before
                    .schemes()
                    .into_iter()
                    .zip(change.after.schemes())
                    .map(|((scheme, before), (_, after))| {
                        json!({"scheme": scheme, "before": before, "after": after, "difference": after - before})
                    })
                    .collect();
                json!({
                    "seq": change.seq,
                    "claim": change.claim,
                    "currency": change.currency,
                    "outcome": {"before": change.outcome_before, "after": change.outcome_after},
                    "schemes": schemes,
                })
            })
            .collect();
        json!({
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "redecided": self.redecided,
            "changed": self.changed,
            "rule_errors": self.rule_errors,
            "skipped": {
                "cancellations": self.skipped.cancellations,
                "invalid": self.skipped.invalid,
                "superseded": self.skipped.superseded,
                "other_pack": self.skipped.other_pack,
            },
            "totals": totals,
            "largest": largest,
        })
    }
}

/// `P-GP-0001/C-000123 (seq 12): compulsory 19.00 EUR → 22.40 EUR (+3.40 EUR), …`: the outcome
/// when it changes, then every scheme whose amount changes.
fn change_text(change: &Redecided) -> String {
    let currency = change.currency.as_str();
    let mut parts = Vec::new();
    if change.outcome_before != change.outcome_after {
        parts.push(format!("outcome {} → {}", change.outcome_before, change.outcome_after));
    }
    for ((scheme, before), (_, after)) in change.before.schemes().iter().zip(change.after.schemes()) {
        if *before != after {
            parts.push(format!(
                "{scheme} {} → {} ({})",
                money(*before, currency),
                money(after, currency),
                signed(after - before, currency)
            ));
        }
    }
    if parts.is_empty() {
        parts.push("other amounts (payments or recoveries)".to_owned());
    }
    format!("{} (seq {}): {}", change.claim, change.seq, parts.join(", "))
}

/// `1234.50 EUR`, or the minor units when the currency is unknown.
fn money(minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(currency) => currency.format(Amount::from_minor(minor)),
        Err(_) => format!("{minor} (minor units)"),
    }
}

fn signed(minor: i64, currency: &str) -> String {
    let text = money(minor, currency);
    if minor >= 0 { format!("+{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, input: &str, pack: &str, claim: &str, outcome: &str) -> RecordedEntry {
        let rules = json!({"pack": pack, "version": "sha256:x"});
        let decision = json!({"provider_id": "P-1", "claim_id": claim, "outcome": outcome, "rules": rules});
        RecordedEntry::from_json(json!({"seq": seq, "input": input, "rules": rules, "decision": decision})).unwrap()
    }

    fn claim(seq: u64, claim_id: &str) -> RecordedEntry {
        let input = format!(
            r#"{{"schema":"claim/v1","claim_id":"{claim_id}","provider_id":"P-1","member_id":"M-1","submitted_on":"2025-01-02","currency":"EUR","third_party_payment":[],"lines":[{{"line":1,"act":"G","service_date":"2025-01-01","quantity":1,"charged":3000,"attributes":{{}}}}]}}"#
        );
        entry(seq, &input, "fr", claim_id, "complete")
    }

    fn cancellation(seq: u64, claim_id: &str) -> RecordedEntry {
        let input =
            format!(r#"{{"schema":"cancellation/v1","provider_id":"P-1","claim_id":"{claim_id}","reason":"x"}}"#);
        entry(seq, &input, "fr", claim_id, "reversed")
    }

    fn seqs(selected: &Selected) -> Vec<u64> {
        selected.claims.iter().map(|entry| entry.seq).collect()
    }

    #[test]
    fn keeps_the_last_claim_decisions_and_counts_what_it_skipped_between_them() {
        let mut selection = Selection::new(3, "fr");
        selection.push(claim(1, "C-1"));
        selection.push(cancellation(2, "C-1"));
        selection.push(claim(3, "C-2"));
        selection.push(entry(4, "not json", "fr", "", "rejected"));
        selection.push(claim(5, "C-3"));
        selection.push(cancellation(6, "C-3"));
        selection.push(claim(7, "C-4"));
        let selected = selection.finish();
        assert_eq!(seqs(&selected), [3, 5, 7]);
        // The cancellation at seq 2 came before the first claim kept.
        assert_eq!(selected.skipped, Skipped { cancellations: 1, invalid: 1, superseded: 0, other_pack: 0 });
    }

    #[test]
    fn a_claim_decided_again_counts_once_and_other_packs_are_skipped() {
        let mut selection = Selection::new(2, "fr");
        selection.push(claim(1, "C-1"));
        selection.push(claim(2, "C-2"));
        selection.push(entry(3, &claim(3, "C-9").input, "be", "C-9", "complete"));
        // C-2 was an error decision retried: its first decision is superseded, and the window
        // of two claims reaches back to C-1.
        selection.push(claim(4, "C-2"));
        assert_eq!(selection.claims(), 2);
        let selected = selection.finish();
        assert_eq!(seqs(&selected), [1, 4]);
        assert_eq!(selected.skipped, Skipped { cancellations: 0, invalid: 0, superseded: 1, other_pack: 1 });
        assert_eq!(entry_kind(&claim(1, "C-1")), EntryKind::Claim);
        let mut selection = Selection::new(2, "sn");
        selection.push(claim(1, "C-1"));
        selection.push(cancellation(2, "C-1"));
        let selected = selection.finish();
        assert!(selected.claims.is_empty());
        assert_eq!(selected.skipped, Skipped { cancellations: 1, invalid: 0, superseded: 0, other_pack: 1 });
        assert_eq!(entry_kind(&cancellation(1, "C-1")), EntryKind::Cancellation);
    }

    #[test]
    fn amounts_name_every_sum_of_money_and_nothing_else() {
        let decision = json!({
            "outcome": "complete",
            "lines": [{"line": 1, "quantity": 1, "charged": 3000, "compulsory": {"rate_bps": 7000, "gross": 2100, "paid": 1900,
                       "deductions": [{"kind": "per_visit_charge", "amount": 200}]},
                       "supplementary": {"paid": 900}, "member_share": 200}],
            "payments": [{"scheme": "compulsory", "amount": 1900}],
        });
        let found: Vec<String> =
            amounts(&decision).into_iter().map(|(path, amount)| format!("{path}={amount}")).collect();
        assert_eq!(
            found,
            [
                "lines[0].charged=3000",
                "lines[0].compulsory.deductions[0].amount=200",
                "lines[0].compulsory.gross=2100",
                "lines[0].compulsory.paid=1900",
                "lines[0].member_share=200",
                "lines[0].supplementary.paid=900",
                "payments[0].amount=1900",
            ]
        );
        assert_eq!(Paid::of(&decision), Paid { compulsory: 1900, supplementary: 900, member_share: 200 });
    }
}
