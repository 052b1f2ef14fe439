//! The embedded mode's store: an in-memory book of decisions, counters and line history, with
//! the same idempotency rules as the PostgreSQL store. Used by `claimctl adjudicate` and by the
//! pack test runner. Pure: it never touches a file.

use std::collections::{BTreeMap, BTreeSet};

use crate::accumulators::{CounterKey, CounterMove, CounterSource, Counters};
use crate::claim::{Cancellation, Claim};
use crate::contract::{Message, RejectionKind, parse_message};
use crate::date::Date;
use crate::decision::{Decision, Outcome};
use crate::ids::MemberId;
use crate::pipeline::{self, Adjudication, History, Inputs, LineFingerprint};
use crate::registry::{Registry, RegistrySnapshot};
use crate::rules::{PackSettings, RulePack};

/// What one message did: the decision, and the recorded effect when it is a new decision
/// (`None` when an earlier decision was given again).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub decision: Decision,
    pub effect: Option<Effect>,
}

/// The inputs and effects of a new decision: what an audit entry records.
#[derive(Debug, Clone)]
pub struct Effect {
    pub registry: RegistrySnapshot,
    pub counters_before: Counters,
    pub history: History,
    pub moves: Vec<CounterMove>,
    /// For a cancellation: what it found to cancel (`None` for a claim or an invalid message).
    pub cancels: Option<Cancelled>,
}

/// What a cancellation found: the claim's decision as it then stood (`None`: the claim was
/// never decided) and the counter moves that decision made. Recorded with the cancellation's
/// decision, so that it can be decided again from the record alone ([`decide_cancellation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub decision: Option<Decision>,
    pub moves: Vec<CounterMove>,
}

/// Decides a cancellation of a claim that is not reversed yet (a claim already reversed gets
/// its reversal again, with no new decision): refused when there is no decision to cancel or
/// nothing was paid (`rejected`, `error`), otherwise the decision is reversed from the counters
/// as they stand `now`. Shared by the ledger, the PostgreSQL store and the regulator's replay.
pub fn decide_cancellation(
    cancellation: &Cancellation,
    cancelled: &Cancelled,
    now: &dyn CounterSource,
    settings: &PackSettings,
) -> Adjudication {
    let refuse = |member_id: &str, text: String| Adjudication {
        decision: pipeline::rejected_cancellation(
            cancellation.provider_id.as_str(),
            cancellation.claim_id.as_str(),
            member_id,
            settings,
            text,
        ),
        moves: Vec::new(),
        counters_read: Counters::new(),
        fingerprints: Vec::new(),
    };
    match &cancelled.decision {
        None => refuse(
            "",
            format!(
                "no decision to cancel for claim {} of provider {}",
                cancellation.claim_id, cancellation.provider_id
            ),
        ),
        Some(original) if matches!(original.outcome, Outcome::Rejected | Outcome::Error | Outcome::Reversed) => {
            let text = format!("claim {} was {}: nothing to reverse", cancellation.claim_id, original.outcome.name());
            refuse(&original.member_id, text)
        }
        Some(original) => pipeline::reverse(original, &cancelled.moves, now, settings),
    }
}

