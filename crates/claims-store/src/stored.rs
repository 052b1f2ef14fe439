//! How domain values are kept in jsonb columns: counter moves, line fingerprints, and the
//! decision/v1 message read back into a domain [`Decision`] (a cancellation reverses the stored
//! decision, so it must be read exactly as it was written).
//!
//! Moves and fingerprints use the same shapes as the audit/v1 entry, so a row and its audit
//! entry can be compared by eye.

use claims_domain::accumulators::{CounterKey, CounterMove, Subject};
use claims_domain::claim::Scheme;
use claims_domain::date::Date;
use claims_domain::decision::{
    CompulsoryPart, Decision, Deduction, LineDecision, Outcome, Payee, Payment, Reason, ReasonGroup, Recovery,
    RecoveryKind, RuleFailure, RulesVersion, SupplementaryPart,
};
use claims_domain::ids::{ActCode, HouseholdId, MemberId, PlanName, ProviderId};
use claims_domain::money::{Amount, Currency, RateBps};
use claims_domain::pipeline::LineFingerprint;
use serde_json::{Map, Value, json};

use crate::StoreError;

/// `("member" | "household", id)`: how a subject is written in the `counters` table.
pub(crate) fn subject_parts(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::Member(member) => ("member", member.as_str()),
        Subject::Household(household) => ("household", household.as_str()),
    }
}

pub(crate) fn subject_from_parts(kind: &str, id: &str) -> Result<Subject, StoreError> {
    let bad_id = |error| StoreError::Corrupt(format!("counter subject {kind} {id:?}: {error}"));
    match kind {
        "member" => MemberId::parse(id).map(Subject::Member).map_err(bad_id),
        "household" => HouseholdId::parse(id).map(Subject::Household).map_err(bad_id),
        other => Err(StoreError::Corrupt(format!("counter subject kind {other:?}"))),
    }
}

pub fn moves_to_json(moves: &[CounterMove]) -> Value {
    Value::Array(
        moves
            .iter()
            .map(|counter_move| {
                let (subject, id) = subject_parts(&counter_move.key.subject);
                json!({
                    "subject": subject, "id": id, "counter": counter_move.key.counter,
                    "period": counter_move.key.period, "before": counter_move.before, "after": counter_move.after,
                })
            })
            .collect(),
    )
}

pub fn moves_from_json(value: &Value) -> Result<Vec<CounterMove>, StoreError> {
    let reader = Reader::root(value, "moves");
    reader
        .items()?
        .into_iter()
        .map(|item| {
            let subject = subject_from_parts(item.text("subject")?, item.text("id")?)?;
            let key = CounterKey {
                subject,
                counter: item.text("counter")?.to_owned(),
                period: item.text("period")?.to_owned(),
            };
            Ok(CounterMove { key, before: item.integer("before")?, after: item.integer("after")? })
        })
        .collect()
}

pub fn fingerprints_to_json(fingerprints: &[LineFingerprint]) -> Value {
    Value::Array(
        fingerprints
            .iter()
            .map(|fingerprint| {
                json!({
                    "provider_id": fingerprint.provider_id.as_str(), "act": fingerprint.act.as_str(),
                    "service_date": fingerprint.service_date.to_string(), "charged": fingerprint.charged.minor_units(),
                })
            })
            .collect(),
    )
}

pub fn fingerprints_from_json(value: &Value) -> Result<Vec<LineFingerprint>, StoreError> {
    Reader::root(value, "fingerprints").items()?.into_iter().map(|item| item.fingerprint()).collect()
}

/// Reads a decision/v1 message (as [`claims_domain::contract::decision_to_json`] writes it)
/// back into the domain decision; `audit` is ignored.
pub fn decision_from_json(value: &Value) -> Result<Decision, StoreError> {
    let root = Reader::root(value, "decision");
    let outcome_name = root.text("outcome")?;
    let outcome = Outcome::parse(outcome_name).ok_or_else(|| root.corrupt("outcome", outcome_name))?;
    let currency = match root.optional("currency") {
        None => None,
        Some(item) => Some(Currency::parse(item.as_text()?).map_err(|error| item.problem(&error.to_string()))?),
    };
    let rules = match root.optional("rules") {
        None => None,
        Some(rules) => {
            Some(RulesVersion { pack: rules.text("pack")?.to_owned(), version: rules.text("version")?.to_owned() })
        }
    };
    let error = match root.optional("error") {
        None => None,
        Some(error) => Some(RuleFailure {
            file: error.text("file")?.to_owned(),
            line: error.small("line")?,
            column: error.small("column")?,
            message: error.text("message")?.to_owned(),
        }),
    };
    Ok(Decision {
        claim_id: root.text("claim_id")?.to_owned(),
        provider_id: root.text("provider_id")?.to_owned(),
        member_id: root.text("member_id")?.to_owned(),
        outcome,
        currency,
        lines: root.field("lines")?.items()?.iter().map(Reader::line).collect::<Result<_, _>>()?,
        payments: root.field("payments")?.items()?.iter().map(Reader::payment).collect::<Result<_, _>>()?,
        recoveries: root.field("recoveries")?.items()?.iter().map(Reader::recovery).collect::<Result<_, _>>()?,
        reasons: root.field("reasons")?.items()?.iter().map(Reader::reason).collect::<Result<_, _>>()?,
        rules,
        reverses: root.optional("reverses").map(|item| item.as_text().map(str::to_owned)).transpose()?,
        error,
    })
}

