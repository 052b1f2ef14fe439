//! The sandboxed Rhai engine: chosen packages only, hard limits, no output, no clock, no files,
//! and the host functions of the rule-script API (`rules/README.md`, "Host functions").
//!
//! One engine is built per loaded pack, because `param` and `apply_rate` read that pack's dated
//! tables and rounding.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use claims_domain::accumulators::CLAIM_PERIOD;
use claims_domain::date::{BadDate, Date};
use claims_domain::decision::{Reason, ReasonGroup};
use claims_domain::money::{Amount, RateBps, Rounding};
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage, BasicStringPackage,
    LogicPackage, MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};

use crate::diagnostic::type_description;
use crate::params::Params;

/// Operations one call of a script function may run (about 10 ms at worst).
pub const MAX_OPERATIONS: u64 = 100_000;
/// Nested function calls.
pub const MAX_CALL_LEVELS: usize = 32;
/// Expression nesting, at top level and inside functions.
pub const MAX_EXPR_DEPTHS: (usize, usize) = (64, 32);
/// Characters in one string.
pub const MAX_STRING_SIZE: usize = 4096;
/// Items in one list.
pub const MAX_ARRAY_SIZE: usize = 1024;
/// Keys in one map.
pub const MAX_MAP_SIZE: usize = 256;

/// The Rhai release and features the engine is built with; part of every pack's content hash.
pub const ENGINE_IDENTITY: &str = "rhai-1.27.0";

/// The limits as one line of text, for the content hash.
pub fn limits_description() -> String {
    format!(
        "features=std,sync,no_float,only_i64,no_time,no_custom_syntax,no_module;max_operations={MAX_OPERATIONS};\
         max_call_levels={MAX_CALL_LEVELS};max_expr_depths={},{};max_string_size={MAX_STRING_SIZE};\
         max_array_size={MAX_ARRAY_SIZE};max_map_size={MAX_MAP_SIZE};strict_variables;fail_on_invalid_map_property",
        MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1
    )
}

/// A denial returned by `deny(group, code, text)`: a value of its own type, so that no map a
/// script builds can be mistaken for one.
#[derive(Debug, Clone)]
pub(crate) struct Denial(pub Reason);

/// Texts the host functions put in many maps, made once.
static MEMBER: LazyLock<ImmutableString> = LazyLock::new(|| "member".into());
static HOUSEHOLD: LazyLock<ImmutableString> = LazyLock::new(|| "household".into());
static CLAIM: LazyLock<ImmutableString> = LazyLock::new(|| CLAIM_PERIOD.into());

/// What the host functions of one pack read.
#[derive(Debug)]
pub(crate) struct PackData {
    pub params: Params,
    pub rounding: Rounding,
}

type HostResult<T> = Result<T, Box<EvalAltResult>>;

/// The sandbox without host functions: arithmetic, logic, strings, lists, maps and iteration;
/// no `print` output, no `eval`, no clock, no `sleep`, no modules, hard limits.
pub fn sandboxed_engine() -> Engine {
    let mut engine = Engine::new_raw();
    // LanguageCorePackage is left out on purpose: it brings `sleep`, `exit` and `parse_json`.
    engine.register_global_module(ArithmeticPackage::new().as_shared_module());
    engine.register_global_module(LogicPackage::new().as_shared_module());
    engine.register_global_module(BasicStringPackage::new().as_shared_module());
    engine.register_global_module(MoreStringPackage::new().as_shared_module());
    engine.register_global_module(BasicIteratorPackage::new().as_shared_module());
    engine.register_global_module(BasicArrayPackage::new().as_shared_module());
    engine.register_global_module(BasicMapPackage::new().as_shared_module());
    engine.register_global_module(BasicFnPackage::new().as_shared_module());
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    // `eval` would compile text at run time, out of reach of `claimctl rules check`.
    engine.disable_symbol("eval");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine
}

/// The sandbox with the host functions of one pack.
pub(crate) fn pack_engine(data: Arc<PackData>) -> Engine {
    let mut engine = sandboxed_engine();
    engine.register_type_with_name::<Denial>("denial");
    register_values(&mut engine, data);
    register_dates(&mut engine);
    register_results(&mut engine);
    engine
}

