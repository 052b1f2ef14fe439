//! `decision/v1`: what a provider (and the member's statement) receives.
//!
//! Built field by field from the domain decision, so the wire format only changes here. Keys are
//! emitted in sorted order (serde_json's default map), which makes the bytes deterministic.

use serde_json::{Value, json};

use crate::decision::{CompulsoryPart, Decision, LineDecision, Payment, Reason, Recovery, SupplementaryPart};

/// The decision/v1 message for `decision`, with `audit: null` until a recorder sets it.
pub fn decision_to_json(decision: &Decision) -> Value {
    let mut message = json!({
        "schema": "decision/v1",
        "claim_id": decision.claim_id,
        "provider_id": decision.provider_id,
        "member_id": decision.member_id,
        "outcome": decision.outcome.name(),
        "currency": decision.currency.map(|currency| currency.code().to_owned()),
        "lines": decision.lines.iter().map(line_to_json).collect::<Vec<_>>(),
        "payments": decision.payments.iter().map(payment_to_json).collect::<Vec<_>>(),
        "recoveries": decision.recoveries.iter().map(recovery_to_json).collect::<Vec<_>>(),
        "reasons": decision.reasons.iter().map(reason_to_json).collect::<Vec<_>>(),
        "rules": decision.rules.as_ref().map(|rules| json!({"pack": rules.pack, "version": rules.version})),
        "audit": Value::Null,
    });
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
    json!({
        "line": line.line,
        "act": line.act.as_str(),
        "charged": line.charged.minor_units(),
        "eligible": line.eligible.minor_units(),
        "compulsory": line.compulsory.as_ref().map(compulsory_to_json),
        "supplementary": line.supplementary.as_ref().map(supplementary_to_json),
        "member_share": line.member_share.minor_units(),
        "denied": line.denied,
        "reasons": line.reasons.iter().map(reason_to_json).collect::<Vec<_>>(),
    })
}

fn compulsory_to_json(part: &CompulsoryPart) -> Value {
    json!({
        "plan": part.plan.as_str(),
        "rate_bps": part.rate_bps.bps(),
        "gross": part.gross.minor_units(),
        "deductions": part.deductions.iter()
            .map(|deduction| json!({"kind": deduction.kind, "amount": deduction.amount.minor_units()}))
            .collect::<Vec<_>>(),
        "ceiling_refund": part.ceiling_refund.minor_units(),
        "paid": part.paid.minor_units(),
    })
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
