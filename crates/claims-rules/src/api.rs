//! The host API as data: every function the engine adds for scripts, with its parameters, what
//! it returns, a sentence and an example. `claimctl rules definitions` writes it out as a Rhai
//! definitions file (`rules/claims.d.rhai`) for editors; `rules/README.md` documents the same
//! functions. The tests check this list against what [`crate::engine`] really registers, so it
//! cannot drift from the engine.

use std::fmt::Write as _;

/// One host function.
#[derive(Debug, Clone, Copy)]
pub struct HostFunction {
    pub name: &'static str,
    /// Name and type of each parameter, types as Rhai definitions write them (`String`, `int`,
    /// `bool`, `Array`, `Map`, `?` for any value).
    pub parameters: &'static [(&'static str, &'static str)],
    pub returns: &'static str,
    pub doc: &'static str,
    pub example: &'static str,
}

const fn host(
    name: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    returns: &'static str,
    doc: &'static str,
    example: &'static str,
) -> HostFunction {
    HostFunction { name, parameters, returns, doc, example }
}

/// Every host function, in the order of `rules/README.md`.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    host(
        "param",
        &[("name", "String"), ("date", "String")],
        "?",
        "The value of the dated table `name` of params.rhai in force on `date` (the last row dated on or before it).",
        r#"param("G_FEE", line.service_date)  // 3000 from 2024-12-22"#,
    ),
    host(
        "apply_rate",
        &[("amount", "int"), ("rate_bps", "int")],
        "int",
        "`amount` × `rate_bps` / 10000, rounded as the pack's `rounding` says; the rate may be 0 to 100000 (1000 %).",
        "apply_rate(3150, 7000)  // 2205",
    ),
    host(
        "attr",
        &[("map", "Map"), ("key", "String"), ("default", "?")],
        "?",
        "`map[key]`, or `default` when the map has no such key (reading a missing key with `.` is an error).",
        r#"attr(member.attributes, "ald", false)"#,
    ),
    host("min", &[("a", "int"), ("b", "int")], "int", "The smaller of two integers.", "min(300, 150)  // 150"),
    host("max", &[("a", "int"), ("b", "int")], "int", "The larger of two integers.", "max(0, -20)  // 0"),
    host(
        "age_on",
        &[("birth_date", "String"), ("date", "String")],
        "int",
        "Full years between a birth date and a date.",
        r#"age_on("2008-11-06", "2025-11-05")  // 16"#,
    ),
    host("year_of", &[("date", "String")], "int", "The year of a date.", r#"year_of("2025-11-05")  // 2025"#),
    host(
        "add_days",
        &[("date", "String"), ("days", "int")],
        "String",
        "The date `days` days later (earlier when negative).",
        r#"add_days("2025-06-10", 3)  // "2025-06-13""#,
    ),
    host(
        "days_between",
        &[("from", "String"), ("to", "String")],
        "int",
        "`to` − `from` in days.",
        r#"days_between("2025-06-10", "2025-06-13")  // 3"#,
    ),
    host(
        "reason",
        &[("group", "String"), ("code", "String"), ("text", "String")],
        "Map",
        "A reason to show on the line; `group` is \"CO\", \"PR\" or \"OA\".",
        r#"reason("PR", "3", "per-visit charge")"#,
    ),
    host(
        "deny",
        &[("group", "String"), ("code", "String"), ("text", "String")],
        "denial",
        "A denial, to return from fn tariff, fn compulsory or fn supplementary: that part pays nothing.",
        r#"deny("PR", "96", "not covered")"#,
    ),
    host(
        "charge",
        &[("kind", "String"), ("amount", "int"), ("limits", "Array"), ("reason", "Map")],
        "Map",
        "A fixed charge taken off the compulsory gross (for `charges` in fn compulsory); the engine applies its limits.",
        r#"charge("deductible", 100, [per_year("deductible", line.service_date, 5000)], reason("PR", "1", "deductible"))"#,
    ),
    host(
        "per_year",
        &[("counter", "String"), ("date", "String"), ("max", "int")],
        "Map",
        "A limit on the member's counter for the calendar year of `date`.",
        r#"per_year("deductible", line.service_date, 5000)"#,
    ),
    host(
        "per_day",
        &[("counter", "String"), ("date", "String"), ("max", "int")],
        "Map",
        "A limit on the member's counter for the day `date`.",
        r#"per_day("deductible_transport", line.service_date, 800)"#,
    ),
    host(
        "household_per_year",
        &[("counter", "String"), ("date", "String"), ("max", "int")],
        "Map",
        "A limit on the household's counter for the calendar year of `date`.",
        r#"household_per_year("maf", line.service_date, 51692)"#,
    ),
    host(
        "per_claim",
        &[("counter", "String"), ("max", "int")],
        "Map",
        "A limit within this claim only.",
        r#"per_claim("optics_b_allowance", 25000)"#,
    ),
    host(
        "once_every",
        &[("counter", "String"), ("days", "int")],
        "Map",
        "A frequency rule for fn supplementary: a second use within `days` of a use in another claim pays 0 (PR-119).",
        r#"once_every("optics_b", 730)"#,
    ),
];

