//! Members, households, coverages and providers: the registry the mutual keeps, and the
//! snapshot of it that one adjudication reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::attributes::Attributes;
use crate::claim::Scheme;
use crate::date::{Date, Period, YearMonth};
use crate::ids::{AgreementName, HouseholdId, MemberId, PlanName, ProviderId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: MemberId,
    pub household_id: HouseholdId,
    pub birth_date: Date,
    pub attributes: Attributes,
    pub coverages: Vec<Coverage>,
}

/// Membership of one plan of one scheme over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub scheme: Scheme,
    pub plan: PlanName,
    pub period: Period,
    /// Nothing is paid for care on or before this day (waiting or observation period).
    pub waiting_until: Option<Date>,
    /// Periods of suspension (e.g. for unpaid contributions).
    pub suspended: Vec<Period>,
    /// Months whose contribution is unpaid.
    pub unpaid_months: Vec<YearMonth>,
}

impl Member {
    /// The member's coverage of `scheme` whose period holds `day`, if any.
    pub fn coverage_on(&self, scheme: Scheme, day: Date) -> Option<&Coverage> {
        self.coverages.iter().find(|coverage| coverage.scheme == scheme && coverage.period.contains(day))
    }

    pub fn coverages_of(&self, scheme: Scheme) -> impl Iterator<Item = &Coverage> {
        self.coverages.iter().filter(move |coverage| coverage.scheme == scheme)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub provider_id: ProviderId,
    /// `None`: outside any agreement (e.g. French sector 3).
    pub agreement: Option<AgreementName>,
    /// When the agreement (or the provider's registration) is in force.
    pub period: Period,
    pub attributes: Attributes,
    /// The broker users (RabbitMQ `user_id`) that may submit claims and cancellations for this
    /// provider: the provider's own gateway, a billing agent. Empty: nobody, through the broker.
    pub submitters: BTreeSet<String>,
}

/// Everything about people and providers that one claim's adjudication reads. The caller (the
/// embedded ledger or the PostgreSQL store) builds it; the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySnapshot {
    pub member: Option<Member>,
    /// The other members of the member's household (dependants or head).
    pub household: Vec<Member>,
    pub provider: Option<Provider>,
}

/// The whole registry, as imported from a registry file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub members: BTreeMap<MemberId, Member>,
    pub providers: BTreeMap<ProviderId, Provider>,
}

impl Registry {
    /// The snapshot one claim of `member_id` from `provider_id` needs.
    pub fn snapshot(&self, member_id: &MemberId, provider_id: &ProviderId) -> RegistrySnapshot {
        let member = self.members.get(member_id).cloned();
        let household = match &member {
            Some(member) => self
                .members
                .values()
                .filter(|other| other.household_id == member.household_id && other.member_id != member.member_id)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        RegistrySnapshot { member, household, provider: self.providers.get(provider_id).cloned() }
    }
}
