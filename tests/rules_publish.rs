//! Publishing a rule change to running workers, end to end against the real worker, RabbitMQ
//! and PostgreSQL: an analyst raises the GP consultation fee from a date in a copy of the French
//! pack, checks, tests and publishes it with `claimctl`; the running worker decides the next
//! claims with it (claims dated before the change keep the old fee) without a restart; `rules
//! activate` rolls back; a pack whose tests fail is not published; a restarted worker starts on
//! the active publication, whatever its `--rules` folder holds.
//!
//! Expected amounts are computed by hand from DOMAIN.md: member M-000001 (CONFORT, adult, in the
//! care pathway) at GP P-GP-0001 (sector 1, no OPTAM, so CONFORT pays up to 180 % of the base),
//! charged 35,00, per-visit charge 2,00:
//! - fee 30,00: base 30,00, AMO gross 70 % = 21,00, pays 19,00; AMC min(35,00 − 21,00,
//!   180 % × 30,00 − 21,00 = 33,00) = 14,00; member 2,00.
//! - fee 35,00: base 35,00, AMO gross 24,50, pays 22,50; AMC min(35,00 − 24,50, 63,00 − 24,50)
//!   = 10,50; member 2,00.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claims_rules::RhaiPack;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use worker_support::{Client, DEADLINE, Fixture, WorkerThread, correlation, json, rules_dir};

/// The day the analyst's new GP fee takes effect: after every date in the pack's own tests.
const NEW_FEE_FROM: &str = "2026-09-01";

/// `(compulsory paid, supplementary paid, member share, eligible)` with the fee at 30,00 and at
/// 35,00 (see the module documentation).
const OLD_FEE_AMOUNTS: (i64, i64, i64, i64) = (1900, 1400, 200, 3000);
const NEW_FEE_AMOUNTS: (i64, i64, i64, i64) = (2250, 1050, 200, 3500);

/// Runs `claimctl` off the async runtime (its commands start runtimes of their own).
async fn claimctl(args: &[&str]) -> (u8, String) {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        claims_e2e::claimctl(&args)
    })
    .await
    .unwrap_or_else(|error| panic!("claimctl panicked: {error}"))
}

fn gp_visit(claim_id: &str, service_date: &str) -> Vec<u8> {
    json!({
        "schema": "claim/v1", "claim_id": claim_id, "provider_id": "P-GP-0001", "member_id": "M-000001",
        "submitted_on": service_date, "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": service_date, "quantity": 1, "charged": 3500,
                   "attributes": {"care_pathway": "in"}}],
    })
    .to_string()
    .into_bytes()
}

/// The analyst's change in a copy of rules/fr: one row in the `G_FEE` table, and a test case
/// for it beside the others (the worked-case registry's GP visit on both sides of the date).
fn revalued_copy(root: &Path, fee_from_the_date: i64) -> PathBuf {
    let dir = root.join("fr");
    claims_e2e::copy_dir(&rules_dir(), &dir);
    let params = dir.join("params.rhai");
    let text = std::fs::read_to_string(&params).unwrap_or_else(|error| panic!("reading params.rhai: {error}"));
    let row = "        [\"2024-12-22\", 3000],\n";
    assert_eq!(text.matches(row).count(), 1, "the G_FEE row of 2024-12-22 is not in params.rhai");
    let changed = text.replacen(row, &format!("{row}        [\"{NEW_FEE_FROM}\", {fee_from_the_date}],\n"), 1);
    std::fs::write(&params, changed).unwrap_or_else(|error| panic!("writing params.rhai: {error}"));
    let line = |number: i64, date: &str| {
        json!({"line": number, "act": "G", "service_date": date, "quantity": 1, "charged": 3500,
               "attributes": {"care_pathway": "in"}})
    };
    let expected = |number: i64, (paid, product, member, eligible): (i64, i64, i64, i64)| {
        json!({"line": number, "act": "G", "charged": 3500, "eligible": eligible,
               "compulsory": {"plan": "RG", "rate_bps": 7000, "gross": eligible * 7 / 10,
                              "deductions": [{"kind": "per_visit_charge", "amount": 200}], "paid": paid},
               "supplementary": {"product": "CONFORT", "paid": product}, "member_share": member})
    };
    let case = json!({
        "name": format!("G fee 35,00 from {NEW_FEE_FROM}"),
        "registry": "registry.json",
        "messages": [{
            "schema": "claim/v1", "claim_id": "GF-2026", "provider_id": "P-GP-S1", "member_id": "M-GFEE",
            "submitted_on": "2026-09-02", "currency": "EUR", "third_party_payment": [],
            "lines": [line(1, "2026-08-31"), line(2, NEW_FEE_FROM)],
        }],
        "expect": [{"outcome": "complete", "lines": [expected(1, OLD_FEE_AMOUNTS), expected(2, NEW_FEE_AMOUNTS)]}],
    });
    std::fs::write(dir.join("tests/g-fee-2026-09-01.json"), serde_json::to_string_pretty(&case).unwrap_or_default())
        .unwrap_or_else(|error| panic!("writing the new test case: {error}"));
    dir
}

