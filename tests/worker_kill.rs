//! `kill -9` of a `claimctl worker` process in the middle of a stream of claims: a new worker
//! finishes the job, every claim has exactly one recorded decision, the audit chain verifies,
//! and a decision published twice carries the same message id both times.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use claims_e2e::claimctl_binary;

use claims_audit::{ChainHead, verify_next};
use claims_domain::contract::{Message, parse_message};
use serde_json::Value;
use tokio::time::Instant;
use worker_support::{Client, DEADLINE, Fixture, correlation, french_examples, json, message_id, rules_dir};

/// Answers per correlation id: `(message id, body)` in arrival order.
type Replies = BTreeMap<String, Vec<(String, Vec<u8>)>>;

fn record(replies: &mut Replies, delivery: lapin::message::Delivery) {
    replies.entry(correlation(&delivery)).or_default().push((message_id(&delivery), delivery.data));
}

/// A `claimctl worker` child process, killed if the test ends without stopping it.
struct WorkerProcess(Option<Child>);

impl WorkerProcess {
    /// `kill -9`: no chance to finish anything.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().unwrap_or_else(|error| panic!("kill -9: {error}"));
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit (the worker drains its batch first).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let id = self.0.as_ref().map(Child::id).unwrap_or_else(|| panic!("the worker is already stopped"));
        let sent = Command::new("kill").args(["-TERM", &id.to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "sending SIGTERM failed");
        let Some(mut child) = self.0.take() else { panic!("the worker is already stopped") };
        let waited = tokio::time::timeout(DEADLINE, tokio::task::spawn_blocking(move || child.wait())).await;
        match waited {
            Ok(Ok(Ok(status))) => status,
            other => panic!("the worker did not exit within {DEADLINE:?} of SIGTERM: {other:?}"),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_worker(fixture: &Fixture) -> WorkerProcess {
    let child = Command::new(claimctl_binary())
        .args(["worker", "--rules", &rules_dir().to_string_lossy(), "--prefix", &fixture.prefix])
        // Any free port: another worker may hold the default one.
        .args(["--metrics", "127.0.0.1:0"])
        .env("DATABASE_URL", &fixture.database.url)
        .env("AMQP_URL", &fixture.amqp_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("starting claimctl worker: {error}"));
    WorkerProcess(Some(child))
}

#[tokio::test]
async fn after_kill_9_a_new_worker_finishes_and_every_claim_has_exactly_one_decision() {
    let fixture = Fixture::new("kill").await;
    let mut client = Client::connect(&fixture).await;
    // Valid claims only: a cancellation's answer replaces the claim's stored decision, and an
    // invalid claim is answered without a claim row to look up.
    let claims: Vec<String> = french_examples()
        .into_iter()
        .filter(|line| matches!(parse_message(line), Ok(Message::Claim(_))))
        .take(300)
        .collect();
    assert_eq!(claims.len(), 300);
    let mut first = spawn_worker(&fixture);
    for (index, claim) in claims.iter().enumerate() {
        client.publish(&fixture.topology, claim.as_bytes(), &index.to_string()).await;
    }

    let deadline = Instant::now() + DEADLINE;
    let mut replies = Replies::new();
    let first_reply = client.next_reply(deadline).await.unwrap_or_else(|| panic!("the first worker decided nothing"));
    record(&mut replies, first_reply);
    first.kill_9();

    let mut second = spawn_worker(&fixture);
    let missing =
        |replies: &Replies| (0..claims.len()).filter(|index| !replies.contains_key(&index.to_string())).count();
    while missing(&replies) > 0 {
        let Some(delivery) = client.next_reply(deadline).await else {
            panic!("{} claims without a decision after {DEADLINE:?}", missing(&replies));
        };
        record(&mut replies, delivery);
    }

    // Graceful stop of the second worker: SIGTERM, drain, exit 0.
    let exit = second.terminate().await;
    assert!(exit.success(), "the worker exits 0 after SIGTERM: {exit}");

    let mut repeated = 0;
    for (index, answers) in &replies {
        let ids: BTreeSet<&String> = answers.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 1, "claim #{index}: answers with different message ids {ids:?}");
        assert!(answers.windows(2).all(|pair| pair[0].1 == pair[1].1), "claim #{index}: different bodies");
        repeated += answers.len() - 1;
    }
    eprintln!("{} claims, {repeated} decisions published twice", claims.len());

    for claim in &claims {
        let claim = json(claim.as_bytes());
        let (provider, claim_id) = (claim["provider_id"].as_str(), claim["claim_id"].as_str());
        let (Some(provider), Some(claim_id)) = (provider, claim_id) else { panic!("claim without ids: {claim}") };
        let stored = fixture.store.decision(provider, claim_id).await.unwrap_or_else(|error| panic!("{error}"));
        assert!(stored.is_some(), "no stored decision for {provider}:{claim_id}");
    }
    let entries = fixture.store.audit_entries(0, 100_000).await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(entries.len(), claims.len(), "one audit entry per claim, none twice");
    let mut head = ChainHead::default();
    let mut decided = BTreeSet::new();
    for (line, (_, text)) in entries.iter().enumerate() {
        let entry =
            verify_next(&mut head, line as u64 + 1, text).unwrap_or_else(|error| panic!("audit chain: {error}"));
        let input: Value = serde_json::from_str(entry["input"].as_str().unwrap_or_default()).unwrap_or_default();
        let key = (input["provider_id"].to_string(), input["claim_id"].to_string());
        assert!(decided.insert(key), "decided twice: {input}");
    }

    client.close().await;
    fixture.cleanup().await;
}

/// A copy of the French pack whose doctors' agreement fails on every call.
fn broken_french_pack() -> PathBuf {
    let dir = claims_e2e::scratch("retry-broken-pack");
    let pack = dir.join("fr");
    claims_e2e::copy_dir(&rules_dir(), &pack);
    let script = "fn tariff(line, member, provider, claim) {\n    line.no_such_key\n}\n";
    std::fs::write(pack.join("agreements/medecins.rhai"), script).unwrap_or_else(|error| panic!("{error}"));
    pack
}

#[tokio::test]
async fn a_claim_whose_rules_failed_is_retried_by_claimctl_once_the_pack_is_fixed() {
    let fixture = Fixture::new("retry").await;
    let broken = claims_rules::RhaiPack::load(broken_french_pack()).unwrap_or_else(|error| panic!("{error}"));
    let claim = r#"{"schema":"claim/v1","claim_id":"C-RETRY-1","provider_id":"P-GP-0001","member_id":"M-000001","submitted_on":"2025-11-06","currency":"EUR","third_party_payment":[],"lines":[{"line":1,"act":"G","service_date":"2025-11-05","quantity":1,"charged":3000,"attributes":{}}]}"#;
    let incoming = claims_store::Incoming {
        body: claim.to_owned(),
        reply_to: None,
        correlation_id: None,
        user_id: Some("guest".to_owned()),
    };
    let handled =
        fixture.store.decide(std::slice::from_ref(&incoming), &broken).await.unwrap_or_else(|error| panic!("{error}"));
    // As the worker would: the error decision is published, its outbox rows marked.
    for outcome in &handled {
        if let claims_store::Handled::Publish(messages) = outcome {
            let ids: Vec<i64> = messages.iter().filter_map(|message| message.outbox_id).collect();
            fixture.store.mark_published(&ids).await.unwrap_or_else(|error| panic!("{error}"));
        }
    }
    let errors = fixture.store.error_claims().await.unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(errors.len(), 1, "the broken pack leaves one error claim");
    assert!(errors[0].position.contains("medecins.rhai:2:"), "position names the script line: {errors:?}");

    let status = Command::new(claimctl_binary())
        .args(["claims", "retry", "--rules", &rules_dir().to_string_lossy(), "--prefix", &fixture.prefix])
        .env("DATABASE_URL", &fixture.database.url)
        .env("AMQP_URL", &fixture.amqp_url)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("running claimctl claims retry: {error}"));
    assert!(status.success(), "claimctl claims retry failed: {status}");

    assert!(fixture.store.error_claims().await.unwrap_or_else(|error| panic!("{error}")).is_empty());
    let decision = fixture.store.decision("P-GP-0001", "C-RETRY-1").await.unwrap_or_else(|error| panic!("{error}"));
    let decision = decision.unwrap_or_else(|| panic!("no decision after the retry"));
    assert_eq!(decision["outcome"], "complete", "{decision}");
    assert_eq!(decision["lines"][0]["compulsory"]["paid"], 1900, "{decision}");
    let pending =
        fixture.store.pending_outbox(std::time::Duration::ZERO, 100).await.unwrap_or_else(|error| panic!("{error}"));
    assert!(pending.is_empty(), "the retried decision's messages were published and marked: {pending:?}");
    fixture.cleanup().await;
}
