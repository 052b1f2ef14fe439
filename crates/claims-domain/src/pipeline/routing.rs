//! Step 9: who is paid. Per scheme and per line, the provider (third-party payment) or the
//! member (reimbursement); fixed charges the scheme paid the provider become a member debt,
//! recovered from the member's next reimbursement of the same scheme.

use std::collections::BTreeMap;

use super::line::PricedLine;
use crate::accumulators::{CounterBook, Scope};
use crate::claim::{Claim, Scheme};
use crate::decision::{Payee, Payment, Recovery, RecoveryKind};
use crate::money::Amount;

/// Counter holding a member's outstanding debt to a scheme (period = scheme name).
pub const DEBT_COUNTER: &str = "debt";

/// Payments (one per scheme and payee with a non-zero amount) and recoveries for a claim.
pub fn route(claim: &Claim, lines: &[PricedLine], book: &mut CounterBook) -> (Vec<Payment>, Vec<Recovery>) {
    let mut totals: BTreeMap<(Scheme, Payee), i64> = BTreeMap::new();
    let mut new_debt: BTreeMap<Scheme, i64> = BTreeMap::new();
    for priced in lines {
        let line = &priced.decision;
        let payee_for = |scheme: Scheme| {
            if claim.third_party.contains(&scheme) || priced.third_party_required.contains(&scheme) {
                Payee::Provider
            } else {
                Payee::Member
            }
        };
        if let Some(part) = &line.compulsory {
            let payee = payee_for(Scheme::Compulsory);
            let deducted: i64 = part.deductions.iter().map(|deduction| deduction.amount.minor_units()).sum();
            let amount = match payee {
                // The provider gets the full gross share; the charges become the member's debt.
                Payee::Provider => {
                    *new_debt.entry(Scheme::Compulsory).or_insert(0) += deducted;
                    part.paid.minor_units() + deducted
                }
                Payee::Member => part.paid.minor_units(),
            };
            *totals.entry((Scheme::Compulsory, payee)).or_insert(0) += amount;
        }
        if let Some(part) = &line.supplementary {
            *totals.entry((Scheme::Supplementary, payee_for(Scheme::Supplementary))).or_insert(0) +=
                part.paid.minor_units();
        }
    }

    let member_id = claim.member_id.to_string();
    let mut recoveries = Vec::new();
    for scheme in Scheme::ALL {
        let Some(reimbursed) = totals.get_mut(&(scheme, Payee::Member)) else { continue };
        let key = book.key(Scope::Member, DEBT_COUNTER, scheme.name());
        let outstanding = book.value(&key);
        let recovered = outstanding.min(*reimbursed).max(0);
        if recovered > 0 {
            *reimbursed -= recovered;
            book.add(key, -recovered);
            recoveries.push(Recovery {
                kind: RecoveryKind::Recovered,
                scheme,
                member_id: member_id.clone(),
                amount: Amount::from_minor(recovered),
            });
        }
    }
    for (scheme, debt) in new_debt {
        if debt > 0 {
            book.add(book.key(Scope::Member, DEBT_COUNTER, scheme.name()), debt);
            recoveries.push(Recovery {
                kind: RecoveryKind::Debt,
                scheme,
                member_id: member_id.clone(),
                amount: Amount::from_minor(debt),
            });
        }
    }

    let payments = totals
        .into_iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|((scheme, payee), amount)| Payment {
            scheme,
            payee,
            payee_id: match payee {
                Payee::Provider => claim.provider_id.to_string(),
                Payee::Member => member_id.clone(),
            },
            amount: Amount::from_minor(amount),
        })
        .collect();
    (payments, recoveries)
}
