//! What scripts return is read strictly into the domain's rulings.

mod common;

use claims_domain::accumulators::{CLAIM_PERIOD, Frequency, Limit, Scope};
use claims_domain::attributes::AttributeValue;
use claims_domain::decision::CompulsoryPart;
use claims_domain::money::{Amount, RateBps};
use claims_domain::rules::{CompulsoryRuling, RulePack, Ruling, SupplementaryRuling, Tariff};
use claims_rules::RhaiPack;
use common::{Fixture, TempPack, plan};

const AGREEMENT: &str = "agreements/doctors.rhai";
const COMPULSORY: &str = "plans/rg.rhai";
const PRODUCTS: &str = "plans/products.rhai";

fn load(files: &[(&str, &str)]) -> (TempPack, RhaiPack) {
    let pack_dir = TempPack::new(files);
    let pack = RhaiPack::load(pack_dir.path()).unwrap_or_else(|error| panic!("the pack loads: {error}"));
    (pack_dir, pack)
}

fn tariff_script(map: &str) -> String {
    format!("fn tariff(line, member, provider, claim) {{\n    {map}\n}}\n")
}

fn compulsory_script(body: &str) -> String {
    format!("fn compulsory(plan, line, member, provider, claim, tariff) {{\n    {body}\n}}\n")
}

fn supplementary_script(body: &str) -> String {
    format!("fn supplementary(plan, line, member, provider, claim, tariff, compulsory) {{\n    {body}\n}}\n")
}

fn base_tariff(base: i64) -> Tariff {
    Tariff {
        base: Amount::from_minor(base),
        rate_bps: RateBps::new(7000).expect("rate"),
        category: "doctor".into(),
        third_party_required: Default::default(),
        flags: Default::default(),
        reasons: Vec::new(),
    }
}

fn run_compulsory(body: &str) -> Result<Ruling<CompulsoryRuling>, String> {
    let (_dir, pack) = load(&[(COMPULSORY, &compulsory_script(body))]);
    let fixture = Fixture::new("G", "2025-11-05", 3000);
    pack.compulsory(&fixture.context(), &plan("RG"), &base_tariff(3000)).map_err(|failure| failure.message)
}

fn run_supplementary(body: &str, compulsory: Option<&CompulsoryPart>) -> Result<Ruling<SupplementaryRuling>, String> {
    let (_dir, pack) = load(&[(PRODUCTS, &supplementary_script(body))]);
    let fixture = Fixture::new("G", "2025-11-05", 3000);
    pack.supplementary(&fixture.context(), &plan("CONFORT"), &base_tariff(3000), compulsory)
        .map_err(|failure| failure.message)
}

fn covered<T: std::fmt::Debug>(ruling: Ruling<T>) -> T {
    match ruling {
        Ruling::Covered(value) => value,
        Ruling::Denied(reason) => panic!("denied: {reason:?}"),
    }
}

#[test]
fn a_string_amount_is_an_error_naming_the_key_at_the_function() {
    let (dir, pack) = load(&[(AGREEMENT, &tariff_script("#{ base: \"3000\", rate_bps: 7000, category: \"doctor\" }"))]);
    let failure = pack.tariff(&Fixture::new("G", "2025-11-05", 3000).context()).expect_err("a string base");
    assert_eq!(
        failure.to_string(),
        format!("{}:1:1: fn tariff: expected an integer amount for \"base\", got a string", dir.label(AGREEMENT))
    );
}

