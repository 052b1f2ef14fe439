//! Counters and histograms in Prometheus text format, and the tiny HTTP/1.1 server that serves
//! them (`GET /metrics`) and the health check (`GET /health`). Hand-written on purpose: two
//! routes do not justify a web framework. Durations are kept in integer microseconds, so no
//! float ever enters the crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::batch::stopped;

/// Batch sizes (claims).
const BATCH_SIZE_BOUNDS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 200, 500];
/// Durations, in microseconds: 100 µs to 60 s.
const DURATION_BOUNDS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Plain numbers (batch sizes).
    Count,
    /// Recorded in microseconds, shown in seconds.
    Seconds,
}

#[derive(Debug)]
struct Histogram {
    bounds: &'static [u64],
    unit: Unit,
    /// One per bound plus `+Inf`; not cumulative (summed when rendered).
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64], unit: Unit) -> Histogram {
        Histogram {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: u64) {
        let index = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = match self.bounds.get(index) {
                Some(bound) => self.format(*bound),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.format(self.sum.load(Ordering::Relaxed)));
        let _ = writeln!(out, "{name}_count{braces} {}", self.count.load(Ordering::Relaxed));
    }

    fn format(&self, value: u64) -> String {
        match self.unit {
            Unit::Count => value.to_string(),
            Unit::Seconds => micros_as_seconds(value),
        }
    }
}

/// `2500` µs → `"0.0025"`, `1_000_000` → `"1"`.
fn micros_as_seconds(micros: u64) -> String {
    let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The worker's metrics, shared by the consumer loop, the relay and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    received: AtomicU64,
    decided: Mutex<BTreeMap<String, u64>>,
    dead_lettered: AtomicU64,
    batch_size: Histogram,
    adjudication_per_batch: Histogram,
    adjudication_per_claim: Histogram,
    end_to_end: Histogram,
    consuming: AtomicBool,
    /// The rule pack new batches use: `(pack, version)`.
    rules: Mutex<Option<(String, String)>>,
    rules_reloads: AtomicU64,
    rules_reload_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            received: AtomicU64::new(0),
            decided: Mutex::new(BTreeMap::new()),
            dead_lettered: AtomicU64::new(0),
            batch_size: Histogram::new(BATCH_SIZE_BOUNDS, Unit::Count),
            adjudication_per_batch: Histogram::new(DURATION_BOUNDS, Unit::Seconds),
            adjudication_per_claim: Histogram::new(DURATION_BOUNDS, Unit::Seconds),
            end_to_end: Histogram::new(DURATION_BOUNDS, Unit::Seconds),
            consuming: AtomicBool::new(false),
            rules: Mutex::new(None),
            rules_reloads: AtomicU64::new(0),
            rules_reload_failures: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn received(&self, count: usize) {
        self.received.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// A decision/v1 was published (first time or again) with this outcome.
    pub fn decided(&self, outcome: &str) {
        if let Ok(mut decided) = self.decided.lock() {
            *decided.entry(outcome.to_owned()).or_insert(0) += 1;
        }
    }

    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// One call of the store's `decide` for `size` claims took `elapsed`.
    pub fn adjudicated(&self, size: usize, elapsed: Duration) {
        self.batch_size.observe(size as u64);
        self.adjudication_per_batch.observe(micros(elapsed));
        if let Some(per_claim) = micros(elapsed).checked_div(size as u64) {
            self.adjudication_per_claim.observe(per_claim);
        }
    }

    /// From the claim's timestamp to its decision's publisher confirm.
    pub fn end_to_end(&self, elapsed: Duration) {
        self.end_to_end.observe(micros(elapsed));
    }

    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }

    /// The worker decides new batches with this pack version (at start, then at each reload).
    pub fn rules_in_use(&self, pack: &str, version: &str) {
        if let Ok(mut rules) = self.rules.lock() {
            *rules = Some((pack.to_owned(), version.to_owned()));
        }
    }

    /// A newly published version was loaded and swapped in.
    pub fn rules_loaded(&self, pack: &str, version: &str) {
        self.rules_reloads.fetch_add(1, Ordering::Relaxed);
        self.rules_in_use(pack, version);
    }

    /// A newly published version did not load; the worker kept its pack.
    pub fn rules_reload_failed(&self) {
        self.rules_reload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(&mut out, "counter", "claims_received_total", "Messages taken from the claims queue.");
        let _ = writeln!(out, "claims_received_total {}", self.received.load(Ordering::Relaxed));
        family(
            &mut out,
            "counter",
            "claims_decided_total",
            "decision/v1 messages published, by outcome (repeats included).",
        );
        if let Ok(decided) = self.decided.lock() {
            for (outcome, count) in decided.iter() {
                let _ = writeln!(out, "claims_decided_total{{outcome=\"{}\"}} {count}", escape_label(outcome));
            }
        }
        family(
            &mut out,
            "counter",
            "claims_dead_lettered_total",
            "Messages sent to the dead-letter exchange by the worker.",
        );
        let _ = writeln!(out, "claims_dead_lettered_total {}", self.dead_lettered.load(Ordering::Relaxed));

        family(&mut out, "histogram", "claims_batch_size", "Messages per micro-batch handed to the store.");
        self.batch_size.render(&mut out, "claims_batch_size", "");
        family(
            &mut out,
            "histogram",
            "claims_adjudication_seconds",
            "Time in the store's decide (one transaction), per batch and per claim.",
        );
        self.adjudication_per_batch.render(&mut out, "claims_adjudication_seconds", "per=\"batch\"");
        self.adjudication_per_claim.render(&mut out, "claims_adjudication_seconds", "per=\"claim\"");
        family(
            &mut out,
            "histogram",
            "claims_end_to_end_seconds",
            "From the claim's timestamp to its decision's publisher confirm.",
        );
        self.end_to_end.render(&mut out, "claims_end_to_end_seconds", "");
        let _ = writeln!(out, "# HELP claims_consuming 1 while the worker consumes and the store answers.");
        let _ = writeln!(out, "# TYPE claims_consuming gauge\nclaims_consuming {}", u8::from(self.is_consuming()));
        family(
            &mut out,
            "gauge",
            "claims_rules_info",
            "The rule pack version new batches are decided with (always 1).",
        );
        if let Ok(rules) = self.rules.lock()
            && let Some((pack, version)) = rules.as_ref()
        {
            let (pack, version) = (escape_label(pack), escape_label(version));
            let _ = writeln!(out, "claims_rules_info{{pack=\"{pack}\",version=\"{version}\"}} 1");
        }
        family(&mut out, "counter", "claims_rules_reloads_total", "Published rule packs swapped in while running.");
        let _ = writeln!(out, "claims_rules_reloads_total {}", self.rules_reloads.load(Ordering::Relaxed));
        family(
            &mut out,
            "counter",
            "claims_rules_reload_failures_total",
            "Published rule packs that did not load (the worker kept its pack).",
        );
        let _ =
            writeln!(out, "claims_rules_reload_failures_total {}", self.rules_reload_failures.load(Ordering::Relaxed));
        out
    }
}

