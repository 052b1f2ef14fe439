//! The audit log's entry format, `audit/v1`, and its hash chain.
//!
//! An entry records everything a regulator needs to re-derive a decision without trusting the
//! mutual's running system: the input message as received, the registry snapshot, the counters
//! before and their moves, the member's earlier lines (duplicate detection), the rule pack's
//! content hash and the decision. `hash = sha256(prev_hash ‖ canonical bytes of the entry
//! without its hash)`; the canonical bytes are compact JSON with keys in sorted order (no floats
//! anywhere, so the encoding is exact).
//!
//! This is an explicit, versioned format built field by field: it is not a serialization of
//! domain types, so a refactor of the domain cannot change what a regulator replays.

use claims_domain::accumulators::{CounterKey, CounterMove, Counters, Subject};
use claims_domain::ledger::Effect;
use claims_domain::pipeline::History;
use claims_domain::registry::RegistrySnapshot;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const FORMAT: &str = "audit/v1";
/// The `prev_hash` of the first entry of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The next position in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub next_sequence: u64,
    pub previous_hash: String,
}

impl Default for ChainHead {
    fn default() -> ChainHead {
        ChainHead { next_sequence: 1, previous_hash: GENESIS_HASH.to_owned() }
    }
}

/// What one entry records, before it is placed in the chain.
pub struct EntryContent<'a> {
    /// When it was recorded (RFC 3339, from the recorder's clock; informational, hashed).
    pub recorded_at: &'a str,
    /// The message exactly as received.
    pub input: &'a str,
    pub effect: &'a Effect,
    /// The decision/v1 message, without its `audit` field.
    pub decision: &'a Value,
}

/// Appends `content` at `head`: returns the entry and moves the head on.
pub fn append(head: &mut ChainHead, content: &EntryContent<'_>) -> Value {
    let mut decision = content.decision.clone();
    if let Some(object) = decision.as_object_mut() {
        object.remove("audit");
    }
    let mut entry = json!({
        "format": FORMAT,
        "seq": head.next_sequence,
        "recorded_at": content.recorded_at,
        "input": content.input,
        "registry": registry_to_json(&content.effect.registry),
        "counters_before": counters_to_json(&content.effect.counters_before),
        "moves": moves_to_json(&content.effect.moves),
        "history": history_to_json(&content.effect.history),
        "rules": decision.get("rules").cloned().unwrap_or(Value::Null),
        "decision": decision,
        "prev_hash": head.previous_hash,
    });
    let hash = entry_hash(&head.previous_hash, &entry);
    entry["hash"] = Value::String(hash.clone());
    head.next_sequence += 1;
    head.previous_hash = hash;
    entry
}

/// `sha256(prev_hash ‖ canonical(entry without "hash"))`, hex.
pub fn entry_hash(previous_hash: &str, entry: &Value) -> String {
    let mut without_hash = entry.clone();
    if let Some(object) = without_hash.as_object_mut() {
        object.remove("hash");
    }
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(canonical_bytes(&without_hash));
    hex::encode(hasher.finalize())
}

/// Compact JSON with object keys in sorted order (serde_json's default map is sorted).
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainError {
    #[error("entry {line}: not valid JSON: {problem}")]
    NotJson { line: u64, problem: String },
    #[error("entry {line}: expected sequence {expected}, found {found}")]
    Gap { line: u64, expected: u64, found: String },
    #[error("entry seq {sequence}: prev_hash does not match the previous entry's hash")]
    BrokenLink { sequence: u64 },
    #[error("entry seq {sequence}: hash mismatch (the entry was altered)")]
    HashMismatch { sequence: u64 },
}

