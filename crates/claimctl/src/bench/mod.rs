//! `claimctl bench`: what the worker does on this machine against the real broker and database,
//! next to what any worker with the same delivery guarantees could do (the relay ceiling).
//!
//! One run: a fresh database (migrated, the French registry imported), a work queue of the
//! chosen kind under a unique prefix, then
//! 1. **engine**: a `claimctl worker` child process; N claims of the French pack published as
//!    fast as the broker confirms them; claims/s from the first publish to the last decision
//!    received, and the latency of each (publish → decision received);
//! 2. **paced**: the same at each offered rate, for `--seconds` each, latency measured from the
//!    moment each claim was *due* (so a publisher that falls behind does not hide the delay);
//! 3. **relay ceiling**: the worker stopped, a relay that only consumes → publishes the reply
//!    with a confirm → acks, in batches like the worker, on the same queue with the same claims
//!    and replies as large as the engine's decisions;
//! 4. **relay with the engine's messages**: the same relay also publishing, for each claim, the
//!    decision/v1 and payment messages the worker published for it in step 1 (read from the
//!    outbox): the engine's broker work without its database and rules.
//!
//! Queues bound to the decisions and payments exchanges, drained by consumers in this process,
//! stand for the systems downstream (`downstream`); without them the broker would drop those
//! messages on arrival.
//!
//! The worker runs as a child process rather than a task in this one: it then has its own
//! runtime and allocator, its CPU time can be read from `/proc`, and it is exactly what
//! production runs. Measurements are floats: nothing here is money.
#![expect(clippy::float_arithmetic, reason = "throughputs, latencies and chart coordinates, never money")]

mod chart;
mod downstream;
mod load;
mod relay;
mod report;
mod setup;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use claims_worker::{BatchSettings, QueueType, Topology};

use crate::bench::load::{Client, Pace};
use crate::bench::relay::Replies;
use crate::bench::report::{Downstream, Machine, Report, Step, cpu_snapshot};
use crate::bench::setup::{BenchDatabase, WorkerProcess};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Claims in the engine and relay-ceiling runs.
    #[arg(long, default_value_t = 20_000)]
    pub claims: usize,
    /// Offered loads of the paced runs, claims per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,1500,2000")]
    pub rates: Vec<u32>,
    /// Seconds per paced run (0: no paced runs).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// The kind of the work queue: quorum (production) or classic.
    #[arg(long, default_value = "quorum", value_parser = parse_queue_type)]
    pub queue_type: QueueType,
    /// The worker's claims per database transaction (the relay batches the same way).
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// The worker's (and the relay's) prefetch.
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// The rule pack the worker runs.
    #[arg(long, default_value = "rules/fr")]
    pub rules: PathBuf,
    /// The claims generator (`--count N --seed S`, and `--registry` for the registry).
    #[arg(long, default_value = "examples/fr/generate.py")]
    pub generator: PathBuf,
    /// Members the claims are spread over (a multiple of the generator's 40; more are copies of
    /// them in households of their own). With 40, nearly every batch shares a household with
    /// the one before it, which the worker must then decide after it.
    #[arg(long, default_value_t = 40)]
    pub members: usize,
    /// Seed of the generated claims (each run of the bench uses seed, seed+1, …).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The `claimctl` binary to run the worker with (default: this one).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Write every figure to this file as JSON (`bench/v1`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency-against-offered-load chart to this SVG file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Keep the bench database (its name is printed) instead of dropping it.
    #[arg(long)]
    pub keep: bool,
    /// Bind no queue to the decisions and payments exchanges, so the broker drops those
    /// messages on arrival (the setup of the older figures in BENCHMARKS.md).
    #[arg(long)]
    pub no_downstream: bool,
}

/// `quorum` or `classic`, for `--queue-type` (here and on `claimctl worker`).
pub fn parse_queue_type(text: &str) -> Result<QueueType, String> {
    match text {
        "quorum" => Ok(QueueType::Quorum),
        "classic" => Ok(QueueType::Classic),
        other => Err(format!("unknown queue type {other:?}: expected quorum or classic")),
    }
}

pub fn queue_type_name(queue_type: QueueType) -> &'static str {
    match queue_type {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    }
}

