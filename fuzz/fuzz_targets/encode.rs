//! claim/v1 and cancellation/v1 written back to JSON, field by field: the contract has no
//! encoder (providers write claims, the engine only reads them), so the fuzz targets carry their
//! own to check that what the parser accepted says the same thing when written again.

use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::{Cancellation, Claim};
use serde_json::{Map, Value, json};

pub fn claim_to_json(claim: &Claim) -> Value {
    let lines: Vec<Value> = claim
        .lines
        .iter()
        .map(|line| {
            json!({
                "line": line.number,
                "act": line.act.as_str(),
                "service_date": line.service_date.to_string(),
                "quantity": line.quantity,
                "charged": line.charged.minor_units(),
                "attributes": attributes_to_json(&line.attributes),
            })
        })
        .collect();
    let third_party: Vec<&str> = claim.third_party.iter().map(|scheme| scheme.name()).collect();
    json!({
        "schema": "claim/v1",
        "claim_id": claim.claim_id.as_str(),
        "provider_id": claim.provider_id.as_str(),
        "member_id": claim.member_id.as_str(),
        "submitted_on": claim.submitted_on.to_string(),
        "currency": claim.currency.code(),
        "third_party_payment": third_party,
        "lines": lines,
    })
}

pub fn cancellation_to_json(cancellation: &Cancellation) -> Value {
    json!({
        "schema": "cancellation/v1",
        "provider_id": cancellation.provider_id.as_str(),
        "claim_id": cancellation.claim_id.as_str(),
        "reason": cancellation.reason,
    })
}

fn attributes_to_json(attributes: &Attributes) -> Value {
    let map: Map<String, Value> = attributes
        .iter()
        .map(|(key, value)| {
            let value = match value {
                AttributeValue::Bool(flag) => Value::Bool(*flag),
                AttributeValue::Integer(integer) => Value::from(*integer),
                AttributeValue::Text(text) => Value::String(text.clone()),
            };
            (key.clone(), value)
        })
        .collect();
    Value::Object(map)
}
