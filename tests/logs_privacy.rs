//! No health data in the worker's logs. A `claimctl worker` child process, once with
//! `RUST_LOG=debug` (every crate's debug output: the worker's, sqlx's, lapin's) and once at the
//! default level, decides the French examples (complete, partial, rejected, cancellations), the
//! hostile-message corpus of `tests/hostile/`, poison messages (one a claim encoded twice, so
//! that a whole claim arrives as one JSON string) and claims whose agreement script fails with
//! a message naming the act. Its standard error and output are then read whole.
//!
//! The rule, per run:
//! - no member id and no act code of any submitted message appears at all, as a whole token
//!   (tokens are runs of letters, digits, `_` and `-`, so `G` is found in `"G"` or `act G` but
//!   not in `P-GP-0001`);
//! - no attribute name and no attribute text value of four characters or more appears;
//! - no line names a claim together with one of that claim's charged amounts. With no member
//!   id anywhere, that is what could tie an amount to a person.
//!
//! Names of fields and columns may appear (sqlx logs its SQL at debug level, with `member_id`
//! and `charged` among the columns, never the bound values): they say what kind of thing a
//! value is, not whose or which. Claim ids and provider ids may appear: they are how an operator finds a message again, and
//! alone they say nothing about anyone's health; what a claim holds is behind the database's
//! access rights (see SECURITY.md). Values that cannot form one token (with spaces or control
//! characters, from the hostile corpus) are not searched for.

#[path = "worker_support.rs"]
#[expect(dead_code, reason = "shared with tests/worker.rs; this test uses part of it")]
mod worker_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use claims_e2e::claimctl_binary;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use worker_support::{Client, DEADLINE, Fixture, correlation, french_examples, rules_dir};

/// A copy of the French pack whose transport agreement fails on every VSL trip, with a message
/// naming the act and the date (as a careless analyst's `throw` would).
fn failing_pack(dir: &Path) -> PathBuf {
    let pack = dir.join("fr");
    claims_e2e::copy_dir(&rules_dir(), &pack);
    let script = pack.join("agreements/transports.rhai");
    let text = std::fs::read_to_string(&script).unwrap_or_else(|error| panic!("{error}"));
    let from = "fn tariff(line, member, provider, claim) {";
    let to = "fn tariff(line, member, provider, claim) {\n    if line.act == \"VSL\" { throw `no VSL tariff for ${line.act} of ${line.charged} on ${line.service_date}`; }";
    assert!(text.contains(from), "{from:?} is not in {}", script.display());
    std::fs::write(&script, text.replacen(from, to, 1)).unwrap_or_else(|error| panic!("{error}"));
    pack
}

/// The hostile corpus, every file as is.
fn hostile_messages() -> Vec<Vec<u8>> {
    let dir = claims_e2e::repo().join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_some_and(|name| name != "cases.json"))
        .collect();
    files.sort();
    files.iter().map(|path| std::fs::read(path).unwrap_or_else(|error| panic!("{error}"))).collect()
}

/// Poison messages carrying care data: a claim encoded twice (one JSON string), with the member
/// and the act first; the same claim under an unknown schema; a claim cut short; not UTF-8.
fn poison_messages() -> Vec<Vec<u8>> {
    let claim = r#"{"member_id":"M-000002","lines":[{"act":"HBJD001","charged":98765,"attributes":{"care_pathway":"in"},"line":1,"service_date":"2025-03-03","quantity":1}],"schema":"claim/v1","claim_id":"C-POISON-1","provider_id":"P-DEN-0001","submitted_on":"2025-03-04","currency":"EUR","third_party_payment":[]}"#;
    let twice = serde_json::to_string(claim).unwrap_or_else(|error| panic!("{error}"));
    let unknown_schema = claim.replace("claim/v1", "AMK M-000003 87654").replace("C-POISON-1", "C-POISON-2");
    let cut = &claim.replace("C-POISON-1", "C-POISON-3")[..120];
    let mut not_utf8 = b"\xff".to_vec();
    not_utf8.extend_from_slice(claim.replace("C-POISON-1", "C-POISON-4").as_bytes());
    vec![twice.into_bytes(), unknown_schema.into_bytes(), cut.as_bytes().to_vec(), not_utf8]
}

/// The values that follow `"key":` in `text`, escapes removed (so a claim encoded as a string is
/// read too).
fn values_of(text: &str, key: &str) -> Vec<String> {
    let text = text.replace('\\', "");
    let needle = format!("\"{key}\"");
    let mut values = Vec::new();
    for (at, _) in text.match_indices(&needle) {
        let rest = text[at + needle.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else { continue };
        let rest = rest.trim_start();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default(),
            None => rest.split(|c: char| !c.is_ascii_digit() && c != '-').next().unwrap_or_default(),
        };
        values.push(value.to_owned());
    }
    values
}

