//! The regulator's tools, `claimctl audit verify|replay|export`, on the French examples: an
//! audit log verifies and replays to the very decisions; one byte changed anywhere in an entry
//! fails verification at exactly that entry; a replay runs the recorded rule sources even after
//! the pack on disk was edited, and `--rules` with the edited pack is a what-if; the database's
//! log exports, verifies and replays, read by the regulator's role alone.

#[path = "recorded_examples.rs"]
mod recorded_examples;

use std::path::{Path, PathBuf};

use claims_audit::export::{ExportHeader, SourceText};
use claims_e2e::{claimctl, copy_dir, repo, scratch};
use claims_rules::RhaiPack;
use serde_json::Value;

/// `claimctl adjudicate --audit` on the French examples with `pack`: the audit file.
fn audit_file(dir: &Path, pack: &Path) -> PathBuf {
    let audit = dir.join("audit.jsonl");
    let root = repo();
    let (code, _) = claimctl(&[
        "adjudicate",
        "--rules",
        &pack.to_string_lossy(),
        "--registry",
        &root.join("examples/fr/registry.json").to_string_lossy(),
        "--audit",
        &audit.to_string_lossy(),
        &root.join("examples/fr/claims.jsonl").to_string_lossy(),
    ]);
    assert_eq!(code, 0, "claimctl adjudicate failed");
    audit
}

/// An export file (audit-export/v1) of a whole entries-only file, with `pack`'s sources.
fn export_of(audit: &Path, pack: &Path, to: &Path) -> PathBuf {
    let pack = RhaiPack::load(pack).unwrap_or_else(|error| panic!("{error}"));
    let text = std::fs::read_to_string(audit).unwrap();
    let header = ExportHeader {
        from: 1,
        to: text.lines().count() as u64,
        prev_hash: claims_audit::GENESIS_HASH.to_owned(),
        sources: [(
            pack.version().to_owned(),
            pack.sources().iter().map(|file| SourceText { path: file.path.clone(), text: file.text.clone() }).collect(),
        )]
        .into_iter()
        .collect(),
    };
    std::fs::write(to, format!("{}\n{text}", header.to_json())).unwrap();
    to.to_path_buf()
}

