//! The figures of a bench run: per step throughput, latency percentiles, outcomes and CPU time
//! per claim by process (worker, broker, database, the bench itself), printed as a table and
//! written as `bench/v1` JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::load::Run;

/// The percentiles reported for every step.
pub const PERCENTILES: [(&str, f64); 3] = [("p50", 50.0), ("p95", 95.0), ("p99", 99.0)];

/// Latency percentiles in milliseconds (nearest rank).
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(sorted: &[Duration]) -> Option<Latency> {
        let max = sorted.last()?;
        let at = |percent: f64| {
            let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
            milliseconds(sorted[rank.clamp(1, sorted.len()) - 1])
        };
        Some(Latency { p50: at(50.0), p95: at(95.0), p99: at(99.0), max: milliseconds(*max) })
    }

    pub fn percentile(&self, name: &str) -> f64 {
        match name {
            "p50" => self.p50,
            "p95" => self.p95,
            "p99" => self.p99,
            _ => self.max,
        }
    }
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One step: the relay ceiling, the engine, or one paced rate.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    /// The offered load of a paced step.
    pub rate: Option<u32>,
    pub published: usize,
    pub decided: usize,
    pub seconds: f64,
    pub claims_per_second: f64,
    pub latency: Option<Latency>,
    /// Decisions by `outcome` (the relay's replies have none).
    pub outcomes: BTreeMap<String, usize>,
    pub mean_reply_bytes: usize,
    pub cpu: CpuUse,
}

impl Step {
    pub fn new(name: &str, rate: Option<u32>, run: &Run, cpu: CpuUse) -> Step {
        let seconds = run.elapsed.as_secs_f64();
        let decided = run.latencies.len();
        let mut outcomes = BTreeMap::new();
        for reply in &run.replies {
            let outcome = serde_json::from_slice::<Value>(reply)
                .ok()
                .and_then(|decision| decision.get("outcome").and_then(Value::as_str).map(str::to_owned));
            if let Some(outcome) = outcome {
                *outcomes.entry(outcome).or_default() += 1;
            }
        }
        let reply_bytes: usize = run.replies.iter().map(Vec::len).sum();
        Step {
            name: name.to_owned(),
            rate,
            published: run.published,
            decided,
            seconds,
            claims_per_second: if seconds > 0.0 { decided as f64 / seconds } else { 0.0 },
            latency: Latency::of(&run.latencies),
            outcomes,
            mean_reply_bytes: reply_bytes.checked_div(run.replies.len()).unwrap_or(0),
            cpu,
        }
    }

    /// CPU microseconds per decided claim, by process.
    fn cpu_per_claim(&self) -> BTreeMap<&'static str, f64> {
        let per_claim = |seconds: f64| if self.decided == 0 { 0.0 } else { seconds * 1e6 / self.decided as f64 };
        let mut by_process = BTreeMap::new();
        if let Some(worker) = self.cpu.worker {
            by_process.insert("worker", per_claim(worker));
        }
        by_process.insert("broker", per_claim(self.cpu.broker));
        by_process.insert("database", per_claim(self.cpu.database));
        by_process.insert("bench", per_claim(self.cpu.bench));
        by_process.insert("machine", per_claim(self.cpu.machine_busy));
        by_process
    }

    fn to_json(&self) -> Value {
        let latency = self.latency.as_ref().map(|latency| {
            json!({"p50": round(latency.p50), "p95": round(latency.p95), "p99": round(latency.p99), "max": round(latency.max)})
        });
        let cpu: BTreeMap<&str, f64> =
            self.cpu_per_claim().into_iter().map(|(name, value)| (name, round(value))).collect();
        json!({
            "name": self.name,
            "offered_per_second": self.rate,
            "published": self.published,
            "decided": self.decided,
            "seconds": round(self.seconds),
            "claims_per_second": round(self.claims_per_second),
            "latency_ms": latency,
            "outcomes": self.outcomes,
            "mean_reply_bytes": self.mean_reply_bytes,
            "cpu_us_per_claim": cpu,
            "machine_busy_percent": round(self.cpu.machine_busy_fraction() * 100.0),
        })
    }
}

/// Two decimals are plenty for milliseconds and claims per second.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// CPU seconds spent during a step, by process (read from `/proc`; zeros elsewhere).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuUse {
    pub wall: f64,
    /// The worker child process (absent for the relay step, which runs in the bench process).
    pub worker: Option<f64>,
    /// Every `beam.smp` process (RabbitMQ).
    pub broker: f64,
    /// Every `postgres` process.
    pub database: f64,
    /// This process: the load generator, and the relay during its step.
    pub bench: f64,
    /// Every CPU of the machine, busy time (other users of the machine included).
    pub machine_busy: f64,
    pub cpus: usize,
}

