//! The sandboxed Rhai engine: chosen packages only, hard limits, no output, no clock, no files,
//! and the host functions of the rule-script API (`rules/README.md`, "Host functions").
//!
//! One engine is built per loaded pack, because `param` and `apply_rate` read that pack's dated
//! tables and rounding.

use std::sync::Arc;

use claims_domain::accumulators::CLAIM_PERIOD;
use claims_domain::date::Date;
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

fn register_values(engine: &mut Engine, data: Arc<PackData>) {
    let params_data = Arc::clone(&data);
    engine.register_fn("param", move |name: Dynamic, date: Dynamic| -> HostResult<Dynamic> {
        let name = text_argument("param", "the table name", &name)?;
        let date = date_argument("param", &date)?;
        params_data.params.lookup(&name, date).cloned().map_err(|error| host_error(error.to_string()))
    });
    engine.register_fn("apply_rate", move |amount: Dynamic, rate: Dynamic| -> HostResult<i64> {
        let amount = integer_argument("apply_rate", "the amount", &amount)?;
        let rate = integer_argument("apply_rate", "the rate", &rate)?;
        let rate = RateBps::new(rate).map_err(|error| host_error(format!("apply_rate: {error}")))?;
        rate.apply(Amount::from_minor(amount), data.rounding)
            .map(Amount::minor_units)
            .map_err(|_| host_error("apply_rate: the result is too large".to_owned()))
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

fn register_dates(engine: &mut Engine) {
    engine.register_fn("age_on", |birth: Dynamic, date: Dynamic| -> HostResult<i64> {
        Ok(date_argument("age_on", &birth)?.age_on(date_argument("age_on", &date)?))
    });
    engine.register_fn("year_of", |date: Dynamic| -> HostResult<i64> {
        Ok(i64::from(date_argument("year_of", &date)?.year()))
    });
    engine.register_fn("add_days", |date: Dynamic, days: Dynamic| -> HostResult<ImmutableString> {
        let date = date_argument("add_days", &date)?;
        let days = integer_argument("add_days", "the number of days", &days)?;
        date.add_days(days)
            .map(|day| day.to_string().into())
            .ok_or_else(|| host_error(format!("add_days: {date} plus {days} days is out of the calendar")))
    });
    engine.register_fn("days_between", |from: Dynamic, to: Dynamic| -> HostResult<i64> {
        Ok(date_argument("days_between", &from)?.days_until(date_argument("days_between", &to)?))
    });
}

fn register_results(engine: &mut Engine) {
    engine.register_fn("reason", |group: Dynamic, code: Dynamic, text: Dynamic| -> HostResult<Map> {
        Ok(reason_map(&reason_arguments("reason", &group, &code, &text)?))
    });
    engine.register_fn("deny", |group: Dynamic, code: Dynamic, text: Dynamic| -> HostResult<Denial> {
        Ok(Denial(reason_arguments("deny", &group, &code, &text)?))
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
            let mut map = Map::new();
            map.insert("kind".into(), kind.into());
            map.insert("amount".into(), amount.into());
            map.insert("limits".into(), limits);
            map.insert("reason".into(), reason);
            Ok(map)
        },
    );
    engine.register_fn("per_year", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = date_argument("per_year", &date)?.year().to_string();
        limit_map("per_year", &counter, "member", period, &max)
    });
    engine.register_fn("per_day", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = date_argument("per_day", &date)?.to_string();
        limit_map("per_day", &counter, "member", period, &max)
    });
    engine.register_fn("household_per_year", |counter: Dynamic, date: Dynamic, max: Dynamic| -> HostResult<Map> {
        let period = date_argument("household_per_year", &date)?.year().to_string();
        limit_map("household_per_year", &counter, "household", period, &max)
    });
    engine.register_fn("per_claim", |counter: Dynamic, max: Dynamic| -> HostResult<Map> {
        limit_map("per_claim", &counter, "member", CLAIM_PERIOD.to_owned(), &max)
    });
    engine.register_fn("once_every", |counter: Dynamic, days: Dynamic| -> HostResult<Map> {
        let counter = name_argument("once_every", "the counter", &counter)?;
        let days = integer_argument("once_every", "the number of days", &days)?;
        if days <= 0 {
            return Err(host_error(format!("once_every: the number of days must be positive, got {days}")));
        }
        let mut map = Map::new();
        map.insert("counter".into(), counter.into());
        map.insert("days".into(), days.into());
        Ok(map)
    });
}

fn limit_map(function: &str, counter: &Dynamic, scope: &str, period: String, max: &Dynamic) -> HostResult<Map> {
    let counter = name_argument(function, "the counter", counter)?;
    let max = integer_argument(function, "the maximum", max)?;
    if max < 0 {
        return Err(host_error(format!("{function}: the maximum must not be negative, got {max}")));
    }
    let mut map = Map::new();
    map.insert("counter".into(), counter.into());
    map.insert("scope".into(), scope.into());
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
    let group_name = text_argument(function, "the group", group)?;
    let group = ReasonGroup::parse(&group_name).ok_or_else(|| {
        host_error(format!(
            "{function}: unknown reason group {:?} (expected \"CO\", \"PR\" or \"OA\")",
            group_name.as_str()
        ))
    })?;
    let code = name_argument(function, "the code", code)?;
    let text = text_argument(function, "the text", text)?;
    Ok(Reason::new(group, &code, text.as_str()))
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
    let text = text_argument(function, what, value)?;
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
    let text = text_argument(function, "the date", value)?;
    Date::parse(&text).map_err(|error| host_error(format!("{function}: {error}")))
}

/// A list of values as a Rhai array.
pub(crate) fn array_of(items: impl IntoIterator<Item = Dynamic>) -> Dynamic {
    Dynamic::from_array(items.into_iter().collect::<Array>())
}
