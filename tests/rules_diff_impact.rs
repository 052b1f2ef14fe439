//! `claimctl rules diff` and `claimctl rules impact` on the French pack and examples: a copy of
//! `rules/fr` with a new GP fee row (2800 from 2026-03-01, down from 3000) and one changed
//! script line. The diff prints exactly that; the impact of the copy on the decisions recorded
//! by `claimctl adjudicate --audit` is checked against figures the test works out itself from
//! the recorded decisions and the French rates (DOMAIN.md), and the same impact read from
//! PostgreSQL (decisions recorded through `Store::decide`) agrees with the file's.

#[path = "recorded_examples.rs"]
mod recorded_examples;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use claims_e2e::{claimctl, copy_dir, decisions, repo, scratch};
use claims_rules::RhaiPack;
use serde_json::Value;

/// The new row's first day and fee, and the fee before it (DOMAIN.md: 30,00 from 2024-12-22).
const NEW_FEE_FROM: &str = "2026-03-01";
const NEW_FEE: i64 = 2800;
const OLD_FEE: i64 = 3000;
/// The doctors' rate in the care pathway (DOMAIN.md: 70 %): out of the pathway the rate is
/// lower, and the difference is a surcharge no product may pay.
const DOCTOR_RATE_BPS: i64 = 7000;

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A copy of rules/fr with the new fee row and the first comment line of the doctors'
/// agreement reworded.
fn changed_pack(dir: &Path) -> PathBuf {
    let copy = dir.join("fr-new");
    copy_dir(&repo().join("rules/fr"), &copy);
    let params = copy.join("params.rhai");
    let text = std::fs::read_to_string(&params).unwrap();
    let old_rows = "        [\"2024-12-22\", 3000],\n    ],";
    assert_eq!(text.matches(old_rows).count(), 1, "the G_FEE table of rules/fr/params.rhai moved");
    let new_rows = format!("        [\"2024-12-22\", 3000],\n        [\"{NEW_FEE_FROM}\", {NEW_FEE}],\n    ],");
    std::fs::write(&params, text.replace(old_rows, &new_rows)).unwrap();
    let script = copy.join("agreements/medecins.rhai");
    let text = std::fs::read_to_string(&script).unwrap();
    let old_line = "// Acts: G (GP consultation), CS (specialist consultation). Base = the fee × quantity; what a";
    assert_eq!(text.lines().nth(1), Some(old_line), "the second line of medecins.rhai changed");
    std::fs::write(
        &script,
        text.replacen(old_line, "// Acts: G (GP visit), CS (specialist visit). Base = the fee × quantity; what a", 1),
    )
    .unwrap();
    copy
}

fn version(dir: &Path) -> String {
    RhaiPack::load(dir).unwrap_or_else(|error| panic!("{error}")).version().to_owned()
}

/// The body of the diff between rules/fr and the changed copy (after the two header lines).
const EXPECTED_DIFF: &str = "\
changed: agreements/medecins.rhai
  @@ -1,4 +1,4 @@
   // Agreement fr-medecins: the national doctors' agreement (convention médicale), sectors 1 and 2.
  -// Acts: G (GP consultation), CS (specialist consultation). Base = the fee × quantity; what a
  +// Acts: G (GP visit), CS (specialist visit). Base = the fee × quantity; what a
   // sector 2 doctor charges above it is the member's (the engine shows PR-45).
   // The care pathway and long-term illness are rules of the compulsory plan (plans/rg.rhai).
changed: params.rhai
  table G_FEE: + row from 2026-03-01: 2800
";