fn is_token_character(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn tokens(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !is_token_character(c)).filter(|token| !token.is_empty()).collect()
}

fn is_one_token(value: &str) -> bool {
    !value.is_empty() && value.chars().all(is_token_character)
}

/// What the logs must not hold, gathered from everything submitted.
#[derive(Debug, Default)]
struct Secrets {
    /// Whole tokens that must appear nowhere, with what each is.
    forbidden: BTreeMap<String, &'static str>,
    /// Charged amounts by claim id.
    amounts: BTreeMap<String, BTreeSet<String>>,
}

impl Secrets {
    fn gather(messages: &[Vec<u8>]) -> Secrets {
        let mut secrets = Secrets::default();
        for message in messages {
            let text = String::from_utf8_lossy(message);
            for (key, what) in [("member_id", "a member id"), ("act", "an act code")] {
                for value in values_of(&text, key) {
                    if is_one_token(&value) {
                        secrets.forbidden.insert(value, what);
                    }
                }
            }
            let claim_ids = values_of(&text, "claim_id");
            let charged: BTreeSet<String> =
                values_of(&text, "charged").into_iter().filter(|v| is_one_token(v)).collect();
            for claim_id in claim_ids.into_iter().filter(|id| is_one_token(id)) {
                secrets.amounts.entry(claim_id).or_default().extend(charged.iter().cloned());
            }
            let Ok(Value::Object(claim)) = serde_json::from_str::<Value>(&text) else { continue };
            for line in claim.get("lines").and_then(Value::as_array).into_iter().flatten() {
                for (name, value) in line.get("attributes").and_then(Value::as_object).into_iter().flatten() {
                    if is_one_token(name) {
                        secrets.forbidden.insert(name.clone(), "an attribute name");
                    }
                    if let Some(value) = value.as_str().filter(|value| value.len() >= 4 && is_one_token(value)) {
                        secrets.forbidden.insert(value.to_owned(), "an attribute value");
                    }
                }
            }
        }
        secrets
    }

    /// Every breach of the rule in `logs`, one line each.
    fn breaches(&self, logs: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in logs.lines() {
            let words = tokens(line);
            for word in &words {
                if let Some(what) = self.forbidden.get(*word) {
                    found.push(format!("{what} {word:?} in: {line}"));
                }
                if let Some(amounts) = self.amounts.get(*word) {
                    for amount in amounts.iter().filter(|amount| words.contains(amount.as_str())) {
                        found.push(format!("claim {word} with its charged amount {amount} in: {line}"));
                    }
                }
            }
        }
        found
    }
}

/// A `claimctl worker` child process, killed if the test ends without stopping it.
struct WorkerProcess(Option<Child>);

