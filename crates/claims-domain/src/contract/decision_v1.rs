//! `decision/v1`: what a provider (and the member's statement) receives.
//!
//! Built field by field from the domain decision, so the wire format only changes here. Keys are
//! emitted in sorted order (serde_json's default map), which makes the bytes deterministic.
//! [`decision_from_json`] is its exact inverse: a cancellation reverses a stored decision and a
//! regulator's replay reverses a recorded one, so both must read it as it was written.

use serde_json::{Value, json};

use super::fields::FieldError;
use super::reader::Reader;
use crate::claim::Scheme;
use crate::decision::{
    CompulsoryPart, Decision, Deduction, LineDecision, Outcome, Payee, Payment, Reason, ReasonGroup, Recovery,
    RecoveryKind, RuleFailure, RulesVersion, SupplementaryPart,
};
use crate::ids::{ActCode, PlanName};
use crate::money::{Amount, Currency, RateBps};

/// A JSON object of these members. `json!` copies every nested `Value` it is given through
/// serde's serializer (`to_value`); building decisions and audit entries that way was a
/// measurable share of the worker's CPU, so nested values are moved in instead.
fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(members.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
}

/// The decision/v1 message for `decision`, with `audit: null` until a recorder sets it.
pub fn decision_to_json(decision: &Decision) -> Value {
    let mut message = object([
        ("schema", json!("decision/v1")),
        ("claim_id", json!(decision.claim_id)),
        ("provider_id", json!(decision.provider_id)),
        ("member_id", json!(decision.member_id)),
        ("outcome", json!(decision.outcome.name())),
        ("currency", json!(decision.currency.map(|currency| currency.code().to_owned()))),
        ("lines", Value::Array(decision.lines.iter().map(line_to_json).collect())),
        ("payments", Value::Array(decision.payments.iter().map(payment_to_json).collect())),
        ("recoveries", Value::Array(decision.recoveries.iter().map(recovery_to_json).collect())),
        ("reasons", Value::Array(decision.reasons.iter().map(reason_to_json).collect())),
        (
            "rules",
            decision.rules.as_ref().map_or(Value::Null, |rules| json!({"pack": rules.pack, "version": rules.version})),
        ),
        ("audit", Value::Null),
    ]);
    if let Some(reversed) = &decision.reverses {
        message["reverses"] = json!(reversed);
    }
    if let Some(error) = &decision.error {
        message["error"] = json!({
            "file": error.file, "line": error.line, "column": error.column, "message": error.message,
            "position": error.to_string(),
        });
    }
    message
}

/// Sets the `audit` field once the decision has its place in the audit log.
pub fn with_audit(mut message: Value, sequence: u64, hash: &str) -> Value {
    message["audit"] = json!({"seq": sequence, "hash": hash});
    message
}

fn line_to_json(line: &LineDecision) -> Value {
    object([
        ("line", json!(line.line)),
        ("act", json!(line.act.as_str())),
        ("charged", json!(line.charged.minor_units())),
        ("eligible", json!(line.eligible.minor_units())),
        ("compulsory", line.compulsory.as_ref().map_or(Value::Null, compulsory_to_json)),
        ("supplementary", line.supplementary.as_ref().map_or(Value::Null, supplementary_to_json)),
        ("member_share", json!(line.member_share.minor_units())),
        ("denied", json!(line.denied)),
        ("reasons", Value::Array(line.reasons.iter().map(reason_to_json).collect())),
    ])
}

fn compulsory_to_json(part: &CompulsoryPart) -> Value {
    let deductions = part
        .deductions
        .iter()
        .map(|deduction| json!({"kind": deduction.kind, "amount": deduction.amount.minor_units()}))
        .collect();
    object([
        ("plan", json!(part.plan.as_str())),
        ("rate_bps", json!(part.rate_bps.bps())),
        ("gross", json!(part.gross.minor_units())),
        ("deductions", Value::Array(deductions)),
        ("ceiling_refund", json!(part.ceiling_refund.minor_units())),
        ("paid", json!(part.paid.minor_units())),
    ])
}

fn supplementary_to_json(part: &SupplementaryPart) -> Value {
    json!({"product": part.product.as_str(), "paid": part.paid.minor_units()})
}

fn reason_to_json(reason: &Reason) -> Value {
    json!({"group": reason.group.name(), "code": reason.code, "text": reason.text})
}

fn payment_to_json(payment: &Payment) -> Value {
    json!({
        "scheme": payment.scheme.name(),
        "payee": payment.payee.name(),
        "payee_id": payment.payee_id,
        "amount": payment.amount.minor_units(),
    })
}

