//! `claimctl rules check`: every problem of a pack (manifest, tables, compile errors of every
//! script, missing functions) as diagnostics, without running anything.

use std::path::Path;

pub use crate::diagnostic::Diagnostic;
use crate::load::{Files, load};

/// Every problem of the pack in folder `dir`; empty when the pack loads.
pub fn check_pack(dir: impl AsRef<Path>) -> Vec<Diagnostic> {
    let dir = dir.as_ref();
    match load(&dir.to_string_lossy(), &Files::Directory(dir)) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    }
}
