//! The audit log's entry format, `audit/v1`, its hash chain, and the regulator's tools that need
//! no database: verifying a chain ([`verify`]), replaying entries ([`replay`]), the export file
//! ([`export`]) and the report of a replay ([`report`]).
//!
//! An entry records everything a regulator needs to re-derive a decision without trusting the
//! mutual's running system. It is an explicit, versioned format built field by field
//! ([`codec`]): not a serialization of domain types, so a refactor of the domain cannot change
//! what a regulator replays.
//!
//! # The entry, `audit/v1`
//!
//! One JSON object per line, with these fields:
//!
//! | field | what it holds |
//! |---|---|
//! | `format` | `"audit/v1"` |
//! | `seq` | 1, 2, 3… with no gap: the place in the log |
//! | `recorded_at` | when it was recorded (RFC 3339, UTC, the recorder's clock; informational but hashed) |
//! | `input` | the message (claim/v1, cancellation/v1, or whatever came) exactly as received, as a string |
//! | `registry` | the registry snapshot the decision read: `{"member", "household": [...], "provider"}`, members and providers in their registry-file form (with their coverages), `null` when unknown |
//! | `counters_before` | every counter value the decision read, before it: `[{"subject", "id", "counter", "period", "value"}]` (a counter not listed was zero) |
//! | `moves` | the counters it moved: `[{"subject", "id", "counter", "period", "before", "after"}]` |
//! | `history` | the member's lines already decided on the claim's service dates (duplicate detection): `[{"provider_id", "act", "service_date", "charged"}]` |
//! | `cancels` | `null`, or for a cancellation what it found to cancel: `{"decision": the claim's decision/v1 as it stood (without `audit`), or null when the claim was never decided, "moves": that decision's counter moves}` |
//! | `rules` | `{"pack", "version"}`: the rule pack and its content hash (`sha256:…`), as in the decision |
//! | `decision` | the decision/v1 message, without its `audit` field |
//! | `submitted_by` | only in entries of a message that came through the broker (the worker): the broker user that published it (its `user_id` property, which RabbitMQ checks against the connection's user), or `null` when the message had none; absent in embedded-mode entries and entries written before the field existed, where nobody was checked. A replay re-checks it against `registry.provider.submitters` |
//! | `prev_hash` | the previous entry's `hash` ([`GENESIS_HASH`], 64 zeros, for `seq` 1) |
//! | `hash` | `sha256(prev_hash ‖ canonical entry)` in lower-case hex |
//!
//! Amounts are integers in minor units, dates `YYYY-MM-DD`; there are no floats anywhere.
//!
//! # The chain
//!
//! `hash = hex(sha256(prev_hash as its 64 ASCII hex characters ‖ canonical bytes of the entry
//! without its "hash" field))`. The canonical bytes are compact JSON (no spaces) with object
//! keys sorted by their UTF-8 bytes, strings escaped as `serde_json` does (`"` as `\"`, `\` as
//! `\\`, control characters as `\n`, `\t`… or `\u00XX`, everything else as raw UTF-8) and integers
//! in plain decimal. A verifier parses each line and re-encodes it, so the hash does not depend
//! on the spacing or key order of the stored line, only on its content.
//!
//! Replaying an entry needs only the entry and the rule sources of its `rules.version`: a claim
//! is adjudicated with the recorded snapshot, counters and history; an invalid message is
//! rejected again; a cancellation is decided again from what it recorded it cancelled
//! ([`claims_domain::ledger::decide_cancellation`]). When the entry has `submitted_by`, a claim
//! or cancellation is first checked against the recorded provider's `submitters`
//! ([`claims_domain::contract::submitter_refusal`]), exactly as the worker checked it.
//!
//! `submitted_by` was added after the first entries were written: it is additive (present only
//! where a submitter was checked), so every chain written before it still verifies and replays
//! unchanged.

pub mod codec;
pub mod export;
pub mod impact;
pub mod replay;
pub mod report;
pub mod verify;

use std::io::Write as _;

use claims_domain::ledger::Effect;
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

/// Appends `content` at `head`: returns the entry and moves the head on. For a recorder with
/// no broker (embedded mode): the entry has no `submitted_by`, and a replay checks no submitter.
pub fn append(head: &mut ChainHead, content: &EntryContent<'_>) -> Value {
    let entry = unchained(head, content);
    chain(head, entry)
}

