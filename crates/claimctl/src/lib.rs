//! The `claimctl` command line: parses arguments and hands each command to its module. No
//! business logic lives here: adjudication is `claims-domain`, rules are `claims-rules`.
//!
//! Exit codes: 0 success, 1 the command ran and found problems (failed tests, rule errors),
//! 2 the command could not run (bad arguments, unreadable files).

mod adjudicate;
mod audit_command;
mod bench;
mod database_command;
mod rules_command;
mod rules_diff;
mod rules_impact;
mod rules_publish;
mod worker_command;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "claimctl", version, about = "Claims adjudication engine for health mutuals")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Adjudicate claim/v1 and cancellation/v1 lines in process (no server): one decision/v1 line
    /// per input line on standard output.
    Adjudicate(adjudicate::AdjudicateArgs),
    /// Check and test rule packs.
    #[command(subcommand)]
    Rules(rules_command::RulesCommand),
    /// Run the RabbitMQ worker (reads DATABASE_URL and AMQP_URL).
    Worker(worker_command::WorkerArgs),
    /// Publish claims to the queue as a provider would; with --wait, print each decision.
    Submit(worker_command::SubmitArgs),
    /// Database schema (reads DATABASE_URL).
    #[command(subcommand)]
    Db(database_command::DbCommand),
    /// The registry of members, households and providers (reads DATABASE_URL).
    #[command(subcommand)]
    Registry(database_command::RegistryCommand),
    /// Claims whose rules failed: list them, re-adjudicate them (reads DATABASE_URL, AMQP_URL).
    #[command(subcommand)]
    Claims(database_command::ClaimsCommand),
    /// The regulator's tools: export, verify and replay the audit log.
    #[command(subcommand)]
    Audit(audit_command::AuditCommand),
    /// Measure the worker against the real broker and database: throughput, latency, and the
    /// relay ceiling (reads DATABASE_URL, AMQP_URL; creates and drops its own database).
    Bench(bench::BenchArgs),
}

/// Runs `claimctl` with `args` (the first is the program name), writing results to `out`.
/// Returns the process exit code.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            error.print()?;
            return Ok(code);
        }
    };
    match cli.command {
        Command::Adjudicate(args) => adjudicate::run(&args, out),
        Command::Rules(command) => rules_command::run(&command, out),
        Command::Worker(args) => worker_command::run_worker(&args, out),
        Command::Submit(args) => worker_command::run_submit(&args, out),
        Command::Db(command) => database_command::run_db(&command, out),
        Command::Registry(command) => database_command::run_registry(&command, out),
        Command::Claims(command) => database_command::run_claims(&command, out),
        Command::Audit(command) => audit_command::run(&command, out),
        Command::Bench(args) => bench::run(&args, out),
    }
}

/// A path argument that may be `-` for standard input.
pub(crate) fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}
