//! `claimctl rules check`: every problem of a pack as diagnostics — the manifest, the tables,
//! compile errors (a variable or function that does not exist included), then the analyst's
//! mistakes a compiler cannot see ([`crate::lints`]): rates above 100 %, unknown plan, agreement
//! and table names in scripts, tables and tests, and product formulas that pay what the law
//! forbids ([`crate::probe`]).

use std::path::Path;

pub use crate::diagnostic::Diagnostic;
use crate::lints::{Names, lint_params, lint_script, lint_test_file};
use crate::load::{Files, PARAMS_FILE, label, read_parts, sort_problems};
use crate::probe::probe_products;

/// Every problem of the pack in folder `dir`, sorted by file and place; empty when the pack has
/// none.
pub fn check_pack(dir: impl AsRef<Path>) -> Vec<Diagnostic> {
    let dir = dir.as_ref();
    let root = dir.to_string_lossy().into_owned();
    let parts = read_parts(&root, &Files::Directory(dir));
    let mut problems = parts.problems.clone();
    if let Some(manifest) = &parts.manifest {
        let names = Names {
            plans: manifest.plans.keys().map(|name| name.as_str().to_owned()).collect(),
            agreements: manifest.agreements.keys().map(|name| name.as_str().to_owned()).collect(),
            params: &parts.params,
            params_known: parts.params_ok,
        };
        for source in &parts.sources {
            let file = label(&root, &source.path);
            if source.path == PARAMS_FILE {
                problems.extend(lint_params(&file, &source.text, &names));
            } else if source.path.ends_with(".rhai") && source.path != crate::load::MANIFEST_FILE {
                problems.extend(lint_script(&file, &source.text, &names));
            }
        }
        for (relative, text) in test_files(dir) {
            problems.extend(lint_test_file(&label(&root, &relative), &text, &names));
        }
        problems.extend(probe_products(&parts));
    }
    sort_problems(&mut problems);
    problems
}

/// The `.json` files directly in `dir/tests`, by path relative to the pack, sorted; files that
/// cannot be read are left to `claimctl rules test`, which names the problem.
fn test_files(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir.join("tests")) else { return Vec::new() };
    let mut files: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|extension| extension == "json"))
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((format!("tests/{name}"), std::fs::read_to_string(&path).ok()?))
        })
        .collect();
    files.sort();
    files
}