/// Appends `content` at `head` for a message that came through the broker, recording
/// `submitted_by`: the message's broker-validated `user_id`, or `null` when it had none. A
/// replay checks it against the `submitters` of the recorded provider, as the recorder did.
/// (The worker's store writes the same entries through [`prepare_submitted`], which is tested
/// against this one.)
pub fn append_submitted(head: &mut ChainHead, content: &EntryContent<'_>, submitted_by: Option<&str>) -> Value {
    let mut entry = unchained(head, content);
    entry["submitted_by"] = submitted_by.map_or(Value::Null, |user| Value::String(user.to_owned()));
    chain(head, entry)
}

/// The entry at `head`, without its `hash`.
fn unchained(head: &ChainHead, content: &EntryContent<'_>) -> Value {
    let [input, registry, counters_before, moves, history, cancels, rules, decision] =
        content_fields(content.input, content.effect, content.decision);
    codec::object([
        ("format", json!(FORMAT)),
        ("seq", json!(head.next_sequence)),
        ("recorded_at", json!(content.recorded_at)),
        input,
        registry,
        counters_before,
        moves,
        history,
        cancels,
        rules,
        decision,
        ("prev_hash", json!(head.previous_hash)),
    ])
}

/// The fields of an entry that do not depend on its place in the chain or on when it is
/// recorded.
fn content_fields(input: &str, effect: &Effect, decision: &Value) -> [(&'static str, Value); 8] {
    let decision = codec::without_audit(decision.clone());
    [
        ("input", json!(input)),
        ("registry", codec::registry_to_json(&effect.registry)),
        ("counters_before", codec::counters_to_json(&effect.counters_before)),
        ("moves", codec::moves_to_json(&effect.moves)),
        ("history", codec::history_to_json(&effect.history)),
        ("cancels", codec::cancels_to_json(effect.cancels.as_ref())),
        ("rules", decision.get("rules").cloned().unwrap_or(Value::Null)),
        ("decision", decision),
    ]
}

/// An entry of a message that came through the broker (as [`append_submitted`] makes), encoded
/// before its place in the chain is known: every field except `seq`, `recorded_at`,
/// `prev_hash` and `hash`. A recorder that holds a lock on its chain's head while it appends
/// (the worker's store) prepares entries before taking it; [`PreparedEntry::place`] then only
/// encodes those four fields and hashes.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    /// `(key, encoded value)` of the fields already known.
    known: Vec<(&'static str, String)>,
}

/// Prepares the entry [`append_submitted`] would append for this content.
pub fn prepare_submitted(input: &str, effect: &Effect, decision: &Value, submitted_by: Option<&str>) -> PreparedEntry {
    let submitted_by = submitted_by.map_or(Value::Null, |user| Value::String(user.to_owned()));
    let fields = content_fields(input, effect, decision).into_iter().chain([("submitted_by", submitted_by)]);
    PreparedEntry { known: fields.map(|(key, value)| (key, value.to_string())).collect() }
}

impl PreparedEntry {
    /// Places the entry at `head`, recorded at `recorded_at`, and moves the head on. Returns the
    /// entry as stored: exactly the text of the value [`append_submitted`] returns for the same
    /// content, head and time.
    pub fn place(&self, head: &mut ChainHead, recorded_at: &str) -> String {
        let placed = [
            ("format", Value::from(FORMAT).to_string()),
            ("seq", head.next_sequence.to_string()),
            ("recorded_at", Value::from(recorded_at).to_string()),
            ("prev_hash", Value::from(head.previous_hash.as_str()).to_string()),
        ];
        let mut fields: Vec<(&str, &str)> =
            self.known.iter().chain(&placed).map(|(key, value)| (*key, value.as_str())).collect();
        let unhashed = canonical_object(&mut fields);
        let mut hasher = Sha256::new();
        hasher.update(head.previous_hash.as_bytes());
        hasher.update(unhashed.as_bytes());
        let hash = hex::encode(hasher.finalize());
        let quoted = Value::from(hash.as_str()).to_string();
        fields.push(("hash", &quoted));
        let entry = canonical_object(&mut fields);
        head.next_sequence += 1;
        head.previous_hash = hash;
        entry
    }
}

/// The compact JSON object of already encoded values, keys sorted by their bytes (as a
/// `serde_json` map writes them). The keys are plain ASCII names: nothing to escape.
fn canonical_object(fields: &mut [(&str, &str)]) -> String {
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let length = fields.iter().map(|(key, value)| key.len() + value.len() + 4).sum::<usize>() + 2;
    let mut text = String::with_capacity(length);
    text.push('{');
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push('"');
        text.push_str(key);
        text.push_str("\":");
        text.push_str(value);
    }
    text.push('}');
    text
}