impl CpuUse {
    fn machine_busy_fraction(&self) -> f64 {
        if self.wall <= 0.0 || self.cpus == 0 { 0.0 } else { self.machine_busy / (self.wall * self.cpus as f64) }
    }
}

/// Cumulative CPU ticks at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    worker: Option<u64>,
    broker: u64,
    database: u64,
    bench: u64,
    machine_busy: u64,
}

/// Linux reports process times in USER_HZ ticks, 100 per second on every mainstream
/// architecture (the kernel's ABI, independent of its internal HZ).
const TICKS_PER_SECOND: f64 = 100.0;

pub fn cpu_snapshot(worker_pid: Option<u32>) -> CpuSnapshot {
    let (broker, database) = ticks_by_name();
    CpuSnapshot {
        at: Instant::now(),
        worker: worker_pid.map(|pid| process_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0)),
        broker,
        database,
        bench: process_ticks("/proc/self/stat").unwrap_or(0),
        machine_busy: machine_busy_ticks().unwrap_or(0),
    }
}

impl CpuSnapshot {
    pub fn until(&self, later: &CpuSnapshot) -> CpuUse {
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / TICKS_PER_SECOND;
        CpuUse {
            wall: later.at.duration_since(self.at).as_secs_f64(),
            worker: self.worker.zip(later.worker).map(|(from, to)| seconds(from, to)),
            broker: seconds(self.broker, later.broker),
            database: seconds(self.database, later.database),
            bench: seconds(self.bench, later.bench),
            machine_busy: seconds(self.machine_busy, later.machine_busy),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// User + system ticks of a process, all its threads (fields 14 and 15 of `/proc/PID/stat`).
fn process_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// Ticks of every RabbitMQ (`beam.smp`) and PostgreSQL (`postgres`) process.
fn ticks_by_name() -> (u64, u64) {
    let (mut broker, mut database) = (0, 0);
    let Ok(entries) = std::fs::read_dir("/proc") else { return (0, 0) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|name| name.bytes().all(|byte| byte.is_ascii_digit())) else { continue };
        let Ok(command) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let slot = match command.trim_end() {
            "beam.smp" => &mut broker,
            "postgres" => &mut database,
            _ => continue,
        };
        *slot += process_ticks(&format!("/proc/{pid}/stat")).unwrap_or(0);
    }
    (broker, database)
}

/// Busy ticks of all CPUs together: everything in the `cpu` line of `/proc/stat` but idle and
/// iowait.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|value| value.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    Some(total - values.get(3)? - values.get(4)?)
}

/// The machine the figures were taken on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: u64,
    pub kernel: String,
    /// The 1-minute load average when the run started: others' work on the machine shows here.
    pub load_at_start: String,
}

impl Machine {
    pub fn read() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
            .map_or_else(|| "unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let memory_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            memory_gib: memory_kib.div_ceil(1024 * 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: read("/proc/loadavg").split_whitespace().next().unwrap_or("?").to_owned(),
        }
    }
}

/// The decision/v1 and payment messages of the whole bench run.
#[derive(Debug)]
pub struct Downstream {
    /// Taken from the downstream queues.
    pub consumed: u64,
    /// Recorded in the outbox by the worker (engine and paced runs).
    pub published_by_worker: u64,
    /// Of those, the engine run's: what the relay with the engine's messages should publish.
    pub in_engine_run: u64,
    /// Published by the relay with the engine's messages.
    pub published_by_relay: u64,
}

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub queue_type: &'static str,
    pub members: usize,
    pub batch_size: usize,
    pub prefetch: u16,
    pub seconds_per_rate: u32,
    /// What the queues bound to the decisions and payments exchanges received; `None` when none
    /// were bound (`--no-downstream`).
    pub downstream: Option<Downstream>,
    pub relay: Step,
    /// The relay publishing the engine's decision and payment messages besides the replies.
    pub relay_announced: Step,
    pub engine: Step,
    pub paced: Vec<Step>,
}

impl Report {
    /// Engine throughput as a share of the relay ceiling measured in the same run.
    pub fn ratio(&self) -> f64 {
        self.ratio_to(&self.relay)
    }

