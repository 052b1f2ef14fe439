//! The parts of an audit/v1 entry, written and read back: the registry snapshot, counter
//! values, counter moves, line fingerprints (duplicate-detection history) and what a
//! cancellation cancels. The one place these shapes are defined: the PostgreSQL store keeps
//! moves and fingerprints in the same shapes, so a `claims` row and its audit entry compare by
//! eye.
//!
//! Readers are exact: a missing field or a field of the wrong type is an error naming its path
//! (`moves[2].before: expected a whole number`), never a default.

use claims_domain::accumulators::{CounterKey, CounterMove, Counters, Subject};
use claims_domain::contract::{
    FieldError, Reader, decision_from_json, decision_to_json, member_from_json, member_to_json, provider_from_json,
    provider_to_json,
};
use claims_domain::date::Date;
use claims_domain::ids::{ActCode, HouseholdId, MemberId, ProviderId};
use claims_domain::ledger::Cancelled;
use claims_domain::money::Amount;
use claims_domain::pipeline::{History, LineFingerprint};
use claims_domain::registry::RegistrySnapshot;
use serde_json::{Value, json};

/// A JSON object of these members. `json!` copies every nested `Value` it is given through
/// serde's serializer (`to_value`); audit entries are large trees, so their parts are moved in.
pub(crate) fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(members.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
}

/// `("member" | "household", id)`: how a counter's subject is written.
pub fn subject_parts(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::Member(member) => ("member", member.as_str()),
        Subject::Household(household) => ("household", household.as_str()),
    }
}

/// The inverse of [`subject_parts`]; the error says what is wrong (`"household" id "": is empty`).
pub fn subject_from_parts(kind: &str, id: &str) -> Result<Subject, String> {
    let bad_id = |error: claims_domain::ids::IdError| format!("{kind} id {id:?}: {error}");
    match kind {
        "member" => MemberId::parse(id).map(Subject::Member).map_err(bad_id),
        "household" => HouseholdId::parse(id).map(Subject::Household).map_err(bad_id),
        other => Err(format!("subject {other:?} is neither member nor household")),
    }
}

/// `{"member": …|null, "household": [...], "provider": …|null}`, members and providers in their
/// registry-file form.
pub fn registry_to_json(snapshot: &RegistrySnapshot) -> Value {
    object([
        ("member", snapshot.member.as_ref().map_or(Value::Null, member_to_json)),
        ("household", Value::Array(snapshot.household.iter().map(member_to_json).collect())),
        ("provider", snapshot.provider.as_ref().map_or(Value::Null, provider_to_json)),
    ])
}

pub fn registry_from_json(value: &Value) -> Result<RegistrySnapshot, FieldError> {
    let root = Reader::root(value, "registry");
    let member = match root.optional("member") {
        None => None,
        Some(member) => Some(member_from_json(member.value()).map_err(|error| member.problem(error.to_string()))?),
    };
    let household = root
        .field("household")?
        .items()?
        .iter()
        .map(|member| member_from_json(member.value()).map_err(|error| member.problem(error.to_string())))
        .collect::<Result<_, _>>()?;
    let provider = match root.optional("provider") {
        None => None,
        Some(provider) => {
            Some(provider_from_json(provider.value()).map_err(|error| provider.problem(error.to_string()))?)
        }
    };
    Ok(RegistrySnapshot { member, household, provider })
}

fn key_to_json(key: &CounterKey) -> Value {
    let (subject, id) = subject_parts(&key.subject);
    json!({"subject": subject, "id": id, "counter": key.counter, "period": key.period})
}

fn key_from_json(item: &Reader<'_>) -> Result<CounterKey, FieldError> {
    let subject = subject_from_parts(item.text("subject")?, item.text("id")?).map_err(|error| item.problem(error))?;
    Ok(CounterKey { subject, counter: item.text("counter")?.to_owned(), period: item.text("period")?.to_owned() })
}

