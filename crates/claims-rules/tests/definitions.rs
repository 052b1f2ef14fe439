//! The committed definitions file and the analysts' guide follow the host API.

use std::path::Path;

use claims_rules::api::HOST_FUNCTIONS;

fn rules_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `claimctl rules definitions --out rules/claims.d.rhai` writes `claims_rules::definitions()`.
#[test]
fn the_committed_definitions_file_is_what_the_command_writes() {
    assert!(
        rules_file("claims.d.rhai") == claims_rules::definitions(),
        "rules/claims.d.rhai is out of date: run claimctl rules definitions --out rules/claims.d.rhai"
    );
}

#[test]
fn the_guide_documents_every_host_function_with_its_example() {
    let guide = rules_file("README.md");
    for function in HOST_FUNCTIONS {
        let parameters: Vec<&str> = function.parameters.iter().map(|(name, _)| *name).collect();
        let row = format!("| `{}({})` |", function.name, parameters.join(", "));
        assert!(guide.contains(&row), "rules/README.md has no row {row}");
        assert!(guide.contains(function.example), "rules/README.md lacks the example {}", function.example);
    }
}