/// Hashes `entry` onto the chain: sets its `hash` and moves the head on.
fn chain(head: &mut ChainHead, mut entry: Value) -> Value {
    let hash = hash_of(&head.previous_hash, &entry);
    entry["hash"] = Value::String(hash.clone());
    head.next_sequence += 1;
    head.previous_hash = hash;
    entry
}

/// `sha256(prev_hash ‖ canonical(entry without "hash"))`, hex.
pub fn entry_hash(previous_hash: &str, entry: &Value) -> String {
    match entry {
        Value::Object(map) if map.contains_key("hash") => {
            let mut without_hash = map.clone();
            without_hash.remove("hash");
            hash_of(previous_hash, &Value::Object(without_hash))
        }
        other => hash_of(previous_hash, other),
    }
}

/// The hash of an entry that has no `hash` field.
fn hash_of(previous_hash: &str, entry: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    // Encoded straight into the hasher through a buffer: the same bytes as `canonical_bytes`,
    // without building them as one string, and without hashing a few bytes at a time.
    let mut writer = std::io::BufWriter::with_capacity(16 * 1024, HashWriter(&mut hasher));
    let _ = serde_json::to_writer(&mut writer, entry);
    let _ = writer.flush();
    drop(writer);
    hex::encode(hasher.finalize())
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compact JSON with object keys in sorted order (serde_json's default map is sorted).
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChainError {
    #[error("entry seq {sequence} (line {line}): not a JSON object: {problem}")]
    NotJson { sequence: u64, line: u64, problem: String },
    #[error("entry seq {expected} (line {line}): gap in sequence: found seq {found}")]
    Gap { line: u64, expected: u64, found: String },
    #[error("entry seq {sequence}: prev_hash does not match the previous entry's hash")]
    BrokenLink { sequence: u64 },
    #[error("entry seq {sequence}: hash mismatch (the entry was altered)")]
    HashMismatch { sequence: u64 },
}

/// One entry checked on its own: parsed, and its hash compared with the hash of its content
/// chained to its own `prev_hash`. No entry depends on another for this, so a long log is
/// checked on every core; [`link`] then checks the entries in order against the chain.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The fields the chain needs, or why the text is not a JSON object.
    fields: Result<LinkFields, String>,
    /// The entry (with its `hash`), when it is a JSON object; a caller may take it.
    pub value: Option<Value>,
}

#[derive(Debug, Clone)]
struct LinkFields {
    seq: Option<u64>,
    seq_text: String,
    prev_hash: Option<String>,
    hash: String,
    /// `hash` is the hash of the content chained to `prev_hash`.
    consistent: bool,
    format: Option<String>,
    rules_version: Option<String>,
}

impl Checked {
    /// The entry's `format`, if it reads as an entry.
    pub fn format(&self) -> Option<&str> {
        self.fields.as_ref().ok().and_then(|fields| fields.format.as_deref())
    }

    /// The entry's `rules.version`, if it reads as an entry.
    pub fn rules_version(&self) -> Option<&str> {
        self.fields.as_ref().ok().and_then(|fields| fields.rules_version.as_deref())
    }

    /// The entry's `seq`, if it reads as an entry.
    pub fn seq(&self) -> Option<u64> {
        self.fields.as_ref().ok().and_then(|fields| fields.seq)
    }

    /// Whether the entry is whole: its hash is its content's (chained to its own `prev_hash`).
    pub fn consistent(&self) -> bool {
        self.fields.as_ref().is_ok_and(|fields| fields.consistent)
    }
}

/// Checks one entry on its own (see [`Checked`]).
pub fn check(text: &[u8]) -> Checked {
    let mut entry: Value = match serde_json::from_slice(text) {
        Ok(entry) => entry,
        Err(error) => return Checked { fields: Err(error.to_string()), value: None },
    };
    let Some(object) = entry.as_object_mut() else {
        return Checked { fields: Err("expected an object".to_owned()), value: None };
    };
    let hash = match object.remove("hash") {
        Some(Value::String(hash)) => hash,
        _ => String::new(),
    };
    let prev_hash = object.get("prev_hash").and_then(Value::as_str).map(str::to_owned);
    let consistent = prev_hash.as_deref().is_some_and(|previous| hash_of(previous, &entry) == hash);
    let fields = LinkFields {
        seq: entry.get("seq").and_then(Value::as_u64),
        seq_text: entry.get("seq").map_or_else(|| "none".to_owned(), ToString::to_string),
        prev_hash,
        hash: hash.clone(),
        consistent,
        format: entry.get("format").and_then(Value::as_str).map(str::to_owned),
        rules_version: entry
            .get("rules")
            .and_then(|rules| rules.get("version"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    entry["hash"] = Value::String(hash);
    Checked { fields: Ok(fields), value: Some(entry) }
}

/// Checks a [`Checked`] entry against the head (no gap in `seq`, `prev_hash` is the previous
/// entry's hash, its own hash matches) and moves the head on.
pub fn link(head: &mut ChainHead, line_number: u64, checked: &Checked) -> Result<(), ChainError> {
    let fields = checked.fields.as_ref().map_err(|problem| ChainError::NotJson {
        sequence: head.next_sequence,
        line: line_number,
        problem: problem.clone(),
    })?;
    if fields.seq != Some(head.next_sequence) {
        return Err(ChainError::Gap {
            line: line_number,
            expected: head.next_sequence,
            found: fields.seq_text.clone(),
        });
    }
    if fields.prev_hash.as_deref() != Some(head.previous_hash.as_str()) {
        return Err(ChainError::BrokenLink { sequence: head.next_sequence });
    }
    if !fields.consistent {
        return Err(ChainError::HashMismatch { sequence: head.next_sequence });
    }
    head.next_sequence += 1;
    head.previous_hash.clone_from(&fields.hash);
    Ok(())
}

/// Checks one entry against the head and moves the head on.
pub fn verify_next(head: &mut ChainHead, line_number: u64, text: &str) -> Result<Value, ChainError> {
    let mut checked = check(text.as_bytes());
    link(head, line_number, &checked)?;
    Ok(checked.value.take().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect() -> Effect {
        Effect::nothing_read()
    }

    #[test]
    fn the_canonical_encoding_sorts_keys_and_has_no_spaces() {
        // Guards the workspace against serde_json's `preserve_order` feature, which would make
        // the bytes depend on the order fields were written in.
        let value: Value = serde_json::from_str("{\"b\": [1, {\"z\": \"\\n\", \"y\": null}], \"a\": -2}").unwrap();
        assert_eq!(canonical_bytes(&value), br#"{"a":-2,"b":[1,{"y":null,"z":"\n"}]}"#);
    }

    #[test]
    fn a_prepared_entry_is_placed_exactly_as_append_submitted_writes_it() {
        let effect = effect();
        let decisions = [
            json!({"schema": "decision/v1", "outcome": "rejected", "rules": {"pack": "fr", "version": "sha256:x"}}),
            // An `audit` field is left out of the entry; a decision without `rules` records null.
            json!({"schema": "decision/v1", "outcome": "complete", "audit": {"seq": 4, "hash": "ab"}, "z": [1, {}]}),
        ];
        let inputs = ["{\"claim\": 1}", "line\nbreak, \"quote\", \\ and \u{1} é 🦀", ""];
        let users = [None, Some("provider-\"7\""), Some("")];
        let times = ["2026-01-01T00:00:00.000001Z", "a \"time\""];
        let mut appended = ChainHead::default();
        let mut placed = ChainHead::default();
        let mut check = ChainHead::default();
        let mut count = 0;
        for decision in &decisions {
            for input in inputs {
                for user in users {
                    for recorded_at in times {
                        let content = EntryContent { recorded_at, input, effect: &effect, decision };
                        let want = append_submitted(&mut appended, &content, user).to_string();
                        let got = prepare_submitted(input, &effect, decision, user).place(&mut placed, recorded_at);
                        assert_eq!(got, want);
                        assert_eq!(placed, appended);
                        count += 1;
                        assert!(verify_next(&mut check, count, &got).is_ok(), "{got}");
                    }
                }
            }
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