/// `[{subject, id, counter, period, value}]`: counter values (absent ones are zero).
pub fn counters_to_json(counters: &Counters) -> Value {
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

pub fn counters_from_json(value: &Value) -> Result<Counters, FieldError> {
    let mut counters = Counters::new();
    for item in Reader::root(value, "counters_before").items()? {
        counters.set(key_from_json(&item)?, item.integer("value")?);
    }
    Ok(counters)
}

/// `[{subject, id, counter, period, before, after}]`.
pub fn moves_to_json(moves: &[CounterMove]) -> Value {
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

pub fn moves_from_json(value: &Value) -> Result<Vec<CounterMove>, FieldError> {
    moves_at(&Reader::root(value, "moves"))
}

fn moves_at(reader: &Reader<'_>) -> Result<Vec<CounterMove>, FieldError> {
    reader
        .items()?
        .iter()
        .map(|item| {
            Ok(CounterMove {
                key: key_from_json(item)?,
                before: item.integer("before")?,
                after: item.integer("after")?,
            })
        })
        .collect()
}

/// `[{provider_id, act, service_date, charged}]`: lines as duplicate detection compares them.
pub fn fingerprints_to_json<'a>(fingerprints: impl IntoIterator<Item = &'a LineFingerprint>) -> Value {
    Value::Array(
        fingerprints
            .into_iter()
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

pub fn fingerprints_from_json(value: &Value) -> Result<Vec<LineFingerprint>, FieldError> {
    fingerprints_at(&Reader::root(value, "fingerprints"))
}

fn fingerprints_at(reader: &Reader<'_>) -> Result<Vec<LineFingerprint>, FieldError> {
    reader
        .items()?
        .iter()
        .map(|item| {
            Ok(LineFingerprint {
                service_date: item.parsed("service_date", Date::parse)?,
                provider_id: item.parsed("provider_id", ProviderId::parse)?,
                act: item.parsed("act", ActCode::parse)?,
                charged: Amount::from_minor(item.integer("charged")?),
            })
        })
        .collect()
}

/// The member's earlier lines an entry was decided against.
pub fn history_to_json(history: &History) -> Value {
    fingerprints_to_json(history.iter())
}

pub fn history_from_json(value: &Value) -> Result<History, FieldError> {
    fingerprints_at(&Reader::root(value, "history")).map(History::new)
}

/// `null` for an entry that is not a cancellation; otherwise `{"decision": decision/v1 (without
/// `audit`) | null, "moves": [...]}`.
pub fn cancels_to_json(cancels: Option<&Cancelled>) -> Value {
    match cancels {
        None => Value::Null,
        Some(cancelled) => object([
            (
                "decision",
                cancelled.decision.as_ref().map_or(Value::Null, |decision| without_audit(decision_to_json(decision))),
            ),
            ("moves", moves_to_json(&cancelled.moves)),
        ]),
    }
}

pub fn cancels_from_json(value: &Value) -> Result<Option<Cancelled>, FieldError> {
    if value.is_null() {
        return Ok(None);
    }
    let root = Reader::root(value, "cancels");
    let decision = match root.field("decision")?.value() {
        Value::Null => None,
        decision => Some(decision_from_json(decision).map_err(|mut error| {
            error.path = format!("cancels.{}", error.path);
            error
        })?),
    };
    Ok(Some(Cancelled { decision, moves: moves_at(&root.field("moves")?)? }))
}

/// Reads an entry's `submitted_by`: `None` when the entry has none (no submitter was checked),
/// `Some(None)` for `null` (came through the broker without a `user_id`), `Some(Some(user))`.
pub fn submitted_by_from_json(entry: &Value) -> Result<Option<Option<String>>, FieldError> {
    match entry.get("submitted_by") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(user)) => Ok(Some(Some(user.clone()))),
        Some(_) => Err(FieldError {
            path: "submitted_by".to_owned(),
            problem: "expected a broker user name or null".to_owned(),
        }),
    }
}

/// A decision/v1 message without its `audit` field (entries record decisions without it: the
/// place in the log is the entry's own).
pub fn without_audit(mut decision: Value) -> Value {
    if let Some(object) = decision.as_object_mut() {
        object.remove("audit");
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_part_names_its_field() {
        let moves =
            json!([{"subject": "member", "id": "M-1", "counter": "c", "period": "2025", "before": 0, "after": "1"}]);
        assert_eq!(moves_from_json(&moves).unwrap_err().to_string(), "moves[0].after: expected a whole number");
        let counters = json!([{"subject": "planet", "id": "M-1", "counter": "c", "period": "2025", "value": 3}]);
        assert!(counters_from_json(&counters).unwrap_err().to_string().starts_with("counters_before[0]: subject"));
        let history = json!([{"provider_id": "P-1", "act": "G", "service_date": "2025-02-30", "charged": 3000}]);
        assert!(history_from_json(&history).unwrap_err().to_string().starts_with("history[0].service_date"));
        let cancels = json!({"decision": {"outcome": "complete"}, "moves": []});
        assert!(cancels_from_json(&cancels).unwrap_err().to_string().starts_with("cancels.decision"));
    }

    #[test]
    fn parts_read_back_to_what_was_written() {
        let key = CounterKey {
            subject: Subject::Household(HouseholdId::parse("H-1").unwrap()),
            counter: "maf".into(),
            period: "2025".into(),
        };
        let mut counters = Counters::new();
        counters.set(key.clone(), 4200);
        assert_eq!(counters_from_json(&counters_to_json(&counters)).unwrap(), counters);
        let moves = vec![CounterMove { key, before: 4200, after: 5000 }];
        assert_eq!(moves_from_json(&moves_to_json(&moves)).unwrap(), moves);
        let history = History::new([LineFingerprint {
            service_date: Date::parse("2025-03-01").unwrap(),
            provider_id: ProviderId::parse("P-1").unwrap(),
            act: ActCode::parse("G").unwrap(),
            charged: Amount::from_minor(3000),
        }]);
        assert_eq!(history_from_json(&history_to_json(&history)).unwrap(), history);
        let empty = RegistrySnapshot { member: None, household: Vec::new(), provider: None };
        assert_eq!(registry_from_json(&registry_to_json(&empty)).unwrap(), empty);
        assert_eq!(cancels_from_json(&cancels_to_json(None)).unwrap(), None);
        let none = Cancelled { decision: None, moves };
        assert_eq!(cancels_from_json(&cancels_to_json(Some(&none))).unwrap(), Some(none));
    }

    #[test]
    fn submitted_by_tells_unchecked_from_no_user() {
        assert_eq!(submitted_by_from_json(&json!({"seq": 1})).unwrap(), None);
        assert_eq!(submitted_by_from_json(&json!({"submitted_by": null})).unwrap(), Some(None));
        assert_eq!(submitted_by_from_json(&json!({"submitted_by": "prov-a"})).unwrap(), Some(Some("prov-a".into())));
        assert_eq!(
            submitted_by_from_json(&json!({"submitted_by": 7})).unwrap_err().to_string(),
            "submitted_by: expected a broker user name or null"
        );
    }
}
