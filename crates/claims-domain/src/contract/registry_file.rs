//! The registry file (members, households, coverages, providers) read by `claimctl adjudicate
//! --registry` and `claimctl registry import`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use thiserror::Error;

use super::fields::{self, FieldResult, describe, problem};
use crate::claim::Scheme;
use crate::date::{Period, YearMonth};
use crate::ids::{AgreementName, HouseholdId, IdError, MemberId, PlanName, ProviderId};
use crate::registry::{Coverage, Member, Provider, Registry};
use crate::rules::PackSettings;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Field(String),
    #[error("{kind} {id} appears twice")]
    Duplicate { kind: &'static str, id: String },
    #[error("{0}")]
    UnknownNames(String),
}

/// Parses a registry file.
pub fn parse_registry(text: &str) -> Result<Registry, RegistryError> {
    let value: Value = serde_json::from_str(text).map_err(|error| RegistryError::NotJson(error.to_string()))?;
    let object = fields::object(&value, "registry").map_err(field_error)?;
    let mut registry = Registry::default();
    for (index, raw) in fields::array(object, "", "members").map_err(field_error)?.iter().enumerate() {
        let member = parse_member(raw, &format!("members[{index}]")).map_err(field_error)?;
        let id = member.member_id.to_string();
        if registry.members.insert(member.member_id.clone(), member).is_some() {
            return Err(RegistryError::Duplicate { kind: "member", id });
        }
    }
    for (index, raw) in fields::array(object, "", "providers").map_err(field_error)?.iter().enumerate() {
        let provider = parse_provider(raw, &format!("providers[{index}]")).map_err(field_error)?;
        let id = provider.provider_id.to_string();
        if registry.providers.insert(provider.provider_id.clone(), provider).is_some() {
            return Err(RegistryError::Duplicate { kind: "provider", id });
        }
    }
    Ok(registry)
}

/// Every plan and agreement the registry names must exist in the pack: this lists the ones
/// that do not, so an import can refuse the whole file at once.
pub fn check_registry_names(registry: &Registry, pack: &PackSettings) -> Result<(), RegistryError> {
    let mut unknown = Vec::new();
    for member in registry.members.values() {
        for coverage in &member.coverages {
            match pack.plans.get(&coverage.plan) {
                None => unknown.push(format!("member {}: unknown plan {:?}", member.member_id, coverage.plan.as_str())),
                Some(plan) if plan.scheme != coverage.scheme => unknown.push(format!(
                    "member {}: plan {:?} is a {} plan, not {}",
                    member.member_id,
                    coverage.plan.as_str(),
                    plan.scheme.name(),
                    coverage.scheme.name()
                )),
                Some(_) => {}
            }
        }
    }
    for provider in registry.providers.values() {
        if let Some(agreement) = &provider.agreement
            && !pack.agreements.contains(agreement)
        {
            unknown.push(format!("provider {}: unknown agreement {:?}", provider.provider_id, agreement.as_str()));
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::UnknownNames(format!(
            "the registry names what pack {} does not know: {}",
            pack.version.pack,
            unknown.join("; ")
        )))
    }
}

/// Parses one member as written in a registry file (or stored by the store).
pub fn member_from_json(value: &Value) -> Result<Member, RegistryError> {
    parse_member(value, "member").map_err(field_error)
}

/// Parses one provider as written in a registry file (or stored by the store).
pub fn provider_from_json(value: &Value) -> Result<Provider, RegistryError> {
    parse_provider(value, "provider").map_err(field_error)
}

fn field_error(error: fields::FieldError) -> RegistryError {
    RegistryError::Field(error.to_string())
}

fn id<T>(object: &Map<String, Value>, path: &str, name: &str, parse: fn(&str) -> Result<T, IdError>) -> FieldResult<T> {
    let text = fields::string(object, path, name)?;
    parse(text).or_else(|error| problem(&fields::join(path, name), error.to_string()))
}

