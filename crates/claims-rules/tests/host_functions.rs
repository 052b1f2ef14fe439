//! The host functions of `rules/README.md` and the values scripts receive.

mod common;

use claims_domain::attributes::AttributeValue;
use claims_domain::rules::{RulePack, Ruling, Tariff};
use claims_rules::RhaiPack;
use common::{Fixture, TempPack};

const SCRIPT: &str = "agreements/doctors.rhai";

fn load(script: &str) -> (TempPack, RhaiPack) {
    let pack_dir = TempPack::new(&[(SCRIPT, script)]);
    let pack = RhaiPack::load(pack_dir.path()).unwrap_or_else(|error| panic!("the pack loads: {error}"));
    (pack_dir, pack)
}

fn covered(ruling: Ruling<Tariff>) -> Tariff {
    match ruling {
        Ruling::Covered(tariff) => tariff,
        Ruling::Denied(reason) => panic!("denied: {reason:?}"),
    }
}

/// Evaluates `expression` inside `fn tariff` on a line of `service_date`; the value comes back
/// through the flag `value`.
fn evaluate_on(expression: &str, service_date: &str) -> Result<AttributeValue, String> {
    let script = format!(
        "fn tariff(line, member, provider, claim) {{\n    #{{ base: 0, rate_bps: 0, category: \"x\", value: {expression} }}\n}}\n"
    );
    let (_dir, pack) = load(&script);
    let fixture = Fixture::new("G", service_date, 3000);
    match pack.tariff(&fixture.context()) {
        Ok(ruling) => Ok(covered(ruling).flags["value"].clone()),
        Err(failure) => Err(failure.message),
    }
}

fn evaluate(expression: &str) -> Result<AttributeValue, String> {
    evaluate_on(expression, "2025-11-05")
}

fn integer(value: i64) -> Result<AttributeValue, String> {
    Ok(AttributeValue::Integer(value))
}

fn text(value: &str) -> Result<AttributeValue, String> {
    Ok(AttributeValue::Text(value.to_owned()))
}

#[test]
fn param_reads_the_row_in_force_on_the_date_including_its_first_day() {
    let (_dir, pack) = load(common::TARIFF);
    for (date, fee) in [("2023-12-21", 2500), ("2023-12-22", 2650), ("2024-12-21", 2650), ("2024-12-22", 3000)] {
        let fixture = Fixture::new("G", date, 3000);
        let tariff = covered(pack.tariff(&fixture.context()).expect("the tariff runs"));
        assert_eq!(tariff.base.minor_units(), fee, "on {date}");
    }
}

#[test]
fn param_errors_name_the_table_and_the_date() {
    assert_eq!(
        evaluate("param(\"G_FEE\", \"1999-01-01\")"),
        Err("parameter \"G_FEE\" has no row in force on 1999-01-01".into())
    );
    assert_eq!(
        evaluate("param(\"G_FE\", line.service_date)"),
        Err("unknown parameter \"G_FE\" (did you mean \"G_FEE\"?)".into())
    );
    assert_eq!(
        evaluate("param(\"G_FEE\", \"2025-02-30\")"),
        Err("param: \"2025-02-30\" is not a valid date (expected YYYY-MM-DD)".into())
    );
    assert_eq!(
        evaluate("param(\"G_FEE\", 20250101)"),
        Err("param: expected a string for the date, got an integer".into())
    );
}

#[test]
fn a_host_error_points_at_the_call() {
    let (dir, pack) = load(
        "fn tariff(line, member, provider, claim) {\n    let fee = param(\"G_FEE\", \"1999-01-01\");\n    fee\n}\n",
    );
    let failure = pack.tariff(&Fixture::new("G", "2025-11-05", 3000).context()).expect_err("no row");
    assert_eq!(
        failure.to_string(),
        format!("{}:2:15: parameter \"G_FEE\" has no row in force on 1999-01-01", dir.label(SCRIPT))
    );
}

#[test]
fn param_values_may_be_maps() {
    assert_eq!(evaluate("param(\"PERCENT\", line.service_date)[\"CONFORT\"]"), integer(20000));
}

#[test]
fn apply_rate_rounds_as_the_pack_says() {
    assert_eq!(evaluate("apply_rate(3150, 7000)"), integer(2205));
    assert_eq!(evaluate("apply_rate(1, 5000)"), integer(1));
    assert_eq!(evaluate("apply_rate(3000, 20000)"), integer(6000));
    assert_eq!(
        evaluate("apply_rate(3000, 100001)"),
        Err("apply_rate: rate of 100001 basis points is outside 0..=100000".into())
    );
    let manifest = common::MANIFEST.replace("half_up", "down");
    let pack_dir = TempPack::new(&[
        ("pack.rhai", &manifest),
        (
            SCRIPT,
            "fn tariff(line, member, provider, claim) { #{ base: apply_rate(1, 5000), rate_bps: 0, category: \"x\" } }",
        ),
    ]);
    let pack = RhaiPack::load(pack_dir.path()).expect("the pack loads");
    let tariff = covered(pack.tariff(&Fixture::new("G", "2025-11-05", 3000).context()).expect("runs"));
    assert_eq!(tariff.base.minor_units(), 0);
}