#[test]
fn diff_lists_the_changed_line_and_the_new_table_row() {
    let dir = scratch("rules-diff");
    let fr = repo().join("rules/fr");
    let copy = changed_pack(&dir);
    let (code, output) = claimctl(&["rules", "diff", &path(&fr), &path(&copy)]);
    let expected = format!(
        "--- {} (fr {})\n+++ {} (fr {})\n{EXPECTED_DIFF}",
        path(&fr),
        version(&fr),
        path(&copy),
        version(&copy)
    );
    assert_eq!(output, expected);
    assert_eq!(code, 1);

    // The other way round: the row is removed, the line changes back.
    let (code, output) = claimctl(&["rules", "diff", &path(&copy), &path(&fr)]);
    assert_eq!(code, 1);
    assert!(output.ends_with("changed: params.rhai\n  table G_FEE: - row from 2026-03-01: 2800\n"), "{output}");

    // Identical packs: "no change", exit 0, like diff(1).
    let same = dir.join("fr-same");
    copy_dir(&fr, &same);
    let (code, output) = claimctl(&["rules", "diff", &path(&fr), &path(&same)]);
    assert_eq!((code, output.lines().last()), (0, Some("no change")), "{output}");

    // A folder that is not there and is not a version either: an error naming it (exit 2).
    let missing = dir.join("nowhere");
    let mut out = Vec::new();
    let error = claimctl::run(["claimctl", "rules", "diff", &path(&fr), &path(&missing)], &mut out).unwrap_err();
    assert_eq!(
        format!("{error:#}"),
        format!(
            "NEW: {:?} is neither a pack folder nor a rule pack version (sha256:… or a prefix of one)",
            path(&missing)
        )
    );
}

/// What the test expects of the impact, worked out from the recorded decisions.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    claims: u64,
    changed: u64,
    /// compulsory, supplementary, member share: recorded and with the new fee.
    before: [i64; 3],
    after: [i64; 3],
}

/// The product's percentage of the base (DOMAIN.md, products table, doctors' column).
fn product_percent(product: &str, optam: bool) -> i64 {
    match (product, optam) {
        ("ESSENTIEL", _) => 100,
        ("CONFORT", true) => 200,
        ("CONFORT", false) => 180,
        ("INTEGRAL", true) => 300,
        ("INTEGRAL", false) => 200,
        _ => panic!("unknown product {product}"),
    }
}

/// What a product pays on a doctor's line (DOMAIN.md): N % of the base *including* the
/// compulsory share, never more than was charged, and never the out-of-pathway surcharge, so
/// the compulsory share it counts is the usual one (at least the in-pathway rate's).
fn product_pays(product: Option<&str>, optam: bool, charged: i64, base: i64, rate_bps: i64) -> i64 {
    let Some(product) = product else { return 0 };
    let usual_gross = base * rate_bps.max(DOCTOR_RATE_BPS) / 10_000;
    (charged.min(base * product_percent(product, optam) / 100) - usual_gross).max(0)
}

