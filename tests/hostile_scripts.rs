//! Hostile rule scripts through the real worker (RabbitMQ, PostgreSQL, `claims_worker::run`).
//! A copy of the French pack where, each for one act, an agreement loops forever (VSL trips),
//! doubles a string forever (physiotherapy, AMK), recurses exponentially (specialist visits, CS)
//! and tries to read the environment and a file (pharmacy, PH7; there is no such function).
//! Every claim with such a line gets an `error` decision naming the script, line, column and
//! what went wrong; every other claim of the same batches is decided normally, exactly as the
//! embedded mode decides it with the same pack; and the worker goes on deciding afterwards.
//! The sandbox's limits (crates/claims-rules/tests/sandbox.rs) are what bound the time: the test
//! only waits with a deadline.
//!
//! A script that imports a module does not even compile: `claimctl rules check` names its
//! file and line, and the worker refuses to start with that pack.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use claims_domain::contract::{Message, parse_message};
use claims_worker::WorkerError;
use claims_worker::submit::{SubmitOptions, submit};
use serde_json::{Value, json};
use worker_support::{
    DEADLINE, Fixture, WorkerThread, decision_key, french_examples, registry_file, rules_dir, without_audit,
};

/// One hostile agreement: the act it misbehaves on, the script and what the error must say.
struct Hostile {
    act: &'static str,
    script: &'static str,
    body: &'static str,
    /// Where the error is reported: the tariff function itself (1:1) when a sandbox limit stops
    /// the script, the call's place for a function that does not exist.
    at: (u64, u64),
    message: &'static str,
}

const HOSTILE: [Hostile; 4] = [
    Hostile {
        act: "VSL",
        script: "agreements/transports.rhai",
        body: "loop { }",
        at: (1, 1),
        message: "too many operations (endless loop?)",
    },
    Hostile {
        act: "AMK",
        script: "agreements/auxiliaires.rhai",
        body: "let text = \"ab\"; loop { text += text; }",
        at: (1, 1),
        message: "string too long",
    },
    Hostile {
        act: "CS",
        script: "agreements/medecins.rhai",
        body: "return tariff(line, member, provider, claim) + tariff(line, member, provider, claim);",
        at: (1, 1),
        message: "nested calls too deep",
    },
    Hostile {
        act: "PH7",
        script: "agreements/pharmacies.rhai",
        body: "let secret = env(\"DATABASE_URL\"); let text = read_file(\"/etc/passwd\");",
        at: (2, 41),
        message: "no function env(a string) (wrong name, or wrong number or kinds of arguments)",
    },
];

const TARIFF: &str = "fn tariff(line, member, provider, claim) {";

/// A copy of the French pack in `dir` with each agreement of [`HOSTILE`] misbehaving on its act,
/// the hostile code alone on the tariff's second line (so the error is at line 2).
fn hostile_pack(dir: &Path) -> PathBuf {
    let pack = dir.join("fr");
    claims_e2e::copy_dir(&rules_dir(), &pack);
    for hostile in &HOSTILE {
        let path = pack.join(hostile.script);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let start = text.find(TARIFF).unwrap_or_else(|| panic!("no tariff in {}", hostile.script));
        // The leading comments go, so the hostile line is line 2 of the script.
        let rest = &text[start + TARIFF.len()..];
        let patched = format!("{TARIFF}\n    if line.act == \"{}\" {{ {} }}{rest}", hostile.act, hostile.body);
        std::fs::write(&path, patched).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }
    pack
}