fn run(args: &[&str]) -> (u8, String) {
    let (code, output) = claimctl(args);
    eprintln!("claimctl {}\n{output}", args.join(" "));
    (code, output)
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The number after `label` in a report (`identical: 360`).
fn count(output: &str, label: &str) -> u64 {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in\n{output}"))
}

#[test]
fn an_audit_file_verifies_and_replays_to_the_recorded_decisions() {
    let dir = scratch("audit-replay");
    let audit = audit_file(&dir, &repo().join("rules/fr"));
    let entries = std::fs::read_to_string(&audit).unwrap().lines().count() as u64;

    let (code, output) = run(&["audit", "verify", &path(&audit)]);
    assert_eq!(code, 0);
    assert!(output.contains(&format!("verified {entries} entries (seq 1..={entries})")), "{output}");
    assert!(output.contains("the chain is intact"), "{output}");

    let (code, output) = run(&["audit", "replay", &path(&audit), "--rules", &path(&repo().join("rules/fr"))]);
    assert_eq!(code, 0);
    assert_eq!(count(&output, "entries replayed:"), entries);
    assert_eq!(count(&output, "identical:"), entries);
    assert_eq!(count(&output, "different:"), 0);

    // An entries-only file holds no rule sources: a replay needs the pack.
    let (code, output) = run(&["audit", "replay", &path(&audit)]);
    assert_eq!(code, 2);
    assert!(output.contains("--rules DIR"), "{output}");

    // An export carries them; a range replays only that range but verifies the whole file.
    let export = export_of(&audit, &repo().join("rules/fr"), &dir.join("export.jsonl"));
    let (code, output) = run(&["audit", "verify", &path(&export)]);
    assert_eq!(code, 0);
    assert!(output.contains("every rule version has its sources"), "{output}");
    let (code, output) = run(&["audit", "replay", &path(&export), "--from", "10", "--to", "20"]);
    assert_eq!(code, 0);
    assert_eq!(count(&output, "entries replayed:"), 11);
    assert!(output.contains("seq 10..=20"), "{output}");
}

/// Changes the character at `at` of `line` to another of the same kind (digit, hex digit).
fn flip(line: &str, at: usize) -> String {
    let old = line.as_bytes()[at];
    let new = match old {
        b'9' => b'8',
        b'0'..=b'8' => old + 1,
        b'f' => b'e',
        b'a'..=b'e' => old + 1,
        other => panic!("not a digit at {at}: {:?}", other as char),
    };
    let mut bytes = line.as_bytes().to_vec();
    bytes[at] = new;
    String::from_utf8(bytes).unwrap()
}

/// Where a pattern ends in `line`, searching from `from`.
fn after(line: &str, pattern: &str, from: usize) -> usize {
    from + line[from..].find(pattern).unwrap_or_else(|| panic!("no {pattern} in {line}")) + pattern.len()
}

#[test]
fn one_byte_changed_in_an_entry_fails_verify_at_exactly_that_entry() {
    let dir = scratch("audit-tamper");
    let audit = audit_file(&dir, &repo().join("rules/fr"));
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // A claim with a paid line, in the middle of the log.
    let target = (20..lines.len())
        .find(|&index| {
            let entry: Value = serde_json::from_str(lines[index]).unwrap();
            entry["decision"]["outcome"] == "complete"
                && entry["decision"]["lines"][0]["compulsory"]["paid"].as_i64() > Some(0)
        })
        .unwrap();
    let seq = target + 1;
    let line = lines[target];
    let decision = after(line, "\"decision\":{", 0);
    let cases = [
        ("a claim amount in the input", after(line, "\\\"charged\\\":", 0), "hash mismatch"),
        (
            "the rule pack hash",
            after(line, "\"version\":\"sha256:", line.rfind("\"rules\":{").unwrap()) + 7,
            "hash mismatch",
        ),
        ("an amount paid in the decision", after(line, "\"paid\":", decision), "hash mismatch"),
        ("the previous hash", after(line, "\"prev_hash\":\"", 0) + 10, "prev_hash does not match"),
        ("the entry's own hash", after(line, "\"hash\":\"", 0) + 3, "hash mismatch"),
    ];
    for (what, at, why) in cases {
        let mut altered: Vec<String> = lines.iter().map(|line| (*line).to_owned()).collect();
        altered[target] = flip(line, at);
        let file = dir.join("altered.jsonl");
        std::fs::write(&file, altered.join("\n") + "\n").unwrap();
        let (code, output) = run(&["audit", "verify", &path(&file)]);
        assert_eq!(code, 2, "{what}: {output}");
        assert!(output.contains(&format!("entry seq {seq}:")), "{what}: not named seq {seq}: {output}");
        assert!(output.contains(why), "{what}: {output}");
        assert!(output.contains(&format!("{} entries before it verified", seq - 1)), "{what}: {output}");
        // A replay refuses the altered log too.
        let (code, _) = run(&["audit", "replay", &path(&file), "--rules", &path(&repo().join("rules/fr"))]);
        assert_eq!(code, 2, "{what}");
    }

    // An entry removed: a gap in the sequence, named at the missing seq.
    let mut gapped: Vec<&str> = lines.clone();
    gapped.remove(target);
    let file = dir.join("gap.jsonl");
    std::fs::write(&file, gapped.join("\n") + "\n").unwrap();
    let (code, output) = run(&["audit", "verify", &path(&file)]);
    assert_eq!(code, 2);
    assert!(output.contains(&format!("entry seq {seq} (line {seq}): gap in sequence")), "{output}");
}

#[test]
fn an_export_without_a_pack_s_sources_or_with_altered_ones_or_cut_short_does_not_verify() {
    let dir = scratch("audit-export-file");
    let audit = audit_file(&dir, &repo().join("rules/fr"));
    let export = export_of(&audit, &repo().join("rules/fr"), &dir.join("export.jsonl"));
    let text = std::fs::read_to_string(&export).unwrap();
    let (header, entries) = text.split_once('\n').unwrap();
    let header: Value = serde_json::from_str(header).unwrap();
    let version = header["sources"].as_object().unwrap().keys().next().unwrap().clone();

    let mut without = header.clone();
    without["sources"] = serde_json::json!({});
    let file = dir.join("no-sources.jsonl");
    std::fs::write(&file, format!("{without}\n{entries}")).unwrap();
    let (code, output) = run(&["audit", "verify", &path(&file)]);
    assert_eq!(code, 2);
    assert!(output.contains(&format!("entry seq 1: unknown rule hash {version}")), "{output}");

    let mut altered = header.clone();
    let params = altered["sources"][&version]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|file| file["path"] == "params.rhai")
        .unwrap();
    params["text"] = Value::String(params["text"].as_str().unwrap().replacen("3000", "3300", 1));
    let file = dir.join("altered-sources.jsonl");
    std::fs::write(&file, format!("{altered}\n{entries}")).unwrap();
    let (code, output) = run(&["audit", "verify", &path(&file)]);
    assert_eq!(code, 2);
    assert!(output.contains("they were altered"), "{output}");
    let (code, output) = run(&["audit", "replay", &path(&file)]);
    assert_eq!(code, 2);
    assert!(output.contains("they were altered"), "{output}");

    let mut cut: Vec<&str> = text.lines().collect();
    cut.pop();
    let file = dir.join("cut.jsonl");
    std::fs::write(&file, cut.join("\n") + "\n").unwrap();
    let (code, output) = run(&["audit", "verify", &path(&file)]);
    assert_eq!(code, 2);
    assert!(output.contains("truncated"), "{output}");
}