// Every host function is registered twice. The first registration takes the argument types a
// correct call passes (strings, integers, lists, maps): Rhai finds it with one lookup of the
// call's exact signature. The second takes `Dynamic` arguments: Rhai falls back to it only when
// the exact signature is not registered, i.e. on a call with an argument of the wrong kind, and
// it turns that into the analyst's message ("param: expected a string for the date, got an
// integer"). Both run the same code once the arguments are read, so they answer alike.
// (Without the first, Rhai tries up to 2^n signatures with `Dynamic` in place of each argument
// before it finds the one registered, on every first call of a script run.)

fn register_values(engine: &mut Engine, data: Arc<PackData>) {
    let params_data = Arc::clone(&data);
    engine.register_fn("param", move |name: ImmutableString, date: ImmutableString| -> HostResult<Dynamic> {
        param(&params_data, &name, parse_date("param", &date)?)
    });
    let params_data = Arc::clone(&data);
    engine.register_fn("param", move |name: Dynamic, date: Dynamic| -> HostResult<Dynamic> {
        let name = text_argument("param", "the table name", &name)?;
        let date = date_argument("param", &date)?;
        param(&params_data, &name, date)
    });
    let rate_data = Arc::clone(&data);
    engine.register_fn("apply_rate", move |amount: i64, rate: i64| -> HostResult<i64> {
        apply_rate(rate_data.rounding, amount, rate)
    });
    engine.register_fn("apply_rate", move |amount: Dynamic, rate: Dynamic| -> HostResult<i64> {
        let amount = integer_argument("apply_rate", "the amount", &amount)?;
        let rate = integer_argument("apply_rate", "the rate", &rate)?;
        apply_rate(data.rounding, amount, rate)
    });
    engine.register_fn("attr", |map: Map, key: ImmutableString, default: Dynamic| -> Dynamic {
        map.get(key.as_str()).cloned().unwrap_or(default)
    });
    engine.register_fn("attr", |map: Dynamic, key: Dynamic, default: Dynamic| -> HostResult<Dynamic> {
        let key = text_argument("attr", "the key", &key)?;
        let map = map
            .as_map_ref()
            .map_err(|actual| host_error(format!("attr: expected a map first, got {}", type_description(actual))))?;
        Ok(map.get(key.as_str()).cloned().unwrap_or(default))
    });
    engine.register_fn("min", |a: i64, b: i64| a.min(b));
    engine.register_fn("max", |a: i64, b: i64| a.max(b));
}

fn param(data: &PackData, name: &str, date: Date) -> HostResult<Dynamic> {
    data.params.lookup(name, date).cloned().map_err(|error| host_error(error.to_string()))
}

fn apply_rate(rounding: Rounding, amount: i64, rate: i64) -> HostResult<i64> {
    let rate = RateBps::new(rate).map_err(|error| host_error(format!("apply_rate: {error}")))?;
    rate.apply(Amount::from_minor(amount), rounding)
        .map(Amount::minor_units)
        .map_err(|_| host_error("apply_rate: the result is too large".to_owned()))
}

fn register_dates(engine: &mut Engine) {
    engine.register_fn("age_on", |birth: ImmutableString, date: ImmutableString| -> HostResult<i64> {
        Ok(parse_date("age_on", &birth)?.age_on(parse_date("age_on", &date)?))
    });
    engine.register_fn("age_on", |birth: Dynamic, date: Dynamic| -> HostResult<i64> {
        Ok(date_argument("age_on", &birth)?.age_on(date_argument("age_on", &date)?))
    });
    engine.register_fn("year_of", |date: ImmutableString| -> HostResult<i64> {
        Ok(i64::from(parse_date("year_of", &date)?.year()))
    });
    engine.register_fn("year_of", |date: Dynamic| -> HostResult<i64> {
        Ok(i64::from(date_argument("year_of", &date)?.year()))
    });
    engine.register_fn("add_days", |date: ImmutableString, days: i64| -> HostResult<ImmutableString> {
        add_days(parse_date("add_days", &date)?, days)
    });
    engine.register_fn("add_days", |date: Dynamic, days: Dynamic| -> HostResult<ImmutableString> {
        let date = date_argument("add_days", &date)?;
        let days = integer_argument("add_days", "the number of days", &days)?;
        add_days(date, days)
    });
    engine.register_fn("days_between", |from: ImmutableString, to: ImmutableString| -> HostResult<i64> {
        Ok(parse_date("days_between", &from)?.days_until(parse_date("days_between", &to)?))
    });
    engine.register_fn("days_between", |from: Dynamic, to: Dynamic| -> HostResult<i64> {
        Ok(date_argument("days_between", &from)?.days_until(date_argument("days_between", &to)?))
    });
}

