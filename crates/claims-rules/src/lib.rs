//! Rhai rule packs: the sandboxed engine and its host functions, loading a pack folder
//! (`pack.rhai`, `params.rhai`, scripts), content hashes, dated parameters, diagnostics an
//! analyst can act on, and the runner of the tests beside the scripts.
//!
//! Reading order: [`engine`] (the sandbox and the host API), [`manifest`], [`params`], [`pack`]
//! ([`RhaiPack`], the `RulePack` the pipeline calls), [`check`], [`testing`].

pub mod api;
pub mod check;
mod diagnostic;
pub mod diff;
pub mod engine;
pub mod hash;
mod lints;
mod load;
pub mod manifest;
pub mod pack;
pub mod params;
mod probe;
mod rulings;
pub mod testing;
mod usage;
mod values;

pub use api::definitions;
pub use check::{Diagnostic, check_pack};
pub use hash::{SourceFile, content_hash};
pub use pack::{PackError, RhaiPack};
pub use testing::{TestReport, run_pack_tests};
