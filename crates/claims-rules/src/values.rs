//! The values scripts receive (`rules/README.md`, "Values your scripts receive"): the line,
//! member, provider, claim, tariff and compulsory part as Rhai maps, built field by field so a
//! script never sees a Rust type or a money amount as text.

use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::decision::CompulsoryPart;
use claims_domain::rules::{LineContext, Tariff};
use rhai::{Dynamic, Map};

use crate::engine::{array_of, reason_map};

fn attributes_value(attributes: &Attributes) -> Dynamic {
    let map: Map = attributes.iter().map(|(name, value)| (name.as_str().into(), attribute_value(value))).collect();
    Dynamic::from_map(map)
}

fn attribute_value(value: &AttributeValue) -> Dynamic {
    match value {
        AttributeValue::Bool(flag) => Dynamic::from_bool(*flag),
        AttributeValue::Integer(number) => Dynamic::from_int(*number),
        AttributeValue::Text(text) => text.clone().into(),
    }
}

fn map_of(entries: impl IntoIterator<Item = (&'static str, Dynamic)>) -> Dynamic {
    Dynamic::from_map(entries.into_iter().map(|(key, value)| (key.into(), value)).collect())
}

fn text(value: impl ToString) -> Dynamic {
    value.to_string().into()
}

/// `line`: `line`, `act`, `service_date`, `quantity`, `charged`, `attributes`.
pub(crate) fn line_value(context: &LineContext<'_>) -> Dynamic {
    let line = context.line;
    map_of([
        ("line", Dynamic::from_int(i64::from(line.number))),
        ("act", text(&line.act)),
        ("service_date", text(line.service_date)),
        ("quantity", Dynamic::from_int(i64::from(line.quantity))),
        ("charged", Dynamic::from_int(line.charged.minor_units())),
        ("attributes", attributes_value(&line.attributes)),
    ])
}

/// `member`: `member_id`, `household_id`, `birth_date`, `age` (full years on the line's date),
/// `attributes`.
pub(crate) fn member_value(context: &LineContext<'_>) -> Dynamic {
    let member = context.member;
    map_of([
        ("member_id", text(&member.member_id)),
        ("household_id", text(&member.household_id)),
        ("birth_date", text(member.birth_date)),
        ("age", Dynamic::from_int(member.birth_date.age_on(context.line.service_date))),
        ("attributes", attributes_value(&member.attributes)),
    ])
}

/// `provider`: `provider_id`, `agreement` (the one in force on the line's date, or `()`),
/// `attributes`.
pub(crate) fn provider_value(context: &LineContext<'_>) -> Dynamic {
    let provider = context.provider;
    map_of([
        ("provider_id", text(&provider.provider_id)),
        ("agreement", context.agreement.map_or(Dynamic::UNIT, text)),
        ("attributes", attributes_value(&provider.attributes)),
    ])
}

/// `claim`: `claim_id`, `submitted_on`, `third_party` (schemes the provider asked to be paid by).
pub(crate) fn claim_value(context: &LineContext<'_>) -> Dynamic {
    let claim = context.claim;
    map_of([
        ("claim_id", text(&claim.claim_id)),
        ("submitted_on", text(claim.submitted_on)),
        ("third_party", array_of(claim.third_party.iter().map(|scheme| text(scheme.name())))),
    ])
}

/// `tariff`: what `fn tariff` returned. Flags appear both as top-level keys (`tariff.heavy_act`)
/// and in `tariff.flags`.
pub(crate) fn tariff_value(tariff: &Tariff) -> Dynamic {
    let mut map = Map::new();
    for (name, value) in &tariff.flags {
        map.insert(name.as_str().into(), attribute_value(value));
    }
    map.insert("base".into(), Dynamic::from_int(tariff.base.minor_units()));
    map.insert("rate_bps".into(), Dynamic::from_int(i64::from(tariff.rate_bps.bps())));
    map.insert("category".into(), text(&tariff.category));
    map.insert(
        "third_party_required".into(),
        array_of(tariff.third_party_required.iter().map(|scheme| text(scheme.name()))),
    );
    map.insert("reasons".into(), array_of(tariff.reasons.iter().map(|reason| reason_map(reason).into())));
    map.insert("flags".into(), attributes_value(&tariff.flags));
    Dynamic::from_map(map)
}

/// `compulsory`: `plan`, `rate_bps`, `gross`, `deductions`, `ceiling_refund`, `paid`, or `()`
/// when the member has no compulsory cover that day.
pub(crate) fn compulsory_value(compulsory: Option<&CompulsoryPart>) -> Dynamic {
    let Some(part) = compulsory else {
        return Dynamic::UNIT;
    };
    let deductions = part.deductions.iter().map(|deduction| {
        map_of([("kind", text(&deduction.kind)), ("amount", Dynamic::from_int(deduction.amount.minor_units()))])
    });
    map_of([
        ("plan", text(&part.plan)),
        ("rate_bps", Dynamic::from_int(i64::from(part.rate_bps.bps()))),
        ("gross", Dynamic::from_int(part.gross.minor_units())),
        ("deductions", array_of(deductions)),
        ("ceiling_refund", Dynamic::from_int(part.ceiling_refund.minor_units())),
        ("paid", Dynamic::from_int(part.paid.minor_units())),
    ])
}
