//! The moving parts of the chaos test (included with `#[path]`): its settings, the load, a
//! `claimctl worker` child process, a provider-side publisher that rides out broker restarts,
//! a decisions consumer with a durable queue of its own, and the faults themselves.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claims_domain::contract::{Message, parse_message};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long the test waits for any one thing (a restart, a recovery, the backlog) before
/// failing and naming what did not happen.
pub const WAIT: Duration = Duration::from_secs(90);
/// How long one connection attempt (or close) to a server that is coming back may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the run: `CHAOS_RATE` claims a second for `CHAOS_SECONDS` seconds, from the French
/// generator with `CHAOS_SEED`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub rate: u32,
    pub seconds: u32,
    pub seed: u32,
}

impl Settings {
    /// The CI size unless the environment asks for more (the full size is 500/s for 60 s).
    pub fn from_env() -> Settings {
        Settings {
            rate: number("CHAOS_RATE", 200),
            seconds: number("CHAOS_SECONDS", 20),
            seed: number("CHAOS_SEED", 7),
        }
    }

    pub fn messages(&self) -> usize {
        self.rate as usize * self.seconds as usize
    }
}

fn number(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(value) if value > 0 => value,
            _ => panic!("{name}={text:?}: expected a whole number greater than 0"),
        },
    }
}

/// What a published message is, which says what the run must end with for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A valid claim/v1: a claims row keyed `(provider_id, claim_id)`.
    Claim,
    /// A cancellation/v1 of an earlier claim.
    Cancellation,
    /// JSON that is not a valid claim: a `rejected` decision, no claims row.
    Invalid,
    /// Not JSON at all (or not UTF-8): the dead-letter queue, no decision.
    Poison,
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub kind: Kind,
}

/// The load: `settings.messages()` messages from `examples/fr/generate.py` (claims with history
/// per member, cancellations, invalid claims), with `poison` unreadable messages spread evenly
/// among them (the first one is not even UTF-8).
pub fn load(settings: &Settings, poison: usize) -> Vec<Outgoing> {
    let generator = claims_e2e::repo().join("examples/fr/generate.py");
    let count = settings.messages() - poison;
    let output = Command::new("python3")
        .arg(&generator)
        .args(["--count", &count.to_string(), "--seed", &settings.seed.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("running python3 {}: {error}", generator.display()));
    assert!(output.status.success(), "{} failed: {}", generator.display(), output.status);
    let text = String::from_utf8(output.stdout).unwrap_or_else(|error| panic!("generator output: {error}"));
    let mut messages: Vec<Outgoing> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let kind = match parse_message(line) {
                Ok(Message::Claim(_)) => Kind::Claim,
                Ok(Message::Cancellation(_)) => Kind::Cancellation,
                Err(_) => Kind::Invalid,
            };
            Outgoing { body: line.as_bytes().to_vec(), kind }
        })
        .collect();
    assert_eq!(messages.len(), count, "the generator printed {} messages for --count {count}", messages.len());
    for number in 0..poison {
        let body = if number == 0 {
            b"\xff\xfechaos poison 0: not UTF-8".to_vec()
        } else {
            format!("chaos poison {number}: {{not json").into_bytes()
        };
        let at = (number + 1) * messages.len() / (poison + 1);
        messages.insert(at, Outgoing { body, kind: Kind::Poison });
    }
    messages
}

/// `CHAOS_CLAIMCTL` when set (e.g. a release build for the full-size run from a debug test);
/// otherwise `target/<profile>/claimctl`, built first (a no-op when fresh) so that the test
/// never runs a stale worker.
pub fn claimctl_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CHAOS_CLAIMCTL") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "CHAOS_CLAIMCTL={}: no such file", path.display());
        return path;
    }
    claims_e2e::claimctl_binary()
}