fn add_days(date: Date, days: i64) -> HostResult<ImmutableString> {
    date.add_days(days)
        .map(date_text)
        .ok_or_else(|| host_error(format!("add_days: {date} plus {days} days is out of the calendar")))
}

fn register_results(engine: &mut Engine) {
    engine.register_fn(
        "reason",
        |group: ImmutableString, code: ImmutableString, text: ImmutableString| -> HostResult<Map> {
            // The same map as `reason_map(&make_reason(..))`, without copying the texts: a group
            // that parses is written as it was given, and the code and text are kept as they are.
            reason_group("reason", &group)?;
            let code = name_text("reason", "the code", code)?;
            let mut map = Map::new();
            map.insert("group".into(), group.into());
            map.insert("code".into(), code.into());
            map.insert("text".into(), text.into());
            Ok(map)
        },
    );
    engine.register_fn("reason", |group: Dynamic, code: Dynamic, text: Dynamic| -> HostResult<Map> {
        Ok(reason_map(&reason_arguments("reason", &group, &code, &text)?))
    });
    engine.register_fn(
        "deny",
        |group: ImmutableString, code: ImmutableString, text: ImmutableString| -> HostResult<Denial> {
            Ok(Denial(make_reason("deny", group, code, text)?))
        },
    );
    engine.register_fn("deny", |group: Dynamic, code: Dynamic, text: Dynamic| -> HostResult<Denial> {
        Ok(Denial(reason_arguments("deny", &group, &code, &text)?))
    });
    engine.register_fn("charge", |kind: ImmutableString, amount: i64, limits: Array, reason: Map| -> HostResult<Map> {
        Ok(charge_map(name_text("charge", "the kind", kind)?, amount, limits.into(), reason.into()))
    });
    engine.register_fn(
        "charge",
        |kind: Dynamic, amount: Dynamic, limits: Dynamic, reason: Dynamic| -> HostResult<Map> {
            let kind = name_argument("charge", "the kind", &kind)?;
            let amount = integer_argument("charge", "the amount", &amount)?;
            if !limits.is_array() {
                return Err(host_error(format!(
                    "charge: expected a list of limits, got {}",
                    type_description(limits.type_name())
                )));
            }
            if !reason.is_map() {
                return Err(host_error(format!(
                    "charge: expected a reason(...) last, got {}",
                    type_description(reason.type_name())
                )));
            }
            Ok(charge_map(kind, amount, limits, reason))
        },
    );
    engine.register_fn("per_year", |counter: ImmutableString, date: ImmutableString, max: i64| -> HostResult<Map> {
        let period = year_text(parse_date("per_year", &date)?);
        limit(name_text("per_year", "the counter", counter)?, &MEMBER, period, "per_year", max)
    });
    engine.register_fn("per_year", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = year_text(date_argument("per_year", &date)?);
        limit_map("per_year", &counter, &MEMBER, period, &max)
    });
    engine.register_fn("per_day", |counter: ImmutableString, date: ImmutableString, max: i64| -> HostResult<Map> {
        let period = day_period("per_day", date)?;
        limit(name_text("per_day", "the counter", counter)?, &MEMBER, period, "per_day", max)
    });
    engine.register_fn("per_day", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = day_period("per_day", text_argument("per_day", "the date", &date)?)?;
        limit_map("per_day", &counter, &MEMBER, period, &max)
    });
    engine.register_fn(
        "household_per_year",
        |counter: ImmutableString, date: ImmutableString, max: i64| -> HostResult<Map> {
            let period = year_text(parse_date("household_per_year", &date)?);
            let counter = name_text("household_per_year", "the counter", counter)?;
            limit(counter, &HOUSEHOLD, period, "household_per_year", max)
        },
    );
    engine.register_fn("household_per_year", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = year_text(date_argument("household_per_year", &date)?);
        limit_map("household_per_year", &counter, &HOUSEHOLD, period, &max)
    });
    engine.register_fn("per_claim", |counter: ImmutableString, max: i64| -> HostResult<Map> {
        let counter = name_text("per_claim", "the counter", counter)?;
        limit(counter, &MEMBER, CLAIM.clone(), "per_claim", max)
    });
    engine.register_fn("per_claim", |counter: Dynamic, max: Dynamic| -> HostResult<Map> {
        limit_map("per_claim", &counter, &MEMBER, CLAIM.clone(), &max)
    });
    engine.register_fn("once_every", |counter: ImmutableString, days: i64| -> HostResult<Map> {
        once_every(name_text("once_every", "the counter", counter)?, days)
    });
    engine.register_fn("once_every", |counter: Dynamic, days: Dynamic| -> HostResult<Map> {
        let counter = name_argument("once_every", "the counter", &counter)?;
        let days = integer_argument("once_every", "the number of days", &days)?;
        once_every(counter, days)
    });
}

