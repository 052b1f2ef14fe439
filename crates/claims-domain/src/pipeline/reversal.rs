//! Reversal of an earlier decision (cancellation/v1): every amount negated, every counter moved
//! back. A debt the original created but that was already recovered from a later
//! reimbursement is paid back to the member.

use std::collections::BTreeMap;

use super::Adjudication;
use super::routing::DEBT_COUNTER;
use crate::accumulators::{CounterMove, CounterSource, Counters, LAST_USE_PERIOD};
use crate::claim::Scheme;
use crate::decision::{
    CompulsoryPart, Decision, Deduction, LineDecision, Outcome, Payee, Payment, Recovery, SupplementaryPart,
};
use crate::money::Amount;
use crate::rules::PackSettings;

fn negate(amount: Amount) -> Amount {
    Amount::from_minor(-amount.minor_units())
}

/// Reverses `original` (which moved `original_moves`) given the counters as they stand now.
pub fn reverse(
    original: &Decision,
    original_moves: &[CounterMove],
    now: &dyn CounterSource,
    pack: &PackSettings,
) -> Adjudication {
    let mut moves = Vec::new();
    let mut counters_read = Counters::new();
    let mut paid_back: BTreeMap<Scheme, i64> = BTreeMap::new();
    for original_move in original_moves {
        let current = now.counter_value(&original_move.key);
        counters_read.set(original_move.key.clone(), current);
        let delta = original_move.delta();
        let after = if original_move.key.period == LAST_USE_PERIOD {
            // A "last used on" day is not a sum: put the earlier day back only if no later claim
            // has used the benefit since.
            if current == original_move.after { original_move.before } else { current }
        } else if original_move.key.counter == DEBT_COUNTER && delta > 0 {
            // Only what is still outstanding can be cancelled; the rest was recovered already.
            let cancellable = delta.min(current.max(0));
            if let Some(scheme) = Scheme::parse(&original_move.key.period) {
                *paid_back.entry(scheme).or_insert(0) += delta - cancellable;
            }
            current - cancellable
        } else {
            current - delta
        };
        if after != current {
            moves.push(CounterMove { key: original_move.key.clone(), before: current, after });
        }
    }

    let mut payments: Vec<Payment> =
        original.payments.iter().map(|payment| Payment { amount: negate(payment.amount), ..payment.clone() }).collect();
    for (scheme, amount) in paid_back {
        if amount > 0 {
            payments.push(Payment {
                scheme,
                payee: Payee::Member,
                payee_id: original.member_id.clone(),
                amount: Amount::from_minor(amount),
            });
        }
    }
    let recoveries = original
        .recoveries
        .iter()
        .map(|recovery| Recovery { amount: negate(recovery.amount), ..recovery.clone() })
        .collect();
    let decision = Decision {
        outcome: Outcome::Reversed,
        lines: original.lines.iter().map(negate_line).collect(),
        payments,
        recoveries,
        reasons: Vec::new(),
        rules: Some(pack.version.clone()),
        reverses: Some(original.claim_id.clone()),
        error: None,
        ..original.clone()
    };
    Adjudication { decision, moves, counters_read, fingerprints: Vec::new() }
}

fn negate_line(line: &LineDecision) -> LineDecision {
    LineDecision {
        charged: negate(line.charged),
        eligible: negate(line.eligible),
        compulsory: line.compulsory.as_ref().map(|part| CompulsoryPart {
            gross: negate(part.gross),
            deductions: part
                .deductions
                .iter()
                .map(|deduction| Deduction { kind: deduction.kind.clone(), amount: negate(deduction.amount) })
                .collect(),
            ceiling_refund: negate(part.ceiling_refund),
            paid: negate(part.paid),
            ..part.clone()
        }),
        supplementary: line
            .supplementary
            .as_ref()
            .map(|part| SupplementaryPart { product: part.product.clone(), paid: negate(part.paid) }),
        member_share: negate(line.member_share),
        ..line.clone()
    }
}
