//! Re-deriving a recorded decision from its entry alone, and comparing the two field by field.
//!
//! Each entry is replayed on its own, from what it recorded: a claim/v1 input is adjudicated
//! with the recorded registry snapshot, the recorded counters as the counters before and the
//! recorded history; an input that is not a valid message is rejected again; a cancellation is
//! decided again from what it recorded it cancelled and the recorded counters. An entry that
//! records `submitted_by` (the worker's) first has its submitter checked against the recorded
//! provider's `submitters`, as the worker did: a refused submitter is rejected again. Pure: no
//! I/O, no clock, so the same entry and pack always replay the same.
//!
//! A *what-if* replay gives every entry another pack: each is re-decided from its own recorded
//! inputs (the counters as they really were then), so the effect of a rule change on the
//! counters of later claims is not carried from one entry to the next, and a reversal negates
//! the decision as recorded.

use claims_domain::contract::{FieldError, Message, Reader, decision_to_json, parse_message, submitter_refusal};
use claims_domain::decision::RulesVersion;
use claims_domain::ledger::decide_cancellation;
use claims_domain::pipeline::{self, Inputs};
use claims_domain::rules::RulePack;
use serde_json::{Map, Value};

use crate::codec;

/// An audit entry read for a replay. The parts the replay compares with are kept as recorded
/// (JSON); the inputs are decoded when the entry is replayed.
#[derive(Debug, Clone)]
pub struct RecordedEntry {
    pub seq: u64,
    pub input: String,
    pub rules: RulesVersion,
    /// The decision/v1 as recorded (without `audit`).
    pub decision: Value,
    pub moves: Value,
    pub counters_before: Value,
    /// `None`: no submitter was checked (embedded mode, older entries); `Some(None)`: the
    /// message came through the broker without a `user_id`.
    pub submitted_by: Option<Option<String>>,
    registry: Value,
    history: Value,
    cancels: Value,
}

impl RecordedEntry {
    /// Reads an entry (as `verify::Verifier` returns it, after its hash was checked).
    pub fn from_json(entry: Value) -> Result<RecordedEntry, FieldError> {
        let root = Reader::root(&entry, "entry");
        let seq = root.field("seq")?.value().as_u64().ok_or_else(|| root.problem("seq: expected a count"))?;
        let input = root.text("input")?.to_owned();
        let rules_field = root.field("rules")?;
        let rules = RulesVersion {
            pack: rules_field.text("pack")?.to_owned(),
            version: rules_field.text("version")?.to_owned(),
        };
        let decision_rules = root.field("decision")?.field("rules")?;
        if decision_rules.value() != rules_field.value() {
            return Err(decision_rules.problem("differs from the entry's rules"));
        }
        let submitted_by = codec::submitted_by_from_json(&entry)?;
        let Value::Object(mut map) = entry else { return Err(root.problem("expected an object")) };
        let mut take = |name: &str| map.remove(name).unwrap_or(Value::Null);
        Ok(RecordedEntry {
            seq,
            input,
            rules,
            decision: take("decision"),
            moves: take("moves"),
            counters_before: take("counters_before"),
            submitted_by,
            registry: take("registry"),
            history: take("history"),
            cancels: take("cancels"),
        })
    }

    /// `provider_id/claim_id` of the recorded decision, for reports.
    pub fn claim_label(&self) -> String {
        let text = |name: &str| self.decision.get(name).and_then(Value::as_str).unwrap_or("?").to_owned();
        format!("{}/{}", text("provider_id"), text("claim_id"))
    }
}

/// What a replay decided, in the recorded forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// decision/v1 without `audit`.
    pub decision: Value,
    pub moves: Value,
    /// The counter values the replay read, as `counters_before` records them.
    pub counters_read: Value,
}

/// Re-decides `entry` with `pack`. An error means the entry's recorded inputs cannot be read
/// (the decision itself never fails: a rule failure is an `error` decision).
pub fn replay(entry: &RecordedEntry, pack: &dyn RulePack) -> Result<Replayed, FieldError> {
    let settings = pack.settings();
    let refused = |decision: &claims_domain::decision::Decision| Replayed {
        decision: codec::without_audit(decision_to_json(decision)),
        moves: Value::Array(Vec::new()),
        counters_read: Value::Array(Vec::new()),
    };
    let message = parse_message(&entry.input);
    if let (Ok(message), Some(submitted_by)) = (&message, &entry.submitted_by) {
        let registry = codec::registry_from_json(&entry.registry)?;
        if let Some(decision) =
            submitter_refusal(message, submitted_by.as_deref(), registry.provider.as_ref(), settings)
        {
            return Ok(refused(&decision));
        }
    }
    let adjudication = match message {
        Err(rejection) => return Ok(refused(&pipeline::rejected_message(&rejection, settings))),
        Ok(Message::Claim(claim)) => {
            let registry = codec::registry_from_json(&entry.registry)?;
            let counters = codec::counters_from_json(&entry.counters_before)?;
            let history = codec::history_from_json(&entry.history)?;
            pipeline::adjudicate(
                &Inputs { claim: &claim, registry: &registry, counters: &counters, history: &history },
                pack,
            )
        }
        Ok(Message::Cancellation(cancellation)) => {
            let cancelled = codec::cancels_from_json(&entry.cancels)?.ok_or_else(|| FieldError {
                path: "cancels".to_owned(),
                problem: "a cancellation's entry must record what it cancelled".to_owned(),
            })?;
            let counters = codec::counters_from_json(&entry.counters_before)?;
            decide_cancellation(&cancellation, &cancelled, &counters, settings)
        }
    };
    Ok(Replayed {
        decision: codec::without_audit(decision_to_json(&adjudication.decision)),
        moves: codec::moves_to_json(&adjudication.moves),
        counters_read: codec::counters_to_json(&adjudication.counters_read),
    })
}