/// A JSON value with the path it was found at, so a corrupt row says exactly what is wrong.
struct Reader<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Reader<'a> {
    fn root(value: &'a Value, path: &str) -> Reader<'a> {
        Reader { value, path: path.to_owned() }
    }

    fn problem(&self, text: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {text}", self.path))
    }

    fn corrupt(&self, name: &str, found: &str) -> StoreError {
        StoreError::Corrupt(format!("{}.{name}: unexpected {found:?}", self.path))
    }

    fn object(&self) -> Result<&'a Map<String, Value>, StoreError> {
        self.value.as_object().ok_or_else(|| self.problem("expected an object"))
    }

    fn field(&self, name: &str) -> Result<Reader<'a>, StoreError> {
        let value = self.object()?.get(name).ok_or_else(|| self.problem(&format!("{name} is missing")))?;
        Ok(Reader { value, path: format!("{}.{name}", self.path) })
    }

    /// A field that may be missing or null.
    fn optional(&self, name: &str) -> Option<Reader<'a>> {
        match self.value.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Reader { value, path: format!("{}.{name}", self.path) }),
        }
    }

    fn items(&self) -> Result<Vec<Reader<'a>>, StoreError> {
        let items = self.value.as_array().ok_or_else(|| self.problem("expected a list"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, value)| Reader { value, path: format!("{}[{index}]", self.path) })
            .collect())
    }

    fn as_text(&self) -> Result<&'a str, StoreError> {
        self.value.as_str().ok_or_else(|| self.problem("expected a string"))
    }

    fn text(&self, name: &str) -> Result<&'a str, StoreError> {
        self.field(name)?.as_text()
    }

    fn integer(&self, name: &str) -> Result<i64, StoreError> {
        let field = self.field(name)?;
        field.value.as_i64().ok_or_else(|| field.problem("expected a whole number"))
    }

    fn small(&self, name: &str) -> Result<u32, StoreError> {
        let field = self.field(name)?;
        field
            .value
            .as_u64()
            .and_then(|number| u32::try_from(number).ok())
            .ok_or_else(|| field.problem("expected a count"))
    }

    fn amount(&self, name: &str) -> Result<Amount, StoreError> {
        self.integer(name).map(Amount::from_minor)
    }

    fn parsed<T, E: std::fmt::Display>(&self, name: &str, parse: fn(&str) -> Result<T, E>) -> Result<T, StoreError> {
        let field = self.field(name)?;
        parse(field.as_text()?).map_err(|error| field.problem(&error.to_string()))
    }

    fn scheme(&self) -> Result<Scheme, StoreError> {
        let name = self.text("scheme")?;
        Scheme::parse(name).ok_or_else(|| self.corrupt("scheme", name))
    }

    fn fingerprint(&self) -> Result<LineFingerprint, StoreError> {
        Ok(LineFingerprint {
            service_date: self.parsed("service_date", Date::parse)?,
            provider_id: self.parsed("provider_id", ProviderId::parse)?,
            act: self.parsed("act", ActCode::parse)?,
            charged: self.amount("charged")?,
        })
    }

    fn reason(&self) -> Result<Reason, StoreError> {
        let group = self.text("group")?;
        Ok(Reason {
            group: ReasonGroup::parse(group).ok_or_else(|| self.corrupt("group", group))?,
            code: self.text("code")?.to_owned(),
            text: self.text("text")?.to_owned(),
        })
    }

    fn line(&self) -> Result<LineDecision, StoreError> {
        let compulsory = match self.optional("compulsory") {
            None => None,
            Some(part) => Some(CompulsoryPart {
                plan: part.parsed("plan", PlanName::parse)?,
                rate_bps: RateBps::new(part.integer("rate_bps")?)
                    .map_err(|error| part.problem(&format!("rate_bps out of range: {}", error.0)))?,
                gross: part.amount("gross")?,
                deductions: part
                    .field("deductions")?
                    .items()?
                    .iter()
                    .map(|item| Ok(Deduction { kind: item.text("kind")?.to_owned(), amount: item.amount("amount")? }))
                    .collect::<Result<_, StoreError>>()?,
                ceiling_refund: part.amount("ceiling_refund")?,
                paid: part.amount("paid")?,
            }),
        };
        let supplementary = match self.optional("supplementary") {
            None => None,
            Some(part) => Some(SupplementaryPart {
                product: part.parsed("product", PlanName::parse)?,
                paid: part.amount("paid")?,
            }),
        };
        let denied = self.field("denied")?;
        Ok(LineDecision {
            line: self.small("line")?,
            act: self.parsed("act", ActCode::parse)?,
            charged: self.amount("charged")?,
            eligible: self.amount("eligible")?,
            compulsory,
            supplementary,
            member_share: self.amount("member_share")?,
            reasons: self.field("reasons")?.items()?.iter().map(Reader::reason).collect::<Result<_, _>>()?,
            denied: denied.value.as_bool().ok_or_else(|| denied.problem("expected true or false"))?,
        })
    }

    fn payment(&self) -> Result<Payment, StoreError> {
        let payee = match self.text("payee")? {
            "provider" => Payee::Provider,
            "member" => Payee::Member,
            other => return Err(self.corrupt("payee", other)),
        };
        Ok(Payment {
            scheme: self.scheme()?,
            payee,
            payee_id: self.text("payee_id")?.to_owned(),
            amount: self.amount("amount")?,
        })
    }

    fn recovery(&self) -> Result<Recovery, StoreError> {
        let kind = match self.text("kind")? {
            "debt" => RecoveryKind::Debt,
            "recovered" => RecoveryKind::Recovered,
            other => return Err(self.corrupt("kind", other)),
        };
        Ok(Recovery {
            kind,
            scheme: self.scheme()?,
            member_id: self.text("member_id")?.to_owned(),
            amount: self.amount("amount")?,
        })
    }
}
