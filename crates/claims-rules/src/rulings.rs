//! Reads what a script returned into the domain's rulings, strictly: a missing key, an unknown
//! key or a value of the wrong kind is an error that names the key (`charges[0].amount`), never a
//! silent default. Rhai compares a string with a number as "not equal" without complaint, so
//! this boundary is where a `"3000"` instead of `3000` must be caught.

use std::collections::BTreeSet;

use claims_domain::accumulators::{Frequency, Limit, Scope};
use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::Scheme;
use claims_domain::decision::{Reason, ReasonGroup};
use claims_domain::money::{Amount, RateBps, Rounding};
use claims_domain::rules::{Charge, CompulsoryRuling, NeverCovered, Ruling, SupplementaryRuling, Tariff};
use rhai::{Dynamic, Map};

use crate::diagnostic::type_description;
use crate::engine::Denial;

type Parsed<T> = Result<T, String>;

const TARIFF_KEYS: &[&str] = &["base", "rate_bps", "category", "third_party_required", "reasons", "flags"];
const COMPULSORY_KEYS: &[&str] = &["rate_bps", "gross", "charges", "never_covered", "share_ceiling", "reasons"];
const SUPPLEMENTARY_KEYS: &[&str] = &["amount", "limits", "frequency", "reasons"];

/// A map being read, with the path that names its keys in messages.
struct Fields {
    map: Map,
    prefix: String,
}

impl Fields {
    fn new(value: Dynamic, prefix: &str, expected: &str) -> Parsed<Fields> {
        match value.try_cast_result::<Map>() {
            Ok(map) => Ok(Fields { map, prefix: prefix.to_owned() }),
            Err(value) => Err(format!(
                "expected {expected}{}, got {}",
                if prefix.is_empty() { String::new() } else { format!(" for {prefix:?}") },
                type_description(value.type_name())
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}.{key}", self.prefix) }
    }

    /// A present, non-`()` value.
    fn optional(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|value| !value.is_unit())
    }

    fn required(&self, key: &str) -> Parsed<&Dynamic> {
        self.optional(key).ok_or_else(|| format!("missing key {:?}", self.path(key)))
    }

    fn only_keys(&self, allowed: &[&str]) -> Parsed<()> {
        match self.map.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(format!("unknown key {:?} (allowed: {})", self.path(key), allowed.join(", "))),
            None => Ok(()),
        }
    }

    fn integer(&self, key: &str, what: &str) -> Parsed<i64> {
        let value = self.required(key)?;
        value
            .as_int()
            .map_err(|actual| format!("expected {what} for {:?}, got {}", self.path(key), type_description(actual)))
    }

    fn amount(&self, key: &str) -> Parsed<Amount> {
        self.integer(key, "an integer amount").map(Amount::from_minor)
    }

    fn non_negative_amount(&self, key: &str) -> Parsed<Amount> {
        let amount = self.amount(key)?;
        if amount.is_negative() {
            return Err(format!("{:?} is {amount}: it must not be negative", self.path(key)));
        }
        Ok(amount)
    }

    fn rate(&self, key: &str, max_bps: i64) -> Parsed<RateBps> {
        let bps = self.integer(key, "an integer rate in basis points")?;
        if !(0..=max_bps).contains(&bps) {
            return Err(format!(
                "{:?} is {bps}: a rate here must be within 0..={max_bps} basis points",
                self.path(key)
            ));
        }
        RateBps::new(bps).map_err(|error| format!("{:?}: {error}", self.path(key)))
    }

    fn text(&self, key: &str) -> Parsed<String> {
        let value = self.required(key)?;
        let text = value.clone().into_string().map_err(|actual| {
            format!("expected a string for {:?}, got {}", self.path(key), type_description(actual))
        })?;
        if text.trim().is_empty() {
            return Err(format!("{:?} is empty", self.path(key)));
        }
        Ok(text)
    }

