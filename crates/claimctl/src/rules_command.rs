//! `claimctl rules check` and `claimctl rules test`: the analysts' commands.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile a pack and report every problem as file:line:col: message.
    Check {
        /// The pack directory (e.g. rules/fr).
        dir: PathBuf,
    },
    /// Run the tests beside the scripts (DIR/tests/*.json) and print `N passed, M failed`.
    Test {
        dir: PathBuf,
        /// Only the tests whose name or file contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
}

pub fn run(command: &RulesCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        RulesCommand::Check { dir } => {
            let diagnostics = claims_rules::check_pack(dir);
            for diagnostic in &diagnostics {
                writeln!(out, "{diagnostic}")?;
            }
            if diagnostics.is_empty() {
                writeln!(out, "{}: ok", dir.display())?;
                Ok(0)
            } else {
                writeln!(out, "{} problem(s) in {}", diagnostics.len(), dir.display())?;
                Ok(1)
            }
        }
        RulesCommand::Test { dir, filter } => {
            let report =
                claims_rules::run_pack_tests(dir, filter.as_deref()).map_err(|error| anyhow::anyhow!("{error}"))?;
            let text = report.to_string();
            write!(out, "{text}")?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            Ok(if report.failed() == 0 { 0 } else { 1 })
        }
    }
}