fn recovery_to_json(recovery: &Recovery) -> Value {
    json!({
        "kind": recovery.kind.name(),
        "scheme": recovery.scheme.name(),
        "member_id": recovery.member_id,
        "amount": recovery.amount.minor_units(),
    })
}

/// Reads a decision/v1 message (as [`decision_to_json`] writes it) back into the domain
/// decision; `audit` and `schema` are ignored. Errors name the field (`decision.lines[0].charged`).
pub fn decision_from_json(value: &Value) -> Result<Decision, FieldError> {
    let root = Reader::root(value, "decision");
    let currency = match root.optional("currency") {
        None => None,
        Some(item) => Some(Currency::parse(item.as_text()?).map_err(|error| item.problem(error.to_string()))?),
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
        outcome: root.named("outcome", Outcome::parse)?,
        currency,
        lines: root.field("lines")?.items()?.iter().map(line_from_json).collect::<Result<_, _>>()?,
        payments: root.field("payments")?.items()?.iter().map(payment_from_json).collect::<Result<_, _>>()?,
        recoveries: root.field("recoveries")?.items()?.iter().map(recovery_from_json).collect::<Result<_, _>>()?,
        reasons: reasons_from_json(&root)?,
        rules,
        reverses: root.optional("reverses").map(|item| item.as_text().map(str::to_owned)).transpose()?,
        error,
    })
}

fn amount(reader: &Reader<'_>, name: &str) -> Result<Amount, FieldError> {
    reader.integer(name).map(Amount::from_minor)
}

fn reasons_from_json(reader: &Reader<'_>) -> Result<Vec<Reason>, FieldError> {
    reader
        .field("reasons")?
        .items()?
        .iter()
        .map(|reason| {
            Ok(Reason {
                group: reason.named("group", ReasonGroup::parse)?,
                code: reason.text("code")?.to_owned(),
                text: reason.text("text")?.to_owned(),
            })
        })
        .collect()
}

fn line_from_json(line: &Reader<'_>) -> Result<LineDecision, FieldError> {
    let compulsory = match line.optional("compulsory") {
        None => None,
        Some(part) => Some(CompulsoryPart {
            plan: part.parsed("plan", PlanName::parse)?,
            rate_bps: RateBps::new(part.integer("rate_bps")?)
                .map_err(|error| part.problem(format!("rate_bps out of range: {}", error.0)))?,
            gross: amount(&part, "gross")?,
            deductions: part
                .field("deductions")?
                .items()?
                .iter()
                .map(|item| Ok(Deduction { kind: item.text("kind")?.to_owned(), amount: amount(item, "amount")? }))
                .collect::<Result<_, FieldError>>()?,
            ceiling_refund: amount(&part, "ceiling_refund")?,
            paid: amount(&part, "paid")?,
        }),
    };
    let supplementary = match line.optional("supplementary") {
        None => None,
        Some(part) => {
            Some(SupplementaryPart { product: part.parsed("product", PlanName::parse)?, paid: amount(&part, "paid")? })
        }
    };
    Ok(LineDecision {
        line: line.small("line")?,
        act: line.parsed("act", ActCode::parse)?,
        charged: amount(line, "charged")?,
        eligible: amount(line, "eligible")?,
        compulsory,
        supplementary,
        member_share: amount(line, "member_share")?,
        reasons: reasons_from_json(line)?,
        denied: line.boolean("denied")?,
    })
}

fn payee(name: &str) -> Option<Payee> {
    [Payee::Provider, Payee::Member].into_iter().find(|payee| payee.name() == name)
}

fn recovery_kind(name: &str) -> Option<RecoveryKind> {
    [RecoveryKind::Debt, RecoveryKind::Recovered].into_iter().find(|kind| kind.name() == name)
}

fn payment_from_json(payment: &Reader<'_>) -> Result<Payment, FieldError> {
    Ok(Payment {
        scheme: payment.named("scheme", Scheme::parse)?,
        payee: payment.named("payee", payee)?,
        payee_id: payment.text("payee_id")?.to_owned(),
        amount: amount(payment, "amount")?,
    })
}

fn recovery_from_json(recovery: &Reader<'_>) -> Result<Recovery, FieldError> {
    Ok(Recovery {
        kind: recovery.named("kind", recovery_kind)?,
        scheme: recovery.named("scheme", Scheme::parse)?,
        member_id: recovery.text("member_id")?.to_owned(),
        amount: amount(recovery, "amount")?,
    })
}