#[test]
fn date_helpers() {
    assert_eq!(evaluate("age_on(\"2008-11-06\", \"2025-11-05\")"), integer(16));
    assert_eq!(evaluate("age_on(\"2008-11-06\", \"2025-11-06\")"), integer(17));
    assert_eq!(evaluate("year_of(\"2025-11-05\")"), integer(2025));
    assert_eq!(evaluate("add_days(\"2025-06-10\", 3)"), text("2025-06-13"));
    assert_eq!(evaluate("add_days(\"2024-02-28\", 1)"), text("2024-02-29"));
    assert_eq!(evaluate("days_between(\"2025-06-10\", \"2025-06-13\")"), integer(3));
    assert_eq!(evaluate("days_between(\"2025-06-13\", \"2025-06-10\")"), integer(-3));
    assert_eq!(
        evaluate("year_of(\"2025-2-03\")"),
        Err("year_of: \"2025-2-03\" is not a valid date (expected YYYY-MM-DD)".into())
    );
    assert_eq!(evaluate("\"2025-11-05\" < \"2025-11-06\""), Ok(AttributeValue::Bool(true)));
}

#[test]
fn min_max_and_attr() {
    assert_eq!(evaluate("min(300, 150)"), integer(150));
    assert_eq!(evaluate("max(300, 150)"), integer(300));
    assert_eq!(evaluate("attr(line.attributes, \"care_pathway\", \"out\")"), text("in"));
    assert_eq!(evaluate("attr(line.attributes, \"tooth\", 0)"), integer(0));
    assert_eq!(evaluate("attr(member.attributes, \"ald\", true)"), Ok(AttributeValue::Bool(false)));
    assert_eq!(evaluate("attr(1, \"x\", 0)"), Err("attr: expected a map first, got an integer".into()));
}

#[test]
fn values_scripts_receive() {
    assert_eq!(evaluate_on("member.age", "2025-11-05"), integer(16));
    assert_eq!(evaluate_on("member.age", "2025-11-06"), integer(17));
    assert_eq!(
        evaluate("member.member_id + \"/\" + member.household_id + \"/\" + member.birth_date"),
        text("M-1/H-1/2008-11-06")
    );
    assert_eq!(evaluate("line.line"), integer(1));
    assert_eq!(evaluate("line.act + line.service_date"), text("G2025-11-05"));
    assert_eq!(evaluate("line.quantity * line.charged"), integer(3000));
    assert_eq!(evaluate("provider.provider_id + \" \" + provider.agreement"), text("P-1 test-doctors"));
    assert_eq!(evaluate("provider.attributes.sector"), integer(1));
    assert_eq!(evaluate("claim.claim_id + \" \" + claim.submitted_on"), text("C-1 2025-11-06"));
    assert_eq!(evaluate("\"compulsory\" in claim.third_party"), Ok(AttributeValue::Bool(true)));
    assert_eq!(evaluate("member.attributes.missing"), Err("map has no key \"missing\"".into()));
}

#[test]
fn reason_and_deny_check_their_group() {
    let (_dir, pack) = load("fn tariff(line, member, provider, claim) { deny(\"PR\", \"96\", \"not covered\") }");
    let ruling = pack.tariff(&Fixture::new("G", "2025-11-05", 3000).context()).expect("runs");
    let Ruling::Denied(reason) = ruling else { panic!("expected a denial") };
    assert_eq!((reason.group.name(), reason.code.as_str(), reason.text.as_str()), ("PR", "96", "not covered"));
    assert_eq!(
        evaluate("reason(\"XX\", \"1\", \"x\")"),
        Err("reason: unknown reason group \"XX\" (expected \"CO\", \"PR\" or \"OA\")".into())
    );
    assert_eq!(evaluate("reason(\"PR\", \"\", \"x\")"), Err("reason: the code is empty".into()));
}

#[test]
fn limits_check_their_arguments() {
    assert_eq!(
        evaluate("per_year(\"x\", line.service_date, -1)"),
        Err("per_year: the maximum must not be negative, got -1".into())
    );
    assert_eq!(
        evaluate("once_every(\"optics\", 0)"),
        Err("once_every: the number of days must be positive, got 0".into())
    );
    assert_eq!(
        evaluate("charge(\"c\", \"200\", [], reason(\"PR\", \"3\", \"x\"))"),
        Err("charge: expected an integer for the amount, got a string".into())
    );
}

#[test]
fn a_function_called_with_wrong_arguments_is_named_in_analyst_terms() {
    let message = evaluate("min(1, \"2\")").expect_err("no such function");
    assert_eq!(message, "no function min(an integer, a string) (wrong name, or wrong number or kinds of arguments)");
}