    /// An optional list, each item read by `item` with its path (`charges[0]`).
    fn list<T>(&self, key: &str, mut item: impl FnMut(Dynamic, &str) -> Parsed<T>) -> Parsed<Vec<T>> {
        let Some(value) = self.optional(key) else {
            return Ok(Vec::new());
        };
        let items = value
            .clone()
            .into_array()
            .map_err(|actual| format!("expected a list for {:?}, got {}", self.path(key), type_description(actual)))?;
        items
            .into_iter()
            .enumerate()
            .map(|(index, value)| item(value, &format!("{}[{index}]", self.path(key))))
            .collect()
    }
}

fn denial(value: Dynamic) -> Result<Reason, Dynamic> {
    value.try_cast_result::<Denial>().map(|Denial(reason)| reason)
}

fn reason(value: Dynamic, path: &str) -> Parsed<Reason> {
    let fields = Fields::new(value, path, "a reason(group, code, text)")?;
    fields.only_keys(&["group", "code", "text"])?;
    let group_name = fields.text("group")?;
    let group = ReasonGroup::parse(&group_name)
        .ok_or_else(|| format!("{:?} is {group_name:?}: expected \"CO\", \"PR\" or \"OA\"", fields.path("group")))?;
    Ok(Reason::new(group, &fields.text("code")?, fields.text("text")?))
}

fn limit(value: Dynamic, path: &str) -> Parsed<Limit> {
    let fields = Fields::new(value, path, "a limit (per_year, per_day, household_per_year, per_claim)")?;
    fields.only_keys(&["counter", "scope", "period", "max"])?;
    let scope = match fields.text("scope")?.as_str() {
        "member" => Scope::Member,
        "household" => Scope::Household,
        other => return Err(format!("{:?} is {other:?}: expected \"member\" or \"household\"", fields.path("scope"))),
    };
    Ok(Limit {
        counter: fields.text("counter")?,
        scope,
        period: fields.text("period")?,
        max: fields.non_negative_amount("max")?,
    })
}

fn scalar_attribute(value: &Dynamic, path: &str) -> Parsed<AttributeValue> {
    if let Ok(flag) = value.as_bool() {
        return Ok(AttributeValue::Bool(flag));
    }
    if let Ok(number) = value.as_int() {
        return Ok(AttributeValue::Integer(number));
    }
    match value.clone().into_string() {
        Ok(text) => Ok(AttributeValue::Text(text)),
        Err(actual) => Err(format!(
            "{path:?} is {}: a value passed on to the plan scripts must be true/false, a number or a string",
            type_description(actual)
        )),
    }
}

/// What `fn tariff` returned: a tariff map or `deny(...)`. Keys other than the known ones are
/// flags passed on to the plan scripts (`heavy_act: true`), as are the entries of `flags`.
pub(crate) fn tariff(value: Dynamic) -> Parsed<Ruling<Tariff>> {
    let value = match denial(value) {
        Ok(reason) => return Ok(Ruling::Denied(reason)),
        Err(value) => value,
    };
    let fields = Fields::new(value, "", "a map #{ base, rate_bps, category } or deny(...)")?;
    let third_party_required = fields.list("third_party_required", |value, path| {
        let name =
            value.into_string().map_err(|actual| format!("expected a scheme name for {path:?}, got {actual}"))?;
        Scheme::parse(&name)
            .ok_or_else(|| format!("{path:?} is {name:?}: expected \"compulsory\" or \"supplementary\""))
    })?;
    let mut flags = Attributes::new();
    if let Some(value) = fields.optional("flags") {
        let flag_fields = Fields::new(value.clone(), "flags", "a map of flags")?;
        for (name, value) in &flag_fields.map {
            flags.insert(name.to_string(), scalar_attribute(value, &flag_fields.path(name))?);
        }
    }
    for (name, value) in fields.map.iter().filter(|(name, _)| !TARIFF_KEYS.contains(&name.as_str())) {
        if flags.contains_key(name.as_str()) {
            return Err(format!("{:?} is given both as a key and in \"flags\"", name.as_str()));
        }
        flags.insert(name.to_string(), scalar_attribute(value, name)?);
    }
    Ok(Ruling::Covered(Tariff {
        base: fields.non_negative_amount("base")?,
        rate_bps: fields.rate("rate_bps", i64::from(RateBps::FULL.bps()))?,
        category: fields.text("category")?,
        third_party_required: third_party_required.into_iter().collect::<BTreeSet<_>>(),
        flags,
        reasons: fields.list("reasons", reason)?,
    }))
}

