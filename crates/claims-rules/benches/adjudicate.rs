//! Rule evaluation: adjudicating one claim in process (no I/O) with each shipped pack, on the
//! claims of the pack's own test scenarios (for France also the example claims). Reported per
//! claim: criterion's throughput is claims per second.
//!
//! `cargo bench -p claims-rules --bench adjudicate`
//!
//! Before criterion's groups, `latency` times each French example claim on its own
//! (`std::time::Instant`, after a warm-up) over several rounds and prints the distribution
//! (mean, p50, p90, p99, max in µs), since the target is a p99 per claim. It then does the same
//! for a realistic stream, the claims of `python3 examples/fr/generate.py --count 20000 --seed 1`
//! (registry from `--registry`), each adjudicated once in order, as a worker sees them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

fn french_examples() -> Vec<(claims_domain::claim::Claim, RegistrySnapshot)> {
    let examples = repo().join("examples/fr");
    let registry =
        parse_registry(&std::fs::read_to_string(examples.join("registry.json")).expect("examples/fr/registry.json"))
            .expect("registry");
    let lines = std::fs::read_to_string(examples.join("claims.jsonl")).expect("examples/fr/claims.jsonl");
    cases(&registry, lines.lines().map(str::to_owned))
}

/// The value at quantile `permille`/1000 of sorted `samples`, nearest rank.
fn quantile(sorted: &[Duration], permille: usize) -> Duration {
    let rank = (permille * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds with one decimal, without floats (the workspace denies float arithmetic).
fn micros(duration: Duration) -> String {
    let tenths = duration.as_nanos() / 100;
    format!("{}.{} µs", tenths / 10, tenths % 10)
}

/// Per-claim latency distribution: every claim timed on its own with `Instant`.
fn latency(_: &mut Criterion) {
    const ROUNDS: usize = 30;
    let claims = french_examples();
    let pack = RhaiPack::load(repo().join("rules/fr")).unwrap_or_else(|error| panic!("{error}"));
    let counters = Counters::new();
    let history = History::default();
    let run = |claim, snapshot| {
        let inputs = Inputs { claim, registry: snapshot, counters: &counters, history: &history };
        std::hint::black_box(adjudicate(&inputs, &pack));
    };
    for _ in 0..3 {
        for (claim, snapshot) in &claims {
            run(claim, snapshot);
        }
    }
    // (time, lines of the claim) for every claim of every round.
    let mut samples = Vec::with_capacity(ROUNDS * claims.len());
    for _ in 0..ROUNDS {
        for (claim, snapshot) in &claims {
            let start = Instant::now();
            run(claim, snapshot);
            samples.push((start.elapsed(), claim.lines.len()));
        }
    }
    let lines: usize = samples.iter().map(|(_, lines)| lines).sum();
    let total: Duration = samples.iter().map(|(time, _)| *time).sum();
    let per_line = total / u32::try_from(lines).expect("lines");
    report(&format!("{} claims x {ROUNDS} rounds", claims.len()), samples.iter().map(|(time, _)| *time).collect());
    println!(
        "latency/fr-examples: {} lines a claim on average; {} a line",
        Ratio(lines, samples.len()),
        micros(per_line)
    );
    let one_line = samples.iter().filter(|(_, lines)| *lines == 1).map(|(time, _)| *time).collect();
    report("one-line claims", one_line);

    let stream = french_stream();
    let samples = stream
        .iter()
        .map(|(claim, snapshot)| {
            let start = Instant::now();
            run(claim, snapshot);
            start.elapsed()
        })
        .collect();
    report(&format!("stream of {} generated claims, each once", stream.len()), samples);
}

/// The output of `python3 examples/fr/generate.py <arguments>`.
fn generated(arguments: &[&str]) -> String {
    let script = repo().join("examples/fr/generate.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("running python3 {}: {error}", script.display()));
    assert!(output.status.success(), "{} {arguments:?}: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("the generator prints UTF-8")
}

/// The realistic stream: the claims among 20 000 generated messages, in order.
fn french_stream() -> Vec<(claims_domain::claim::Claim, RegistrySnapshot)> {
    let registry = parse_registry(&generated(&["--registry"])).expect("the generated registry");
    cases(&registry, generated(&["--count", "20000", "--seed", "1"]).lines().map(str::to_owned))
}

/// `a / b` with one decimal, without floats.
struct Ratio(usize, usize);

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = self.0 * 10 / self.1.max(1);
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// Prints mean, p50, p90, p99 and max of `samples`.
fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let Some(max) = samples.last().copied() else { return };
    let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len()).expect("samples");
    println!(
        "latency/fr, {what}, per claim: mean {}, p50 {}, p90 {}, p99 {}, max {}",
        micros(mean),
        micros(quantile(&samples, 500)),
        micros(quantile(&samples, 900)),
        micros(quantile(&samples, 990)),
        micros(max),
    );
}

fn adjudication(criterion: &mut Criterion) {
    let french_examples = french_examples();
    bench_pack(criterion, "fr", "fr-examples", &french_examples);
    for name in ["fr", "be", "sn"] {
        let claims = pack_cases(name);
        bench_pack(criterion, name, &format!("{name}-tests"), &claims);
    }
}

criterion_group!(benches, latency, adjudication);
criterion_main!(benches);
