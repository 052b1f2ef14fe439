//! Reads what a script returned into the domain's rulings, strictly: a missing key, an unknown
//! key or a value of the wrong kind is an error that names the key (`charges[0].amount`), never a
//! silent default. Rhai compares a string with a number as "not equal" without complaint, so
//! this boundary is where a `"3000"` instead of `3000` must be caught.

use std::collections::BTreeSet;
use std::fmt;

use claims_domain::accumulators::{Frequency, Limit, Scope};
use claims_domain::attributes::{AttributeValue, Attributes};
use claims_domain::claim::Scheme;
use claims_domain::decision::{Reason, ReasonGroup};
use claims_domain::money::{Amount, RateBps, Rounding};
use claims_domain::rules::{Charge, CompulsoryRuling, NeverCovered, Ruling, SupplementaryRuling, Tariff};
use rhai::{Dynamic, ImmutableString, Map};

use crate::diagnostic::type_description;
use crate::engine::Denial;

type Parsed<T> = Result<T, String>;

const TARIFF_KEYS: &[&str] = &["base", "rate_bps", "category", "third_party_required", "reasons", "flags"];
const COMPULSORY_KEYS: &[&str] = &["rate_bps", "gross", "charges", "never_covered", "share_ceiling", "reasons"];
const SUPPLEMENTARY_KEYS: &[&str] = &["amount", "limits", "frequency", "reasons"];

/// Where a value sits in what a script returned, written out only for a message: `""` for the
/// answer itself, then `charges[0].limits[1]`.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root,
    Key(&'a Place<'a>, &'a str),
    Index(&'a Place<'a>, usize),
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Root => Ok(()),
            Place::Key(Place::Root, key) => f.write_str(key),
            Place::Key(parent, key) => write!(f, "{parent}.{key}"),
            Place::Index(list, index) => write!(f, "{list}[{index}]"),
        }
    }
}

/// A key and its value, as a Rhai map holds them.
type Entry = <Map as IntoIterator>::Item;

/// Keys a map read by [`Fields`] may have at most.
const MOST_KEYS: usize = 6;

/// A map being read, with the place that names its keys in messages. The map is sorted out in
/// one pass: the value of each expected key in its slot, any other entry aside (in key order);
/// values are then moved out as they are read, never copied, and no key is searched again.
struct Fields<'a> {
    keys: &'static [&'static str],
    /// One slot per expected key, and a last one that stays empty.
    slots: [Option<Dynamic>; MOST_KEYS + 1],
    others: Vec<Entry>,
    place: Place<'a>,
}