/// What `fn compulsory` returned; `gross` defaults to `apply_rate(tariff.base, rate_bps)`.
pub(crate) fn compulsory(value: Dynamic, tariff: &Tariff, rounding: Rounding) -> Parsed<Ruling<CompulsoryRuling>> {
    let value = match denial(value) {
        Ok(reason) => return Ok(Ruling::Denied(reason)),
        Err(value) => value,
    };
    let fields = Fields::new(value, "", "a map #{ rate_bps, gross, charges } or deny(...)")?;
    fields.only_keys(COMPULSORY_KEYS)?;
    let rate_bps = fields.rate("rate_bps", i64::from(RateBps::FULL.bps()))?;
    let gross = match fields.optional("gross") {
        Some(_) => fields.non_negative_amount("gross")?,
        None => rate_bps.apply(tariff.base, rounding).map_err(|_| "the gross share is too large".to_owned())?,
    };
    if gross > tariff.base {
        return Err(format!("\"gross\" is {gross}, more than the tariff base {}", tariff.base));
    }
    let charges = fields.list("charges", |value, path| {
        let charge = Fields::new(value, path, "a charge(kind, amount, limits, reason)")?;
        charge.only_keys(&["kind", "amount", "limits", "reason"])?;
        Ok(Charge {
            kind: charge.text("kind")?,
            amount: charge.non_negative_amount("amount")?,
            limits: charge.list("limits", limit)?,
            reason: reason(charge.required("reason")?.clone(), &charge.path("reason"))?,
        })
    })?;
    let never_covered = fields.list("never_covered", |value, path| {
        let part = Fields::new(value, path, "a map #{ kind, amount }")?;
        part.only_keys(&["kind", "amount"])?;
        Ok(NeverCovered { kind: part.text("kind")?, amount: part.non_negative_amount("amount")? })
    })?;
    Ok(Ruling::Covered(CompulsoryRuling {
        rate_bps,
        gross,
        charges,
        never_covered,
        share_ceiling: fields.list("share_ceiling", limit)?,
        reasons: fields.list("reasons", reason)?,
    }))
}

/// What `fn supplementary` returned; a negative amount counts as 0.
pub(crate) fn supplementary(value: Dynamic) -> Parsed<Ruling<SupplementaryRuling>> {
    let value = match denial(value) {
        Ok(reason) => return Ok(Ruling::Denied(reason)),
        Err(value) => value,
    };
    let fields = Fields::new(value, "", "a map #{ amount } or deny(...)")?;
    fields.only_keys(SUPPLEMENTARY_KEYS)?;
    let frequency = match fields.optional("frequency") {
        None => None,
        Some(value) => {
            let frequency = Fields::new(value.clone(), "frequency", "once_every(counter, days)")?;
            frequency.only_keys(&["counter", "days"])?;
            let days = frequency.integer("days", "a number of days")?;
            if days <= 0 {
                return Err(format!("\"frequency.days\" is {days}: it must be positive"));
            }
            Some(Frequency { counter: frequency.text("counter")?, days })
        }
    };
    Ok(Ruling::Covered(SupplementaryRuling {
        amount: fields.amount("amount")?.at_least_zero(),
        limits: fields.list("limits", limit)?,
        frequency,
        reasons: fields.list("reasons", reason)?,
    }))
}