/// The acts of a claim's lines (none for a cancellation or an invalid message).
fn acts(line: &str) -> Vec<String> {
    match parse_message(line) {
        Ok(Message::Claim(claim)) => claim.lines.iter().map(|line| line.act.to_string()).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn hostile_scripts_fail_their_claims_only_and_the_worker_goes_on() {
    let fixture = Fixture::new("hostile-scripts").await;
    let dir = claims_e2e::scratch("hostile-scripts");
    let pack = hostile_pack(&dir);
    let mut config = fixture.config();
    config.rules_dir.clone_from(&pack);
    let worker = WorkerThread::start(config);

    let lines = french_examples();
    let mut received = Vec::new();
    let options = SubmitOptions { wait: true, timeout: DEADLINE };
    let report = submit(&fixture.amqp_url, &fixture.prefix, &lines, options, |body| {
        received.push(serde_json::from_slice::<Value>(body).unwrap_or_else(|error| panic!("{error}")));
    })
    .await
    .unwrap_or_else(|error| panic!("submitting: {error}"));
    assert!(report.missing.is_empty(), "no decision within {DEADLINE:?} for {:?}", report.missing);

    // The embedded mode with the same hostile pack decides the same, errors included.
    // Exit code 0 (checked there): every message got its decision, `error` ones included.
    let embedded = claims_e2e::adjudicate_embedded(&pack, &registry_file(), &worker_support::claims_file());
    // Compared as sorted lists: a claim sent again after an `error` is decided again.
    let sorted = |decisions: Vec<Value>| {
        let mut texts: Vec<String> =
            decisions.into_iter().map(|decision| without_audit(decision).to_string()).collect();
        texts.sort();
        texts
    };
    let through_queue = sorted(received.clone());
    assert_eq!(through_queue.len(), lines.len());
    assert_eq!(through_queue, sorted(embedded));

    // Which claims have a hostile line: only those are in error, each with its script's error.
    // By claim key (a cancellation shares its claim's key and adds no act).
    let mut hostile_of: BTreeMap<(String, String), Vec<&Hostile>> = BTreeMap::new();
    for line in &lines {
        let Ok(value) = serde_json::from_str::<Value>(line) else { continue };
        let id = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
        let found = HOSTILE.iter().filter(|hostile| acts(line).iter().any(|act| act == hostile.act));
        hostile_of.entry((id("provider_id"), id("claim_id"))).or_default().extend(found);
    }
    let mut errors_by_act: BTreeMap<&str, usize> = BTreeMap::new();
    let mut normal = 0;
    for decision in &received {
        let (provider_id, claim_id, _) = decision_key(decision);
        let hostile = hostile_of.get(&(provider_id, claim_id.clone())).cloned().unwrap_or_default();
        if decision["outcome"] != "error" {
            normal += 1;
            continue;
        }
        let error = &decision["error"];
        let file = error["file"].as_str().unwrap_or_default();
        let culprit = hostile
            .iter()
            .find(|hostile| file.ends_with(hostile.script))
            .unwrap_or_else(|| panic!("claim {claim_id} is in error without a hostile line: {decision}"));
        assert_eq!(file, pack.join(culprit.script).to_string_lossy(), "{decision}");
        assert_eq!((error["line"].as_u64(), error["column"].as_u64()), (Some(culprit.at.0), Some(culprit.at.1)));
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(culprit.message), "claim {claim_id}: {message:?} is not {:?}", culprit.message);
        let position = format!("{file}:{}:{}: {message}", culprit.at.0, culprit.at.1);
        assert_eq!(error["position"], position.as_str());
        assert!(decision["payments"].as_array().is_none_or(Vec::is_empty), "an error pays nothing: {decision}");
        *errors_by_act.entry(culprit.act).or_default() += 1;
    }
    for hostile in &HOSTILE {
        assert!(
            errors_by_act.get(hostile.act).is_some_and(|count| *count > 0),
            "no {} error: {errors_by_act:?}",
            hostile.act
        );
    }
    assert!(normal > 150, "only {normal} claims decided normally");
    for (outcome, wanted) in [("complete", true), ("partial", true)] {
        assert_eq!(received.iter().any(|decision| decision["outcome"] == outcome), wanted, "{outcome}");
    }

    // The worker goes on: a GP visit after all that is decided.
    let visit = json!({
        "schema": "claim/v1", "claim_id": "C-AFTER-HOSTILE", "provider_id": "P-GP-0001", "member_id": "M-000001",
        "submitted_on": "2026-02-10", "currency": "EUR", "third_party_payment": [],
        "lines": [{"line": 1, "act": "G", "service_date": "2026-02-09", "quantity": 1, "charged": 3000,
                   "attributes": {"care_pathway": "in"}}]
    })
    .to_string();
    let mut after = Vec::new();
    let options = SubmitOptions { wait: true, timeout: DEADLINE };
    submit(&fixture.amqp_url, &fixture.prefix, &[visit], options, |body| {
        after.push(serde_json::from_slice::<Value>(body).unwrap_or_else(|error| panic!("{error}")));
    })
    .await
    .unwrap_or_else(|error| panic!("submitting: {error}"));
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["outcome"], "complete", "{}", after[0]);

    worker.stop().await.unwrap_or_else(|error| panic!("stopping the worker: {error}"));
    fixture.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_script_that_imports_is_refused_by_rules_check_and_by_the_worker() {
    let dir = claims_e2e::scratch("hostile-import");
    let pack = dir.join("fr");
    claims_e2e::copy_dir(&rules_dir(), &pack);
    let script = pack.join("agreements/hors-convention.rhai");
    let text = std::fs::read_to_string(&script).unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(&script, format!("import \"x\" as y;\n{text}")).unwrap_or_else(|error| panic!("{error}"));
    let expected =
        format!("{}:1:1: `import` is not available: a rule script cannot load other files", script.to_string_lossy());

    let (code, output) = claims_e2e::claimctl(&["rules", "check", &pack.to_string_lossy()]);
    assert_eq!(code, 1, "{output}");
    assert!(output.lines().any(|line| line == expected), "{expected:?} not in:\n{output}");

    // The worker stops before it reaches the broker (nothing listens on port 1).
    let fixture = Fixture::new("hostile-import").await;
    let mut config = fixture.config();
    config.amqp_url = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned();
    config.rules_dir.clone_from(&pack);
    let error = claims_worker::run(config, std::future::pending()).await.expect_err("the worker refuses the pack");
    let WorkerError::Rules { dir: refused, message } = &error else { panic!("expected a rules error, got {error}") };
    assert_eq!(refused, &pack);
    assert!(message.contains(&expected), "{expected:?} not in {message:?}");
    fixture.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}