impl<'a> Fields<'a> {
    /// `keys`: the keys this map is expected to have (at most [`MOST_KEYS`]).
    fn new(value: Dynamic, place: Place<'a>, expected: &str, keys: &'static [&'static str]) -> Parsed<Fields<'a>> {
        debug_assert!(keys.len() <= MOST_KEYS);
        let map = match value.try_cast_result::<Map>() {
            Ok(map) => map,
            Err(value) => {
                return Err(format!(
                    "expected {expected}{}, got {}",
                    if matches!(place, Place::Root) { String::new() } else { format!(" for {:?}", place.to_string()) },
                    type_description(value.type_name())
                ));
            }
        };
        let mut fields = Fields { keys, slots: Default::default(), others: Vec::new(), place };
        for (key, value) in map {
            match keys.iter().position(|known| *known == key.as_str()) {
                Some(index) => fields.slots[index] = Some(value),
                None => fields.others.push((key, value)),
            }
        }
        Ok(fields)
    }

    fn path(&self, key: &str) -> String {
        Place::Key(&self.place, key).to_string()
    }

    fn slot(&mut self, key: &str) -> &mut Option<Dynamic> {
        let index = self.keys.iter().position(|known| *known == key);
        debug_assert!(index.is_some(), "{key} is not an expected key");
        &mut self.slots[index.unwrap_or(MOST_KEYS)]
    }

    /// A present, non-`()` value.
    fn optional(&mut self, key: &str) -> Option<&Dynamic> {
        self.slot(key).as_ref().filter(|value| !value.is_unit())
    }

    /// A present, non-`()` value, moved out.
    fn take(&mut self, key: &str) -> Option<Dynamic> {
        self.slot(key).take().filter(|value| !value.is_unit())
    }

    fn required(&mut self, key: &str) -> Parsed<&Dynamic> {
        if self.optional(key).is_none() {
            return Err(format!("missing key {:?}", self.path(key)));
        }
        Ok(self.optional(key).unwrap_or(&Dynamic::UNIT))
    }

    fn take_required(&mut self, key: &str) -> Parsed<Dynamic> {
        self.take(key).ok_or_else(|| format!("missing key {:?}", self.path(key)))
    }

    /// An error naming the first key (in key order) that is not an expected one.
    fn only_keys(&self) -> Parsed<()> {
        match self.others.first() {
            Some((key, _)) => Err(format!("unknown key {:?} (allowed: {})", self.path(key), self.keys.join(", "))),
            None => Ok(()),
        }
    }

    fn integer(&mut self, key: &str, what: &str) -> Parsed<i64> {
        let value = self.required(key)?.as_int();
        value.map_err(|actual| format!("expected {what} for {:?}, got {}", self.path(key), type_description(actual)))
    }

    fn amount(&mut self, key: &str) -> Parsed<Amount> {
        self.integer(key, "an integer amount").map(Amount::from_minor)
    }

    fn non_negative_amount(&mut self, key: &str) -> Parsed<Amount> {
        let amount = self.amount(key)?;
        if amount.is_negative() {
            return Err(format!("{:?} is {amount}: it must not be negative", self.path(key)));
        }
        Ok(amount)
    }

    fn rate(&mut self, key: &str, max_bps: i64) -> Parsed<RateBps> {
        let bps = self.integer(key, "an integer rate in basis points")?;
        if !(0..=max_bps).contains(&bps) {
            return Err(format!(
                "{:?} is {bps}: a rate here must be within 0..={max_bps} basis points",
                self.path(key)
            ));
        }
        RateBps::new(bps).map_err(|error| format!("{:?}: {error}", self.path(key)))
    }

    fn text(&mut self, key: &str) -> Parsed<String> {
        self.shared_text(key).map(|text| text.as_str().to_owned())
    }

    /// A non-empty string, without copying it.
    fn shared_text(&mut self, key: &str) -> Parsed<ImmutableString> {
        let text = self.required(key)?.clone().into_immutable_string();
        let text = text.map_err(|actual| {
            format!("expected a string for {:?}, got {}", self.path(key), type_description(actual))
        })?;
        if text.trim().is_empty() {
            return Err(format!("{:?} is empty", self.path(key)));
        }
        Ok(text)
    }

    /// An optional list, each item read by `item` with its place (`charges[0]`).
    fn list<T>(&mut self, key: &str, mut item: impl FnMut(Dynamic, Place<'_>) -> Parsed<T>) -> Parsed<Vec<T>> {
        let Some(value) = self.take(key) else {
            return Ok(Vec::new());
        };
        let list = Place::Key(&self.place, key);
        let items = value.into_array().map_err(|actual| {
            format!("expected a list for {:?}, got {}", list.to_string(), type_description(actual))
        })?;
        items.into_iter().enumerate().map(|(index, value)| item(value, Place::Index(&list, index))).collect()
    }
}

fn denial(value: Dynamic) -> Result<Reason, Dynamic> {
    value.try_cast_result::<Denial>().map(|Denial(reason)| reason)
}

fn reason(value: Dynamic, place: Place<'_>) -> Parsed<Reason> {
    let mut fields = Fields::new(value, place, "a reason(group, code, text)", &["group", "code", "text"])?;
    fields.only_keys()?;
    let group_name = fields.shared_text("group")?;
    let group = ReasonGroup::parse(&group_name).ok_or_else(|| {
        format!("{:?} is {:?}: expected \"CO\", \"PR\" or \"OA\"", fields.path("group"), group_name.as_str())
    })?;
    Ok(Reason::new(group, &fields.shared_text("code")?, fields.text("text")?))
}

fn limit(value: Dynamic, place: Place<'_>) -> Parsed<Limit> {
    let mut fields = Fields::new(
        value,
        place,
        "a limit (per_year, per_day, household_per_year, per_claim)",
        &["counter", "scope", "period", "max"],
    )?;
    fields.only_keys()?;
    let scope = match fields.shared_text("scope")?.as_str() {
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
    let mut fields = Fields::new(value, Place::Root, "a map #{ base, rate_bps, category } or deny(...)", TARIFF_KEYS)?;
    let third_party_required = fields.list("third_party_required", |value, place| {
        let name = value
            .into_string()
            .map_err(|actual| format!("expected a scheme name for {:?}, got {actual}", place.to_string()))?;
        Scheme::parse(&name)
            .ok_or_else(|| format!("{:?} is {name:?}: expected \"compulsory\" or \"supplementary\"", place.to_string()))
    })?;
    let mut flags = Attributes::new();
    if let Some(value) = fields.take("flags") {
        let flag_fields = Fields::new(value, Place::Key(&Place::Root, "flags"), "a map of flags", &[])?;
        for (name, value) in &flag_fields.others {
            flags.insert(name.to_string(), scalar_attribute(value, &flag_fields.path(name))?);
        }
    }
    for (name, value) in &fields.others {
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
    let mut fields =
        Fields::new(value, Place::Root, "a map #{ rate_bps, gross, charges } or deny(...)", COMPULSORY_KEYS)?;
    fields.only_keys()?;
    let rate_bps = fields.rate("rate_bps", i64::from(RateBps::FULL.bps()))?;
    let gross = match fields.optional("gross") {
        Some(_) => fields.non_negative_amount("gross")?,
        None => rate_bps.apply(tariff.base, rounding).map_err(|_| "the gross share is too large".to_owned())?,
    };
    if gross > tariff.base {
        return Err(format!("\"gross\" is {gross}, more than the tariff base {}", tariff.base));
    }
    let charges = fields.list("charges", |value, place| {
        let mut charge = Fields::new(
            value,
            place,
            "a charge(kind, amount, limits, reason)",
            &["kind", "amount", "limits", "reason"],
        )?;
        charge.only_keys()?;
        Ok(Charge {
            kind: charge.text("kind")?,
            amount: charge.non_negative_amount("amount")?,
            limits: charge.list("limits", limit)?,
            reason: reason(charge.take_required("reason")?, Place::Key(&place, "reason"))?,
        })
    })?;
    let never_covered = fields.list("never_covered", |value, place| {
        let mut part = Fields::new(value, place, "a map #{ kind, amount }", &["kind", "amount"])?;
        part.only_keys()?;
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
    let mut fields = Fields::new(value, Place::Root, "a map #{ amount } or deny(...)", SUPPLEMENTARY_KEYS)?;
    fields.only_keys()?;
    let frequency = match fields.take("frequency") {
        None => None,
        Some(value) => {
            let mut frequency = Fields::new(
                value,
                Place::Key(&Place::Root, "frequency"),
                "once_every(counter, days)",
                &["counter", "days"],
            )?;
            frequency.only_keys()?;
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
