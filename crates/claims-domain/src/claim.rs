//! Claims as the pipeline sees them, after the contract layer has parsed and validated them.

use std::collections::BTreeSet;

use crate::attributes::Attributes;
use crate::date::Date;
use crate::ids::{ActCode, ClaimId, MemberId, ProviderId};
use crate::money::{Amount, Currency};

/// The two funds a line can be paid from. They never share a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// The state's statutory insurance, managed by the mutual under delegation: public money.
    Compulsory,
    /// The mutual's own product, paid from members' contributions.
    Supplementary,
}

impl Scheme {
    pub const ALL: [Scheme; 2] = [Scheme::Compulsory, Scheme::Supplementary];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Compulsory => "compulsory",
            Scheme::Supplementary => "supplementary",
        }
    }

    pub fn parse(name: &str) -> Option<Scheme> {
        match name {
            "compulsory" => Some(Scheme::Compulsory),
            "supplementary" => Some(Scheme::Supplementary),
            _ => None,
        }
    }
}

/// A claim: one provider, one member, one or more lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub claim_id: ClaimId,
    pub provider_id: ProviderId,
    pub member_id: MemberId,
    pub submitted_on: Date,
    pub currency: Currency,
    /// Schemes the provider asks to be paid by directly (third-party payment).
    pub third_party: BTreeSet<Scheme>,
    pub lines: Vec<ClaimLine>,
}

/// One billed act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimLine {
    pub number: u32,
    pub act: ActCode,
    pub service_date: Date,
    pub quantity: u32,
    /// The line total the provider charged (all units).
    pub charged: Amount,
    pub attributes: Attributes,
}

/// A provider's request to reverse an earlier decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub provider_id: ProviderId,
    pub claim_id: ClaimId,
    pub reason: String,
}