fn family(out: &mut String, kind: &str, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `/metrics` and `/health` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    // A client that never finishes its request must not hold a task forever.
                    let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                // Typically out of file descriptors: give the system a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    // Read the request head; the body (there is none for GET) is ignored.
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 8192 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        ("GET", "/health") if metrics.is_consuming() => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned()),
        ("GET", "/health") => ("503 Service Unavailable", "text/plain; charset=utf-8", "not consuming\n".to_owned()),
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn microseconds_print_as_decimal_seconds() {
        assert_eq!(micros_as_seconds(100), "0.0001");
        assert_eq!(micros_as_seconds(2_500), "0.0025");
        assert_eq!(micros_as_seconds(1_000_000), "1");
        assert_eq!(micros_as_seconds(61_500_000), "61.5");
        assert_eq!(micros_as_seconds(0), "0");
    }

    #[test]
    fn rendering_follows_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.received(3);
        metrics.decided("complete");
        metrics.decided("complete");
        metrics.decided("rejected");
        metrics.dead_lettered();
        metrics.adjudicated(3, Duration::from_micros(3_000));
        metrics.end_to_end(Duration::from_millis(20));
        metrics.rules_in_use("fr", "sha256:01");
        metrics.rules_loaded("fr", "sha256:02");
        metrics.rules_reload_failed();
        let text = metrics.render();
        for line in [
            "# TYPE claims_received_total counter",
            "claims_received_total 3",
            "claims_decided_total{outcome=\"complete\"} 2",
            "claims_decided_total{outcome=\"rejected\"} 1",
            "claims_dead_lettered_total 1",
            "# TYPE claims_batch_size histogram",
            "claims_batch_size_bucket{le=\"2\"} 0",
            "claims_batch_size_bucket{le=\"5\"} 1",
            "claims_batch_size_bucket{le=\"+Inf\"} 1",
            "claims_batch_size_sum 3",
            "claims_adjudication_seconds_bucket{per=\"batch\",le=\"0.0025\"} 0",
            "claims_adjudication_seconds_bucket{per=\"batch\",le=\"0.005\"} 1",
            "claims_adjudication_seconds_bucket{per=\"claim\",le=\"0.001\"} 1",
            "claims_adjudication_seconds_sum{per=\"batch\"} 0.003",
            "claims_adjudication_seconds_count{per=\"claim\"} 1",
            "claims_end_to_end_seconds_bucket{le=\"0.025\"} 1",
            "claims_end_to_end_seconds_sum 0.02",
            "claims_consuming 0",
            "# TYPE claims_rules_info gauge",
            "claims_rules_info{pack=\"fr\",version=\"sha256:02\"} 1",
            "claims_rules_reloads_total 1",
            "claims_rules_reload_failures_total 1",
        ] {
            assert!(text.lines().any(|candidate| candidate == line), "missing {line:?} in\n{text}");
        }
    }

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[tokio::test]
    async fn the_server_answers_metrics_and_health() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let metrics = Arc::new(Metrics::default());
        let (stop, stop_receiver) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), stop_receiver));

        assert!(get(address, "/health").await.starts_with("HTTP/1.1 503 "));
        metrics.set_consuming(true);
        let health = get(address, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n") && health.ends_with("\r\n\r\nok\n"), "{health}");
        let scrape = get(address, "/metrics").await;
        assert!(scrape.contains("Content-Type: text/plain; version=0.0.4"), "{scrape}");
        assert!(scrape.contains("\nclaims_consuming 1\n"), "{scrape}");
        assert!(get(address, "/nowhere").await.starts_with("HTTP/1.1 404 "));

        let _ = stop.send(true);
        server.await.expect("server task");
    }
}
