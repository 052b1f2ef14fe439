//! Property tests with the real French pack: random valid claims (acts fitting each provider,
//! random attributes, dates across the parameter changes, third-party payment or not) for the
//! example registry's members, adjudicated in sequence through the ledger. No valid claim may
//! make a script fail, and every decision keeps the money invariants.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use claims_domain::contract::{decision_to_json, parse_registry};
use claims_domain::ledger::Ledger;
use claims_domain::registry::Registry;
use claims_rules::RhaiPack;
use proptest::prelude::*;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pack() -> &'static RhaiPack {
    static PACK: OnceLock<RhaiPack> = OnceLock::new();
    PACK.get_or_init(|| RhaiPack::load(repo().join("rules/fr")).unwrap_or_else(|error| panic!("{error}")))
}

/// The example registry, with its providers' specialties and its member ids.
struct Examples {
    registry: Registry,
    providers: Vec<(String, String)>,
    members: Vec<String>,
}

fn registry() -> &'static Examples {
    static REGISTRY: OnceLock<Examples> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let text =
            std::fs::read_to_string(repo().join("examples/fr/registry.json")).expect("examples/fr/registry.json");
        let value: Value = serde_json::from_str(&text).expect("registry JSON");
        let providers = value["providers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["provider_id"].as_str().unwrap_or_default().to_owned(),
                    p["attributes"]["specialty"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let members = value["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["member_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        Examples { registry: parse_registry(&text).expect("registry"), providers, members }
    })
}

fn acts_for(specialty: &str) -> &'static [&'static str] {
    match specialty {
        "gp" => &["G"],
        "specialist" => &["CS"],
        "pharmacy" => &["PH1", "PH7", "PH4", "PH2"],
        "nurse" => &["AMI"],
        "physio" => &["AMK"],
        "dentist" => &["HBLD634", "HBJD001"],
        "optician" => &["FRAME", "LENS"],
        "hospital" => &["GHS", "FJ"],
        "transport" => &["VSL"],
        _ => &["G"],
    }
}

#[derive(Debug, Clone)]
struct LineChoice {
    act_index: usize,
    foreign_act: bool,
    day: i64,
    quantity: u32,
    charged: i64,
    flags: [bool; 6],
}

fn line_choice() -> impl Strategy<Value = LineChoice> {
    (any::<usize>(), prop::bool::weighted(0.05), 0i64..1200, 1u32..5, 0i64..300_000, any::<[bool; 6]>()).prop_map(
        |(act_index, foreign_act, day, quantity, charged, flags)| LineChoice {
            act_index,
            foreign_act,
            day,
            quantity,
            charged,
            flags,
        },
    )
}

#[derive(Debug, Clone)]
struct ClaimChoice {
    member: usize,
    provider: usize,
    lines: Vec<LineChoice>,
    delay: i64,
    third_party: (bool, bool),
}

fn claim_choice() -> impl Strategy<Value = ClaimChoice> {
    (any::<usize>(), any::<usize>(), proptest::collection::vec(line_choice(), 1..4), 0i64..60, any::<(bool, bool)>())
        .prop_map(|(member, provider, lines, delay, third_party)| ClaimChoice {
            member,
            provider,
            lines,
            delay,
            third_party,
        })
}

fn date(offset: i64) -> String {
    claims_domain::date::Date::parse("2023-06-01")
        .and_then(|d| d.add_days(offset).ok_or_else(|| claims_domain::date::BadDate(String::new())))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

fn claim_json(index: usize, choice: &ClaimChoice) -> String {
    let Examples { providers, members, .. } = registry();
    let (provider_id, specialty) = &providers[choice.provider % providers.len()];
    let member_id = &members[choice.member % members.len()];
    let all_acts = ["G", "CS", "PH7", "AMI", "FRAME", "GHS", "FJ", "HBLD634"];
    let last_day = choice.lines.iter().map(|line| line.day + i64::from(line.quantity)).max().unwrap_or(0);
    let lines: Vec<Value> = choice
        .lines
        .iter()
        .enumerate()
        .map(|(number, line)| {
            let acts = acts_for(specialty);
            let act = if line.foreign_act {
                all_acts[line.act_index % all_acts.len()]
            } else {
                acts[line.act_index % acts.len()]
            };
            let [out_of_pathway, maternity, condition, heavy, basket, class_b] = line.flags;
            let mut attributes = json!({
                "care_pathway": if out_of_pathway { "out" } else { "in" },
                "maternity": maternity,
                "condition_related": condition,
                "heavy_act": heavy,
                "no_cost_basket": basket,
                "optical_class": if class_b { "B" } else { "A" },
                "optical_item": if act == "FRAME" { "frame" } else { "lens" },
            });
            if act == "FJ" {
                attributes["end_date"] = json!(date(line.day + i64::from(line.quantity) - 1));
            }
            json!({"line": number + 1, "act": act, "service_date": date(line.day), "quantity": line.quantity,
                   "charged": line.charged, "attributes": attributes})
        })
        .collect();
    let mut third_party = Vec::new();
    if choice.third_party.0 {
        third_party.push("compulsory");
    }
    if choice.third_party.1 {
        third_party.push("supplementary");
    }
    json!({"schema": "claim/v1", "claim_id": format!("C-P{index}"), "provider_id": provider_id, "member_id": member_id,
           "submitted_on": date(last_day + choice.delay), "currency": "EUR", "third_party_payment": third_party, "lines": lines})
    .to_string()
}

fn amount(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_french_claims_never_fail_and_keep_the_invariants(claims in proptest::collection::vec(claim_choice(), 1..12)) {
        let mut ledger = Ledger::new(registry().registry.clone());
        let mut twin = Ledger::new(registry().registry.clone());
        for (index, choice) in claims.iter().enumerate() {
            let text = claim_json(index, choice);
            let decision = decision_to_json(&ledger.submit(&text, pack()));
            prop_assert_eq!(&decision, &decision_to_json(&twin.submit(&text, pack())), "not deterministic");
            prop_assert_ne!(decision["outcome"].as_str(), Some("error"), "script failed on a valid claim: {}\n{}", decision, text);
            for line in decision["lines"].as_array().into_iter().flatten() {
                let charged = amount(&line["charged"]);
                let compulsory = amount(&line["compulsory"]["paid"]);
                let supplementary = amount(&line["supplementary"]["paid"]);
                let share = amount(&line["member_share"]);
                prop_assert_eq!(compulsory + supplementary + share, charged, "{}", line);
                prop_assert!(compulsory >= 0 && supplementary >= 0 && share >= 0, "{}", line);
                let cover = amount(&line["compulsory"]["gross"]) + amount(&line["compulsory"]["ceiling_refund"]);
                prop_assert!(supplementary <= (charged - cover).max(0), "indemnity: {}", line);
                prop_assert!(amount(&line["compulsory"]["gross"]) <= amount(&line["eligible"]), "{}", line);
                prop_assert!(amount(&line["compulsory"]["rate_bps"]) <= 10_000, "{}", line);
            }
            for payment in decision["payments"].as_array().into_iter().flatten() {
                prop_assert!(amount(&payment["amount"]) > 0, "{}", payment);
            }
        }
    }
}