#[test]
fn a_replay_runs_the_recorded_sources_and_rules_from_disk_are_a_what_if() {
    let dir = scratch("audit-what-if");
    let pack = dir.join("fr");
    copy_dir(&repo().join("rules/fr"), &pack);
    let audit = audit_file(&dir, &pack);
    let export = export_of(&audit, &pack, &dir.join("export.jsonl"));
    let entries = std::fs::read_to_string(&audit).unwrap().lines().count() as u64;

    // The analysts edit the pack on disk afterwards: the GP fee from 2024-12-22.
    let params = pack.join("params.rhai");
    let text = std::fs::read_to_string(&params).unwrap();
    let edited = text.replacen("[\"2024-12-22\", 3000]", "[\"2024-12-22\", 3300]", 1);
    assert_ne!(edited, text);
    std::fs::write(&params, edited).unwrap();

    // The export replays with the sources it recorded: the original decisions.
    let (code, output) = run(&["audit", "replay", &path(&export)]);
    assert_eq!(code, 0);
    assert!(output.contains("with the recorded rule sources"), "{output}");
    assert_eq!(count(&output, "identical:"), entries);

    // With the edited pack, a what-if: the differences and the totals before and after.
    for log in [&export, &audit] {
        let (code, output) = run(&["audit", "replay", &path(log), "--rules", &path(&pack)]);
        assert_eq!(code, 1, "differences found");
        assert!(output.starts_with("what-if: "), "{output}");
        let changed = count(&output, "changed decisions:");
        assert!(changed > 0 && changed < entries, "{output}");
        assert_eq!(count(&output, "identical:") + changed, entries);
        let compulsory = output.lines().find(|line| line.trim_start().starts_with("compulsory: ")).unwrap();
        let (before, after) =
            compulsory.trim_start_matches([' ']).trim_start_matches("compulsory: ").split_once(" → ").unwrap();
        assert_ne!(before, after.split(" (").next().unwrap(), "{compulsory}");
        assert!(compulsory.contains("(+"), "a dearer GP visit costs the compulsory scheme more: {compulsory}");
        assert!(output.contains("largest changes of the amounts paid:"), "{output}");
        assert!(output.contains(".compulsory.gross: recorded"), "{output}");
    }
}

/// `url` with its user (and password) replaced.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

#[test]
fn the_database_log_exports_verifies_and_replays_read_by_the_regulator_alone() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pack = RhaiPack::load(repo().join("rules/fr")).unwrap();
    let (database, store) = runtime.block_on(async {
        let database = claims_testkit::database().await;
        let store = claims_store::Store::connect(&database.url).await.unwrap();
        store.migrate().await.unwrap();
        recorded_examples::record_french_examples(&store, &pack).await;
        // The regulator's own login, member of claims_regulator (roles are cluster-wide).
        sqlx::query(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'claims_test_inspector') THEN
                     CREATE ROLE claims_test_inspector LOGIN PASSWORD 'inspector' IN ROLE claims_regulator;
                 END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$",
        )
        .execute(store.pool())
        .await
        .unwrap();
        (database, store)
    });
    let entries = runtime.block_on(store.audit_head()).unwrap();
    let owner = database.url.clone();
    let regulator = as_user(&database.url, "claims_test_inspector:inspector");
    let dir = scratch("audit-database");

    for url in [&owner, &regulator] {
        let (code, output) = run(&["audit", "verify", "--database-url", url]);
        assert_eq!(code, 0);
        assert!(output.contains(&format!("verified {0} entries (seq 1..={0}) in the database", entries.0)), "{output}");
        let (code, output) = run(&["audit", "replay", "--database-url", url]);
        assert_eq!(code, 0);
        assert_eq!(count(&output, "identical:"), entries.0);
    }
    let (code, output) = run(&["audit", "replay", "--database-url", &regulator, "--from", "101", "--to", "150"]);
    assert_eq!(code, 0);
    assert_eq!(count(&output, "entries replayed:"), 50);

    let whole = dir.join("whole.jsonl");
    let (code, _) = run(&["audit", "export", "--database-url", &regulator, "--out", &path(&whole)]);
    assert_eq!(code, 0);
    let (code, output) = run(&["audit", "verify", &path(&whole)]);
    assert_eq!(code, 0);
    assert!(output.contains(&format!("(seq 1..={})", entries.0)), "{output}");
    let (code, output) = run(&["audit", "replay", &path(&whole)]);
    assert_eq!(code, 0);
    assert_eq!(count(&output, "identical:"), entries.0);

    let part = dir.join("part.jsonl");
    let (code, _) =
        run(&["audit", "export", "--database-url", &regulator, "--out", &path(&part), "--from", "101", "--to", "200"]);
    assert_eq!(code, 0);
    let header: Value = serde_json::from_str(std::fs::read_to_string(&part).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!((header["from"].as_u64(), header["to"].as_u64()), (Some(101), Some(200)));
    let (code, output) = run(&["audit", "verify", &path(&part)]);
    assert_eq!(code, 0);
    assert!(output.contains("verified 100 entries (seq 101..=200)"), "{output}");
    let (code, output) = run(&["audit", "replay", &path(&part)]);
    assert_eq!(code, 0);
    assert_eq!(count(&output, "identical:"), 100);

    // Nothing was written by any of it.
    assert_eq!(runtime.block_on(store.audit_head()).unwrap(), entries);
    runtime.block_on(async {
        store.pool().close().await;
        database.drop_database().await;
    });
}