/// How to start a `claimctl worker` for this run.
pub struct WorkerCommand {
    pub binary: PathBuf,
    pub rules: PathBuf,
    pub prefix: String,
    pub amqp_url: String,
    pub database_url: String,
    /// Every worker's log (JSON lines) goes here, appended, to be shown when the test fails.
    pub log: PathBuf,
}

/// A `claimctl worker` child process, killed if the test ends without stopping it.
pub struct WorkerProcess(Option<Child>);

impl WorkerCommand {
    pub fn spawn(&self) -> WorkerProcess {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|error| panic!("opening {}: {error}", self.log.display()));
        let child = Command::new(&self.binary)
            .args(["worker", "--rules", &self.rules.to_string_lossy(), "--prefix", &self.prefix])
            // Any free port: another worker may hold the default one.
            .args(["--metrics", "127.0.0.1:0"])
            .env("DATABASE_URL", &self.database_url)
            .env("AMQP_URL", &self.amqp_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting claimctl worker: {error}"));
        WorkerProcess(Some(child))
    }
}

impl WorkerProcess {
    /// SIGKILL: no chance to finish anything.
    pub fn kill_9(&mut self) {
        let mut child = self.0.take().unwrap_or_else(|| panic!("the worker is already stopped"));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the worker had already exited before the kill: {status}");
        }
        child.kill().unwrap_or_else(|error| panic!("kill -9: {error}"));
        let _ = child.wait();
    }

    /// SIGTERM, then waits for the exit (the worker drains its batch first).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().unwrap_or_else(|| panic!("the worker is already stopped"));
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(sent.is_ok_and(|status| status.success()), "sending SIGTERM failed");
        match tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || child.wait())).await {
            Ok(Ok(Ok(status))) => status,
            other => panic!("the worker did not exit within {WAIT:?} of SIGTERM: {other:?}"),
        }
    }

    /// Fails if the worker exited by itself (it must ride out every fault).
    pub fn assert_running(&mut self) {
        if let Some(child) = self.0.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("the worker exited by itself: {status}");
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the provider side did.
#[derive(Debug, Default, Clone)]
pub struct Published {
    /// Publishes, first sends and re-sends.
    pub sends: usize,
    /// Messages sent again because their confirm never came (connection lost) or was a nack.
    pub resent: usize,
    /// Connections opened after the first.
    pub reconnects: usize,
}

/// Publishes every message at `rate` a second to `exchange` with publisher confirms, and sends
/// again whatever was not confirmed when the connection was lost (at-least-once, as a provider
/// should): returns once every message is confirmed. Gives up after `WAIT` without a connection.
pub async fn publish(amqp_url: String, exchange: String, messages: Arc<Vec<Outgoing>>, rate: u32) -> Published {
    type Confirm = BoxFuture<'static, (usize, Result<Confirmation, lapin::Error>)>;
    let mut report = Published::default();
    let started = Instant::now();
    let mut confirmed = vec![false; messages.len()];
    let mut confirmed_count = 0;
    // Never published yet: `next..`; to publish again, in order: `resend`.
    let mut next = 0;
    let mut resend: BTreeSet<usize> = BTreeSet::new();
    let mut in_flight: BTreeSet<usize> = BTreeSet::new();
    let mut confirms: FuturesUnordered<Confirm> = FuturesUnordered::new();
    let mut session: Option<(Connection, Channel)> = None;
    let user = amqp_user(&amqp_url);
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while confirmed_count < messages.len() {
        let broken = session.as_ref().is_some_and(|(connection, _)| !connection.status().connected());
        if broken {
            session = None;
        }
        if session.is_none() {
            // Whatever was waiting for a confirm on the lost connection may or may not have
            // reached the queue: send it again (the worker's idempotency absorbs the repeat).
            report.resent += in_flight.len();
            resend.append(&mut in_flight);
            confirms = FuturesUnordered::new();
            session = Some(connect_publisher(&amqp_url).await);
            if next > 0 {
                report.reconnects += 1;
            }
        }
        let Some(channel) = session.as_ref().map(|(_, channel)| channel.clone()) else { continue };
        tokio::select! {
            Some((index, result)) = confirms.next(), if !confirms.is_empty() => {
                in_flight.remove(&index);
                match result {
                    Ok(Confirmation::Ack(_)) => {
                        if !confirmed[index] {
                            confirmed[index] = true;
                            confirmed_count += 1;
                        }
                    }
                    Ok(_) => {
                        report.resent += 1;
                        resend.insert(index);
                    }
                    Err(_) => {
                        in_flight.insert(index);
                        session = None;
                    }
                }
            }
            _ = ticker.tick() => {
                let due = (started.elapsed().as_millis() as usize * rate as usize / 1000).min(messages.len());
                let mut batch: Vec<usize> = std::mem::take(&mut resend).into_iter().collect();
                batch.extend(next..due.max(next));
                next = due.max(next);
                for (position, &index) in batch.iter().enumerate() {
                    match send(&channel, &exchange, &user, index, &messages[index]).await {
                        Ok(confirm) => {
                            report.sends += 1;
                            in_flight.insert(index);
                            confirms.push(Box::pin(async move { (index, confirm.await) }));
                        }
                        Err(_) => {
                            // This one and the rest of the batch go again on the next connection.
                            resend.extend(&batch[position..]);
                            session = None;
                            break;
                        }
                    }
                }
            }
        }
    }
    if let Some((connection, _)) = session {
        let _ = connection.close(200, "all claims published".into()).await;
    }
    report
}

/// The user an AMQP URL logs in as (`guest` when it names none, as the broker assumes).
fn amqp_user(amqp_url: &str) -> String {
    let authority = amqp_url.split_once("://").map_or(amqp_url, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((user_info, _)) => user_info.split(':').next().unwrap_or_default().to_owned(),
        None => "guest".to_owned(),
    }
}

async fn connect_publisher(amqp_url: &str) -> (Connection, Channel) {
    let deadline = Instant::now() + WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let properties = ConnectionProperties::default().with_connection_name("chaos provider".into());
            let connection = Connection::connect(amqp_url, properties).await?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions { nowait: false }).await?;
            Ok::<_, lapin::Error>((connection, channel))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(session)) => return session,
            outcome if Instant::now() > deadline => {
                panic!("the publisher could not reconnect to RabbitMQ within {WAIT:?}: {outcome:?}")
            }
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// One persistent publish; the message id names the message's place in the load.
async fn send(
    channel: &Channel,
    exchange: &str,
    user: &str,
    index: usize,
    message: &Outgoing,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    let routing_key = match message.kind {
        Kind::Cancellation => "cancellation",
        _ => "claim",
    };
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(format!("chaos-{index}").into())
        // The broker checks it against the connection's user: a provider cannot pose as another.
        .with_user_id(user.into());
    channel
        .basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), &message.body, properties)
        .await
}

