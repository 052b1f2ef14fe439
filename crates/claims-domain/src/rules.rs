//! The boundary between the pipeline and a rule pack. The pipeline asks three questions per
//! line — what is the tariff, what does the compulsory plan take off, what does the
//! supplementary product pay — and enforces everything else itself (eligibility, limits and
//! counters, the indemnity principle, routing, debts). `claims-rules` answers with Rhai.

use std::collections::{BTreeMap, BTreeSet};

use crate::accumulators::{Frequency, Limit};
use crate::attributes::Attributes;
use crate::claim::{Claim, ClaimLine, Scheme};
use crate::date::Date;
use crate::decision::{CompulsoryPart, Reason, RuleFailure, RulesVersion};
use crate::ids::{AgreementName, PlanName};
use crate::money::{Amount, Currency, RateBps, Rounding};
use crate::registry::{Member, Provider};

/// A pack's fixed settings, read from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSettings {
    pub version: RulesVersion,
    pub currency: Currency,
    pub rounding: Rounding,
    pub filing_limit: Option<FilingLimit>,
    pub plans: BTreeMap<PlanName, PlanSettings>,
    pub agreements: BTreeSet<AgreementName>,
    /// Whether the pack prices providers outside any agreement (French sector 3); otherwise
    /// their lines are denied CO-B7.
    pub prices_outside_agreement: bool,
}

/// How long after the service a claim may be filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilingLimit {
    /// `months` after the date of service.
    MonthsAfterService(u32),
    /// `months` after the first day of the quarter following the date of service (France).
    MonthsAfterNextQuarter(u32),
}

impl FilingLimit {
    /// The first day on which a claim for care on `service_date` is too late.
    pub fn first_late_day(self, service_date: Date) -> Option<Date> {
        match self {
            FilingLimit::MonthsAfterService(months) => service_date.add_months(months)?.add_days(1),
            FilingLimit::MonthsAfterNextQuarter(months) => service_date.first_day_of_next_quarter()?.add_months(months),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSettings {
    pub scheme: Scheme,
    /// Contributions must be paid for the month of care and this many months before it
    /// (Belgium: 23), otherwise the plan pays nothing (PR-200).
    pub contribution_months_before: Option<u32>,
    /// A suspension of one member suspends the whole household (Senegal: dependants of a member
    /// in arrears).
    pub suspension_extends_to_household: bool,
}

/// What the scripts see of one line.
#[derive(Debug, Clone, Copy)]
pub struct LineContext<'a> {
    pub claim: &'a Claim,
    pub line: &'a ClaimLine,
    pub member: &'a Member,
    pub provider: &'a Provider,
    /// The agreement in force on the line's date; `None` outside any agreement.
    pub agreement: Option<&'a AgreementName>,
}

/// The agreement's price of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    /// The eligible base (line total, all units).
    pub base: Amount,
    /// The compulsory rate the agreement sets for the act.
    pub rate_bps: RateBps,
    /// Act family (`doctor`, `pharmacy`, `auxiliary`, `optics`, `dental`, `hospital`…); products read it.
    pub category: String,
    /// Schemes that must pay the provider directly whatever the claim asks (Belgian GP for bim members).
    pub third_party_required: BTreeSet<Scheme>,
    /// Facts the agreement passes on to the plan scripts (`heavy_act`…).
    pub flags: Attributes,
    pub reasons: Vec<Reason>,
}

/// A plan's or agreement's answer: covered with details, or denied with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling<T> {
    Covered(T),
    Denied(Reason),
}

/// A fixed charge the compulsory plan takes off its gross share, within limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub kind: String,
    pub amount: Amount,
    pub limits: Vec<Limit>,
    pub reason: Reason,
}

/// A part of the member's share the law forbids a supplementary product to pay (e.g. the
/// out-of-pathway surcharge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverCovered {
    pub kind: String,
    pub amount: Amount,
}

/// The compulsory plan's answer for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompulsoryRuling {
    pub rate_bps: RateBps,
    /// What the scheme owes before fixed charges; at most the base.
    pub gross: Amount,
    pub charges: Vec<Charge>,
    pub never_covered: Vec<NeverCovered>,
    /// Limits on the statutory patient share (`base − gross`); what they do not let through is
    /// refunded by the scheme.
    pub share_ceiling: Vec<Limit>,
    pub reasons: Vec<Reason>,
}

/// The supplementary product's answer for one line, before the pipeline's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplementaryRuling {
    pub amount: Amount,
    pub limits: Vec<Limit>,
    pub frequency: Option<Frequency>,
    pub reasons: Vec<Reason>,
}

/// A rule pack, compiled and ready. Implementations must be deterministic: same inputs, same
/// answers, whatever the machine or the hour.
pub trait RulePack: Send + Sync {
    fn settings(&self) -> &PackSettings;

    /// Step 6: the agreement's tariff (or the outside-agreement tariff when `agreement` is `None`).
    fn tariff(&self, context: &LineContext<'_>) -> Result<Ruling<Tariff>, RuleFailure>;

    /// Step 7: the compulsory plan's rate, gross share and fixed charges.
    fn compulsory(
        &self,
        context: &LineContext<'_>,
        plan: &PlanName,
        tariff: &Tariff,
    ) -> Result<Ruling<CompulsoryRuling>, RuleFailure>;

    /// Step 8: what the supplementary product would pay, before the indemnity cap.
    fn supplementary(
        &self,
        context: &LineContext<'_>,
        plan: &PlanName,
        tariff: &Tariff,
        compulsory: Option<&CompulsoryPart>,
    ) -> Result<Ruling<SupplementaryRuling>, RuleFailure>;
}
