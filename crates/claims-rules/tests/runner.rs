//! The pack test runner, end to end through the embedded ledger.

mod common;

use claims_rules::run_pack_tests;
use common::TempPack;

const REGISTRY: &str = r#"{
  "members": [{"member_id": "M-1", "household_id": "H-1", "birth_date": "1985-03-02", "attributes": {},
    "coverages": [
      {"scheme": "compulsory", "plan": "RG", "from": "2020-01-01", "to": null},
      {"scheme": "supplementary", "plan": "CONFORT", "from": "2020-01-01", "to": null,
       "waiting_until": null, "suspended": [], "unpaid_months": []}]}],
  "providers": [{"provider_id": "P-1", "agreement": "test-doctors", "from": "2020-01-01", "to": null,
    "attributes": {}}]
}"#;

fn scenario(name: &str, registry: &str, paid: i64) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "registry": {registry},
  "counters": [{{"subject": "member", "id": "M-1", "counter": "deductible", "period": "2025", "value": 4850}}],
  "messages": [{{"schema": "claim/v1", "claim_id": "C-1", "provider_id": "P-1", "member_id": "M-1",
    "submitted_on": "2025-11-06", "currency": "EUR", "third_party_payment": [],
    "lines": [{{"line": 1, "act": "G", "service_date": "2025-11-05", "quantity": 1, "charged": 3000,
      "attributes": {{}}}}]}}],
  "expect": [{{"outcome": "complete", "lines": [{{"line": 1, "compulsory": {{"gross": 2100, "paid": {paid}}},
    "supplementary": {{"product": "CONFORT", "paid": 900}}, "member_share": 0}}]}}],
  "expect_counters": [{{"subject": "member", "id": "M-1", "counter": "deductible", "period": "2025", "value": 4850}}]
}}"#
    )
}

#[test]
fn runs_every_scenario_and_shows_each_difference() {
    let pack = TempPack::new(&[
        ("tests/registry.json", REGISTRY),
        ("tests/a-pass.json", &scenario("GP visit, registry file", "\"registry.json\"", 2100)),
        ("tests/b-inline.json", &scenario("GP visit, inline registry", REGISTRY, 2100)),
        ("tests/c-fail.json", &scenario("GP visit, wrong expectation", "\"registry.json\"", 1900)),
        ("tests/d-broken.json", "{ not json"),
    ]);
    let report = run_pack_tests(pack.path(), None).expect("the tests run");
    let text = report.to_string();
    assert_eq!((report.passed(), report.failed()), (2, 2), "{text}");
    assert!(text.ends_with("\n2 passed, 2 failed"), "{text}");
    assert!(text.contains("FAIL GP visit, wrong expectation (c-fail.json)"), "{text}");
    assert!(
        text.contains("     messages[0].lines[0]  expected  actual\n       compulsory.paid         1900    2100\n"),
        "{text}"
    );
    assert!(text.contains("FAIL d-broken.json (d-broken.json)\n     invalid test: not valid JSON"), "{text}");
    assert!(!text.contains("registry.json)"), "the registry is not a test: {text}");

    let filtered = run_pack_tests(pack.path(), Some("inline")).expect("the tests run");
    assert_eq!(filtered.to_string(), "ok   GP visit, inline registry (b-inline.json)\n1 passed, 0 failed");
}

#[test]
fn a_broken_pack_stops_the_run_with_its_problems() {
    let pack = TempPack::new(&[("plans/rg.rhai", "fn compulsory("), ("tests/registry.json", REGISTRY)]);
    let error = run_pack_tests(pack.path(), None).expect_err("the pack does not load");
    assert!(error.to_string().starts_with(&pack.label("plans/rg.rhai")), "{error}");
}

#[test]
fn a_rule_failure_is_shown_beside_the_differences() {
    let broken = "fn compulsory(plan, line, member, provider, claim, tariff) {\n    loop {}\n}\n";
    let pack = TempPack::new(&[
        ("plans/rg.rhai", broken),
        ("tests/registry.json", REGISTRY),
        ("tests/case.json", &scenario("loops", "\"registry.json\"", 2100)),
    ]);
    let text = run_pack_tests(pack.path(), None).expect("the tests run").to_string();
    assert!(
        text.contains("     messages[0]    expected   actual\n       outcome    \"complete\"  \"error\"\n"),
        "{text}"
    );
    let note = format!(
        "note: messages[0]: the rules failed: {}:1:1: too many operations (endless loop?) in fn compulsory",
        pack.label("plans/rg.rhai")
    );
    assert!(text.contains(&note), "{text}");
}