/// Everything the decisions consumer received.
#[derive(Debug, Default)]
pub struct Received {
    /// Bodies per message id, in arrival order (repeats included).
    pub bodies: HashMap<String, Vec<Vec<u8>>>,
    pub deliveries: usize,
    pub reconnects: usize,
}

/// How far the decisions consumer got.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Distinct message ids received.
    distinct: usize,
    /// The highest audit sequence among them (`decision-<seq>`), and when it arrived.
    last_seq: u64,
    last_seq_arrived: Option<Instant>,
}

/// A consumer of the decisions exchange through a durable quorum queue of its own, declared
/// before the first decision and kept across broker restarts: it reconnects until stopped.
pub struct DecisionConsumer {
    pub received: Arc<Mutex<Received>>,
    progress: watch::Receiver<Progress>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DecisionConsumer {
    /// Declares and binds the queue (so nothing published from now on is missed), then consumes.
    pub async fn start(amqp_url: &str, exchange: &str, queue: String) -> DecisionConsumer {
        let first = consumer_session(amqp_url, exchange, &queue)
            .await
            .unwrap_or_else(|error| panic!("consuming decisions on {queue}: {error}"));
        let received = Arc::new(Mutex::new(Received::default()));
        let (progress_sender, progress) = watch::channel(Progress::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume_decisions(
            amqp_url.to_owned(),
            exchange.to_owned(),
            queue,
            first,
            Arc::clone(&received),
            progress_sender,
            stopped,
        ));
        DecisionConsumer { received, progress, stop, task }
    }

    /// Waits until `count` distinct decisions have arrived, or fails naming `what`.
    pub async fn wait_for(&mut self, count: usize, what: &str) {
        let deadline = Instant::now() + WAIT;
        let reached = tokio::time::timeout_at(deadline, self.progress.wait_for(|progress| progress.distinct >= count))
            .await
            .is_ok_and(|result| result.is_ok());
        let have = self.progress.borrow().distinct;
        assert!(reached, "{what}: {have} distinct decisions after {WAIT:?}, waiting for {count}");
    }

    /// Waits for a decision recorded after audit sequence `seq`; returns when it arrived.
    pub async fn wait_after(&mut self, seq: u64, what: &str) -> Instant {
        let deadline = Instant::now() + WAIT;
        let reached = tokio::time::timeout_at(deadline, self.progress.wait_for(|progress| progress.last_seq > seq))
            .await
            .is_ok_and(|result| result.is_ok());
        assert!(reached, "{what}: no decision recorded after audit seq {seq} arrived within {WAIT:?}");
        self.progress.borrow().last_seq_arrived.unwrap_or_else(Instant::now)
    }

    pub fn distinct_now(&self) -> usize {
        self.progress.borrow().distinct
    }

    pub async fn stop(self) -> Received {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(WAIT, self.task).await;
        let mut received = self.received.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut *received)
    }
}