/// Works out the impact of the new fee on the claim decisions among `inputs` (one per line of
/// the examples) and `recorded` (the decision printed for each), keeping the last `last`.
fn expected_impact(inputs: &[Value], recorded: &[Value], last: usize) -> Expected {
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("examples/fr/registry.json")).unwrap()).unwrap();
    let optam: HashMap<&str, bool> = registry["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|provider| {
            (provider["provider_id"].as_str().unwrap(), provider["attributes"]["optam"].as_bool().unwrap_or(false))
        })
        .collect();
    // Claim decisions: a claim/v1 input that was not rejected as invalid (CO-16).
    let claims: Vec<(&Value, &Value)> = inputs
        .iter()
        .zip(recorded)
        .filter(|(input, decision)| {
            input["schema"] == "claim/v1"
                && !decision["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|reason| reason["group"] == "CO" && reason["code"] == "16")
        })
        .collect();
    let mut expected = Expected::default();
    for (input, decision) in &claims[claims.len().saturating_sub(last)..] {
        expected.claims += 1;
        let mut delta = [0_i64; 3];
        for line in decision["lines"].as_array().unwrap() {
            let amount = |value: &Value| value.as_i64().unwrap_or(0);
            let paid = [
                amount(&line["compulsory"]["paid"]),
                amount(&line["supplementary"]["paid"]),
                amount(&line["member_share"]),
            ];
            for (total, amount) in expected.before.iter_mut().zip(paid) {
                *total += amount;
            }
            let number = amount(&line["line"]);
            let claimed =
                input["lines"].as_array().unwrap().iter().find(|claimed| amount(&claimed["line"]) == number).unwrap();
            let service_date = claimed["service_date"].as_str().unwrap();
            if line["act"] != "G" || service_date < NEW_FEE_FROM || amount(&line["eligible"]) != OLD_FEE {
                continue;
            }
            // The compulsory share moves by its rate times the change of fee; the per-visit
            // charge does not move.
            let rate = amount(&line["compulsory"]["rate_bps"]);
            let compulsory = rate * (NEW_FEE - OLD_FEE) / 10_000;
            let product = line["supplementary"]["product"].as_str();
            let optam = optam[input["provider_id"].as_str().unwrap()];
            let charged = amount(&line["charged"]);
            // The formula must give what was recorded before it is trusted with the new fee.
            assert_eq!(
                product_pays(product, optam, charged, OLD_FEE, rate),
                paid[1],
                "the test's formula, on {decision}"
            );
            let supplementary = product_pays(product, optam, charged, NEW_FEE, rate) - paid[1];
            delta[0] += compulsory;
            delta[1] += supplementary;
            delta[2] -= compulsory + supplementary;
        }
        if delta != [0; 3] {
            expected.changed += 1;
        }
        for (total, amount) in expected.after.iter_mut().zip(delta) {
            *total += amount;
        }
    }
    for (total, before) in expected.after.iter_mut().zip(expected.before) {
        *total += before;
    }
    expected
}

/// `1234.50 EUR`.
fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02} EUR", cents.abs() / 100, cents.abs() % 100)
}

fn signed_euros(cents: i64) -> String {
    if cents >= 0 { format!("+{}", euros(cents)) } else { euros(cents) }
}

/// The figures of a `--json` report, in the shape of [`Expected`].
fn figures(report: &Value) -> Expected {
    let totals = report["totals"].as_array().unwrap();
    let total = |scheme: &str, side: &str| {
        totals.iter().find(|total| total["scheme"] == scheme).map_or(0, |total| total[side].as_i64().unwrap())
    };
    let schemes = ["compulsory", "supplementary", "member share"];
    Expected {
        claims: report["redecided"].as_u64().unwrap(),
        changed: report["changed"].as_u64().unwrap(),
        before: schemes.map(|scheme| total(scheme, "before")),
        after: schemes.map(|scheme| total(scheme, "after")),
    }
}

/// `claimctl adjudicate --audit` on the French examples: the audit file and the decisions.
fn adjudicate(dir: &Path) -> (PathBuf, Vec<Value>) {
    let audit = dir.join("audit.jsonl");
    let root = repo();
    let (code, output) = claimctl(&[
        "adjudicate",
        "--rules",
        &path(&root.join("rules/fr")),
        "--registry",
        &path(&root.join("examples/fr/registry.json")),
        "--audit",
        &path(&audit),
        &path(&root.join("examples/fr/claims.jsonl")),
    ]);
    assert_eq!(code, 0, "claimctl adjudicate failed");
    (audit, decisions(&output))
}

