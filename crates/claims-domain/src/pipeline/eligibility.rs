//! Step 4: is the member covered by a scheme on the day of care? Coverage period, waiting
//! period, suspension, dependants of a suspended member, unpaid contributions.

use crate::claim::Scheme;
use crate::date::Date;
use crate::decision::{Reason, ReasonGroup};
use crate::ids::PlanName;
use crate::registry::{Coverage, Member};
use crate::rules::PackSettings;

/// The member's standing with one scheme on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    Eligible(PlanName),
    Ineligible(Reason),
    /// The member never had this scheme: nothing to say.
    NoCover,
}

/// Checks one scheme for the member on `day`, with the rest of the household for suspensions
/// that extend to dependants.
pub fn check(scheme: Scheme, member: &Member, household: &[Member], pack: &PackSettings, day: Date) -> Eligibility {
    let Some(coverage) = member.coverage_on(scheme, day) else {
        return outside_periods(scheme, member, day);
    };
    let Some(plan) = pack.plans.get(&coverage.plan).filter(|plan| plan.scheme == scheme) else {
        return Eligibility::Ineligible(Reason::new(
            ReasonGroup::Pr,
            "96",
            format!("plan {} is not a {} plan of pack {}", coverage.plan, scheme.name(), pack.version.pack),
        ));
    };
    if let Some(waiting_until) = coverage.waiting_until
        && day <= waiting_until
    {
        return Eligibility::Ineligible(Reason::new(
            ReasonGroup::Pr,
            "179",
            format!("{}: no benefits during the waiting (observation) period, until {waiting_until}", coverage.plan),
        ));
    }
    if suspended_on(coverage, day) {
        return Eligibility::Ineligible(Reason::new(
            ReasonGroup::Pr,
            "200",
            format!("{} suspended on {day} for unpaid contributions", coverage.plan),
        ));
    }
    if plan.suspension_extends_to_household {
        let suspended_relative =
            household.iter().find(|relative| relative.coverages_of(scheme).any(|other| suspended_on(other, day)));
        if let Some(relative) = suspended_relative {
            return Eligibility::Ineligible(Reason::new(
                ReasonGroup::Pr,
                "200",
                format!(
                    "{} suspended on {day}: member {} of the household is in arrears",
                    coverage.plan, relative.member_id
                ),
            ));
        }
    }
    if let Some(months_before) = plan.contribution_months_before {
        let month = day.year_month();
        let unpaid = coverage
            .unpaid_months
            .iter()
            .filter(|unpaid| (0..=i64::from(months_before)).contains(&month.months_since(**unpaid)))
            .min();
        if let Some(unpaid) = unpaid {
            return Eligibility::Ineligible(Reason::new(
                ReasonGroup::Pr,
                "200",
                format!(
                    "{}: contribution for {unpaid} unpaid (required for {month} and the {months_before} months before)",
                    coverage.plan
                ),
            ));
        }
    }
    Eligibility::Eligible(coverage.plan.clone())
}

fn suspended_on(coverage: &Coverage, day: Date) -> bool {
    coverage.period.contains(day) && coverage.suspended.iter().any(|period| period.contains(day))
}

fn outside_periods(scheme: Scheme, member: &Member, day: Date) -> Eligibility {
    let mut coverages = member.coverages_of(scheme).peekable();
    if coverages.peek().is_none() {
        return Eligibility::NoCover;
    }
    let starts_later =
        member.coverages_of(scheme).filter(|coverage| coverage.period.from > day).map(|c| c.period.from).min();
    match starts_later {
        Some(from) => Eligibility::Ineligible(Reason::new(
            ReasonGroup::Pr,
            "26",
            format!("not yet covered by the {} scheme on {day} (cover starts {from})", scheme.name()),
        )),
        None => Eligibility::Ineligible(Reason::new(
            ReasonGroup::Pr,
            "27",
            format!("no longer covered by the {} scheme on {day}", scheme.name()),
        )),
    }
}
