//! The sandbox: runaway scripts are stopped with a clear message and a position, and the
//! language has no floats, no imports, no eval and no undefined variables.

mod common;

use std::time::{Duration, Instant};

use claims_domain::decision::RuleFailure;
use claims_domain::rules::RulePack;
use claims_rules::RhaiPack;
use common::{Fixture, TempPack};

const SCRIPT: &str = "agreements/doctors.rhai";

/// Loads the default pack with `script` as the agreement script and runs its tariff.
fn tariff_failure(script: &str) -> (TempPack, RuleFailure) {
    let pack_dir = TempPack::new(&[(SCRIPT, script)]);
    let pack = RhaiPack::load(pack_dir.path()).unwrap_or_else(|error| panic!("the pack loads: {error}"));
    let fixture = Fixture::new("G", "2025-11-05", 3000);
    let failure = pack.tariff(&fixture.context()).expect_err("the script fails");
    (pack_dir, failure)
}

/// The compile problems of the default pack with `script` as the agreement script.
fn compile_problems(script: &str) -> (TempPack, Vec<String>) {
    let pack_dir = TempPack::new(&[(SCRIPT, script)]);
    let error = RhaiPack::load(pack_dir.path()).expect_err("the pack does not load");
    let problems = error.diagnostics.iter().map(ToString::to_string).collect();
    (pack_dir, problems)
}

#[test]
fn an_endless_loop_is_stopped_quickly() {
    let started = Instant::now();
    let (pack, failure) = tariff_failure("fn tariff(line, member, provider, claim) {\n    loop {}\n}\n");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(failure.file, pack.label(SCRIPT));
    assert!(failure.message.contains("too many operations"), "{failure}");
    assert_eq!((failure.line, failure.column), (1, 1), "{failure}");
}

#[test]
fn an_endless_loop_in_a_helper_is_stopped() {
    let script =
        "fn spin(n) {\n    while true { n += 1; }\n}\n\nfn tariff(line, member, provider, claim) {\n    spin(0)\n}\n";
    let (_pack, failure) = tariff_failure(script);
    assert!(failure.message.contains("too many operations (endless loop?)"), "{failure}");
}

#[test]
fn endless_recursion_is_stopped() {
    let script = "fn f(n) { f(n + 1) }\n\nfn tariff(line, member, provider, claim) {\n    f(0)\n}\n";
    // Run on a 1 MiB stack: the call-level limit must stop Rhai long before the native stack
    // runs out, even in a debug build (a native stack overflow would abort the whole worker).
    let failure = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || tariff_failure(script).1)
        .expect("spawn a thread")
        .join()
        .expect("no panic");
    assert!(failure.message.contains("nested calls too deep"), "{failure}");
}

#[test]
fn a_huge_string_is_stopped() {
    let script = "fn tariff(line, member, provider, claim) {\n    let s = \"ab\";\n    loop { s += s; }\n}\n";
    let (_pack, failure) = tariff_failure(script);
    assert!(failure.message.contains("string too long"), "{failure}");
}

#[test]
fn a_huge_list_is_stopped() {
    let script = "fn tariff(line, member, provider, claim) {\n    let items = [];\n    for i in 0..2000 { items.push(i); }\n    items\n}\n";
    let (_pack, failure) = tariff_failure(script);
    assert!(failure.message.contains("list too large"), "{failure}");
}

#[test]
fn a_decimal_number_is_a_compile_error_with_its_position() {
    let (pack, problems) = compile_problems(
        "fn tariff(line, member, provider, claim) {\n    let fee = 1.5;\n    #{ base: fee, rate_bps: 7000, category: \"doctor\" }\n}\n",
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let expected = format!(
        "{}:2:15: decimal numbers are not allowed: 1.5 (amounts are whole minor units and rates basis points: \
         write 1250 for 12,50 and 7000 for 70 %)",
        pack.label(SCRIPT)
    );
    assert_eq!(problems, [expected]);
}

#[test]
fn import_is_a_compile_error() {
    let (pack, problems) = compile_problems("import \"x\" as y;\n\nfn tariff(line, member, provider, claim) { 1 }\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with(&format!("{}:1:1: ", pack.label(SCRIPT))), "{problems:#?}");
    assert!(problems[0].contains("import"), "{problems:#?}");
}

#[test]
fn reading_an_undefined_variable_is_reported_at_its_place() {
    let (pack, problems) = compile_problems(
        "fn tariff(line, member, provider, claim) {\n    let base = 10;\n    #{ base: bsae, rate_bps: 7000, category: \"doctor\" }\n}\n",
    );
    assert_eq!(problems, [format!("{}:3:14: reads a variable that does not exist: bsae", pack.label(SCRIPT))]);
}

#[test]
fn reading_a_missing_key_is_an_error_at_its_place() {
    let (pack, failure) = tariff_failure(
        "fn tariff(line, member, provider, claim) {\n    let act = line.atc;\n    deny(\"PR\", \"96\", act)\n}\n",
    );
    assert_eq!(failure.to_string(), format!("{}:2:20: map has no key \"atc\"", pack.label(SCRIPT)));
}

#[test]
fn an_error_inside_a_helper_points_into_the_helper() {
    let script =
        "fn helper(map) {\n    map.missing\n}\n\nfn tariff(line, member, provider, claim) {\n    helper(line)\n}\n";
    let (pack, failure) = tariff_failure(script);
    assert_eq!(failure.to_string(), format!("{}:2:9: map has no key \"missing\"", pack.label(SCRIPT)));
}

#[test]
fn eval_sleep_and_exit_are_not_available() {
    let (_pack, problems) = compile_problems("fn tariff(line, member, provider, claim) { eval(\"1\") }\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    for call in ["sleep(100)", "exit(1)"] {
        let (_pack, failure) = tariff_failure(&format!("fn tariff(line, member, provider, claim) {{ {call} }}\n"));
        assert!(failure.message.starts_with("no function"), "{failure}");
    }
}

#[test]
fn print_and_debug_are_silent_and_harmless() {
    let script = "fn tariff(line, member, provider, claim) {\n    print(\"x\");\n    debug(line);\n    deny(\"PR\", \"96\", \"no\")\n}\n";
    let pack_dir = TempPack::new(&[(SCRIPT, script)]);
    let pack = RhaiPack::load(pack_dir.path()).expect("the pack loads");
    let fixture = Fixture::new("G", "2025-11-05", 3000);
    assert!(pack.tariff(&fixture.context()).is_ok());
}

#[test]
fn a_pack_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RhaiPack>();
}

#[test]
fn a_deeply_nested_expression_is_a_compile_error_not_a_crash() {
    let nested = format!("{}1{}", "(".repeat(300), ")".repeat(300));
    let script = format!("fn tariff(line, member, provider, claim) {{\n    let x = {nested};\n    x\n}}\n");
    let problems = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || compile_problems(&script).1)
        .expect("spawn a thread")
        .join()
        .expect("no panic");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("expression exceeds maximum complexity"), "{problems:#?}");
}
