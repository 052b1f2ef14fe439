//! Decisions: per line, what the compulsory scheme and the supplementary product pay, what the
//! member owes and why; per claim, the payments per scheme and payee and the member debts.

use crate::claim::Scheme;
use crate::ids::{ActCode, PlanName};
use crate::money::{Amount, Currency, RateBps};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every line decided; something paid or nothing owed.
    Complete,
    /// Some lines denied, others paid.
    Partial,
    /// Nothing payable: invalid, not eligible, duplicate…
    Rejected,
    /// The rules failed; nothing paid; kept for a retry once the rules are fixed.
    Error,
    /// A cancellation reversed an earlier decision.
    Reversed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Partial => "partial",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
            Outcome::Reversed => "reversed",
        }
    }

    pub fn parse(name: &str) -> Option<Outcome> {
        [Outcome::Complete, Outcome::Partial, Outcome::Rejected, Outcome::Error, Outcome::Reversed]
            .into_iter()
            .find(|outcome| outcome.name() == name)
    }
}

/// X12 claim adjustment group: contractual obligation, patient responsibility, other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonGroup {
    Co,
    Pr,
    Oa,
}

impl ReasonGroup {
    pub fn name(self) -> &'static str {
        match self {
            ReasonGroup::Co => "CO",
            ReasonGroup::Pr => "PR",
            ReasonGroup::Oa => "OA",
        }
    }

    pub fn parse(name: &str) -> Option<ReasonGroup> {
        match name {
            "CO" => Some(ReasonGroup::Co),
            "PR" => Some(ReasonGroup::Pr),
            "OA" => Some(ReasonGroup::Oa),
            _ => None,
        }
    }
}

/// Why an amount was adjusted: X12 group and CARC code, with a text a member understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason {
    pub group: ReasonGroup,
    pub code: String,
    pub text: String,
}

impl Reason {
    pub fn new(group: ReasonGroup, code: &str, text: impl Into<String>) -> Reason {
        Reason { group, code: code.to_owned(), text: text.into() }
    }
}

/// A fixed charge taken off what the compulsory scheme pays (per-visit charge, deductible…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deduction {
    pub kind: String,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompulsoryPart {
    pub plan: PlanName,
    pub rate_bps: RateBps,
    /// What the scheme owes before fixed charges.
    pub gross: Amount,
    pub deductions: Vec<Deduction>,
    /// Patient share above a household ceiling, refunded by the scheme (Belgian maximum billing).
    pub ceiling_refund: Amount,
    /// `gross − deductions + ceiling_refund`.
    pub paid: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplementaryPart {
    pub product: PlanName,
    pub paid: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDecision {
    pub line: u32,
    pub act: ActCode,
    pub charged: Amount,
    /// The tariff base the schemes priced the line on.
    pub eligible: Amount,
    pub compulsory: Option<CompulsoryPart>,
    pub supplementary: Option<SupplementaryPart>,
    /// `charged − compulsory.paid − supplementary.paid`, fixed charges included.
    pub member_share: Amount,
    pub reasons: Vec<Reason>,
    /// Denied as a whole (claim control, agreement, tariff, no eligible scheme).
    pub denied: bool,
}

impl LineDecision {
    pub fn compulsory_paid(&self) -> Amount {
        self.compulsory.as_ref().map_or(Amount::ZERO, |part| part.paid)
    }

    pub fn supplementary_paid(&self) -> Amount {
        self.supplementary.as_ref().map_or(Amount::ZERO, |part| part.paid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Payee {
    /// Third-party payment: the scheme pays the provider.
    Provider,
    /// Reimbursement: the member paid the provider.
    Member,
}

impl Payee {
    pub fn name(self) -> &'static str {
        match self {
            Payee::Provider => "provider",
            Payee::Member => "member",
        }
    }
}

/// Money one scheme sends to one payee for this claim (negative in a reversal: to recover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub scheme: Scheme,
    pub payee: Payee,
    pub payee_id: String,
    pub amount: Amount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryKind {
    /// Fixed charges the scheme paid the provider under third-party payment: the member owes them.
    Debt,
    /// An earlier debt taken from this claim's reimbursement to the member.
    Recovered,
}

impl RecoveryKind {
    pub fn name(self) -> &'static str {
        match self {
            RecoveryKind::Debt => "debt",
            RecoveryKind::Recovered => "recovered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub kind: RecoveryKind,
    pub scheme: Scheme,
    pub member_id: String,
    pub amount: Amount,
}

/// Which rule pack decided, by content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesVersion {
    pub pack: String,
    pub version: String,
}

/// A rule script failed: where, and what an analyst should read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// The decision on one claim or cancellation. Ids are kept as the provider sent them, so that a
/// rejected claim with a malformed id is still answered under that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub claim_id: String,
    pub provider_id: String,
    pub member_id: String,
    pub outcome: Outcome,
    pub currency: Option<Currency>,
    pub lines: Vec<LineDecision>,
    pub payments: Vec<Payment>,
    pub recoveries: Vec<Recovery>,
    /// Claim-level reasons (why a claim was rejected as a whole).
    pub reasons: Vec<Reason>,
    pub rules: Option<RulesVersion>,
    /// For a reversal: the claim id reversed.
    pub reverses: Option<String>,
    pub error: Option<RuleFailure>,
}
