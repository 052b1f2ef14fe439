//! `claimctl rules check` finds the analyst's mistakes, each at its file:line:col.

mod common;

use std::path::Path;

use claims_rules::check_pack;

fn problems(dir: &Path) -> Vec<String> {
    check_pack(dir).iter().map(ToString::to_string).collect()
}

fn shipped(pack: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules").join(pack)
}

#[test]
fn the_shipped_packs_have_no_problems() {
    for pack in ["fr", "be", "sn"] {
        assert_eq!(problems(&shipped(pack)), Vec::<String>::new(), "rules/{pack}");
    }
}

/// `tests/fixtures/mistakes`: one pack with one of each mistake.
#[test]
fn every_mistake_of_a_pack_is_reported_at_its_place() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mistakes");
    let root = dir.display().to_string();
    let found: Vec<String> = problems(&dir).iter().map(|line| line.replacen(&root, "mistakes", 1)).collect();
    let expected = [
        // 2. unknown names, with the closest known one
        r#"mistakes/agreements/doctors.rhai:2:30: unknown agreement "xx-doctor" (did you mean "xx-doctors"?)"#,
        r#"mistakes/agreements/doctors.rhai:5:20: unknown parameter table "G_FEES" (did you mean "G_FEE"?)"#,
        // 4. a literal rate above 100 %
        "mistakes/agreements/doctors.rhai:5:60: rate_bps is 12000 basis points, above 100 % (10000): a rate cannot \
         pay more than the base",
        // 6. a variable that does not exist
        "mistakes/agreements/doctors.rhai:5:77: reads a variable that does not exist: categroy",
        r#"mistakes/pack.rhai:13:23: script "agreements/nurse.rhai" does not exist (did you mean "agreements/nurses.rhai"?)"#,
        // 3. dated tables: a repeated date, rows out of order
        "mistakes/params.rhai:5:11: table G_FEE: row 3 repeats the date 2024-12-22",
        "mistakes/params.rhai:9:11: table PER_VISIT_CHARGE: row 2 (2000-01-01) comes after 2024-05-15: rows must be \
         sorted by date",
        // 4. rates in tables: a table named *_RATE, a rate_bps key
        "mistakes/params.rhai:13:24: table DOCTOR_RATE: row 2025-01-01: the rate is 17000 basis points, above 100 % \
         (10000): a rate cannot pay more than the base",
        r#"mistakes/params.rhai:19:43: table PERCENT: row 2000-01-01: unknown plan "INTEGRALE" in a map keyed by plan (did you mean "INTEGRAL"?)"#,
        "mistakes/params.rhai:22:57: table NURSE_ACTS: row 2000-01-01: AMI.rate_bps is 16000 basis points, above \
         100 % (10000): a rate cannot pay more than the base",
        r#"mistakes/plans/products.rhai:2:16: unknown plan "CONFORTE" (did you mean "CONFORT"?)"#,
        // a function that does not exist
        r#"mistakes/plans/products.rhai:2:30: no function named is_emtpy (did you mean "is_empty"?)"#,
        // 5. product formulas paying what no product may pay
        "mistakes/plans/products.rhai:6:19: this ruling pays a part the compulsory plan marks never_covered (e.g. \
         the out-of-pathway surcharge), which no product may cover: it pays 1000 more than if the plan had paid \
         that part (plan CONFORT, category \"doctor\", act \"AMI\", charged 10000, line attribute care_pathway = out)",
        "mistakes/plans/products.rhai:6:19: this ruling pays the compulsory plan's fixed charges, which no product \
         may cover: with the charges taken it pays 200 more than without them (plan CONFORT, category \"doctor\", \
         act \"AMI\", charged 10000); compute from compulsory.gross, not compulsory.paid or compulsory.deductions",
        "mistakes/plans/products.rhai:9:19: this ruling pays a part the compulsory plan marks never_covered (e.g. \
         the out-of-pathway surcharge), which no product may cover: it pays 1000 more than if the plan had paid \
         that part (plan CONFORT, category \"auxiliary\", act \"AMI\", charged 10000, line attribute care_pathway \
         = out)",
        "mistakes/plans/products.rhai:11:40: apply_rate: a rate of 250000 basis points is outside 0..=100000 (0 % \
         to 1000 %)",
        "mistakes/plans/rg.rhai:14:27: rate_bps is -1 basis points: a rate cannot be negative",
        // 2. names in the pack's tests: registry and expected decisions
        r#"mistakes/tests/registry.json:9:46: unknown plan "CONFORTT" (did you mean "CONFORT"?)"#,
        r#"mistakes/tests/registry.json:14:42: unknown agreement "xx-dentists" (the pack's agreements: "xx-doctors", "xx-nurses")"#,
        r#"mistakes/tests/visit.json:5:58: unknown plan "ESSENTIEL" (the pack's plans: "CONFORT", "INTEGRAL", "RG")"#,
    ];
    assert_eq!(found, expected);
}

const CHARGING_PLAN: &str = r#"
fn compulsory(plan, line, member, provider, claim, tariff) {
    let date = line.service_date;
    #{
        rate_bps: tariff.rate_bps,
        charges: [charge("per_visit_charge", 200, [per_year("per_visit_charge", date, 5000)], reason("PR", "3", "x"))],
    }
}
"#;

#[test]
fn a_product_formula_is_found_paying_the_fixed_charges_only_when_it_does() {
    let from_paid = "fn supplementary(plan, line, member, provider, claim, tariff, compulsory) {\n    \
                     #{ amount: apply_rate(tariff.base, 9000) - compulsory.paid }\n}\n";
    let pack = common::TempPack::new(&[("plans/rg.rhai", CHARGING_PLAN), ("plans/products.rhai", from_paid)]);
    let found = problems(pack.path());
    assert_eq!(found.len(), 1, "{found:#?}");
    let place =
        format!("{}:2:8: this ruling pays the compulsory plan's fixed charges", pack.label("plans/products.rhai"));
    assert!(found[0].starts_with(&place), "{found:#?}");

    let from_gross = from_paid.replace("compulsory.paid", "compulsory.gross");
    let pack = common::TempPack::new(&[("plans/rg.rhai", CHARGING_PLAN), ("plans/products.rhai", &from_gross)]);
    assert_eq!(problems(pack.path()), Vec::<String>::new());
    // The default test pack's product (200 % of the base less the gross) pays no charge either.
    let pack = common::TempPack::new(&[("plans/rg.rhai", CHARGING_PLAN)]);
    assert_eq!(problems(pack.path()), Vec::<String>::new());
}

#[test]
fn a_pack_without_mistakes_stays_clean_and_each_literal_rate_is_checked() {
    let pack = common::TempPack::new(&[]);
    assert_eq!(problems(pack.path()), Vec::<String>::new());
    let at_full = common::TARIFF.replace("rate_bps: 7000", "rate_bps: 10000");
    let pack = common::TempPack::new(&[("agreements/doctors.rhai", &at_full)]);
    assert_eq!(problems(pack.path()), Vec::<String>::new(), "100 % is a rate");
    let above = common::TARIFF.replace("rate_bps: 7000", "rate_bps: 10_001");
    let pack = common::TempPack::new(&[("agreements/doctors.rhai", &above)]);
    assert_eq!(
        problems(pack.path()),
        [format!(
            "{}:4:86: rate_bps is 10001 basis points, above 100 % (10000): a rate cannot pay more than the base",
            pack.label("agreements/doctors.rhai")
        )]
    );
}