    /// Engine throughput as a share of the relay publishing the engine's messages: what the
    /// database and the rules leave of the broker's best.
    pub fn ratio_to_announced(&self) -> f64 {
        self.ratio_to(&self.relay_announced)
    }

    fn ratio_to(&self, relay: &Step) -> f64 {
        if relay.claims_per_second > 0.0 { self.engine.claims_per_second / relay.claims_per_second } else { 0.0 }
    }

    pub fn all_decided(&self) -> bool {
        self.steps().all(|step| step.decided == step.published)
    }

    fn steps(&self) -> impl Iterator<Item = &Step> {
        [&self.relay, &self.relay_announced, &self.engine].into_iter().chain(&self.paced)
    }

    pub fn print_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let machine = &self.machine;
        writeln!(
            out,
            "{} CPUs ({}), {} GiB, load {} at start; {} work queue, {} members, batch {}, prefetch {}, {}",
            machine.cpus,
            machine.cpu_model,
            machine.memory_gib,
            machine.load_at_start,
            self.queue_type,
            self.members,
            self.batch_size,
            self.prefetch,
            if self.downstream.is_some() {
                "decisions and payments consumed downstream"
            } else {
                "no downstream queues"
            }
        )?;
        writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "step", "claims", "decided", "claims/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        )?;
        for step in self.steps() {
            let latency = step.latency.as_ref().map_or_else(
                || format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
                |latency| {
                    format!("{:>8.1} {:>8.1} {:>8.1} {:>8.1}", latency.p50, latency.p95, latency.p99, latency.max)
                },
            );
            writeln!(
                out,
                "{:<20} {:>8} {:>8} {:>10.0} {latency}",
                step.name, step.published, step.decided, step.claims_per_second
            )?;
        }
        writeln!(out, "engine ÷ relay ceiling: {:.2}", self.ratio())?;
        writeln!(out, "engine ÷ relay with the engine's messages: {:.2}", self.ratio_to_announced())?;
        for step in [&self.engine, &self.relay, &self.relay_announced] {
            let cpu: Vec<String> =
                step.cpu_per_claim().iter().map(|(name, micros)| format!("{name} {micros:.0}")).collect();
            writeln!(
                out,
                "CPU µs per claim, {}: {} (machine {:.0} % busy)",
                step.name,
                cpu.join(", "),
                step.cpu.machine_busy_fraction() * 100.0
            )?;
        }
        let outcomes: Vec<String> =
            self.engine.outcomes.iter().map(|(name, count)| format!("{count} {name}")).collect();
        writeln!(out, "engine outcomes: {}", outcomes.join(", "))?;
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let machine = &self.machine;
        json!({
            "schema": "bench/v1",
            "machine": {
                "cpus": machine.cpus,
                "cpu_model": machine.cpu_model,
                "memory_gib": machine.memory_gib,
                "kernel": machine.kernel,
                "load_at_start": machine.load_at_start,
            },
            "settings": {
                "queue_type": self.queue_type,
                "members": self.members,
                "batch_size": self.batch_size,
                "prefetch": self.prefetch,
                "seconds_per_rate": self.seconds_per_rate,
            },
            "downstream": self.downstream.as_ref().map(|downstream| json!({
                "consumed": downstream.consumed,
                "published_by_worker": downstream.published_by_worker,
                "published_by_worker_in_engine_run": downstream.in_engine_run,
                "published_by_relay": downstream.published_by_relay,
            })),
            "relay": self.relay.to_json(),
            "relay_with_engine_messages": self.relay_announced.to_json(),
            "engine": self.engine.to_json(),
            "paced": self.paced.iter().map(Step::to_json).collect::<Vec<_>>(),
            "engine_to_relay_ratio": round(self.ratio()),
            "engine_to_relay_with_engine_messages_ratio": round(self.ratio_to_announced()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(&sorted).unwrap_or_else(|| panic!("no latency"));
        assert_eq!((latency.p50, latency.p95, latency.p99, latency.max), (50.0, 95.0, 99.0, 100.0));
        let one = Latency::of(&[Duration::from_micros(1500)]).unwrap_or_else(|| panic!("no latency"));
        assert_eq!((one.p50, one.p99), (1.5, 1.5));
        assert_eq!(Latency::of(&[]), None);
    }

    #[test]
    fn process_times_are_read_after_the_command_name() {
        let path = std::env::temp_dir().join(format!("claimctl-bench-stat-{}", std::process::id()));
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        std::fs::write(&path, stat).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(process_ticks(path.to_str().unwrap_or_default()), Some(325));
        let _ = std::fs::remove_file(path);
    }
}