impl Effect {
    /// The effect of a decision that read nothing (an invalid message, a refused cancellation).
    pub fn nothing_read() -> Effect {
        Effect {
            registry: RegistrySnapshot { member: None, household: Vec::new(), provider: None },
            counters_before: Counters::new(),
            history: History::default(),
            moves: Vec::new(),
            cancels: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    decision: Decision,
    moves: Vec<CounterMove>,
    fingerprints: Vec<LineFingerprint>,
    member_id: Option<MemberId>,
    reversal: Option<Decision>,
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    registry: Registry,
    counters: Counters,
    entries: BTreeMap<(String, String), Entry>,
    /// Decided lines per member and day of service, for duplicate detection.
    history: BTreeMap<(MemberId, Date), BTreeSet<LineFingerprint>>,
    /// Invalid messages already answered, by their exact text.
    rejected: BTreeMap<String, Decision>,
}

impl Ledger {
    pub fn new(registry: Registry) -> Ledger {
        Ledger { registry, ..Ledger::default() }
    }

    pub fn set_counter(&mut self, key: CounterKey, value: i64) {
        self.counters.set(key, value);
    }

    pub fn counter(&self, key: &CounterKey) -> i64 {
        self.counters.get(key)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Decides one message (a claim/v1 or cancellation/v1 as JSON text).
    pub fn submit(&mut self, text: &str, pack: &dyn RulePack) -> Decision {
        self.record(text, pack).decision
    }

    /// Decides one message and says what it changed.
    pub fn record(&mut self, text: &str, pack: &dyn RulePack) -> Recorded {
        let settings = pack.settings();
        match parse_message(text) {
            Err(rejection) => {
                // An invalid message has no usable key, so it is remembered by its exact bytes:
                // the same bytes again get the same decision with no new effect, while a
                // corrected claim under the same ids is decided afresh.
                let invalid = rejection.kind == RejectionKind::Invalid;
                if invalid && let Some(decision) = self.rejected.get(text) {
                    return Recorded { decision: decision.clone(), effect: None };
                }
                let decision = pipeline::rejected_message(&rejection, settings);
                if invalid {
                    self.rejected.insert(text.to_owned(), decision.clone());
                }
                Recorded { decision, effect: Some(Effect::nothing_read()) }
            }
            Ok(Message::Claim(claim)) => {
                let key = (claim.provider_id.to_string(), claim.claim_id.to_string());
                if let Some(entry) = self.entries.get(&key)
                    && entry.decision.outcome != Outcome::Error
                {
                    return Recorded { decision: entry.decision.clone(), effect: None };
                }
                let snapshot = self.registry.snapshot(&claim.member_id, &claim.provider_id);
                let history = self.history_on_claim_dates(&claim);
                let adjudication = pipeline::adjudicate(
                    &Inputs { claim: &claim, registry: &snapshot, counters: &self.counters, history: &history },
                    pack,
                );
                self.counters.apply(&adjudication.moves);
                for fingerprint in &adjudication.fingerprints {
                    self.history
                        .entry((claim.member_id.clone(), fingerprint.service_date))
                        .or_default()
                        .insert(fingerprint.clone());
                }
                self.entries.insert(
                    key,
                    Entry {
                        decision: adjudication.decision.clone(),
                        moves: adjudication.moves.clone(),
                        fingerprints: adjudication.fingerprints,
                        member_id: Some(claim.member_id.clone()),
                        reversal: None,
                    },
                );
                Recorded {
                    decision: adjudication.decision,
                    effect: Some(Effect {
                        registry: snapshot,
                        counters_before: adjudication.counters_read,
                        history,
                        moves: adjudication.moves,
                        cancels: None,
                    }),
                }
            }
            Ok(Message::Cancellation(cancellation)) => {
                let key = (cancellation.provider_id.to_string(), cancellation.claim_id.to_string());
                let Some(entry) = self.entries.get(&key) else {
                    let cancelled = Cancelled { decision: None, moves: Vec::new() };
                    let adjudication = decide_cancellation(&cancellation, &cancelled, &self.counters, settings);
                    let mut effect = Effect::nothing_read();
                    effect.cancels = Some(cancelled);
                    return Recorded { decision: adjudication.decision, effect: Some(effect) };
                };
                if let Some(reversal) = &entry.reversal {
                    return Recorded { decision: reversal.clone(), effect: None };
                }
                let cancelled = Cancelled { decision: Some(entry.decision.clone()), moves: entry.moves.clone() };
                let adjudication = decide_cancellation(&cancellation, &cancelled, &self.counters, settings);
                if adjudication.decision.outcome != Outcome::Reversed {
                    let mut effect = Effect::nothing_read();
                    effect.cancels = Some(cancelled);
                    return Recorded { decision: adjudication.decision, effect: Some(effect) };
                }
                let member_id = entry.member_id.clone();
                let snapshot = match &member_id {
                    Some(member_id) => self.registry.snapshot(member_id, &cancellation.provider_id),
                    None => RegistrySnapshot { member: None, household: Vec::new(), provider: None },
                };
                let fingerprints = entry.fingerprints.clone();
                self.counters.apply(&adjudication.moves);
                if let Some(member_id) = &member_id {
                    for fingerprint in &fingerprints {
                        if let Some(lines) = self.history.get_mut(&(member_id.clone(), fingerprint.service_date)) {
                            lines.remove(fingerprint);
                        }
                    }
                }
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.reversal = Some(adjudication.decision.clone());
                }
                Recorded {
                    decision: adjudication.decision,
                    effect: Some(Effect {
                        registry: snapshot,
                        counters_before: adjudication.counters_read,
                        history: History::default(),
                        moves: adjudication.moves,
                        cancels: Some(cancelled),
                    }),
                }
            }
        }
    }

    /// The member's decided lines on the claim's service dates (all duplicate detection needs).
    fn history_on_claim_dates(&self, claim: &Claim) -> History {
        let dates: BTreeSet<Date> = claim.lines.iter().map(|line| line.service_date).collect();
        History::new(
            dates.into_iter().filter_map(|date| self.history.get(&(claim.member_id.clone(), date))).flatten().cloned(),
        )
    }
}
