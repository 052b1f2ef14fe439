//! Steps 3 and 5–8 for one line: claim controls, agreement in force, tariff, compulsory share
//! with fixed charges, supplementary share under the indemnity cap. This is where a line is
//! priced.

use std::collections::BTreeSet;

use super::History;
use super::eligibility::{self, Eligibility};
use crate::accumulators::CounterBook;
use crate::claim::{Claim, ClaimLine, Scheme};
use crate::decision::{CompulsoryPart, Deduction, LineDecision, Reason, ReasonGroup, RuleFailure, SupplementaryPart};
use crate::money::Amount;
use crate::registry::{Member, Provider};
use crate::rules::{LineContext, RulePack, Ruling, Tariff};

/// A priced line and the routing facts the tariff set for it.
pub struct PricedLine {
    pub decision: LineDecision,
    pub third_party_required: BTreeSet<Scheme>,
}

/// What one line needs from its claim.
pub struct LineInputs<'a> {
    pub claim: &'a Claim,
    pub line: &'a ClaimLine,
    pub member: &'a Member,
    pub household: &'a [Member],
    pub provider: &'a Provider,
    pub history: &'a History,
}

fn denied(line: &ClaimLine, reasons: Vec<Reason>) -> PricedLine {
    PricedLine {
        decision: LineDecision {
            line: line.number,
            act: line.act.clone(),
            charged: line.charged,
            eligible: Amount::ZERO,
            compulsory: None,
            supplementary: None,
            member_share: line.charged,
            reasons,
            denied: true,
        },
        third_party_required: BTreeSet::new(),
    }
}

fn sum(amounts: impl IntoIterator<Item = Amount>) -> Amount {
    Amount::from_minor(amounts.into_iter().map(Amount::minor_units).sum())
}

