//! `claim/v1` and `cancellation/v1`: parsing and validation of what providers send.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fields::{self, FieldResult, describe, problem};
use super::{Message, Rejection, RejectionKind};
use crate::claim::{Cancellation, Claim, ClaimLine, Scheme};
use crate::decision::{Reason, ReasonGroup};
use crate::ids::{ActCode, ClaimId, IdError, MemberId, ProviderId};
use crate::money::{Amount, Currency};

/// At most this many lines per claim: a hospital bill fits, a message built to exhaust the
/// engine does not.
pub const MAX_LINES: usize = 999;
/// At most this many units on one line.
pub const MAX_QUANTITY: i64 = 9_999;
/// At most this many minor units on one line (10 billion euros): far below `i64` overflow even
/// when a claim's lines are summed.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Messages larger than this are refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Parses one message from the claims queue.
#[expect(clippy::result_large_err, reason = "built once per bad message; boxing would only add an allocation")]
pub fn parse_message(text: &str) -> Result<Message, Rejection> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(unreadable(format!(
            "message of {} bytes is larger than the {} allowed",
            text.len(),
            MAX_MESSAGE_BYTES
        )));
    }
    let value = super::strict_json::from_str(text).map_err(|error| unreadable(format!("not valid JSON: {error}")))?;
    let Value::Object(object) = &value else {
        return Err(unreadable(format!("expected a JSON object, got {}", describe(&value))));
    };
    let ids = Ids::best_effort(object);
    let schema = match object.get("schema") {
        Some(Value::String(schema)) => schema.as_str(),
        Some(other) => {
            return Err(
                ids.reject(RejectionKind::UnknownSchema, format!("schema: expected a string, got {}", describe(other)))
            );
        }
        None => return Err(ids.reject(RejectionKind::UnknownSchema, "schema: is missing".to_owned())),
    };
    let parsed = match schema {
        "claim/v1" => parse_claim(object).map(Message::Claim),
        "cancellation/v1" => parse_cancellation(object).map(Message::Cancellation),
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(ids.reject(
                RejectionKind::UnknownSchema,
                format!("schema: unknown schema {shown:?} (expected claim/v1 or cancellation/v1)"),
            ));
        }
    };
    parsed.map_err(|error| ids.reject(RejectionKind::Invalid, error.to_string()))
}

/// The rejection of bytes that are not UTF-8 text, so cannot be a JSON message at all: one text
/// for the worker's dead letter and the embedded mode's decision.
pub fn not_utf8(error: &std::str::Utf8Error) -> Rejection {
    unreadable(format!("the message is not UTF-8 text (invalid byte at offset {})", error.valid_up_to()))
}

fn unreadable(text: String) -> Rejection {
    Rejection {
        claim_id: String::new(),
        provider_id: String::new(),
        member_id: String::new(),
        kind: RejectionKind::Unreadable,
        reason: Reason::new(ReasonGroup::Co, "16", text),
    }
}

/// Ids read without validation, only to address the answer. A character an id may not hold
/// (a control character, a NUL PostgreSQL cannot store, a bidirectional override that would
/// disguise a log line) is answered as `?`, and at most 64 characters are kept: the reason text
/// names the offending character, escaped.
struct Ids {
    claim_id: String,
    provider_id: String,
    member_id: String,
}

impl Ids {
    fn best_effort(object: &Map<String, Value>) -> Ids {
        let read = |name: &str| match object.get(name) {
            Some(Value::String(text)) => {
                text.chars().take(64).map(|c| if crate::ids::is_id_character(c) { c } else { '?' }).collect()
            }
            _ => String::new(),
        };
        Ids { claim_id: read("claim_id"), provider_id: read("provider_id"), member_id: read("member_id") }
    }

    fn reject(self, kind: RejectionKind, text: String) -> Rejection {
        Rejection {
            claim_id: self.claim_id,
            provider_id: self.provider_id,
            member_id: self.member_id,
            kind,
            reason: Reason::new(ReasonGroup::Co, "16", text),
        }
    }
}