async fn consumer_session(
    amqp_url: &str,
    exchange: &str,
    queue: &str,
) -> Result<(Connection, lapin::Consumer), lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name("chaos decisions".into());
    let connection = Connection::connect(amqp_url, properties).await?;
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    // Survives the broker restart with whatever it holds.
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.into(), options, arguments).await?;
    channel
        .queue_bind(queue.into(), exchange.into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
        .await?;
    channel.basic_qos(500, BasicQosOptions { global: false }).await?;
    let consumer = channel
        .basic_consume(queue.into(), ShortString::default(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    Ok((connection, consumer))
}

/// Resolves once a stop is asked for (the watch's guard is not held across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn consume_decisions(
    amqp_url: String,
    exchange: String,
    queue: String,
    first: (Connection, lapin::Consumer),
    received: Arc<Mutex<Received>>,
    progress: watch::Sender<Progress>,
    mut stop: watch::Receiver<bool>,
) {
    let mut session = Some(first);
    loop {
        let (connection, mut consumer) = match session.take() {
            Some(session) => session,
            None => {
                tokio::select! {
                    () = stopped(&mut stop) => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                // Bounded: while the broker boots, a connection can be accepted and then never
                // answered, and an attempt without a limit would wait for it forever.
                match tokio::time::timeout(CONNECT_TIMEOUT, consumer_session(&amqp_url, &exchange, &queue)).await {
                    Ok(Ok(session)) => {
                        received.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reconnects += 1;
                        session
                    }
                    _ => continue,
                }
            }
        };
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            let delivery = tokio::select! {
                () = stopped(&mut stop) => {
                    let _ = tokio::time::timeout(CONNECT_TIMEOUT, connection.close(200, "test done".into())).await;
                    return;
                }
                delivery = consumer.next() => delivery,
                // A lost connection normally ends the consumer's stream; should it not, this
                // notices within a second.
                _ = check.tick() => {
                    if connection.status().connected() { continue } else { break }
                }
            };
            let Some(Ok(delivery)) = delivery else { break };
            let message_id = delivery.properties.message_id().as_ref().map(ToString::to_string).unwrap_or_default();
            {
                let mut received = received.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                received.deliveries += 1;
                let bodies = received.bodies.entry(message_id.clone()).or_default();
                let new = bodies.is_empty();
                bodies.push(delivery.data.clone());
                if new {
                    let seq = message_id.strip_prefix("decision-").and_then(|seq| seq.parse::<u64>().ok());
                    progress.send_modify(|progress| {
                        progress.distinct += 1;
                        if let Some(seq) = seq.filter(|seq| *seq > progress.last_seq) {
                            progress.last_seq = seq;
                            progress.last_seq_arrived = Some(Instant::now());
                        }
                    });
                }
            }
            // Acknowledged once recorded: a message is either recorded or redelivered.
            if delivery.acker.ack(BasicAckOptions::default()).await.is_err() {
                break;
            }
        }
        // The connection is gone (broker restart): connect again.
    }
}

/// Runs `command` with `sh -c`, all its output to `log`; fails naming `what` if it fails.
fn shell(what: &str, command: &str, log: &Path) {
    let output = |log: &Path| {
        File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|error| panic!("opening {}: {error}", log.display()))
    };
    // No inherited pipes: a daemon started here must not hold the test runner's output open.
    let status = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(output(log))
        .stderr(output(log))
        .status()
        .unwrap_or_else(|error| panic!("{what}: running sh -c {command:?}: {error}"));
    assert!(status.success(), "{what}: `{command}` failed ({status}); its output is in {}", log.display());
}