fn parse_member(value: &Value, path: &str) -> FieldResult<Member> {
    let object = fields::object(value, path)?;
    let member_id = id(object, path, "member_id", MemberId::parse)?;
    let household_id = id(object, path, "household_id", HouseholdId::parse)?;
    let birth_date = fields::date(object, path, "birth_date")?;
    let attributes = fields::attributes(object, path, "attributes")?;
    let coverages = fields::array(object, path, "coverages")?
        .iter()
        .enumerate()
        .map(|(index, raw)| parse_coverage(raw, &format!("{path}.coverages[{index}]")))
        .collect::<FieldResult<Vec<_>>>()?;
    Ok(Member { member_id, household_id, birth_date, attributes, coverages })
}

fn parse_period(object: &Map<String, Value>, path: &str) -> FieldResult<Period> {
    let from = fields::date(object, path, "from")?;
    let to = fields::optional_date(object, path, "to")?;
    if to.is_some_and(|to| to < from) {
        return problem(&fields::join(path, "to"), "ends before it starts");
    }
    Ok(Period { from, to })
}

fn parse_coverage(value: &Value, path: &str) -> FieldResult<Coverage> {
    let object = fields::object(value, path)?;
    let scheme_name = fields::string(object, path, "scheme")?;
    let Some(scheme) = Scheme::parse(scheme_name) else {
        return problem(
            &fields::join(path, "scheme"),
            format!("expected compulsory or supplementary, got {scheme_name:?}"),
        );
    };
    let plan = id(object, path, "plan", PlanName::parse)?;
    let period = parse_period(object, path)?;
    let waiting_until = fields::optional_date(object, path, "waiting_until")?;
    let suspended = match fields::optional(object, "suspended") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let item_path = format!("{path}.suspended[{index}]");
                parse_period(fields::object(item, &item_path)?, &item_path)
            })
            .collect::<FieldResult<Vec<_>>>()?,
        Some(other) => {
            return problem(&fields::join(path, "suspended"), format!("expected a list, got {}", describe(other)));
        }
    };
    let unpaid_months = match fields::optional(object, "unpaid_months") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let item_path = format!("{path}.unpaid_months[{index}]");
                match item {
                    Value::String(text) => YearMonth::parse(text)
                        .or_else(|_| problem(&item_path, format!("{text:?} is not a month (YYYY-MM)"))),
                    other => problem(&item_path, format!("expected a month \"YYYY-MM\", got {}", describe(other))),
                }
            })
            .collect::<FieldResult<Vec<_>>>()?,
        Some(other) => {
            return problem(&fields::join(path, "unpaid_months"), format!("expected a list, got {}", describe(other)));
        }
    };
    Ok(Coverage { scheme, plan, period, waiting_until, suspended, unpaid_months })
}

fn parse_provider(value: &Value, path: &str) -> FieldResult<Provider> {
    let object = fields::object(value, path)?;
    let provider_id = id(object, path, "provider_id", ProviderId::parse)?;
    let agreement = match fields::optional(object, "agreement") {
        None => None,
        Some(Value::String(text)) => Some(
            AgreementName::parse(text).or_else(|error| problem(&fields::join(path, "agreement"), error.to_string()))?,
        ),
        Some(other) => {
            return problem(
                &fields::join(path, "agreement"),
                format!("expected a string or null, got {}", describe(other)),
            );
        }
    };
    let period = parse_period(object, path)?;
    let attributes = fields::attributes(object, path, "attributes")?;
    let submitters = parse_submitters(object, path)?;
    Ok(Provider { provider_id, agreement, period, attributes, submitters })
}

/// The longest broker user name: the AMQP `user_id` property is a short string.
const MAX_SUBMITTER_BYTES: usize = 255;

