//! `claimctl rules check`, `rules test` and `rules definitions`: the analysts' commands.

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
    /// Write the Rhai definitions of the rule-script API for editors (rules/claims.d.rhai).
    Definitions {
        /// Where to write them; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the tests beside the scripts (DIR/tests/*.json) and print `N passed, M failed`.
    Test {
        dir: PathBuf,
        /// Only the tests whose name or file contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// What changed between two packs (folders or stored versions): scripts added, removed and
    /// changed, table rows by date. Exit 0 identical, 1 different.
    Diff(crate::rules_diff::DiffArgs),
    /// Re-adjudicate the last N recorded claim decisions with the pack in DIR and report what
    /// would change (from DATABASE_URL, or from an audit file with --audit).
    Impact(crate::rules_impact::ImpactArgs),
    /// Put a pack in force (after `check` and `test` pass): store it and make it the active
    /// version, which running workers load at their next poll. Prints its hash.
    Publish(crate::rules_publish::PublishArgs),
    /// Every publication and activation: when, who, what, which version (the active one marked).
    History(crate::rules_publish::HistoryArgs),
    /// Make a stored version active again (roll back or forward), by hash or a unique prefix.
    Activate(crate::rules_publish::ActivateArgs),
}

pub fn run(command: &RulesCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        RulesCommand::Diff(args) => crate::rules_diff::run(args, out),
        RulesCommand::Impact(args) => crate::rules_impact::run(args, out),
        RulesCommand::Publish(args) => crate::rules_publish::publish(args, out),
        RulesCommand::History(args) => crate::rules_publish::history(args, out),
        RulesCommand::Activate(args) => crate::rules_publish::activate(args, out),
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
        RulesCommand::Definitions { out: None } => {
            write!(out, "{}", claims_rules::definitions())?;
            Ok(0)
        }
        RulesCommand::Definitions { out: Some(path) } => {
            std::fs::write(path, claims_rules::definitions())
                .map_err(|error| anyhow::anyhow!("writing the definitions to {}: {error}", path.display()))?;
            writeln!(out, "wrote {}", path.display())?;
            Ok(0)
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
