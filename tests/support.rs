//! Helpers shared by the end-to-end tests: paths in the repository, running `claimctl` through
//! its library entry point, scratch directories.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs `claimctl` with `args`; returns the exit code and standard output.
pub fn claimctl(args: &[&str]) -> (u8, String) {
    let mut out = Vec::new();
    let mut full = vec!["claimctl"];
    full.extend_from_slice(args);
    let code = match claimctl::run(full, &mut out) {
        Ok(code) => code,
        Err(error) => panic!("claimctl {args:?} failed: {error:#}"),
    };
    (code, String::from_utf8(out).unwrap_or_default())
}

/// A fresh scratch directory under the system temp dir, unique to this test and process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("claims-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    dir
}

/// Parses standard output of `claimctl adjudicate` into decision/v1 values.
pub fn decisions(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {error}: {line}")))
        .collect()
}

/// The embedded mode's decisions: `claimctl adjudicate --rules RULES --registry REGISTRY CLAIMS`,
/// which must exit 0 (every message got its decision, `error` ones included).
pub fn adjudicate_embedded(rules: &Path, registry: &Path, claims: &Path) -> Vec<serde_json::Value> {
    let (code, output) = claimctl(&[
        "adjudicate",
        "--rules",
        &rules.to_string_lossy(),
        "--registry",
        &registry.to_string_lossy(),
        &claims.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "claimctl adjudicate exit code");
    decisions(&output)
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("creating {}: {error}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|error| panic!("reading {}: {error}", from.display())).flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copying {}: {error}", entry.path().display()));
        }
    }
}

/// `target/<profile>/claimctl`, next to the `deps` folder holding the running test, built first
/// (a no-op when fresh) so that a test never runs a stale worker. Tests that run the real
/// binary as a child process (kill -9, logs, bench, chaos) use it.
pub fn claimctl_binary() -> PathBuf {
    let test = std::env::current_exe().unwrap_or_else(|error| panic!("locating the test binary: {error}"));
    let profile_dir = test.parent().and_then(Path::parent).unwrap_or_else(|| panic!("no target dir"));
    let mut build = std::process::Command::new(env!("CARGO"));
    build.current_dir(repo()).args(["build", "--quiet", "-p", "claimctl"]);
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    let binary = profile_dir.join("claimctl");
    match build.status() {
        Ok(status) if status.success() => {}
        // No cargo here (a copied test binary): use what exists.
        _ if binary.exists() => {}
        outcome => panic!("building claimctl failed: {outcome:?}"),
    }
    binary
}
