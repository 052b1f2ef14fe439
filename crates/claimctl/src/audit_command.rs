//! `claimctl audit export|verify|replay`: the regulator's tools.

use std::io::Write;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Export entries and every rule source they reference to a self-contained file.
    Export,
    /// Recompute the hash chain of a file (or of the database when no file is given).
    Verify,
    /// Re-adjudicate recorded inputs and compare with the recorded decisions.
    Replay,
}

pub fn run(command: &AuditCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    let _ = (command, out);
    anyhow::bail!("not built yet")
}
