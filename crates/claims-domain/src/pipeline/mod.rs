//! The adjudication pipeline (DESIGN.md steps 3–9): deterministic, no I/O.
//!
//! [`adjudicate`] takes a parsed claim, the registry snapshot, the counters before and the
//! member's earlier lines, asks the rule pack the three questions of [`crate::rules`] for each
//! line, and returns the decision with the counter moves it makes. Recording them (step 10) is
//! the caller's job: the embedded [`crate::ledger`] or the PostgreSQL store.

mod eligibility;
mod line;
mod reversal;
mod routing;

use std::collections::BTreeSet;

pub use eligibility::{Eligibility, check as check_eligibility};
pub use reversal::reverse;
pub use routing::DEBT_COUNTER;

use crate::accumulators::{CounterBook, CounterMove, CounterSource, Counters};
use crate::claim::{Claim, ClaimLine};
use crate::contract::Rejection;
use crate::date::Date;
use crate::decision::{Decision, LineDecision, Outcome, Reason, ReasonGroup};
use crate::ids::{ActCode, ProviderId};
use crate::money::Amount;
use crate::registry::RegistrySnapshot;
use crate::rules::{PackSettings, RulePack};

/// What identifies a line for duplicate detection: same member (implied), provider, date, act
/// and amount as a line of another claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineFingerprint {
    /// First, so that a member's lines sort by day and one day's lines are a range.
    pub service_date: Date,
    pub provider_id: ProviderId,
    pub act: ActCode,
    pub charged: Amount,
}

impl LineFingerprint {
    pub fn of(claim: &Claim, line: &ClaimLine) -> LineFingerprint {
        LineFingerprint {
            provider_id: claim.provider_id.clone(),
            act: line.act.clone(),
            service_date: line.service_date,
            charged: line.charged,
        }
    }
}

/// The member's lines already decided in other claims (for duplicate detection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    fingerprints: BTreeSet<LineFingerprint>,
}

impl History {
    pub fn new(fingerprints: impl IntoIterator<Item = LineFingerprint>) -> History {
        History { fingerprints: fingerprints.into_iter().collect() }
    }

    pub fn contains(&self, fingerprint: &LineFingerprint) -> bool {
        self.fingerprints.contains(fingerprint)
    }

    pub fn iter(&self) -> impl Iterator<Item = &LineFingerprint> {
        self.fingerprints.iter()
    }
}

/// Everything one adjudication reads.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub claim: &'a Claim,
    pub registry: &'a RegistrySnapshot,
    pub counters: &'a dyn CounterSource,
    /// The member's earlier lines on this claim's service dates.
    pub history: &'a History,
}

/// A decision with the effects that recording it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjudication {
    pub decision: Decision,
    pub moves: Vec<CounterMove>,
    /// Every counter value the decision read, as it was before: what a replay must be given.
    pub counters_read: Counters,
    /// Lines to remember for later duplicate detection.
    pub fingerprints: Vec<LineFingerprint>,
}

impl Adjudication {
    fn without_effects(decision: Decision) -> Adjudication {
        Adjudication { decision, moves: Vec::new(), counters_read: Counters::new(), fingerprints: Vec::new() }
    }
}

