//! One message of a batch, decided against the batch's working copy: the same rules, in the
//! same order, as `claims_domain::ledger::Ledger::record` (its tests are this module's spec).

use std::collections::BTreeSet;

use claims_domain::accumulators::CounterKey;
use claims_domain::claim::{Cancellation, Claim};
use claims_domain::contract::{Message, Rejection, RejectionKind};
use claims_domain::date::Date;
use claims_domain::decision::{Decision, Outcome};
use claims_domain::ids::{MemberId, ProviderId};
use claims_domain::ledger::{Cancelled, Effect, decide_cancellation};
use claims_domain::pipeline::{self, History, Inputs};
use claims_domain::registry::RegistrySnapshot;
use claims_domain::rules::RulePack;
use sqlx::{Postgres, Transaction};

use super::{Batch, ClaimRow, DecisionRef, NewRecord, Planned};
use crate::stored::decision_from_json;
use crate::{Incoming, StoreError};

impl Batch {
    /// A message whose submitter may not submit it: rejected and recorded like an invalid
    /// message, under its bytes and its submitter, never under the claim's key. Its entry
    /// records the provider checked, so a replay re-derives the refusal from the entry alone.
    pub(super) fn refused(&mut self, incoming: &Incoming, decision: Decision) -> Planned {
        let key = super::refused_key(incoming);
        if let Some(decision) = self.rejected.get(&key) {
            return repeat(incoming, decision.clone());
        }
        let provider_id = ProviderId::parse(&decision.provider_id).ok();
        let effect = Effect { registry: self.provider_only(provider_id.as_ref()), ..empty_effect() };
        let index = self.new_record(incoming, effect, decision);
        self.rejected.insert(key.clone(), DecisionRef::Pending(index));
        self.new_rejected.push((key, index));
        Planned::New(index)
    }

    /// A snapshot holding only the provider (what a cancellation's submitter check read).
    fn provider_only(&self, provider_id: Option<&ProviderId>) -> RegistrySnapshot {
        let provider = provider_id.and_then(|provider_id| self.registry.provider(provider_id)).cloned();
        RegistrySnapshot { member: None, household: Vec::new(), provider }
    }

    pub(super) async fn record(
        &mut self,
        transaction: &mut Transaction<'static, Postgres>,
        incoming: &Incoming,
        message: Result<Message, Rejection>,
        pack: &dyn RulePack,
    ) -> Result<Planned, StoreError> {
        match message {
            Err(rejection) => Ok(match rejection.kind {
                // Nothing to answer to: the worker dead-letters the message with the reason.
                RejectionKind::Unreadable | RejectionKind::UnknownSchema => Planned::DeadLetter(rejection.reason.text),
                RejectionKind::Invalid => {
                    // The same bytes again (a redelivery): the same decision, no new effect.
                    let key = super::body_key(&incoming.body);
                    if let Some(decision) = self.rejected.get(&key) {
                        return Ok(repeat(incoming, decision.clone()));
                    }
                    let decision = pipeline::rejected_message(&rejection, pack.settings());
                    let index = self.new_record(incoming, empty_effect(), decision);
                    self.rejected.insert(key.clone(), DecisionRef::Pending(index));
                    self.new_rejected.push((key, index));
                    Planned::New(index)
                }
            }),
            Ok(Message::Claim(claim)) => self.claim(transaction, incoming, &claim, pack).await,
            Ok(Message::Cancellation(cancellation)) => {
                self.cancellation(transaction, incoming, &cancellation, pack).await
            }
        }
    }

    async fn claim(
        &mut self,
        transaction: &mut Transaction<'static, Postgres>,
        incoming: &Incoming,
        claim: &Claim,
        pack: &dyn RulePack,
    ) -> Result<Planned, StoreError> {
        let key = (claim.provider_id.to_string(), claim.claim_id.to_string());
        // Idempotency: a final decision is given again, unchanged; an `error` one is not final.
        if let Some(row) = self.claims.get(&key)
            && row.outcome != Outcome::Error
        {
            return Ok(repeat(incoming, row.decision.clone()));
        }
        let member_id = claim.member_id.to_string();
        let snapshot = self.registry.snapshot(&claim.member_id, &claim.provider_id);
        let dates: BTreeSet<Date> = claim.lines.iter().map(|line| line.service_date).collect();
        self.history.load(transaction, dates.iter().map(|date| (member_id.clone(), *date))).await?;
        let history = self.history.on_days(&member_id, &dates);
        // The pipeline is synchronous and reads counters through `CounterSource`, so it cannot
        // wait for the database. The counters a claim reads almost always belong to the
        // periods preloaded for the batch (its lines' years and days, `last`, `all`, debts).
        // A script may still name another period (say the previous year): that key then read
        // as zero. Every key read is listed in `counters_read`, so any key outside what was
        // loaded is loaded exactly and the claim adjudicated again. Adjudication is
        // deterministic, so the last run is the decision the true values give.
        let adjudication = loop {
            // `Inputs` holds a `&dyn CounterSource`, which is not `Sync`: keep it out of the
            // await below so the whole future stays `Send` (the worker spawns it).
            let adjudication = {
                let inputs = Inputs { claim, registry: &snapshot, counters: &self.counters, history: &history };
                pipeline::adjudicate(&inputs, pack)
            };
            let unloaded: Vec<CounterKey> = adjudication
                .counters_read
                .iter()
                .map(|(key, _)| key)
                .filter(|key| !self.counters.covers(key))
                .cloned()
                .collect();
            if unloaded.is_empty() {
                break adjudication;
            }
            tracing::debug!(
                keys = unloaded.len(),
                "counters outside the preloaded periods: loading them, deciding again"
            );
            self.counters.load_keys(transaction, unloaded).await?;
        };
        self.counters.apply(&adjudication.moves);
        self.history.add(&member_id, &adjudication.fingerprints, &key);
        let household_id = snapshot.member.as_ref().map(|member| member.household_id.to_string());
        let effect = Effect {
            registry: snapshot,
            counters_before: adjudication.counters_read,
            history,
            moves: adjudication.moves.clone(),
            cancels: None,
        };
        let index = self.new_record(incoming, effect, adjudication.decision.clone());
        self.claims.insert(
            key,
            ClaimRow {
                member_id,
                household_id,
                input: incoming.body.clone(),
                outcome: adjudication.decision.outcome,
                decision: DecisionRef::Pending(index),
                decided: Some(adjudication.decision),
                moves: adjudication.moves,
                fingerprints: adjudication.fingerprints,
                reversal: None,
                changed: true,
            },
        );
        Ok(Planned::New(index))
    }