fn example_inputs() -> Vec<Value> {
    std::fs::read_to_string(repo().join("examples/fr/claims.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
        .collect()
}

#[test]
fn impact_of_a_lower_gp_fee_on_the_recorded_decisions() {
    let dir = scratch("rules-impact");
    let copy = changed_pack(&dir);
    let (audit, recorded) = adjudicate(&dir);
    let inputs = example_inputs();
    let expected = expected_impact(&inputs, &recorded, usize::MAX);
    // The examples hold GP visits after the new row: the change must show.
    assert!(expected.changed >= 5, "{expected:?}");

    let (code, output) = claimctl(&["rules", "impact", &path(&copy), "--audit", &path(&audit)]);
    assert_eq!(code, 0, "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[1], format!("re-adjudicated: {}", expected.claims), "{output}");
    assert_eq!(lines[2], format!("changed (outcome or an amount): {}", expected.changed), "{output}");
    let cancellations = inputs.iter().filter(|input| input["schema"] == "cancellation/v1").count();
    let invalid = inputs.len() as u64 - cancellations as u64 - expected.claims;
    assert_eq!(
        lines[3],
        format!(
            "skipped: {cancellations} cancellation(s), {invalid} invalid message(s), 0 superseded by a later decision"
        )
    );
    assert_eq!(lines[4], "total per scheme (recorded → with these rules):");
    for (index, scheme) in ["compulsory:", "supplementary:", "member share:"].iter().enumerate() {
        let (before, after) = (expected.before[index], expected.after[index]);
        assert_eq!(
            lines[5 + index],
            format!("  {scheme:<14} {} → {} ({})", euros(before), euros(after), signed_euros(after - before)),
            "{output}"
        );
    }
    assert_eq!(lines[8], "largest changes:");
    assert_eq!(lines.len(), 9 + expected.changed.min(10) as usize, "{output}");
    // The largest change is the long-term illness visit: 100 % of the fee's change, 2,00.
    assert!(lines[9].contains("compulsory 28.00 EUR → 26.00 EUR (-2.00 EUR)"), "{output}");

    let (code, json) = claimctl(&["rules", "impact", &path(&copy), "--audit", &path(&audit), "--json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(figures(&report), expected);
    assert_eq!(report["rules"]["version"], version(&copy));

    // The last 10 claim decisions only.
    let (code, json) = claimctl(&["rules", "impact", &path(&copy), "--audit", &path(&audit), "--last", "10", "--json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    let last_ten = expected_impact(&inputs, &recorded, 10);
    assert_eq!(last_ten.claims, 10);
    assert_eq!(figures(&report), last_ten);

    // The recorded pack changes nothing.
    let (code, json) =
        claimctl(&["rules", "impact", &path(&repo().join("rules/fr")), "--audit", &path(&audit), "--json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["changed"], 0);
    assert_eq!(figures(&report).before, figures(&report).after);
}

#[test]
fn impact_from_the_database_agrees_with_the_file() {
    let dir = scratch("rules-impact-database");
    let copy = changed_pack(&dir);
    let (audit, _) = adjudicate(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pack = RhaiPack::load(repo().join("rules/fr")).unwrap();
    let database = runtime.block_on(async {
        let database = claims_testkit::database().await;
        let store = claims_store::Store::connect(&database.url).await.unwrap();
        store.migrate().await.unwrap();
        recorded_examples::record_french_examples(&store, &pack).await;
        store.pool().close().await;
        database
    });

    for last in ["1000", "10"] {
        let from_file =
            claimctl(&["rules", "impact", &path(&copy), "--audit", &path(&audit), "--last", last, "--json"]);
        let from_database =
            claimctl(&["rules", "impact", &path(&copy), "--database-url", &database.url, "--last", last, "--json"]);
        assert_eq!((from_file.0, from_database.0), (0, 0));
        let mut from_file: Value = serde_json::from_str(&from_file.1).unwrap();
        let mut from_database: Value = serde_json::from_str(&from_database.1).unwrap();
        assert_eq!(from_database["source"], "the database");
        from_file["source"] = Value::Null;
        from_database["source"] = Value::Null;
        assert_eq!(from_database, from_file, "--last {last}");
        assert!(from_database["changed"].as_u64().unwrap() > 0);
    }

    // A stored version compares by a prefix of its hash.
    let prefix = &pack.version()[..15];
    let (code, output) = claimctl(&["rules", "diff", prefix, &path(&copy), "--database-url", &database.url]);
    assert_eq!(code, 1);
    assert_eq!(output.lines().next(), Some(format!("--- stored {} (fr {})", pack.version(), pack.version()).as_str()));
    assert!(output.ends_with(EXPECTED_DIFF), "{output}");

    runtime.block_on(database.drop_database());
}