#[test]
fn tariff_keys_are_checked() {
    let cases = [
        ("#{ rate_bps: 7000, category: \"doctor\" }", "fn tariff: missing key \"base\""),
        ("#{ base: -1, rate_bps: 7000, category: \"doctor\" }", "fn tariff: \"base\" is -1: it must not be negative"),
        (
            "#{ base: 1, rate_bps: 12000, category: \"doctor\" }",
            "fn tariff: \"rate_bps\" is 12000: a rate here must be within 0..=10000 basis points",
        ),
        ("#{ base: 1, rate_bps: 7000, category: \"\" }", "fn tariff: \"category\" is empty"),
        (
            "#{ base: 1, rate_bps: 7000, category: \"x\", third_party_required: [\"compulsary\"] }",
            "fn tariff: \"third_party_required[0]\" is \"compulsary\": expected \"compulsory\" or \"supplementary\"",
        ),
        (
            "#{ base: 1, rate_bps: 7000, category: \"x\", extra: [1] }",
            "fn tariff: \"extra\" is a list: a value passed on to the plan scripts must be true/false, a number or a string",
        ),
        ("", "fn tariff: expected a map #{ base, rate_bps, category } or deny(...), got nothing"),
    ];
    for (map, expected) in cases {
        let (_dir, pack) = load(&[(AGREEMENT, &tariff_script(map))]);
        let failure = pack.tariff(&Fixture::new("G", "2025-11-05", 3000).context()).expect_err(map);
        assert_eq!(failure.message, expected, "{map}");
    }
}

#[test]
fn extra_tariff_keys_and_flags_reach_the_plan_scripts() {
    let tariff_map = "#{ base: 3000, rate_bps: 7000, category: \"hospital\", heavy_act: true, \
                      third_party_required: [\"compulsory\"], reasons: [reason(\"PR\", \"2\", \"x\")], flags: #{ days: 3 } }";
    let compulsory = "if tariff.heavy_act && tariff.flags.days == 3 && tariff.third_party_required[0] == \"compulsory\" \
                      && tariff.reasons[0].code == \"2\" { #{ rate_bps: 10000 } } else { #{ rate_bps: 0 } }";
    let (_dir, pack) = load(&[(AGREEMENT, &tariff_script(tariff_map)), (COMPULSORY, &compulsory_script(compulsory))]);
    let fixture = Fixture::new("G", "2025-11-05", 3000);
    let tariff = covered(pack.tariff(&fixture.context()).expect("runs"));
    assert_eq!(tariff.flags["heavy_act"], AttributeValue::Bool(true));
    assert_eq!(tariff.flags["days"], AttributeValue::Integer(3));
    assert_eq!(tariff.reasons.len(), 1);
    let ruling = covered(pack.compulsory(&fixture.context(), &plan("RG"), &tariff).expect("runs"));
    assert_eq!(ruling.rate_bps.bps(), 10000);
    assert_eq!(ruling.gross.minor_units(), 3000, "gross defaults to apply_rate(base, rate_bps)");
}

#[test]
fn compulsory_charges_limits_and_ceilings() {
    let body = "#{ rate_bps: 7000, gross: 2100,\n\
        charges: [charge(\"per_visit_charge\", 200, [per_year(\"per_visit_charge\", line.service_date, 5000),\n\
                  per_day(\"per_visit_charge@\" + provider.provider_id, line.service_date, 800)], reason(\"PR\", \"3\", \"per-visit charge\"))],\n\
        never_covered: [#{ kind: \"out_of_pathway\", amount: 1200 }],\n\
        share_ceiling: [household_per_year(\"maf\", line.service_date, 51692)],\n\
        reasons: [reason(\"PR\", \"2\", \"co-insurance\")] }";
    let ruling = covered(run_compulsory(body).expect("runs"));
    assert_eq!(ruling.gross.minor_units(), 2100);
    assert_eq!(ruling.charges.len(), 1);
    let charge = &ruling.charges[0];
    assert_eq!(
        (charge.kind.as_str(), charge.amount.minor_units(), charge.reason.code.as_str()),
        ("per_visit_charge", 200, "3")
    );
    assert_eq!(
        charge.limits,
        [
            Limit {
                counter: "per_visit_charge".into(),
                scope: Scope::Member,
                period: "2025".into(),
                max: Amount::from_minor(5000)
            },
            Limit {
                counter: "per_visit_charge@P-1".into(),
                scope: Scope::Member,
                period: "2025-11-05".into(),
                max: Amount::from_minor(800)
            },
        ]
    );
    assert_eq!(ruling.never_covered[0].amount.minor_units(), 1200);
    assert_eq!(ruling.share_ceiling[0].scope, Scope::Household);
    assert_eq!(ruling.share_ceiling[0].period, "2025");
    assert_eq!(ruling.reasons[0].text, "co-insurance");
}

