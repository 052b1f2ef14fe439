//! `claimctl bench` on a tiny load against the real broker and database: every claim gets its
//! decision in every step, the decisions are the embedded mode's, the JSON has its fields, the
//! downstream queues receive every decision and payment message of the worker and of the relay
//! that repeats the engine's, the chart is drawn, and the bench leaves no database behind. No figure is asserted: timing is
//! what benchmarks measure, not tests.

use std::collections::BTreeMap;
use std::process::Command;

use claims_e2e::{claimctl, claimctl_binary, repo, scratch};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

fn count_outcomes(decisions: impl Iterator<Item = Value>) -> BTreeMap<String, u64> {
    let mut outcomes = BTreeMap::new();
    for decision in decisions {
        let outcome = decision["outcome"].as_str().unwrap_or_else(|| panic!("no outcome: {decision}")).to_owned();
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

#[test]
fn a_tiny_bench_decides_every_claim_and_reports_every_field() {
    let dir = scratch("bench-smoke");
    let (json_file, chart_file) = (dir.join("bench.json"), dir.join("latency.svg"));
    let rules = repo().join("rules/fr");
    let generator = repo().join("examples/fr/generate.py");
    let binary = claimctl_binary();
    let arguments = [
        "bench",
        "--claims",
        "20",
        "--rates",
        "40,80",
        "--seconds",
        "1",
        "--queue-type",
        "classic",
        "--seed",
        "3",
        "--rules",
        rules.to_str().unwrap_or_default(),
        "--generator",
        generator.to_str().unwrap_or_default(),
        "--worker-bin",
        binary.to_str().unwrap_or_default(),
        "--json",
        json_file.to_str().unwrap_or_default(),
        "--chart",
        chart_file.to_str().unwrap_or_default(),
    ];
    let (code, output) = claimctl(&arguments);
    assert_eq!(code, 0, "every claim should have had its decision:\n{output}");
    assert!(output.contains("engine ÷ relay ceiling:"), "{output}");

    let text = std::fs::read_to_string(&json_file).unwrap_or_else(|error| panic!("reading the JSON: {error}"));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("the JSON: {error}"));
    assert_eq!(report["schema"], "bench/v1");
    assert_eq!(report["settings"]["queue_type"], "classic");
    assert_eq!(report["settings"]["batch_size"], 50);
    assert!(report["machine"]["cpus"].as_u64().is_some_and(|cpus| cpus >= 1), "{report}");
    assert!(report["engine_to_relay_ratio"].as_f64().is_some_and(|ratio| ratio > 0.0), "{report}");

    let paced = report["paced"].as_array().unwrap_or_else(|| panic!("no paced runs: {report}"));
    let offered: Vec<u64> = paced.iter().filter_map(|step| step["offered_per_second"].as_u64()).collect();
    assert_eq!(offered, [40, 80]);
    let steps = [&report["relay"], &report["relay_with_engine_messages"], &report["engine"], &paced[0], &paced[1]];
    for (step, claims) in steps.into_iter().zip([20, 20, 20, 40, 80]) {
        assert_eq!((&step["published"], &step["decided"]), (&Value::from(claims), &Value::from(claims)), "{step}");
        let latency = &step["latency_ms"];
        let ordered: Vec<f64> = ["p50", "p95", "p99", "max"].iter().filter_map(|name| latency[name].as_f64()).collect();
        assert_eq!(ordered.len(), 4, "{step}");
        assert!(ordered.windows(2).all(|pair| pair[0] <= pair[1]), "percentiles out of order: {step}");
        assert!(step["claims_per_second"].as_f64().is_some_and(|rate| rate > 0.0), "{step}");
        for process in ["broker", "database", "bench", "machine"] {
            assert!(step["cpu_us_per_claim"][process].is_number(), "{process} missing: {step}");
        }
    }
    assert!(report["engine"]["cpu_us_per_claim"]["worker"].is_number(), "{report}");
    // The relay answers with bodies as large as the worker's decisions.
    assert!(report["engine"]["mean_reply_bytes"].as_u64().is_some_and(|bytes| bytes > 100), "{report}");
    assert_eq!(report["relay"]["mean_reply_bytes"], report["engine"]["mean_reply_bytes"]);
    assert!(report["engine_to_relay_with_engine_messages_ratio"].as_f64().is_some_and(|ratio| ratio > 0.0), "{report}");

    // Every decision has its decision/v1 message, and the relay repeats exactly the engine run's;
    // the downstream queues receive all of them, the paced runs' included.
    let downstream = &report["downstream"];
    let count = |name: &str| downstream[name].as_u64().unwrap_or_else(|| panic!("downstream {name}: {report}"));
    let in_engine_run = count("published_by_worker_in_engine_run");
    assert!(in_engine_run >= 20, "{report}");
    assert!(count("published_by_worker") >= in_engine_run + 40 + 80, "the paced runs' decisions: {report}");
    assert_eq!(count("published_by_relay"), in_engine_run, "{report}");
    assert_eq!(count("consumed"), count("published_by_worker") + count("published_by_relay"), "{report}");

    // The worker's decisions are the embedded mode's on the same generated claims.
    let claims_file = dir.join("claims.jsonl");
    let generated = Command::new("python3")
        .arg(&generator)
        .args(["--count", "20", "--seed", "3"])
        .output()
        .unwrap_or_else(|error| panic!("running the generator: {error}"));
    std::fs::write(&claims_file, &generated.stdout).unwrap_or_else(|error| panic!("{error}"));
    let registry_file = repo().join("examples/fr/registry.json");
    let (_, embedded) = claimctl(&[
        "adjudicate",
        "--rules",
        rules.to_str().unwrap_or_default(),
        "--registry",
        registry_file.to_str().unwrap_or_default(),
        claims_file.to_str().unwrap_or_default(),
    ]);
    let expected = count_outcomes(claims_e2e::decisions(&embedded).into_iter());
    let engine_outcomes: BTreeMap<String, u64> = serde_json::from_value(report["engine"]["outcomes"].clone())
        .unwrap_or_else(|error| panic!("engine outcomes: {error}"));
    assert_eq!(engine_outcomes, expected);
    assert_eq!(expected.values().sum::<u64>(), 20);

    let svg = std::fs::read_to_string(&chart_file).unwrap_or_else(|error| panic!("reading the chart: {error}"));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 3, "one line per percentile: {svg}");
    assert_eq!(svg.matches("<circle").count(), 6, "one point per percentile and rate: {svg}");
    for label in ["p50", "p95", "p99", ">40<", ">80<", "classic work queue"] {
        assert!(svg.contains(label), "{label} missing from the chart");
    }

    // The bench dropped its database.
    let database = format!("claims_bench_{}", std::process::id());
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|error| panic!("{error}"));
    let remaining: i64 = runtime.block_on(async {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| panic!("DATABASE_URL is not set"));
        let mut connection = PgConnection::connect(&url).await.unwrap_or_else(|error| panic!("{error}"));
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&database)
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    });
    assert_eq!(remaining, 0, "database {database} was left behind");
}