fn charge_map(kind: ImmutableString, amount: i64, limits: Dynamic, reason: Dynamic) -> Map {
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("amount".into(), amount.into());
    map.insert("limits".into(), limits);
    map.insert("reason".into(), reason);
    map
}

fn once_every(counter: ImmutableString, days: i64) -> HostResult<Map> {
    if days <= 0 {
        return Err(host_error(format!("once_every: the number of days must be positive, got {days}")));
    }
    let mut map = Map::new();
    map.insert("counter".into(), counter.into());
    map.insert("days".into(), days.into());
    Ok(map)
}

fn limit_map(
    function: &str,
    counter: &Dynamic,
    scope: &ImmutableString,
    period: ImmutableString,
    max: &Dynamic,
) -> HostResult<Map> {
    let counter = name_argument(function, "the counter", counter)?;
    let max = integer_argument(function, "the maximum", max)?;
    limit(counter, scope, period, function, max)
}

fn limit(
    counter: ImmutableString,
    scope: &ImmutableString,
    period: ImmutableString,
    function: &str,
    max: i64,
) -> HostResult<Map> {
    if max < 0 {
        return Err(host_error(format!("{function}: the maximum must not be negative, got {max}")));
    }
    let mut map = Map::new();
    map.insert("counter".into(), counter.into());
    map.insert("scope".into(), scope.clone().into());
    map.insert("period".into(), period.into());
    map.insert("max".into(), max.into());
    Ok(map)
}

/// A reason as scripts see it: `#{group, code, text}`.
pub(crate) fn reason_map(reason: &Reason) -> Map {
    let mut map = Map::new();
    map.insert("group".into(), reason.group.name().into());
    map.insert("code".into(), reason.code.clone().into());
    map.insert("text".into(), reason.text.clone().into());
    map
}

fn reason_arguments(function: &str, group: &Dynamic, code: &Dynamic, text: &Dynamic) -> HostResult<Reason> {
    let group = reason_group(function, &text_argument(function, "the group", group)?)?;
    let code = name_argument(function, "the code", code)?;
    let text = text_argument(function, "the text", text)?;
    Ok(Reason::new(group, &code, text.as_str()))
}

fn make_reason(
    function: &str,
    group: ImmutableString,
    code: ImmutableString,
    text: ImmutableString,
) -> HostResult<Reason> {
    let group = reason_group(function, &group)?;
    let code = name_text(function, "the code", code)?;
    Ok(Reason::new(group, &code, text.as_str()))
}

fn reason_group(function: &str, name: &str) -> HostResult<ReasonGroup> {
    ReasonGroup::parse(name).ok_or_else(|| {
        host_error(format!("{function}: unknown reason group {name:?} (expected \"CO\", \"PR\" or \"OA\")"))
    })
}

pub(crate) fn host_error(message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
}

fn text_argument(function: &str, what: &str, value: &Dynamic) -> HostResult<ImmutableString> {
    value.clone().into_immutable_string().map_err(|actual| {
        host_error(format!("{function}: expected a string for {what}, got {}", type_description(actual)))
    })
}

fn name_argument(function: &str, what: &str, value: &Dynamic) -> HostResult<ImmutableString> {
    name_text(function, what, text_argument(function, what, value)?)
}

fn name_text(function: &str, what: &str, text: ImmutableString) -> HostResult<ImmutableString> {
    if text.trim().is_empty() {
        return Err(host_error(format!("{function}: {what} is empty")));
    }
    Ok(text)
}

fn integer_argument(function: &str, what: &str, value: &Dynamic) -> HostResult<i64> {
    value.as_int().map_err(|actual| {
        host_error(format!("{function}: expected an integer for {what}, got {}", type_description(actual)))
    })
}

fn date_argument(function: &str, value: &Dynamic) -> HostResult<Date> {
    parse_date(function, &text_argument(function, "the date", value)?)
}

fn parse_date(function: &str, text: &str) -> HostResult<Date> {
    fast_date(text).map_err(|error| host_error(format!("{function}: {error}")))
}