/// Adjudicates one claim. Never panics on any input; a rule failure gives outcome `error` with
/// no effect.
pub fn adjudicate(inputs: &Inputs<'_>, pack: &dyn RulePack) -> Adjudication {
    let settings = pack.settings();
    let claim = inputs.claim;
    if claim.currency != settings.currency {
        let text = format!(
            "currency {} does not match pack {}'s {}",
            claim.currency, settings.version.pack, settings.currency
        );
        return Adjudication::without_effects(rejected_claim(
            claim,
            settings,
            Reason::new(ReasonGroup::Co, "16", text),
        ));
    }
    let Some(member) = inputs.registry.member.as_ref().filter(|member| member.member_id == claim.member_id) else {
        let text = format!("unknown member {}", claim.member_id);
        return Adjudication::without_effects(rejected_claim(
            claim,
            settings,
            Reason::new(ReasonGroup::Co, "31", text),
        ));
    };
    let Some(provider) = inputs.registry.provider.as_ref().filter(|provider| provider.provider_id == claim.provider_id)
    else {
        let text = format!("unknown provider {}", claim.provider_id);
        return Adjudication::without_effects(rejected_claim(
            claim,
            settings,
            Reason::new(ReasonGroup::Co, "B7", text),
        ));
    };

    let mut book = CounterBook::new(member.member_id.clone(), member.household_id.clone(), inputs.counters);
    let mut priced_lines = Vec::with_capacity(claim.lines.len());
    for claim_line in &claim.lines {
        let line_inputs = line::LineInputs {
            claim,
            line: claim_line,
            member,
            household: &inputs.registry.household,
            provider,
            history: inputs.history,
        };
        match line::price(&line_inputs, pack, &mut book) {
            Ok(priced) => priced_lines.push(priced),
            Err(failure) => {
                let decision =
                    Decision { outcome: Outcome::Error, error: Some(failure), ..empty_decision(claim, settings) };
                return Adjudication::without_effects(decision);
            }
        }
    }
    let (payments, recoveries) = routing::route(claim, &priced_lines, &mut book);
    let lines: Vec<LineDecision> = priced_lines.into_iter().map(|priced| priced.decision).collect();
    let denied = lines.iter().filter(|line| line.denied).count();
    let outcome = match denied {
        0 => Outcome::Complete,
        all if all == lines.len() => Outcome::Rejected,
        _ => Outcome::Partial,
    };
    let fingerprints = claim
        .lines
        .iter()
        .zip(&lines)
        .filter(|(_, decided)| !decided.denied)
        .map(|(claim_line, _)| LineFingerprint::of(claim, claim_line))
        .collect();
    // A claim rejected line by line still says why as a whole: the distinct line reasons.
    let mut reasons: Vec<Reason> = Vec::new();
    if outcome == Outcome::Rejected {
        for reason in lines.iter().flat_map(|line| &line.reasons) {
            if !reasons.contains(reason) {
                reasons.push(reason.clone());
            }
        }
    }
    let decision = Decision { outcome, lines, payments, recoveries, reasons, ..empty_decision(claim, settings) };
    Adjudication { decision, moves: book.moves(), counters_read: book.values_read(), fingerprints }
}

fn empty_decision(claim: &Claim, settings: &PackSettings) -> Decision {
    Decision {
        claim_id: claim.claim_id.to_string(),
        provider_id: claim.provider_id.to_string(),
        member_id: claim.member_id.to_string(),
        outcome: Outcome::Rejected,
        currency: Some(claim.currency),
        lines: Vec::new(),
        payments: Vec::new(),
        recoveries: Vec::new(),
        reasons: Vec::new(),
        rules: Some(settings.version.clone()),
        reverses: None,
        error: None,
    }
}

/// A whole claim rejected for one reason: every line denied, the member owes what was charged.
pub fn rejected_claim(claim: &Claim, settings: &PackSettings, reason: Reason) -> Decision {
    let lines = claim
        .lines
        .iter()
        .map(|line| LineDecision {
            line: line.number,
            act: line.act.clone(),
            charged: line.charged,
            eligible: Amount::ZERO,
            compulsory: None,
            supplementary: None,
            member_share: line.charged,
            reasons: vec![reason.clone()],
            denied: true,
        })
        .collect();
    Decision { outcome: Outcome::Rejected, lines, reasons: vec![reason], ..empty_decision(claim, settings) }
}

/// The answer to a message that is not a valid claim or cancellation.
pub fn rejected_message(rejection: &Rejection, settings: &PackSettings) -> Decision {
    let ids = (rejection.provider_id.as_str(), rejection.claim_id.as_str(), rejection.member_id.as_str());
    rejected_without_lines(ids, settings, rejection.reason.clone(), None)
}

/// A cancellation that cannot be honoured (unknown claim, nothing paid to reverse).
pub fn rejected_cancellation(
    provider_id: &str,
    claim_id: &str,
    member_id: &str,
    settings: &PackSettings,
    text: String,
) -> Decision {
    let reason = Reason::new(ReasonGroup::Co, "16", text);
    rejected_without_lines((provider_id, claim_id, member_id), settings, reason, Some(claim_id.to_owned()))
}

/// A rejection decided before any line was looked at: `(provider_id, claim_id, member_id)`,
/// one claim-level reason, no lines, payments or currency; `reverses` names the claim a refused
/// cancellation was about.
pub fn rejected_without_lines(
    (provider_id, claim_id, member_id): (&str, &str, &str),
    settings: &PackSettings,
    reason: Reason,
    reverses: Option<String>,
) -> Decision {
    Decision {
        claim_id: claim_id.to_owned(),
        provider_id: provider_id.to_owned(),
        member_id: member_id.to_owned(),
        outcome: Outcome::Rejected,
        currency: None,
        lines: Vec::new(),
        payments: Vec::new(),
        recoveries: Vec::new(),
        reasons: vec![reason],
        rules: Some(settings.version.clone()),
        reverses,
        error: None,
    }
}