/// How long the load generator waits for one more decision before it declares the rest missing.
const REPLY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the worker may take to start consuming (pack compilation, connections).
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(args: &BenchArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    validate(args)?;
    let database_url = std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set: it names a PostgreSQL server where the bench may create a database")?;
    let amqp_url = std::env::var("AMQP_URL").context("AMQP_URL is not set: it names the RabbitMQ broker")?;
    let worker_bin = match &args.worker_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("locating the claimctl binary")?,
    };
    let engine_claims = setup::generate_claims(&args.generator, args.members, args.claims, args.seed, "E-")?;
    let paced_claims = args
        .rates
        .iter()
        .zip(1..)
        .filter(|_| args.seconds > 0)
        .map(|(&rate, offset)| {
            let count = usize::try_from(u64::from(rate) * u64::from(args.seconds)).unwrap_or(usize::MAX);
            let claims =
                setup::generate_claims(&args.generator, args.members, count, args.seed + offset, &format!("P{rate}-"))?;
            Ok((rate, claims))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = setup::generate_registry(&args.generator, args.members)?;

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let prefix = format!("bench-{}.", std::process::id());
    let topology = Topology::with_prefix(&prefix).with_submit_queue_type(args.queue_type);
    let database = runtime.block_on(BenchDatabase::create(&database_url, &args.rules, &registry))?;
    writeln!(
        out,
        "bench database {} (claims {}, rates {:?}/s × {} s)",
        database.name, args.claims, args.rates, args.seconds
    )?;

    let measured = runtime.block_on(async {
        let client = Client::connect(&amqp_url, &topology).await?;
        let result =
            measure(args, &amqp_url, &worker_bin, &database, &topology, &client, &engine_claims, &paced_claims).await;
        client.close().await;
        result
    });
    runtime.block_on(setup::remove_topology(&amqp_url, &topology));
    if args.keep {
        writeln!(out, "kept database {}", database.name)?;
    } else if let Err(error) = runtime.block_on(database.drop()) {
        // The figures are worth more than the cleanup: say so and go on to print them.
        eprintln!("claimctl bench: {error:#}; drop it by hand");
    }
    let report = measured?;

    report.print_table(out)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        std::fs::write(path, chart::latency_against_load(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // Every claim must have had its decision: a run that lost some measured something else.
    Ok(if report.all_decided() { 0 } else { 1 })
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    if args.claims == 0 {
        bail!("--claims must be at least 1");
    }
    if let Some(rate) = args.rates.iter().find(|rate| **rate == 0) {
        bail!("--rates: {rate} is not an offered load (claims per second must be at least 1)");
    }
    if args.members == 0 || !args.members.is_multiple_of(40) {
        bail!("--members must be a positive multiple of 40 (the generator's members), got {}", args.members);
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.prefetch == 0 {
        bail!("--prefetch must be at least 1 (0 means unlimited to RabbitMQ)");
    }
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "one call site; the steps share these")]
async fn measure(
    args: &BenchArgs,
    amqp_url: &str,
    worker_bin: &std::path::Path,
    database: &BenchDatabase,
    topology: &Topology,
    client: &Client,
    engine_claims: &[String],
    paced_claims: &[(u32, Vec<String>)],
) -> anyhow::Result<Report> {
    let machine = Machine::read();
    let downstream = match args.no_downstream {
        true => None,
        false => Some(downstream::Downstream::start(amqp_url, topology).await?),
    };
    let worker = WorkerProcess::start(worker_bin, args, amqp_url, &database.url, topology, WORKER_START_TIMEOUT)?;
    let worker_pid = worker.pid();

    eprintln!("engine: {} claims as fast as the broker confirms", engine_claims.len());
    let before = cpu_snapshot(Some(worker_pid));
    let run = client.run("E", engine_claims, Pace::Saturate, REPLY_IDLE_TIMEOUT).await?;
    let engine = Step::new("engine", None, &run, before.until(&cpu_snapshot(Some(worker_pid))));
    let announced = Arc::new(database.announced("E").await?);

    let mut paced = Vec::new();
    for (rate, claims) in paced_claims {
        eprintln!("paced: {} claims at {rate}/s", claims.len());
        let before = cpu_snapshot(Some(worker_pid));
        let run = client.run(&format!("P{rate}"), claims, Pace::PerSecond(*rate), REPLY_IDLE_TIMEOUT).await?;
        paced.push(Step::new(
            &format!("paced {rate}/s"),
            Some(*rate),
            &run,
            before.until(&cpu_snapshot(Some(worker_pid))),
        ));
    }
    worker.stop()?;

    let reply_bytes = run_reply_bytes(&engine);
    let settings =
        BatchSettings { max_size: args.batch_size, max_wait: claims_worker::Config::new("", "", "").batch_wait };
    let relay_run = async |name: &str, tag: &str, replies: Replies| -> anyhow::Result<(Step, u64)> {
        let relay = relay::Relay::start(amqp_url, topology, args.prefetch, settings, replies)?;
        let before = cpu_snapshot(None);
        let run = client.run(tag, engine_claims, Pace::Saturate, REPLY_IDLE_TIMEOUT).await?;
        let step = Step::new(name, None, &run, before.until(&cpu_snapshot(None)));
        let announced_sent = relay.stop()?;
        Ok((step, announced_sent))
    };
    eprintln!("relay ceiling: {} claims, replies of {reply_bytes} bytes", engine_claims.len());
    let (relay, _) = relay_run("relay ceiling", "R", Replies { reply_bytes, announced: None }).await?;
    let announced_count: usize = announced.values().map(Vec::len).sum();
    eprintln!(
        "relay with the engine's messages: {} claims, replies and {announced_count} decision and payment messages",
        engine_claims.len()
    );
    let (relay_announced, by_relay) =
        relay_run("relay, engine msgs", "S", Replies { reply_bytes, announced: Some(announced) }).await?;
    let downstream = match downstream {
        Some(downstream) => {
            let by_worker = database.announced_total().await?;
            let consumed = downstream.stop(by_worker + by_relay).await?;
            eprintln!("downstream: {consumed} decision and payment messages consumed");
            Some(Downstream {
                consumed,
                published_by_worker: by_worker,
                in_engine_run: u64::try_from(announced_count).unwrap_or_default(),
                published_by_relay: by_relay,
            })
        }
        None => None,
    };

    Ok(Report {
        machine,
        queue_type: queue_type_name(args.queue_type),
        members: args.members,
        batch_size: args.batch_size,
        prefetch: args.prefetch,
        seconds_per_rate: args.seconds,
        downstream,
        relay,
        relay_announced,
        engine,
        paced,
    })
}

/// The relay answers with bodies as large as the worker's decisions, on average.
fn run_reply_bytes(engine: &Step) -> usize {
    engine.mean_reply_bytes.max(1)
}