/// The functions a pack defines and the engine calls, with what they receive.
const ENTRY_POINTS: &[(&str, &str)] = &[
    (
        "fn tariff(line, member, provider, claim)",
        "In each agreement script (and outside_agreement): #{ base, rate_bps, category } or deny(...).",
    ),
    (
        "fn compulsory(plan, line, member, provider, claim, tariff)",
        "In compulsory plan scripts: #{ rate_bps, gross, charges, never_covered, share_ceiling, reasons } or deny(...).",
    ),
    (
        "fn supplementary(plan, line, member, provider, claim, tariff, compulsory)",
        "In product scripts: #{ amount, limits, frequency, reasons } or deny(...).",
    ),
];

/// The values the entry points receive, with their keys.
const VALUES: &[(&str, &str)] = &[
    ("plan", "the plan's name (String)"),
    ("line", "line, act, service_date (\"YYYY-MM-DD\"), quantity, charged, attributes (Map)"),
    ("member", "member_id, household_id, birth_date, age (full years on the line's date), attributes (Map)"),
    ("provider", "provider_id, agreement (String, or () outside any agreement), attributes (Map)"),
    ("claim", "claim_id, submitted_on, third_party (list of schemes)"),
    ("tariff", "base, rate_bps, category, third_party_required, reasons, flags, and each flag as a key"),
    ("compulsory", "plan, rate_bps, gross, deductions (list of #{kind, amount}), ceiling_refund, paid; or ()"),
];

/// The Rhai standard functions the sandbox offers (strings, lists, maps, arithmetic, logic),
/// as `Engine::definitions` writes them; kept up to date by a test of this module.
const SANDBOX_DEFINITIONS: &str = include_str!("sandbox.d.rhai");

/// Rhai's own functions that are part of the language rather than of a package.
const LANGUAGE_FUNCTIONS: &[&str] =
    &["type_of", "Fn", "call", "curry", "is_def_fn", "is_def_var", "is_shared", "print", "debug"];

/// Whether a script may call a function named `name` (with the plain `name(...)` syntax):
/// a host function, a standard function of the sandbox or a function of the language.
pub(crate) fn is_known_function(name: &str) -> bool {
    LANGUAGE_FUNCTIONS.contains(&name)
        || HOST_FUNCTIONS.iter().any(|function| function.name == name)
        || SANDBOX_DEFINITIONS.lines().any(|line| {
            line.strip_prefix("fn ").and_then(|rest| rest.strip_prefix(name)).is_some_and(|rest| rest.starts_with('('))
        })
}

/// Every function name [`is_known_function`] accepts, for suggestions.
pub(crate) fn known_functions() -> std::collections::BTreeSet<String> {
    let standard = SANDBOX_DEFINITIONS
        .lines()
        .filter_map(|line| line.strip_prefix("fn ")?.split_once('(').map(|(name, _)| name))
        .filter(|name| !name.contains(' '));
    let host = HOST_FUNCTIONS.iter().map(|function| function.name);
    LANGUAGE_FUNCTIONS.iter().copied().chain(host).chain(standard).map(str::to_owned).collect()
}