/// `"submitters": ["clinic-42", ...]`: the broker users that may submit for the provider
/// (optional; absent or empty means nobody may, through the broker).
fn parse_submitters(object: &Map<String, Value>, path: &str) -> FieldResult<BTreeSet<String>> {
    let items = match fields::optional(object, "submitters") {
        None => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return problem(
                &fields::join(path, "submitters"),
                format!("expected a list of broker user names, got {}", describe(other)),
            );
        }
    };
    let mut submitters = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}.submitters[{index}]");
        let user = match item {
            Value::String(user) => user,
            other => return problem(&item_path, format!("expected a broker user name, got {}", describe(other))),
        };
        if user.is_empty() {
            return problem(&item_path, "is empty");
        }
        if user.len() > MAX_SUBMITTER_BYTES {
            return problem(
                &item_path,
                format!("is {} bytes long; a broker user name has at most {MAX_SUBMITTER_BYTES}", user.len()),
            );
        }
        if !submitters.insert(user.clone()) {
            return problem(&item_path, format!("{user:?} appears twice"));
        }
    }
    Ok(submitters)
}

/// The registry file form of a registry (for exports and for recording snapshots).
pub fn registry_to_json(registry: &Registry) -> Value {
    json!({
        "members": registry.members.values().map(member_to_json).collect::<Vec<_>>(),
        "providers": registry.providers.values().map(provider_to_json).collect::<Vec<_>>(),
    })
}

pub fn member_to_json(member: &Member) -> Value {
    json!({
        "member_id": member.member_id.as_str(),
        "household_id": member.household_id.as_str(),
        "birth_date": member.birth_date.to_string(),
        "attributes": fields::attributes_to_json(&member.attributes),
        "coverages": member.coverages.iter().map(|coverage| json!({
            "scheme": coverage.scheme.name(),
            "plan": coverage.plan.as_str(),
            "from": coverage.period.from.to_string(),
            "to": coverage.period.to.map(|to| to.to_string()),
            "waiting_until": coverage.waiting_until.map(|day| day.to_string()),
            "suspended": coverage.suspended.iter()
                .map(|period| json!({"from": period.from.to_string(), "to": period.to.map(|to| to.to_string())}))
                .collect::<Vec<_>>(),
            "unpaid_months": coverage.unpaid_months.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub fn provider_to_json(provider: &Provider) -> Value {
    let mut document = json!({
        "provider_id": provider.provider_id.as_str(),
        "agreement": provider.agreement.as_ref().map(AgreementName::as_str),
        "from": provider.period.from.to_string(),
        "to": provider.period.to.map(|to| to.to_string()),
        "attributes": fields::attributes_to_json(&provider.attributes),
    });
    // Only when set: a provider without submitters keeps the very document (and audit
    // snapshot bytes) it had before the field existed.
    if !provider.submitters.is_empty() {
        document["submitters"] = json!(provider.submitters);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(submitters: Value) -> Value {
        json!({"provider_id": "P-A", "agreement": null, "from": "2020-01-01", "to": null, "attributes": {},
               "submitters": submitters})
    }

    #[test]
    fn submitters_are_read_and_written_back() {
        let parsed = provider_from_json(&provider(json!(["prov-a", "billing"]))).unwrap();
        assert_eq!(parsed.submitters, BTreeSet::from(["billing".to_owned(), "prov-a".to_owned()]));
        assert_eq!(provider_to_json(&parsed)["submitters"], json!(["billing", "prov-a"]));
        // Absent (or null, or empty) means nobody, and is not written: the document stays as it
        // was before the field existed.
        for none in [json!(null), json!([])] {
            let parsed = provider_from_json(&provider(none)).unwrap();
            assert!(parsed.submitters.is_empty());
            assert_eq!(provider_to_json(&parsed).get("submitters"), None);
        }
    }

    #[test]
    fn a_bad_submitter_is_named() {
        let error = |submitters: Value| provider_from_json(&provider(submitters)).unwrap_err().to_string();
        assert_eq!(
            error(json!("prov-a")),
            r#"provider.submitters: expected a list of broker user names, got the string "prov-a""#
        );
        assert_eq!(
            error(json!(["prov-a", 7])),
            "provider.submitters[1]: expected a broker user name, got the number 7"
        );
        assert_eq!(error(json!([""])), "provider.submitters[0]: is empty");
        assert_eq!(error(json!(["a", "b", "a"])), r#"provider.submitters[2]: "a" appears twice"#);
        assert_eq!(
            error(json!(["x".repeat(256)])),
            "provider.submitters[0]: is 256 bytes long; a broker user name has at most 255"
        );
    }
}