/// One field that differs: its path (`decision.lines[0].compulsory.paid`) and both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub recorded: String,
    pub replayed: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: recorded {}, replayed {}", self.path, self.recorded, self.replayed)
    }
}

/// Every field where the replay differs from the record, decision first, then the counter
/// moves, then (`what_if` false) the counter values read. A what-if replay does not compare
/// `rules` (another pack, by definition) nor the counters read (other rules read others).
pub fn compare(entry: &RecordedEntry, replayed: &Replayed, what_if: bool) -> Vec<Difference> {
    let mut differences = Vec::new();
    let aligned = aligned_script_position(&entry.decision, &replayed.decision);
    let replayed_decision = aligned.as_ref().unwrap_or(&replayed.decision);
    match (&entry.decision, replayed_decision) {
        (Value::Object(recorded), Value::Object(again)) if what_if => {
            let strip = |map: &Map<String, Value>| {
                let mut map = map.clone();
                map.remove("rules");
                Value::Object(map)
            };
            diff("decision", &strip(recorded), &strip(again), &mut differences);
        }
        (recorded, again) => diff("decision", recorded, again, &mut differences),
    }
    diff("moves", &entry.moves, &replayed.moves, &mut differences);
    if !what_if {
        diff("counters_before", &entry.counters_before, &replayed.counters_read, &mut differences);
    }
    differences
}

/// A rule failure names its script under the folder the pack was loaded from
/// (`/srv/rules/fr/plans/rg.rhai`), which is not part of the pack's content. A replay loads
/// packs with no folder, so its failures name scripts by their path in the pack
/// (`plans/rg.rhai`): when the recorded failure names that same script under some folder, the
/// replayed decision is given the recorded name, so only a real difference is reported.
fn aligned_script_position(recorded: &Value, replayed: &Value) -> Option<Value> {
    let recorded_file = recorded.get("error")?.get("file")?.as_str()?;
    let replayed_file = replayed.get("error")?.get("file")?.as_str()?;
    if recorded_file == replayed_file || !recorded_file.ends_with(&format!("/{replayed_file}")) {
        return None;
    }
    let mut aligned = replayed.clone();
    let error = aligned.get_mut("error")?;
    if let Some(position) = error.get("position").and_then(Value::as_str)
        && let Some(rest) = position.strip_prefix(replayed_file)
    {
        error["position"] = Value::String(format!("{recorded_file}{rest}"));
    }
    error["file"] = Value::String(recorded_file.to_owned());
    Some(aligned)
}

/// Appends the differences between `recorded` and `replayed` under `path`, in document order.
fn diff(path: &str, recorded: &Value, replayed: &Value, out: &mut Vec<Difference>) {
    // Equal subtrees (nearly all of them) cost one comparison and no path.
    if recorded == replayed {
        return;
    }
    match (recorded, replayed) {
        (Value::Object(left), Value::Object(right)) => {
            let mut keys: Vec<&String> = left.keys().chain(right.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = format!("{path}.{key}");
                match (left.get(key), right.get(key)) {
                    (Some(left), Some(right)) => diff(&child, left, right, out),
                    (left, right) => out.push(Difference {
                        path: child,
                        recorded: left.map_or_else(|| "(absent)".to_owned(), short),
                        replayed: right.map_or_else(|| "(absent)".to_owned(), short),
                    }),
                }
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            for (index, (left, right)) in left.iter().zip(right).enumerate() {
                diff(&format!("{path}[{index}]"), left, right, out);
            }
            if left.len() != right.len() {
                out.push(Difference {
                    path: format!("{path}.length"),
                    recorded: left.len().to_string(),
                    replayed: right.len().to_string(),
                });
            }
        }
        (left, right) => out.push(Difference { path: path.to_owned(), recorded: short(left), replayed: short(right) }),
    }
}

/// A value as a report shows it: in full when short, cut otherwise.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 120 { text } else { format!("{}…", text.chars().take(120).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_named_by_path_in_document_order() {
        let mut out = Vec::new();
        diff(
            "decision",
            &json!({"lines": [{"paid": 1900, "act": "G"}], "outcome": "complete"}),
            &json!({"lines": [{"paid": 2100, "act": "G"}, {"paid": 1}], "outcome": "complete", "x": 1}),
            &mut out,
        );
        let texts: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "decision.lines[0].paid: recorded 1900, replayed 2100",
                "decision.lines.length: recorded 1, replayed 2",
                "decision.x: recorded (absent), replayed 1",
            ]
        );
    }
}