/// The definitions file for editors (`rules/claims.d.rhai`): the entry points and values as
/// comments, the host functions with their documentation, then the standard functions.
pub fn definitions() -> String {
    let mut text = String::from(
        "// Rhai definitions of the claims rule-script API, for editors (Rhai's language server reads\n\
         // `*.d.rhai`). Generated by `claimctl rules definitions`: do not edit; a test fails when it is\n\
         // out of date. The guide is rules/README.md.\n//\n// Functions a pack defines:\n",
    );
    for (signature, doc) in ENTRY_POINTS {
        let _ = writeln!(text, "//   {signature}\n//       {doc}");
    }
    text.push_str("//\n// Values they receive:\n");
    for (name, keys) in VALUES {
        let _ = writeln!(text, "//   {name}: {keys}");
    }
    text.push_str("\nmodule static;\n\n// ---- host functions (rules/README.md, \"Host functions\") ----\n");
    for function in HOST_FUNCTIONS {
        let parameters: Vec<String> =
            function.parameters.iter().map(|(name, kind)| format!("{name}: {kind}")).collect();
        let _ = write!(
            text,
            "\n/// {}\n///\n/// ```rhai\n/// {}\n/// ```\nfn {}({}) -> {};\n",
            function.doc,
            function.example,
            function.name,
            parameters.join(", "),
            function.returns
        );
    }
    text.push_str("\n// ---- standard functions of the sandbox (strings, lists, maps, arithmetic) ----\n\n");
    text.push_str(SANDBOX_DEFINITIONS);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use claims_domain::money::Rounding;

    use super::*;
    use crate::engine::{PackData, pack_engine, sandboxed_engine};
    use crate::params::Params;

    /// `(name, number of parameters)` of every function registered on the engine outside the
    /// standard packages.
    fn registered(engine: &rhai::Engine) -> BTreeSet<(String, usize)> {
        engine
            .gen_fn_signatures(false)
            .iter()
            .map(|signature| {
                let (name, rest) = signature.split_once('(').expect("a signature");
                let arguments = rest.split_once(')').expect("a signature").0;
                let count = if arguments.trim().is_empty() { 0 } else { arguments.split(',').count() };
                (name.trim().to_owned(), count)
            })
            .collect()
    }

    #[test]
    fn the_host_api_list_is_what_the_engine_registers() {
        let engine = pack_engine(Arc::new(PackData { params: Params::default(), rounding: Rounding::HalfUp }));
        let listed: BTreeSet<(String, usize)> =
            HOST_FUNCTIONS.iter().map(|function| (function.name.to_owned(), function.parameters.len())).collect();
        assert_eq!(listed, registered(&engine));
        assert!(registered(&sandboxed_engine()).is_empty(), "the bare sandbox has no host functions");
    }

    /// `UPDATE_DEFINITIONS=1 cargo test -p claims-rules` rewrites `src/sandbox.d.rhai`.
    #[test]
    fn the_sandbox_definitions_are_what_the_engine_offers() {
        let engine = sandboxed_engine();
        let actual = engine.definitions().include_standard_packages(true).with_headers(false).static_module();
        let actual = format!("{}\n", actual.trim_end());
        if std::env::var_os("UPDATE_DEFINITIONS").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/src/sandbox.d.rhai"), &actual).expect("writes");
        }
        assert!(
            SANDBOX_DEFINITIONS == actual,
            "src/sandbox.d.rhai is out of date: run UPDATE_DEFINITIONS=1 cargo test -p claims-rules"
        );
        for function in ["len", "push", "contains", "to_upper", "keys", "abs"] {
            assert!(actual.contains(&format!("fn {function}(")), "{function}");
        }
        for absent in ["fn sleep(", "fn parse_json(", "fn eval(", "fn timestamp("] {
            assert!(!actual.contains(absent), "{absent}");
        }
    }

    #[test]
    fn the_definitions_name_every_host_function_with_its_example() {
        let text = definitions();
        let (text, _standard) = text.split_once("// ---- standard functions").expect("two sections");
        assert!(text.contains("fn param(name: String, date: String) -> ?;"), "{text}");
        assert!(text.contains("/// apply_rate(3150, 7000)  // 2205\n"));
        for function in HOST_FUNCTIONS {
            assert_eq!(text.matches(&format!("\nfn {}(", function.name)).count(), 1, "{}", function.name);
        }
    }
}