#[test]
fn compulsory_answers_are_checked() {
    let cases = [
        (
            "#{ rate_bps: 12000 }",
            "fn compulsory: \"rate_bps\" is 12000: a rate here must be within 0..=10000 basis points",
        ),
        ("#{ rate_bps: 7000, gross: 3001 }", "fn compulsory: \"gross\" is 3001, more than the tariff base 3000"),
        (
            "#{ rate_bps: 7000, gros: 1 }",
            "fn compulsory: unknown key \"gros\" (allowed: rate_bps, gross, charges, never_covered, share_ceiling, reasons)",
        ),
        (
            "#{ rate_bps: 7000, charges: [charge(\"c\", 1, [], reason(\"PR\", \"3\", \"x\")), #{ kind: \"c\", amount: \"1\" }] }",
            "fn compulsory: expected an integer amount for \"charges[1].amount\", got a string",
        ),
        (
            "#{ rate_bps: 7000, charges: [#{ kind: \"c\", amount: \"1\", limits: [], reason: reason(\"PR\", \"3\", \"x\") }] }",
            "fn compulsory: expected an integer amount for \"charges[0].amount\", got a string",
        ),
    ];
    for (body, expected) in cases {
        let message = run_compulsory(body).expect_err(body);
        assert!(message.starts_with(expected), "{body}\n{message}");
    }
    let Ruling::Denied(reason) = run_compulsory("deny(\"PR\", \"96\", \"no\")").expect("runs") else {
        panic!("expected a denial")
    };
    assert_eq!(reason.code, "96");
}

#[test]
fn supplementary_answers() {
    let part = CompulsoryPart {
        plan: plan("RG"),
        rate_bps: RateBps::new(7000).expect("rate"),
        gross: Amount::from_minor(2100),
        deductions: Vec::new(),
        ceiling_refund: Amount::ZERO,
        paid: Amount::from_minor(2100),
    };
    let body = "#{ amount: apply_rate(tariff.base, param(\"PERCENT\", line.service_date)[plan]) - compulsory.gross,\n\
                limits: [per_claim(\"optics\", 25000)], frequency: once_every(\"optics_b\", 730) }";
    let ruling = covered(run_supplementary(body, Some(&part)).expect("runs"));
    assert_eq!(ruling.amount.minor_units(), 6000 - 2100);
    assert_eq!(ruling.limits[0].period, CLAIM_PERIOD);
    assert_eq!(ruling.frequency, Some(Frequency { counter: "optics_b".into(), days: 730 }));
    let negative = covered(run_supplementary("#{ amount: -5 }", None).expect("runs"));
    assert_eq!(negative.amount, Amount::ZERO, "a negative amount counts as 0");
    let no_compulsory = run_supplementary("#{ amount: 1 - compulsory.gross }", None).expect_err("no compulsory part");
    assert_eq!(no_compulsory, "cannot read \"gross\" of nothing: only maps have keys");
    let missing = run_supplementary("#{ limits: [] }", None).expect_err("no amount");
    assert_eq!(missing, "fn supplementary: missing key \"amount\"");
    let when_covered = "if compulsory == () { #{ amount: 0 } } else { #{ amount: compulsory.paid } }";
    assert_eq!(covered(run_supplementary(when_covered, Some(&part)).expect("runs")).amount.minor_units(), 2100);
    assert_eq!(covered(run_supplementary(when_covered, None).expect("runs")).amount, Amount::ZERO);
}