impl WorkerProcess {
    /// SIGTERM, then waits for the exit (the worker drains its batch first).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let Some(mut child) = self.0.take() else { panic!("the worker is already stopped") };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "sending SIGTERM failed");
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

/// What one run printed, and what its messages became.
struct Run {
    logs: String,
    outcomes: BTreeMap<String, usize>,
    dead_letters: usize,
}

/// Runs a worker child with `rust_log` (`None`: unset) over every message, until each has a
/// decision or a dead letter; stops it with SIGTERM and returns its standard error and output.
async fn run_worker(name: &str, rust_log: Option<&str>, messages: &[Vec<u8>]) -> Run {
    let fixture = Fixture::new(name).await;
    let dir = claims_e2e::scratch(name);
    let pack = failing_pack(&dir);
    let (stderr_path, stdout_path) = (dir.join("stderr.log"), dir.join("stdout.log"));
    let file = |path: &Path| std::fs::File::create(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut client = Client::connect(&fixture).await;
    let mut dead = client.consume(&fixture.topology.dead_queue).await;
    let mut command = Command::new(claimctl_binary());
    command
        .args(["worker", "--rules", &pack.to_string_lossy(), "--prefix", &fixture.prefix])
        .args(["--metrics", "127.0.0.1:0"])
        .env("DATABASE_URL", &fixture.database.url)
        .env("AMQP_URL", &fixture.amqp_url)
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(file(&stdout_path)))
        .stderr(Stdio::from(file(&stderr_path)));
    if let Some(level) = rust_log {
        command.env("RUST_LOG", level);
    }
    let mut worker =
        WorkerProcess(Some(command.spawn().unwrap_or_else(|error| panic!("starting claimctl worker: {error}"))));
    for (index, message) in messages.iter().enumerate() {
        client.publish(&fixture.topology, message, &index.to_string()).await;
    }

    let deadline = Instant::now() + DEADLINE;
    let mut answered = BTreeSet::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut dead_letters = 0;
    while answered.len() < messages.len() {
        tokio::select! {
            reply = client.next_reply(deadline) => {
                let Some(reply) = reply else { break };
                let decision: Value = serde_json::from_slice(&reply.data).unwrap_or_else(|error| panic!("{error}"));
                *outcomes.entry(decision["outcome"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
                answered.insert(correlation(&reply));
            }
            letter = tokio::time::timeout_at(deadline, dead.next()) => {
                let Ok(Some(Ok(letter))) = letter else { break };
                dead_letters += 1;
                answered.insert(correlation(&letter));
            }
        }
    }
    assert_eq!(answered.len(), messages.len(), "messages without an answer within {DEADLINE:?}");
    let exit = worker.terminate().await;
    assert!(exit.success(), "the worker exits 0 after SIGTERM: {exit}");
    client.close().await;
    fixture.cleanup().await;

    let read =
        |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let logs = format!("{}\n{}", read(&stderr_path), read(&stdout_path));
    let _ = std::fs::remove_dir_all(&dir);
    Run { logs, outcomes, dead_letters }
}

fn all_messages() -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = french_examples().into_iter().map(String::into_bytes).collect();
    messages.extend(hostile_messages());
    messages.extend(poison_messages());
    messages
}

/// The checks common to both levels: the run did what the rule is about, and the rule holds.
fn check(run: &Run, secrets: &Secrets) {
    for outcome in ["complete", "partial", "rejected", "reversed", "error"] {
        assert!(run.outcomes.get(outcome).is_some_and(|count| *count > 0), "no {outcome} decision: {:?}", run.outcomes);
    }
    assert!(run.dead_letters >= poison_messages().len(), "{} dead letters", run.dead_letters);
    // The logs were captured: the worker says what it loaded and what it dead-lettered.
    assert!(run.logs.contains("rule pack loaded"), "no start line in:\n{}", run.logs);
    assert_eq!(run.logs.matches("dead-lettering a message").count(), run.dead_letters, "{}", run.logs);
    let breaches = secrets.breaches(&run.logs);
    assert!(breaches.is_empty(), "{} breaches of the log rule:\n{}", breaches.len(), breaches.join("\n"));
}

#[tokio::test]
async fn debug_logs_hold_no_member_act_attribute_or_amount() {
    let messages = all_messages();
    let secrets = Secrets::gather(&messages);
    // What is searched for is really there: members, acts (short and long), attributes, amounts.
    for token in ["M-000037", "M-000002", "G", "AMI", "HBJD001", "care_pathway", "frame"] {
        assert!(secrets.forbidden.contains_key(token), "{token} is not searched for");
    }
    assert!(secrets.amounts.get("C-000001").is_some_and(|amounts| amounts.contains("5000")));
    assert!(secrets.amounts.get("C-POISON-1").is_some_and(|amounts| amounts.contains("98765")));

    let run = run_worker("logs-debug", Some("debug"), &messages).await;
    check(&run, &secrets);
    // Debug output of every crate was on (sqlx logs its statements at debug).
    assert!(run.logs.contains("\"level\":\"DEBUG\""), "no debug line in:\n{}", run.logs);
}

#[tokio::test]
async fn default_logs_hold_no_member_act_attribute_or_amount() {
    let messages = all_messages();
    let secrets = Secrets::gather(&messages);
    let run = run_worker("logs-default", None, &messages).await;
    check(&run, &secrets);
    assert!(!run.logs.contains("\"level\":\"DEBUG\""), "debug lines at the default level");
}

#[test]
fn the_rule_finds_what_it_is_about() {
    let secrets = Secrets::gather(&poison_messages());
    let leaks = [
        r#"{"fields":{"reason":"expected a JSON object, got the string \"{\"member_id\":\"M-000002\""}}"#,
        r#"{"fields":{"message":"act HBJD001 refused"}}"#,
        r#"{"fields":{"claim":"C-POISON-1","total":98765}}"#,
        "care_pathway=in",
    ];
    for leak in leaks {
        assert!(!secrets.breaches(leak).is_empty(), "{leak}");
    }
    let fine = "{\"fields\":{\"claim\":\"C-POISON-1\",\"provider\":\"P-DEN-0001\",\"batch\":50}}\n{\"batch\":98765}";
    assert_eq!(secrets.breaches(fine), Vec::<String>::new());
}