/// Prices one line. A rule failure aborts the whole claim (outcome `error`).
pub fn price(inputs: &LineInputs<'_>, pack: &dyn RulePack, book: &mut CounterBook) -> Result<PricedLine, RuleFailure> {
    let LineInputs { claim, line, member, household, provider, history } = *inputs;
    let settings = pack.settings();
    let day = line.service_date;

    // Step 3: claim controls.
    if let Some(limit) = settings.filing_limit
        && let Some(first_late_day) = limit.first_late_day(day)
        && claim.submitted_on >= first_late_day
    {
        let last_day = first_late_day.add_days(-1).unwrap_or(first_late_day);
        return Ok(denied(
            line,
            vec![Reason::new(
                ReasonGroup::Co,
                "29",
                format!("filed on {}, the time limit for care on {day} ended on {last_day}", claim.submitted_on),
            )],
        ));
    }
    if history.contains(&super::LineFingerprint::of(claim, line)) {
        return Ok(denied(
            line,
            vec![Reason::new(
                ReasonGroup::Oa,
                "18",
                "duplicate of a line already decided (same member, provider, date, act and amount)",
            )],
        ));
    }

    // Step 4: eligibility per scheme.
    let compulsory_standing = eligibility::check(Scheme::Compulsory, member, household, settings, day);
    let supplementary_standing = eligibility::check(Scheme::Supplementary, member, household, settings, day);
    let standing_reasons: Vec<Reason> = [&compulsory_standing, &supplementary_standing]
        .into_iter()
        .filter_map(|standing| match standing {
            Eligibility::Ineligible(reason) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    let eligible_somewhere = [&compulsory_standing, &supplementary_standing]
        .into_iter()
        .any(|standing| matches!(standing, Eligibility::Eligible(_)));
    if !eligible_somewhere {
        let reasons = if standing_reasons.is_empty() {
            vec![Reason::new(ReasonGroup::Pr, "27", format!("member {} has no cover on {day}", member.member_id))]
        } else {
            standing_reasons
        };
        return Ok(denied(line, reasons));
    }

    // Step 5: agreement in force.
    let agreement = match &provider.agreement {
        Some(name) if !settings.agreements.contains(name) => {
            return Ok(denied(
                line,
                vec![Reason::new(
                    ReasonGroup::Co,
                    "B7",
                    format!("agreement {name} is not part of pack {}", settings.version.pack),
                )],
            ));
        }
        Some(name) if provider.period.contains(day) => Some(name),
        Some(name) => {
            return Ok(denied(
                line,
                vec![Reason::new(
                    ReasonGroup::Co,
                    "B7",
                    format!("provider {} is not under agreement {name} on {day}", provider.provider_id),
                )],
            ));
        }
        None if settings.prices_outside_agreement => None,
        None => {
            return Ok(denied(
                line,
                vec![Reason::new(
                    ReasonGroup::Co,
                    "B7",
                    format!("provider {} is outside any agreement", provider.provider_id),
                )],
            ));
        }
    };
    let context = LineContext { claim, line, member, provider, agreement };

    // Step 6: tariff. The eligible base never exceeds what was charged.
    let mut tariff = match pack.tariff(&context)? {
        Ruling::Covered(tariff) => tariff,
        Ruling::Denied(reason) => return Ok(denied(line, vec![reason])),
    };
    let eligible = tariff.base.at_least_zero().min(line.charged);
    tariff.base = eligible;
    let mut reasons = tariff.reasons.clone();
    reasons.extend(standing_reasons);

    // Step 7: compulsory share.
    let mut covered_somewhere = false;
    let mut never_covered = Amount::ZERO;
    let compulsory = match &compulsory_standing {
        Eligibility::Eligible(plan) => match pack.compulsory(&context, plan, &tariff)? {
            Ruling::Covered(ruling) => {
                covered_somewhere = true;
                let gross = ruling.gross.at_least_zero().min(eligible);
                let mut deductions = Vec::new();
                let mut deducted = Amount::ZERO;
                for charge in &ruling.charges {
                    let remaining = Amount::from_minor(gross.minor_units() - deducted.minor_units());
                    let taken = book.take(charge.amount.at_least_zero().min(remaining), &charge.limits);
                    if !taken.is_zero() {
                        deducted = Amount::from_minor(deducted.minor_units() + taken.minor_units());
                        deductions.push(Deduction { kind: charge.kind.clone(), amount: taken });
                        reasons.push(charge.reason.clone());
                    }
                }
                let statutory_share = Amount::from_minor(eligible.minor_units() - gross.minor_units());
                let ceiling_refund = if ruling.share_ceiling.is_empty() {
                    Amount::ZERO
                } else {
                    let counted = book.take(statutory_share, &ruling.share_ceiling);
                    Amount::from_minor(statutory_share.minor_units() - counted.minor_units())
                };
                never_covered = sum(ruling.never_covered.iter().map(|part| part.amount.at_least_zero()));
                reasons.extend(ruling.reasons.iter().cloned());
                let paid = gross.minor_units() - deducted.minor_units() + ceiling_refund.minor_units();
                Some(CompulsoryPart {
                    plan: plan.clone(),
                    rate_bps: ruling.rate_bps,
                    gross,
                    deductions,
                    ceiling_refund,
                    paid: Amount::from_minor(paid),
                })
            }
            Ruling::Denied(reason) => {
                reasons.push(reason);
                None
            }
        },
        _ => None,
    };

    // Step 8: supplementary share, never above what the compulsory scheme leaves to the member
    // less what the law forbids products to pay (fixed charges are outside `charged − gross`).
    let supplementary = match &supplementary_standing {
        Eligibility::Eligible(plan) => match pack.supplementary(&context, plan, &tariff, compulsory.as_ref())? {
            Ruling::Covered(ruling) => {
                covered_somewhere = true;
                let compulsory_gross =
                    compulsory.as_ref().map_or(0, |part| part.gross.minor_units() + part.ceiling_refund.minor_units());
                let room =
                    Amount::from_minor(line.charged.minor_units() - compulsory_gross - never_covered.minor_units())
                        .at_least_zero();
                let wanted = ruling.amount.at_least_zero().min(room);
                let day_number = day.day_number();
                let paid = match &ruling.frequency {
                    Some(frequency) if !wanted.is_zero() && !book.frequency_allows(frequency, day_number) => {
                        reasons.push(Reason::new(
                            ReasonGroup::Pr,
                            "119",
                            format!("{plan}: benefit already used within {} days", frequency.days),
                        ));
                        Amount::ZERO
                    }
                    _ => {
                        let paid = book.take(wanted, &ruling.limits);
                        if paid < wanted {
                            reasons.push(Reason::new(ReasonGroup::Pr, "119", format!("{plan}: ceiling reached")));
                        }
                        if let Some(frequency) = &ruling.frequency
                            && !paid.is_zero()
                        {
                            book.record_use(frequency, day_number);
                        }
                        paid
                    }
                };
                reasons.extend(ruling.reasons.iter().cloned());
                Some(SupplementaryPart { product: plan.clone(), paid })
            }
            Ruling::Denied(reason) => {
                reasons.push(reason);
                None
            }
        },
        _ => None,
    };

    let compulsory_paid = compulsory.as_ref().map_or(Amount::ZERO, |part| part.paid);
    let supplementary_paid = supplementary.as_ref().map_or(Amount::ZERO, |part| part.paid);
    let member_share = Amount::from_minor(
        line.charged.minor_units() - compulsory_paid.minor_units() - supplementary_paid.minor_units(),
    );
    let compulsory_cover =
        compulsory.as_ref().map_or(0, |part| part.gross.minor_units() + part.ceiling_refund.minor_units());
    let coinsurance_left = eligible.minor_units() - compulsory_cover - supplementary_paid.minor_units();
    // The plan may already have explained the member's share (e.g. a fixed share); otherwise say
    // that co-insurance is left, counting what the product paid against it first.
    let plan_explained_share = reasons.iter().any(|reason| reason.group == ReasonGroup::Pr && reason.code == "2");
    if compulsory.is_some() && coinsurance_left > 0 && !plan_explained_share {
        reasons.push(Reason::new(ReasonGroup::Pr, "2", "co-insurance"));
    }
    if line.charged > eligible && covered_somewhere {
        reasons.push(Reason::new(
            ReasonGroup::Pr,
            "45",
            format!(
                "charged {} above the tariff base {}",
                claim.currency.format(line.charged),
                claim.currency.format(eligible)
            ),
        ));
    }
    Ok(PricedLine {
        decision: LineDecision {
            line: line.number,
            act: line.act.clone(),
            charged: line.charged,
            eligible,
            compulsory,
            supplementary,
            member_share,
            reasons,
            denied: !covered_somewhere,
        },
        third_party_required: tariff_third_party(&tariff),
    })
}

fn tariff_third_party(tariff: &Tariff) -> BTreeSet<Scheme> {
    tariff.third_party_required.clone()
}