/// The command restarting the broker: `CHAOS_RABBITMQ_RESTART`, or a full stop and start of
/// the local node (about 15 s here).
pub fn rabbitmq_restart_command() -> String {
    std::env::var("CHAOS_RABBITMQ_RESTART")
        .unwrap_or_else(|_| "rabbitmqctl shutdown && rabbitmq-server -detached".to_owned())
}

/// The command restarting the database server: `CHAOS_POSTGRES_RESTART`, or `pg_ctlcluster`
/// on the local cluster.
pub fn postgres_restart_command() -> String {
    std::env::var("CHAOS_POSTGRES_RESTART").unwrap_or_else(|_| {
        let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .map(|entries| entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let [version] = versions.as_slice() else {
            panic!(
                "restarting PostgreSQL: expected one cluster version under /etc/postgresql, found {versions:?}; \
                 set CHAOS_POSTGRES_RESTART to the command that restarts the server"
            )
        };
        format!("pg_ctlcluster --skip-systemctl-redirect {version} main restart")
    })
}

/// Restarts the broker and waits until it accepts an AMQP connection again.
pub async fn restart_rabbitmq(amqp_url: &str, log: PathBuf) {
    let command = rabbitmq_restart_command();
    tokio::task::spawn_blocking(move || shell("restarting RabbitMQ", &command, &log))
        .await
        .unwrap_or_else(|error| panic!("restarting RabbitMQ: {error}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(amqp_url, ConnectionProperties::default())).await;
        if let Ok(Ok(connection)) = attempt {
            let _ = connection.close(200, "broker is back".into()).await;
            return;
        }
        assert!(Instant::now() < deadline, "RabbitMQ did not accept connections within {WAIT:?} of its restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts the database server and waits until it accepts a connection again.
pub async fn restart_postgres(database_url: &str, log: PathBuf) {
    let command = postgres_restart_command();
    tokio::task::spawn_blocking(move || shell("restarting PostgreSQL", &command, &log))
        .await
        .unwrap_or_else(|error| panic!("restarting PostgreSQL: {error}"));
    let deadline = Instant::now() + WAIT;
    loop {
        use sqlx::Connection as _;
        if let Ok(Ok(connection)) =
            tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect(database_url)).await
        {
            let _ = connection.close().await;
            return;
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not accept connections within {WAIT:?} of its restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