    async fn cancellation(
        &mut self,
        transaction: &mut Transaction<'static, Postgres>,
        incoming: &Incoming,
        cancellation: &Cancellation,
        pack: &dyn RulePack,
    ) -> Result<Planned, StoreError> {
        let settings = pack.settings();
        let key = (cancellation.provider_id.to_string(), cancellation.claim_id.to_string());
        // The submitter check read the provider: every cancellation's entry records it, so a
        // replay can check the submitter again.
        let checked = self.provider_only(Some(&cancellation.provider_id));
        let Some(row) = self.claims.get(&key) else {
            let cancelled = Cancelled { decision: None, moves: Vec::new() };
            let adjudication = decide_cancellation(cancellation, &cancelled, &self.counters, settings);
            let effect = Effect { registry: checked, cancels: Some(cancelled), ..empty_effect() };
            return Ok(Planned::New(self.new_record(incoming, effect, adjudication.decision)));
        };
        // Cancelling twice changes nothing: the reversal is given again.
        if let Some(reversal) = &row.reversal {
            return Ok(repeat(incoming, reversal.clone()));
        }
        let original = match (&row.decided, &row.decision) {
            (Some(decision), _) => decision.clone(),
            (None, DecisionRef::Stored { body, .. }) => decision_from_json(body)?,
            (None, DecisionRef::Pending(_)) => {
                return Err(StoreError::Corrupt(format!("claim {}/{}: pending without a decision", key.0, key.1)));
            }
        };
        let cancelled = Cancelled { decision: Some(original), moves: row.moves.clone() };
        if matches!(row.outcome, Outcome::Rejected | Outcome::Error) {
            // Nothing to reverse: refused, reading no counter.
            let adjudication = decide_cancellation(cancellation, &cancelled, &self.counters, settings);
            let effect = Effect { registry: checked, cancels: Some(cancelled), ..empty_effect() };
            return Ok(Planned::New(self.new_record(incoming, effect, adjudication.decision)));
        }
        let fingerprints = row.fingerprints.clone();
        let member_id = row.member_id.clone();
        let snapshot = match MemberId::parse(&member_id) {
            Ok(member) => self.registry.snapshot(&member, &cancellation.provider_id),
            Err(_) => checked,
        };
        self.counters
            .load_keys(transaction, cancelled.moves.iter().map(|counter_move| counter_move.key.clone()))
            .await?;
        self.history.load(transaction, fingerprints.iter().map(|line| (member_id.clone(), line.service_date))).await?;
        let adjudication = decide_cancellation(cancellation, &cancelled, &self.counters, settings);
        self.counters.apply(&adjudication.moves);
        self.history.remove(&member_id, &fingerprints);
        let effect = Effect {
            registry: snapshot,
            counters_before: adjudication.counters_read,
            history: History::default(),
            moves: adjudication.moves,
            cancels: Some(cancelled),
        };
        let index = self.new_record(incoming, effect, adjudication.decision);
        if let Some(row) = self.claims.get_mut(&key) {
            row.reversal = Some(DecisionRef::Pending(index));
            row.changed = true;
        }
        Ok(Planned::New(index))
    }

    /// Queues a new decision for the audit log; returns its index.
    fn new_record(&mut self, incoming: &Incoming, effect: Effect, decision: Decision) -> usize {
        self.records.push(NewRecord {
            input: incoming.body.clone(),
            effect,
            decision,
            reply_to: incoming.reply_to.clone(),
            correlation_id: incoming.correlation_id.clone(),
            user_id: incoming.user_id.clone(),
        });
        self.records.len() - 1
    }
}

fn repeat(incoming: &Incoming, decision: DecisionRef) -> Planned {
    Planned::Repeat { decision, reply_to: incoming.reply_to.clone(), correlation_id: incoming.correlation_id.clone() }
}

/// What the ledger records for a decision that read nothing (invalid message, refused
/// cancellation).
fn empty_effect() -> Effect {
    Effect::nothing_read()
}