/// Checks one entry against the head and moves the head on.
pub fn verify_next(head: &mut ChainHead, line_number: u64, text: &str) -> Result<Value, ChainError> {
    let entry: Value = serde_json::from_str(text)
        .map_err(|error| ChainError::NotJson { line: line_number, problem: error.to_string() })?;
    let sequence = entry.get("seq").and_then(Value::as_u64);
    if sequence != Some(head.next_sequence) {
        return Err(ChainError::Gap {
            line: line_number,
            expected: head.next_sequence,
            found: entry.get("seq").map_or_else(|| "none".to_owned(), ToString::to_string),
        });
    }
    if entry.get("prev_hash").and_then(Value::as_str) != Some(head.previous_hash.as_str()) {
        return Err(ChainError::BrokenLink { sequence: head.next_sequence });
    }
    let recorded = entry.get("hash").and_then(Value::as_str).unwrap_or_default().to_owned();
    if entry_hash(&head.previous_hash, &entry) != recorded {
        return Err(ChainError::HashMismatch { sequence: head.next_sequence });
    }
    head.next_sequence += 1;
    head.previous_hash = recorded;
    Ok(entry)
}

fn registry_to_json(snapshot: &RegistrySnapshot) -> Value {
    json!({
        "member": snapshot.member.as_ref().map(claims_domain::contract::member_to_json),
        "household": snapshot.household.iter().map(claims_domain::contract::member_to_json).collect::<Vec<_>>(),
        "provider": snapshot.provider.as_ref().map(claims_domain::contract::provider_to_json),
    })
}

fn key_to_json(key: &CounterKey) -> Value {
    let (subject, id) = match &key.subject {
        Subject::Member(member) => ("member", member.as_str()),
        Subject::Household(household) => ("household", household.as_str()),
    };
    json!({"subject": subject, "id": id, "counter": key.counter, "period": key.period})
}

fn counters_to_json(counters: &Counters) -> Value {
    Value::Array(
        counters
            .iter()
            .map(|(key, value)| {
                let mut item = key_to_json(key);
                item["value"] = json!(value);
                item
            })
            .collect(),
    )
}

fn moves_to_json(moves: &[CounterMove]) -> Value {
    Value::Array(
        moves
            .iter()
            .map(|counter_move| {
                let mut item = key_to_json(&counter_move.key);
                item["before"] = json!(counter_move.before);
                item["after"] = json!(counter_move.after);
                item
            })
            .collect(),
    )
}

fn history_to_json(history: &History) -> Value {
    Value::Array(
        history
            .iter()
            .map(|fingerprint| {
                json!({
                    "provider_id": fingerprint.provider_id.as_str(),
                    "act": fingerprint.act.as_str(),
                    "service_date": fingerprint.service_date.to_string(),
                    "charged": fingerprint.charged.minor_units(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use claims_domain::registry::RegistrySnapshot;

    fn effect() -> Effect {
        Effect {
            registry: RegistrySnapshot { member: None, household: Vec::new(), provider: None },
            counters_before: Counters::new(),
            history: History::default(),
            moves: Vec::new(),
        }
    }

    #[test]
    fn a_chain_verifies_and_any_change_breaks_it() {
        let mut head = ChainHead::default();
        let effect = effect();
        let decision =
            json!({"schema": "decision/v1", "outcome": "rejected", "rules": {"pack": "fr", "version": "sha256:x"}});
        let lines: Vec<String> = (0..3)
            .map(|index| {
                let input = format!("{{\"claim\": {index}}}");
                append(
                    &mut head,
                    &EntryContent {
                        recorded_at: "2026-01-01T00:00:00Z",
                        input: &input,
                        effect: &effect,
                        decision: &decision,
                    },
                )
                .to_string()
            })
            .collect();
        let mut check = ChainHead::default();
        for (index, line) in lines.iter().enumerate() {
            assert!(verify_next(&mut check, index as u64 + 1, line).is_ok());
        }
        let altered = lines[1].replace("{\\\"claim\\\": 1}", "{\\\"claim\\\": 9}");
        assert_ne!(altered, lines[1]);
        let mut check = ChainHead::default();
        verify_next(&mut check, 1, &lines[0]).unwrap();
        assert_eq!(verify_next(&mut check, 2, &altered), Err(ChainError::HashMismatch { sequence: 2 }));
        let mut check = ChainHead::default();
        verify_next(&mut check, 1, &lines[0]).unwrap();
        assert!(matches!(verify_next(&mut check, 2, &lines[2]), Err(ChainError::Gap { .. })));
    }
}
