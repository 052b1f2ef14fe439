//! Rule evaluation: adjudicating one claim in process (no I/O) with each shipped pack, on the
//! claims of the pack's own test scenarios (for France also the example claims). Reported per
//! claim: criterion's throughput is claims per second.
//!
//! `cargo bench -p claims-rules --bench adjudicate`

use std::path::{Path, PathBuf};

use claims_domain::accumulators::Counters;
use claims_domain::contract::{Message, parse_message, parse_registry};
use claims_domain::pipeline::{History, Inputs, adjudicate};
use claims_domain::registry::{Registry, RegistrySnapshot};
use claims_rules::RhaiPack;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (claim, snapshot) pairs from a registry and claim/v1 lines.
fn cases(
    registry: &Registry,
    messages: impl Iterator<Item = String>,
) -> Vec<(claims_domain::claim::Claim, RegistrySnapshot)> {
    messages
        .filter_map(|text| match parse_message(&text) {
            Ok(Message::Claim(claim)) => {
                let snapshot = registry.snapshot(&claim.member_id, &claim.provider_id);
                snapshot.member.is_some().then_some((claim, snapshot))
            }
            _ => None,
        })
        .collect()
}

fn pack_cases(name: &str) -> Vec<(claims_domain::claim::Claim, RegistrySnapshot)> {
    let tests = repo().join("rules").join(name).join("tests");
    let mut all = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&tests).expect("tests dir").flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let Ok(scenario) = serde_json::from_str::<Value>(&std::fs::read_to_string(&file).unwrap_or_default()) else {
            continue;
        };
        let Some(messages) = scenario.get("messages").and_then(Value::as_array) else { continue };
        let registry_text = match &scenario["registry"] {
            Value::String(relative) => std::fs::read_to_string(tests.join(relative)).unwrap_or_default(),
            inline => inline.to_string(),
        };
        let Ok(registry) = parse_registry(&registry_text) else { continue };
        all.extend(cases(&registry, messages.iter().map(Value::to_string)));
    }
    all
}

fn bench_pack(
    criterion: &mut Criterion,
    name: &str,
    label: &str,
    claims: &[(claims_domain::claim::Claim, RegistrySnapshot)],
) {
    let pack = RhaiPack::load(repo().join("rules").join(name)).unwrap_or_else(|error| panic!("{error}"));
    let counters = Counters::new();
    let history = History::default();
    let mut group = criterion.benchmark_group(format!("adjudicate/{label}"));
    group.throughput(Throughput::Elements(claims.len() as u64));
    group.bench_function(format!("{} claims", claims.len()), |bencher| {
        bencher.iter(|| {
            for (claim, snapshot) in claims {
                let inputs = Inputs { claim, registry: snapshot, counters: &counters, history: &history };
                std::hint::black_box(adjudicate(&inputs, &pack));
            }
        });
    });
    group.finish();
}

fn adjudication(criterion: &mut Criterion) {
    let examples = repo().join("examples/fr");
    let registry =
        parse_registry(&std::fs::read_to_string(examples.join("registry.json")).expect("examples/fr/registry.json"))
            .expect("registry");
    let lines = std::fs::read_to_string(examples.join("claims.jsonl")).expect("examples/fr/claims.jsonl");
    let french_examples = cases(&registry, lines.lines().map(str::to_owned));
    bench_pack(criterion, "fr", "fr-examples", &french_examples);
    for name in ["fr", "be", "sn"] {
        let claims = pack_cases(name);
        bench_pack(criterion, name, &format!("{name}-tests"), &claims);
    }
}

criterion_group!(benches, adjudication);
criterion_main!(benches);