/// `Date::parse` without going through chrono's format strings: the same answer (a well-formed
/// `YYYY-MM-DD` that is a real day), about ten times faster. Host functions parse a date on
/// nearly every call.
pub(crate) fn fast_date(text: &str) -> Result<Date, BadDate> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    if !well_formed {
        return Err(BadDate(text.to_owned()));
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().fold(0_u32, |value, digit| value * 10 + u32::from(digit - b'0'))
    };
    let year = i32::try_from(number(0..4)).map_err(|_| BadDate(text.to_owned()))?;
    Date::from_ymd(year, number(5..7), number(8..10)).ok_or_else(|| BadDate(text.to_owned()))
}

/// A date as scripts see it, `YYYY-MM-DD` (what `Date`'s `Display` writes, without chrono's
/// format strings).
pub(crate) fn date_text(date: Date) -> ImmutableString {
    if !(0..=9999).contains(&date.year()) {
        return date.to_string().into();
    }
    let mut text = [0_u8; 10];
    let year = date.year().unsigned_abs();
    for (index, value) in [(0, year / 100), (2, year % 100), (5, date.month()), (8, date.day())] {
        text[index] = b'0' + u8::try_from(value / 10).unwrap_or(0);
        text[index + 1] = b'0' + u8::try_from(value % 10).unwrap_or(0);
    }
    text[4] = b'-';
    text[7] = b'-';
    std::str::from_utf8(&text).map_or_else(|_| date.to_string().into(), ImmutableString::from)
}

/// The calendar year of a date as a counter period (`"2025"`). Nearly every call asks for the
/// same year as the last one, so each thread keeps the last text made.
fn year_text(date: Date) -> ImmutableString {
    thread_local! {
        static LAST_YEAR: RefCell<Option<(i32, ImmutableString)>> = const { RefCell::new(None) };
    }
    let year = date.year();
    LAST_YEAR.with_borrow_mut(|last| match last {
        Some((last_year, text)) if *last_year == year => text.clone(),
        _ => {
            let text = ImmutableString::from(year.to_string());
            *last = Some((year, text.clone()));
            text
        }
    })
}

/// The day of a date as a counter period: the text itself, once checked (a valid date is written
/// exactly one way, `YYYY-MM-DD`, which is how `Date` writes it too).
fn day_period(function: &str, date: ImmutableString) -> HostResult<ImmutableString> {
    parse_date(function, &date)?;
    Ok(date)
}

/// A list of values as a Rhai array.
pub(crate) fn array_of(items: impl IntoIterator<Item = Dynamic>) -> Dynamic {
    Dynamic::from_array(items.into_iter().collect::<Array>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Years around the edges of what a date can be written with four digits, and around today.
    fn years() -> impl Iterator<Item = u32> {
        (0..=12).chain(1899..=1901).chain(1999..=2001).chain(2023..=2028).chain(2099..=2101).chain(9990..=9999)
    }

    #[test]
    fn fast_date_reads_exactly_what_date_parse_reads() {
        for year in years() {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    assert_eq!(fast_date(&text), Date::parse(&text), "{text}");
                }
            }
        }
        for text in [
            "",
            "2025-1-01",
            "2025-01-1",
            "2025/01/01",
            " 2025-01-01",
            "2025-01-01 ",
            "+2025-01-01",
            "20250101",
            "2025-01-011",
            "٢٠٢٥-01-01",
            "2025-0a-01",
            "-025-01-01",
            "2025--1-01",
        ] {
            assert_eq!(fast_date(text), Date::parse(text), "{text:?}");
        }
    }

    #[test]
    fn date_text_writes_what_date_display_writes() {
        for year in years() {
            for (month, day) in [(1, 1), (2, 28), (2, 29), (6, 15), (10, 9), (12, 31)] {
                let text = format!("{year:04}-{month:02}-{day:02}");
                if let Ok(date) = Date::parse(&text) {
                    assert_eq!(date_text(date).as_str(), date.to_string(), "{text}");
                    assert_eq!(date_text(date).as_str(), text);
                }
            }
        }
        let edges = [Date::parse("9999-12-31").unwrap().add_days(1), Date::parse("0000-01-01").unwrap().add_days(-1)];
        for date in edges.into_iter().flatten() {
            assert_eq!(date_text(date).as_str(), date.to_string());
        }
    }

    #[test]
    fn year_periods_are_the_year_as_written_by_to_string() {
        for text in ["2024-05-01", "2025-05-01", "2024-12-31", "0999-01-01", "0001-01-01"] {
            let date = Date::parse(text).unwrap();
            assert_eq!(year_text(date).as_str(), date.year().to_string());
        }
    }
}