fn version_of(dir: &Path) -> String {
    RhaiPack::load(dir).unwrap_or_else(|error| panic!("loading {}: {error}", dir.display())).version().to_owned()
}

/// A free port on loopback for the worker's /metrics.
fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("binding: {error}"));
    listener.local_addr().unwrap_or_else(|error| panic!("local address: {error}"))
}

async fn scrape(address: SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: worker\r\n\r\n").await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// Waits until the worker's /metrics says it decides new batches with `version`.
async fn wait_for_rules(address: SocketAddr, version: &str) {
    let line = format!("claims_rules_info{{pack=\"fr\",version=\"{version}\"}} 1");
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(text) = scrape(address).await {
            if text.lines().any(|candidate| candidate == line) {
                return;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the worker did not switch to {version} within {DEADLINE:?}; last /metrics:\n{last}");
}

/// Submits one claim and returns its decision.
async fn decide(client: &mut Client, fixture: &Fixture, claim_id: &str, service_date: &str) -> Value {
    client.publish(&fixture.topology, &gp_visit(claim_id, service_date), claim_id).await;
    let deadline = Instant::now() + DEADLINE;
    while let Some(delivery) = client.next_reply(deadline).await {
        if correlation(&delivery) == claim_id {
            return json(&delivery.data);
        }
    }
    panic!("no decision for {claim_id} within {DEADLINE:?}");
}

fn amounts(decision: &Value) -> (i64, i64, i64, i64) {
    let number = |pointer: &str| {
        decision.pointer(pointer).and_then(Value::as_i64).unwrap_or_else(|| panic!("no {pointer} in {decision}"))
    };
    (
        number("/lines/0/compulsory/paid"),
        number("/lines/0/supplementary/paid"),
        number("/lines/0/member_share"),
        number("/lines/0/eligible"),
    )
}

fn rules_version(decision: &Value) -> &str {
    decision.pointer("/rules/version").and_then(Value::as_str).unwrap_or_default()
}

/// One claim's decision: its amounts and the pack version that made it.
async fn assert_decided(
    client: &mut Client,
    fixture: &Fixture,
    claim_id: &str,
    service_date: &str,
    expected: (i64, i64, i64, i64),
    version: &str,
) {
    let decision = decide(client, fixture, claim_id, service_date).await;
    assert_eq!(decision.get("outcome"), Some(&json!("complete")), "{claim_id}: {decision}");
    assert_eq!(amounts(&decision), expected, "{claim_id} on {service_date}: {decision}");
    assert_eq!(rules_version(&decision), version, "{claim_id} was decided by another pack");
    assert_eq!(decision.pointer("/rules/pack"), Some(&json!("fr")));
}

async fn history_rows(url: &str) -> Vec<String> {
    let (code, output) = claimctl(&["rules", "history", "--database-url", url]).await;
    assert_eq!(code, 0, "rules history: {output}");
    output.lines().filter(|line| line.contains(" fr ")).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_published_tariff_change_reaches_the_running_worker_and_rolls_back() {
    let fixture = Fixture::new("publish").await;
    let url = fixture.database.url.clone();
    let scratch = claims_e2e::scratch("rules-publish");
    let old_version = version_of(&rules_dir());
    let revalued = revalued_copy(&scratch.join("analyst"), 3500);
    let new_version = version_of(&revalued);
    assert_ne!(old_version, new_version);

    let metrics = free_address();
    let mut config = fixture.config();
    config.rules_poll = Duration::from_millis(200);
    config.metrics_addr = Some(metrics);
    let worker = WorkerThread::start(config);
    let mut client = Client::connect(&fixture).await;
    wait_for_rules(metrics, &old_version).await;
    // Nothing published yet: the worker decides with its folder's pack, fee 30,00.
    assert_decided(&mut client, &fixture, "C-PUB-0", "2026-09-07", OLD_FEE_AMOUNTS, &old_version).await;

    // The analyst's round: check, test, publish.
    let dir = revalued.to_string_lossy().into_owned();
    let (code, output) = claimctl(&["rules", "check", &dir]).await;
    assert_eq!(code, 0, "rules check: {output}");
    let (code, output) = claimctl(&["rules", "test", &dir]).await;
    assert_eq!(code, 0, "rules test: {output}");
    assert!(output.contains("ok   G fee 35,00 from 2026-09-01"), "the new test case ran: {output}");
    let (code, output) =
        claimctl(&["rules", "publish", &dir, "--by", "alice", "--note", "G 35,00", "--database-url", &url]).await;
    assert_eq!(code, 0, "rules publish: {output}");
    assert!(output.contains(&format!("published fr {new_version} (by alice)")), "{output}");

    // The running worker picks it up: before the date the old fee, from the date the new one.
    wait_for_rules(metrics, &new_version).await;
    assert_decided(&mut client, &fixture, "C-PUB-1", "2026-08-31", OLD_FEE_AMOUNTS, &new_version).await;
    assert_decided(&mut client, &fixture, "C-PUB-2", NEW_FEE_FROM, NEW_FEE_AMOUNTS, &new_version).await;
    let stored = fixture.store.decision("P-GP-0001", "C-PUB-2").await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(stored.as_ref().map(rules_version), Some(new_version.as_str()), "the stored decision names the pack");

    // Publishing the same folder again records nothing.
    let (code, output) = claimctl(&["rules", "publish", &dir, "--by", "alice", "--database-url", &url]).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("fr {new_version} is already the active version: nothing recorded")), "{output}");

    // Roll back by a prefix of the old hash.
    let prefix = &old_version["sha256:".len().."sha256:".len() + 12];
    let (code, output) = claimctl(&["rules", "activate", prefix, "--by", "bob", "--database-url", &url]).await;
    assert_eq!(code, 0, "rules activate: {output}");
    assert!(output.contains(&format!("activated fr {old_version} (was {new_version})")), "{output}");
    wait_for_rules(metrics, &old_version).await;
    assert_decided(&mut client, &fixture, "C-PUB-3", "2026-09-02", OLD_FEE_AMOUNTS, &old_version).await;

    let history = history_rows(&url).await;
    assert_eq!(history.len(), 2, "{history:#?}");
    // when, who, action, pack, version, note; `*` marks the active row.
    let words = |row: &str| row.split_whitespace().map(str::to_owned).collect::<Vec<String>>();
    let (first, second) = (words(&history[0]), words(&history[1]));
    assert_eq!(first[1..], ["alice", "publish", "fr", new_version.as_str(), "G", "35,00"], "{}", history[0]);
    assert_eq!(second[0], "*", "{}", history[1]);
    assert_eq!(second[2..], ["bob", "activate", "fr", old_version.as_str()], "{}", history[1]);

    // An unknown hash is refused and changes nothing.
    let (code, _) =
        claimctl(&["rules", "activate", "sha256:0000000000ff", "--by", "bob", "--database-url", &url]).await;
    assert_eq!(code, 2);

    // A pack whose tests fail (the fee was mistyped 34,00: the new test case expects 35,00) and a pack
    // that does not compile are not published.
    let mistyped = revalued_copy(&scratch.join("mistyped"), 3400);
    let (code, output) =
        claimctl(&["rules", "publish", &mistyped.to_string_lossy(), "--by", "alice", "--database-url", &url]).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("FAIL G fee 35,00 from 2026-09-01") && output.contains("nothing published"), "{output}");
    let broken = scratch.join("broken/fr");
    claims_e2e::copy_dir(&revalued, &broken);
    std::fs::write(broken.join("agreements/medecins.rhai"), "fn tariff(line, member, provider, claim) { let }\n")
        .unwrap_or_else(|error| panic!("{error}"));
    let (code, output) =
        claimctl(&["rules", "publish", &broken.to_string_lossy(), "--by", "alice", "--database-url", &url]).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("medecins.rhai:1:") && output.contains("nothing published"), "{output}");
    assert_eq!(history_rows(&url).await, history, "a refused publish records nothing");
    assert_eq!(
        fixture.store.active_rule_version("fr").await.unwrap_or_else(|error| panic!("{error}")),
        Some(old_version.clone())
    );
    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));

    // Roll forward, then restart a worker on the unchanged rules/fr with no polling to speak
    // of: it starts on the active publication, not on its folder.
    let (code, output) = claimctl(&["rules", "activate", &new_version, "--by", "bob", "--database-url", &url]).await;
    assert_eq!(code, 0, "{output}");
    let metrics = free_address();
    let mut config = fixture.config();
    config.rules_poll = Duration::from_secs(3600);
    config.metrics_addr = Some(metrics);
    let restarted = WorkerThread::start(config);
    wait_for_rules(metrics, &new_version).await;
    assert_decided(&mut client, &fixture, "C-PUB-4", "2026-09-03", NEW_FEE_AMOUNTS, &new_version).await;
    restarted.stop().await.unwrap_or_else(|error| panic!("stopping the restarted worker: {error}"));

    client.close().await;
    let _ = std::fs::remove_dir_all(&scratch);
    fixture.cleanup().await;
}
