//! `claimctl worker` (the production mode: the RabbitMQ worker until SIGTERM or Ctrl-C) and
//! `claimctl submit` (publish claims as a provider would and, with `--wait`, print decisions).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use claims_worker::submit::{SubmitOptions, submit};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The rule pack directory.
    #[arg(long)]
    pub rules: PathBuf,
    /// Put in front of every exchange and queue name (isolates test runs on a shared broker);
    /// defaults to the environment variable CLAIMS_PREFIX, else none.
    #[arg(long, default_value_t = prefix_from_env())]
    pub prefix: String,
    /// Serve GET /metrics (Prometheus) and GET /health on this address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics: SocketAddr,
    /// Unacknowledged claims the broker may push ahead of the worker.
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// Claims decided per database transaction.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// How often to look for a newly published version of the rule pack, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rules_poll_ms: u64,
    /// The kind of the work queue: quorum (production) or classic (to compare; no delivery limit).
    #[arg(long, default_value = "quorum", value_parser = crate::bench::parse_queue_type)]
    pub queue_type: claims_worker::QueueType,
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Wait for every decision and print each as it arrives.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds and list the claims still without a decision.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Put in front of every exchange and queue name (the worker's --prefix); defaults to the
    /// environment variable CLAIMS_PREFIX, else none.
    #[arg(long, default_value_t = prefix_from_env())]
    pub prefix: String,
    /// Claims and cancellations, one JSON message per line; `-` reads standard input.
    pub file: PathBuf,
}

/// clap's `env` attribute needs a feature this workspace does not enable; same effect.
fn prefix_from_env() -> String {
    std::env::var("CLAIMS_PREFIX").unwrap_or_default()
}

fn required_env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("the environment variable {name} is not set"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Multi-threaded: the store's adjudication (CPU) and the broker I/O run side by side.
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

pub fn run_worker(args: &WorkerArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let _ = out;
    // JSON lines on standard error for the log collector; RUST_LOG overrides the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `try_init`: a test may already have installed a subscriber in this process.
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).try_init();

    let database_url = required_env("DATABASE_URL")?;
    let amqp_url = required_env("AMQP_URL")?;
    let mut config = claims_worker::Config::new(amqp_url, database_url, &args.rules);
    config.prefix.clone_from(&args.prefix);
    config.metrics_addr = Some(args.metrics);
    config.prefetch = args.prefetch;
    config.batch_size = args.batch_size;
    config.rules_poll = Duration::from_millis(args.rules_poll_ms);
    config.submit_queue_type = args.queue_type;

    runtime()?.block_on(claims_worker::run(config, shutdown_signal())).context("worker")?;
    Ok(0)
}

/// Resolves on SIGTERM (what orchestrators send) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn run_submit(args: &SubmitArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let amqp_url = required_env("AMQP_URL")?;
    let input: Box<dyn Read> = if crate::is_stdin(&args.file) {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("opening claims file {}", args.file.display()))?)
    };
    let lines = BufReader::new(input)
        .lines()
        .collect::<Result<Vec<String>, _>>()
        .with_context(|| format!("reading {}", args.file.display()))?;
    let options = SubmitOptions { wait: args.wait, timeout: Duration::from_secs(args.timeout) };

    let mut written = Ok(());
    let report = runtime()?
        .block_on(submit(&amqp_url, &args.prefix, &lines, options, |decision| {
            if written.is_ok() {
                written = out.write_all(decision).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
            }
        }))
        .context("submitting")?;
    written.context("writing decisions")?;

    if !args.wait {
        writeln!(out, "published {} messages to exchange {}claims (all confirmed)", report.published, args.prefix)?;
        return Ok(0);
    }
    if report.missing.is_empty() {
        return Ok(0);
    }
    eprintln!("{} of {} messages have no decision after {} s:", report.missing.len(), report.published, args.timeout);
    for missing in &report.missing {
        match &missing.message_id {
            Some(id) => eprintln!("  line {}: {id}", missing.line),
            None => eprintln!("  line {}: (no provider_id/claim_id)", missing.line),
        }
    }
    Ok(1)
}