fn id<T>(object: &Map<String, Value>, path: &str, name: &str, parse: fn(&str) -> Result<T, IdError>) -> FieldResult<T> {
    let text = fields::string(object, path, name)?;
    parse(text).or_else(|error| problem(&fields::join(path, name), error.to_string()))
}

fn parse_claim(object: &Map<String, Value>) -> FieldResult<Claim> {
    let claim_id = id(object, "", "claim_id", ClaimId::parse)?;
    let provider_id = id(object, "", "provider_id", ProviderId::parse)?;
    let member_id = id(object, "", "member_id", MemberId::parse)?;
    let submitted_on = fields::date(object, "", "submitted_on")?;
    let currency_code = fields::string(object, "", "currency")?;
    let currency = Currency::parse(currency_code).or_else(|error| problem("currency", error.to_string()))?;
    let third_party = parse_third_party(object)?;
    let raw_lines = fields::array(object, "", "lines")?;
    if raw_lines.is_empty() {
        return problem("lines", "a claim needs at least one line");
    }
    if raw_lines.len() > MAX_LINES {
        return problem("lines", format!("{} lines, at most {MAX_LINES} are allowed", raw_lines.len()));
    }
    let mut numbers = BTreeSet::new();
    let mut lines = Vec::with_capacity(raw_lines.len());
    for (index, raw_line) in raw_lines.iter().enumerate() {
        let path = format!("lines[{index}]");
        let line = parse_line(raw_line, &path)?;
        if !numbers.insert(line.number) {
            return problem(&format!("{path}.line"), format!("line number {} appears twice", line.number));
        }
        if line.service_date > submitted_on {
            return problem(
                &format!("{path}.service_date"),
                format!("service on {} is after the submission on {submitted_on}", line.service_date),
            );
        }
        lines.push(line);
    }
    Ok(Claim { claim_id, provider_id, member_id, submitted_on, currency, third_party, lines })
}

fn parse_third_party(object: &Map<String, Value>) -> FieldResult<BTreeSet<Scheme>> {
    let Some(value) = fields::optional(object, "third_party_payment") else {
        return Ok(BTreeSet::new());
    };
    let Value::Array(items) = value else {
        return problem("third_party_payment", format!("expected a list of schemes, got {}", describe(value)));
    };
    let mut schemes = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("third_party_payment[{index}]");
        let scheme = match item {
            Value::String(name) => Scheme::parse(name),
            _ => None,
        };
        match scheme {
            Some(scheme) if schemes.insert(scheme) => {}
            Some(scheme) => return problem(&path, format!("{} is listed twice", scheme.name())),
            None => {
                return problem(&path, format!("expected \"compulsory\" or \"supplementary\", got {}", describe(item)));
            }
        }
    }
    Ok(schemes)
}

fn parse_line(value: &Value, path: &str) -> FieldResult<ClaimLine> {
    let object = fields::object(value, path)?;
    let number = fields::integer(object, path, "line", 1..=i64::from(u16::MAX))?;
    let act = id(object, path, "act", ActCode::parse)?;
    let service_date = fields::date(object, path, "service_date")?;
    let quantity = fields::integer(object, path, "quantity", 1..=MAX_QUANTITY)?;
    let charged = fields::integer(object, path, "charged", 0..=MAX_AMOUNT)?;
    let attributes = fields::attributes(object, path, "attributes")?;
    Ok(ClaimLine {
        number: u32::try_from(number).unwrap_or(u32::MAX),
        act,
        service_date,
        quantity: u32::try_from(quantity).unwrap_or(u32::MAX),
        charged: Amount::from_minor(charged),
        attributes,
    })
}

