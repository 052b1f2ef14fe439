//! The content hash of a pack: sha256 over the engine's identity and limits and every file the
//! engine reads (manifest, parameters, scripts), so a decision names the exact rules that made
//! it. Tests and the README are not read by the engine, so they are not hashed.

use sha2::{Digest, Sha256};

use crate::engine::{ENGINE_IDENTITY, limits_description};

/// One file of a pack, as read: its path relative to the pack folder (`/`-separated) and its
/// text. A store keeps these by content hash so a replay runs the very scripts that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// `sha256:<hex>` over `rhai-1.27.0\0<limits>\0` followed by each file, in sorted path order, as
/// `path\0len\0bytes`.
pub fn content_hash(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    hasher.update(ENGINE_IDENTITY.as_bytes());
    hasher.update([0]);
    hasher.update(limits_description().as_bytes());
    hasher.update([0]);
    for file in sorted {
        hasher.update(file.path.as_bytes());
        hasher.update([0]);
        hasher.update(file.text.len().to_string().as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile { path: path.into(), text: text.into() }
    }

    #[test]
    fn depends_on_every_byte_and_path_but_not_on_order() {
        let files = [file("pack.rhai", "#{}"), file("plans/a.rhai", "fn a() {}")];
        let hash = content_hash(&files);
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64, "{hash}");
        assert_eq!(hash, content_hash(&[files[1].clone(), files[0].clone()]));
        assert_ne!(hash, content_hash(&[file("pack.rhai", "#{}"), file("plans/a.rhai", "fn a() { }")]));
        assert_ne!(hash, content_hash(&[file("pack.rhai", "#{}"), file("plans/b.rhai", "fn a() {}")]));
        // The length prefix keeps a byte from moving silently between a path and its text.
        assert_ne!(content_hash(&[file("ab", "c")]), content_hash(&[file("a", "bc")]));
    }
}