fn parse_cancellation(object: &Map<String, Value>) -> FieldResult<Cancellation> {
    let provider_id = id(object, "", "provider_id", ProviderId::parse)?;
    let claim_id = id(object, "", "claim_id", ClaimId::parse)?;
    let reason = match fields::optional(object, "reason") {
        None => String::new(),
        Some(Value::String(text)) => text.chars().take(256).collect(),
        Some(other) => return problem("reason", format!("expected a string, got {}", describe(other))),
    };
    Ok(Cancellation { provider_id, claim_id, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"schema": "claim/v1", "claim_id": "C-1", "provider_id": "P-1", "member_id": "M-1",
        "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": ["compulsory"],
        "lines": [{"line": 1, "act": "G", "service_date": "2025-11-05", "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}]}"#;

    fn rejection_text(text: &str) -> String {
        match parse_message(text) {
            Err(rejection) => rejection.reason.text,
            Ok(message) => panic!("expected a rejection, got {message:?}"),
        }
    }

    fn with(field: &str, value: &str) -> String {
        let mut object: Value = serde_json::from_str(GOOD).unwrap();
        let replacement: Value = serde_json::from_str(value).unwrap();
        if let Some(line_field) = field.strip_prefix("lines.") {
            object["lines"][0][line_field] = replacement;
        } else {
            object[field] = replacement;
        }
        object.to_string()
    }

    #[test]
    fn parses_a_valid_claim() {
        let Ok(Message::Claim(claim)) = parse_message(GOOD) else { panic!("valid claim refused") };
        assert_eq!(claim.lines[0].charged, Amount::from_minor(3000));
        assert!(claim.third_party.contains(&Scheme::Compulsory));
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        assert_eq!(
            rejection_text(&with("lines.charged", "\"3000\"")),
            "lines[0].charged: expected a whole number, got the string \"3000\""
        );
        assert_eq!(
            rejection_text(&with("lines.charged", "30.5")),
            "lines[0].charged: expected a whole number, got 30.5"
        );
        assert_eq!(rejection_text(&with("lines.charged", "-1")), "lines[0].charged: -1 is outside 0..=1000000000000");
        assert_eq!(
            rejection_text(&with("lines.charged", "9223372036854775807")),
            "lines[0].charged: 9223372036854775807 is outside 0..=1000000000000"
        );
        assert_eq!(rejection_text(&with("lines.quantity", "0")), "lines[0].quantity: 0 is outside 1..=9999");
        assert_eq!(
            rejection_text(&with("lines.service_date", "\"2025-02-30\"")),
            "lines[0].service_date: \"2025-02-30\" is not a valid date (expected YYYY-MM-DD)"
        );
        assert_eq!(
            rejection_text(&with("lines.service_date", "\"2025-11-07\"")),
            "lines[0].service_date: service on 2025-11-07 is after the submission on 2025-11-06"
        );
        assert_eq!(rejection_text(&with("member_id", "null")), "member_id: is missing");
        assert_eq!(
            rejection_text(&with("currency", "\"ZZZ\"")),
            "currency: unknown currency \"ZZZ\" (known: EUR, XOF, XAF, USD, GBP, CHF, MAD, TND)"
        );
        assert!(rejection_text(&with("claim_id", "\"C\u{202e}1\"")).starts_with("claim_id: contains"));
    }

    #[test]
    fn a_rejection_answers_under_safe_ids_only() {
        // A NUL cannot be stored by PostgreSQL, an RTL override disguises logs: both become `?`.
        let rejection = parse_message(&with("claim_id", "\"C-\\u0000-\\u202e1\"")).unwrap_err();
        assert_eq!(rejection.claim_id, "C-?-?1");
        assert_eq!(rejection.reason.text, "claim_id: contains '\\0'; ids use ASCII letters, digits and - _ . : /");
        let long = parse_message(&with("claim_id", &format!("\"{}\"", "C".repeat(1000)))).unwrap_err();
        assert_eq!(long.claim_id, "C".repeat(64));
    }

    #[test]
    fn refuses_duplicate_line_numbers_and_unknown_schemas() {
        let mut object: Value = serde_json::from_str(GOOD).unwrap();
        let line = object["lines"][0].clone();
        object["lines"].as_array_mut().unwrap().push(line);
        assert_eq!(rejection_text(&object.to_string()), "lines[1].line: line number 1 appears twice");
        let unknown = parse_message(&with("schema", "\"claim/v9\"")).unwrap_err();
        assert_eq!(unknown.kind, RejectionKind::UnknownSchema);
        assert_eq!(unknown.claim_id, "C-1");
        assert_eq!(parse_message("{not json").unwrap_err().kind, RejectionKind::Unreadable);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse_message(&deep).unwrap_err().kind, RejectionKind::Unreadable);
    }
}
