//! `claimctl audit export|verify|replay`: the regulator's tools.
//!
//! A log is read from a file (an export, `audit-export/v1`, or the entries-only file of
//! `claimctl adjudicate --audit`) or, when no file is given, from the database named by
//! `--database-url` or DATABASE_URL, in pages, in `seq` order. Every entry read is checked
//! against the chain as it is read, whatever the command. Nothing here writes to the mutual's
//! data: the database is only read.
//!
//! Exit codes: `verify` 0 intact, 2 not (the first entry that fails, and why); `replay` 0 all
//! identical, 1 some differ, 2 the log does not verify or cannot be replayed; any command 2
//! when it cannot run.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use anyhow::{Context, bail};
use claims_audit::export::{ExportHeader, SourceText};
use claims_audit::replay::{Difference, RecordedEntry, Replayed, compare, replay};
use claims_audit::report::Report;
use claims_audit::verify::Verifier;
use claims_audit::{ChainHead, Checked, GENESIS_HASH};
use claims_domain::rules::RulePack;
use claims_rules::{RhaiPack, SourceFile, content_hash};
use claims_store::Store;
use clap::Subcommand;
use serde_json::Value;

/// Entries read from the database per query.
const PAGE: i64 = 2000;
/// Progress is printed to standard error every this many entries.
const PROGRESS_EVERY: u64 = 10_000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Export entries and every rule source they reference to a self-contained file
    /// (audit-export/v1), from the database.
    Export {
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// First sequence number (default 1).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last sequence number (default the last entry).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// The database (default: DATABASE_URL).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Recompute the hash chain of a file (or of the database when no file is given): exit 0
    /// and a summary when intact, exit 2 and the first entry that fails otherwise.
    Verify {
        /// An export file or an `adjudicate --audit` file; none: the database.
        file: Option<PathBuf>,
        /// The database when no file is given (default: DATABASE_URL).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Re-adjudicate recorded inputs with the recorded rule sources and compare with the
    /// recorded decisions field by field; with --rules, a what-if under other rules.
    Replay {
        /// An export file or an `adjudicate --audit` file (needs --rules); none: the database.
        file: Option<PathBuf>,
        /// First sequence number to replay.
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Last sequence number to replay.
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Replay with this pack instead of the recorded sources: entries the pack did not
        /// decide are a what-if (total paid per scheme before and after).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// The database when no file is given (default: DATABASE_URL).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

pub fn run(command: &AuditCommand, out: &mut dyn Write) -> anyhow::Result<u8> {
    match command {
        AuditCommand::Export { out: path, from, to, database_url } => {
            export(path, *from, *to, database_url.as_deref(), out)
        }
        AuditCommand::Verify { file, database_url } => verify(file.as_deref(), database_url.as_deref(), out),
        AuditCommand::Replay { file, from, to, rules, database_url } => {
            let range = Range { from: from.unwrap_or(1), to: to.unwrap_or(u64::MAX) };
            if range.from == 0 || range.to < range.from {
                bail!("--from {} --to {} is not a range of sequence numbers (they start at 1)", range.from, range.to);
            }
            replay_log(file.as_deref(), range, rules.as_deref(), database_url.as_deref(), out)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Range {
    from: u64,
    to: u64,
}

impl Range {
    fn contains(&self, seq: u64) -> bool {
        (self.from..=self.to).contains(&seq)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a log
// ---------------------------------------------------------------------------------------------

/// Where entries come from.
enum Input {
    File { reader: BufReader<File>, first: Option<Vec<u8>> },
    Database(Database),
}

struct Database {
    runtime: tokio::runtime::Runtime,
    store: Store,
    /// The last `seq` read; the next page starts after it.
    after: u64,
    /// The last `seq` to read.
    end: u64,
    page: VecDeque<(u64, String)>,
    /// The head of the chain when the log was opened: `(seq, hash)`.
    head: (u64, String),
}

impl Database {
    fn connect(url: Option<&str>) -> anyhow::Result<Database> {
        let url = match url {
            Some(url) => url.to_owned(),
            None => std::env::var("DATABASE_URL").context(
                "no file given and DATABASE_URL is not set: name the database with --database-url or DATABASE_URL",
            )?,
        };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
        let store = runtime.block_on(Store::connect(&url)).context("connecting to the database")?;
        let head = runtime.block_on(store.audit_head()).context("reading the head of the audit log")?;
        Ok(Database { runtime, store, after: 0, end: head.0, page: VecDeque::new(), head })
    }

    fn next(&mut self) -> anyhow::Result<Option<String>> {
        if self.page.is_empty() && self.after < self.end {
            let rows =
                self.runtime.block_on(self.store.audit_entries(self.after, PAGE)).context("reading the audit log")?;
            self.page.extend(rows.into_iter().filter(|(seq, _)| *seq <= self.end));
        }
        Ok(self.page.pop_front().map(|(seq, text)| {
            self.after = seq;
            text
        }))
    }

    /// The hash recorded in entry `seq`'s own `hash` field.
    fn hash_of(&self, seq: u64) -> anyhow::Result<String> {
        let rows = self.runtime.block_on(self.store.audit_entries(seq - 1, 1))?;
        let Some((found, text)) = rows.into_iter().next().filter(|(found, _)| *found == seq) else {
            bail!("the audit log has no entry {seq}");
        };
        let entry: Value = serde_json::from_str(&text).with_context(|| format!("entry {found} is not JSON"))?;
        entry
            .get("hash")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("entry {found} has no hash"))
    }

    fn sources(&self, version: &str) -> anyhow::Result<Option<Vec<SourceFile>>> {
        let sources = self.runtime.block_on(self.store.rule_pack_sources(version)).context("reading rule_sources")?;
        Ok(sources.map(|files| files.into_iter().map(|(path, text)| SourceFile { path, text }).collect()))
    }

    /// Every rule pack version stored, with its sources.
    fn all_sources(&self) -> anyhow::Result<BTreeMap<String, Vec<SourceFile>>> {
        let versions = self.runtime.block_on(self.store.rule_versions()).context("reading rule_sources")?;
        let mut all = BTreeMap::new();
        for version in versions {
            if let Some(files) = self.sources(&version)? {
                all.insert(version, files);
            }
        }
        Ok(all)
    }

    fn close(self) {
        self.runtime.block_on(self.store.pool().close());
    }
}

/// A log opened for reading: its entries in order, where its chain starts and ends, and the
/// rule sources it carries.
struct Log {
    input: Input,
    start: ChainHead,
    /// The last `seq` the log must reach (export header, database head), when known.
    last_expected: Option<u64>,
    /// Rule sources by version: from the export header or the database; `None` for an
    /// entries-only file.
    sources: Option<BTreeMap<String, Vec<SourceFile>>>,
    /// How the log is named in messages.
    name: String,
    /// The line number of the first entry (2 after an export header).
    first_line: u64,
}

impl Log {
    /// Opens a file: an export (header first) or entries only (the chain then starts at seq 1,
    /// and no rule sources are known). `Err` says why the header is not one.
    /// The log in `file`, or the database's when there is no file. A file that cannot be read
    /// as a log is reported as `FAILED: …` on `out` and gives `None` (the command exits 2).
    fn open(
        file: Option<&Path>,
        database_url: Option<&str>,
        from: u64,
        to: Option<u64>,
        out: &mut dyn Write,
    ) -> anyhow::Result<Option<Log>> {
        match file {
            Some(path) => match Log::open_file(path)? {
                Ok(log) => Ok(Some(log)),
                Err(problem) => {
                    writeln!(out, "FAILED: {problem}")?;
                    Ok(None)
                }
            },
            None => Log::open_database(database_url, from, to).map(Some),
        }
    }

    fn open_file(path: &Path) -> anyhow::Result<Result<Log, String>> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("opening {name}"))?;
        let mut reader = BufReader::new(file);
        let mut first = Vec::new();
        reader.read_until(b'\n', &mut first).with_context(|| format!("reading {name}"))?;
        let parsed: Option<Value> = serde_json::from_slice(&first).ok();
        if let Some(value) = parsed.filter(ExportHeader::is_header) {
            let header = match ExportHeader::from_json(&value) {
                Ok(header) => header,
                Err(error) => return Ok(Err(format!("{name}: line 1 is not a valid export header: {error}"))),
            };
            let sources = header
                .sources
                .iter()
                .map(|(version, files)| {
                    let files =
                        files.iter().map(|file| SourceFile { path: file.path.clone(), text: file.text.clone() });
                    (version.clone(), files.collect())
                })
                .collect();
            return Ok(Ok(Log {
                input: Input::File { reader, first: None },
                start: header.chain_start(),
                last_expected: Some(header.to),
                sources: Some(sources),
                name,
                first_line: 2,
            }));
        }
        Ok(Ok(Log {
            input: Input::File { reader, first: (!first.is_empty()).then_some(first) },
            start: ChainHead::default(),
            last_expected: None,
            sources: None,
            name,
            first_line: 1,
        }))
    }

    /// Opens the database's log from `from` (the chain then starts from the hash of the entry
    /// before it) to `to` (at most the head).
    fn open_database(url: Option<&str>, from: u64, to: Option<u64>) -> anyhow::Result<Log> {
        let mut database = Database::connect(url)?;
        let head = database.head.0;
        database.end = to.map_or(head, |to| to.min(head));
        let start = if from <= 1 {
            ChainHead::default()
        } else {
            if from > database.end {
                bail!("the audit log ends at seq {head}: nothing from seq {from}");
            }
            database.after = from - 1;
            ChainHead { next_sequence: from, previous_hash: database.hash_of(from - 1)? }
        };
        let sources = database.all_sources()?;
        Ok(Log {
            last_expected: Some(database.end),
            input: Input::Database(database),
            start,
            sources: Some(sources),
            name: "the database".to_owned(),
            first_line: 1,
        })
    }

    /// A verifier for the chain of this log.
    fn verifier(&self) -> Verifier {
        let known = self.sources.as_ref().map(|sources| sources.keys().cloned().collect());
        let mut verifier = Verifier::new(self.start.clone(), known, self.last_expected);
        verifier.set_line(self.first_line);
        verifier
    }

    /// The next line, as bytes; `None` at the end.
    fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        match &mut self.input {
            Input::File { reader, first } => {
                if let Some(line) = first.take() {
                    return Ok(Some(line));
                }
                let mut line = Vec::with_capacity(8 * 1024);
                reader.read_until(b'\n', &mut line).with_context(|| format!("reading {}", self.name))?;
                Ok((!line.is_empty()).then_some(line))
            }
            Input::Database(database) => Ok(database.next()?.map(String::into_bytes)),
        }
    }

    fn close(self) {
        if let Input::Database(database) = self.input {
            database.close();
        }
    }
}

fn progress(command: &str, count: u64, started: Instant) {
    if count.is_multiple_of(PROGRESS_EVERY) {
        eprintln!("{command}: {count} entries ({:.1} s)", started.elapsed().as_secs_f64());
    }
}

/// Why the sources recorded for `version` cannot be trusted, if they cannot.
fn check_sources(version: &str, files: &[SourceFile]) -> Option<String> {
    let hash = content_hash(files);
    (hash != version).then(|| format!("the rule sources recorded for {version} hash to {hash}: they were altered"))
}

// ---------------------------------------------------------------------------------------------
// Checking (and replaying) on every core
// ---------------------------------------------------------------------------------------------

/// Lines handed to a thread at once.
const BATCH: usize = 64;

/// The packs a replay uses: one given with --rules, or the recorded sources per version, each
/// compiled once and shared by the threads.
struct Packs {
    given: Option<Arc<RhaiPack>>,
    sources: BTreeMap<String, Vec<SourceFile>>,
    compiled: Mutex<HashMap<String, Arc<RhaiPack>>>,
}

impl Packs {
    /// The pack to replay `entry` with, and whether that is a what-if (not the pack recorded).
    fn pack(&self, entry: &RecordedEntry) -> Result<(Arc<RhaiPack>, bool), String> {
        let version = &entry.rules.version;
        if let Some(pack) = &self.given {
            return Ok((Arc::clone(pack), pack.version() != version));
        }
        let seq = entry.seq;
        let mut compiled = self.compiled.lock().map_err(|_| "a replaying thread failed".to_owned())?;
        if let Some(pack) = compiled.get(version) {
            return Ok((Arc::clone(pack), false));
        }
        let files = self
            .sources
            .get(version)
            .ok_or_else(|| format!("entry seq {seq}: unknown rule hash {version}: no rule sources for it"))?;
        if let Some(problem) = check_sources(version, files) {
            return Err(format!("entry seq {seq}: {problem}"));
        }
        // No folder: a rule failure names its script by its path in the pack (see
        // `claims_audit::replay::compare`).
        let pack = RhaiPack::from_sources("", files)
            .map_err(|error| format!("entry seq {seq}: the rule sources of {version} do not load: {error}"))?;
        let pack = Arc::new(pack);
        compiled.insert(version.clone(), Arc::clone(&pack));
        Ok((pack, false))
    }
}

/// What the threads do besides checking each entry: replay those of `range` (replay only).
struct Work {
    replay: Option<(Range, Packs)>,
}

/// A replayed entry.
struct Done {
    entry: RecordedEntry,
    what_if: bool,
    replayed: Replayed,
    differences: Vec<Difference>,
}

/// One line, checked (and replayed): handed back to the reading thread in log order.
struct Item {
    checked: Checked,
    /// The replay, for an entry of the range; `Err` says why it could not be replayed.
    replayed: Option<Result<Done, String>>,
}

fn process(work: &Work, line: &[u8]) -> Item {
    let mut checked = claims_audit::check(line);
    let value = checked.value.take();
    let replayed = match (&work.replay, value) {
        // An entry that is not whole fails the chain: nothing to replay.
        (Some((range, packs)), Some(value))
            if checked.consistent() && checked.seq().is_some_and(|seq| range.contains(seq)) =>
        {
            Some(replay_one(value, packs))
        }
        _ => None,
    };
    Item { checked, replayed }
}

fn replay_one(value: Value, packs: &Packs) -> Result<Done, String> {
    let seq = value.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let entry = RecordedEntry::from_json(value).map_err(|error| format!("entry seq {seq}: {error}"))?;
    let (pack, what_if) = packs.pack(&entry)?;
    let replayed = replay(&entry, pack.as_ref())
        .map_err(|error| format!("entry seq {seq}: its recorded inputs cannot be read: {error}"))?;
    let differences = compare(&entry, &replayed, what_if);
    Ok(Done { entry, what_if, replayed, differences })
}

/// Reads `log` in order on this thread, checks (and replays) its lines on every core, and
/// hands the results to `take` in log order. `take` stops the walk by returning the problem
/// to report, which `walk` returns.
fn walk(
    log: &mut Log,
    work: &Work,
    command: &str,
    mut take: impl FnMut(Item) -> Result<(), String>,
) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    let threads = worker_threads();
    std::thread::scope(|scope| {
        let (jobs, job_queue) = mpsc::sync_channel::<(u64, Vec<Vec<u8>>)>(threads * 2);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let (results, finished) = mpsc::channel::<(u64, Vec<Item>)>();
        for _ in 0..threads {
            let job_queue = Arc::clone(&job_queue);
            let results = results.clone();
            scope.spawn(move || {
                loop {
                    let next = job_queue.lock().map_err(|_| ()).and_then(|queue| queue.recv().map_err(|_| ()));
                    let Ok((index, lines)) = next else { break };
                    let items = lines.iter().map(|line| process(work, line)).collect();
                    if results.send((index, items)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(results);

        let mut order = InOrder { next: 0, waiting: BTreeMap::new(), taken: 0, stopped: None };
        let mut take_in_order = |index: u64, items: Vec<Item>, order: &mut InOrder| {
            order.waiting.insert(index, items);
            while let Some(items) = order.waiting.remove(&order.next) {
                order.next += 1;
                for item in items {
                    if order.stopped.is_some() {
                        return;
                    }
                    match take(item) {
                        Ok(()) => {
                            order.taken += 1;
                            progress(command, order.taken, started);
                        }
                        Err(problem) => order.stopped = Some(problem),
                    }
                }
            }
        };
        let mut sent = 0_u64;
        let mut batch = Vec::with_capacity(BATCH);
        let mut reading = Ok(());
        while order.stopped.is_none() {
            let line = match log.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(error) => {
                    reading = Err(error);
                    break;
                }
            };
            batch.push(line);
            if batch.len() == BATCH {
                if jobs.send((sent, std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err() {
                    break;
                }
                sent += 1;
                while let Ok((index, items)) = finished.try_recv() {
                    take_in_order(index, items, &mut order);
                }
            }
        }
        if !batch.is_empty() && order.stopped.is_none() && jobs.send((sent, batch)).is_ok() {
            sent += 1;
        }
        drop(jobs);
        for (index, items) in finished {
            take_in_order(index, items, &mut order);
        }
        reading?;
        if order.stopped.is_none() && order.next < sent {
            bail!("a checking thread stopped");
        }
        Ok(order.stopped)
    })
}

/// Batches put back in log order.
struct InOrder {
    next: u64,
    waiting: BTreeMap<u64, Vec<Item>>,
    taken: u64,
    stopped: Option<String>,
}

fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).clamp(1, 32)
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

fn verify(file: Option<&Path>, database_url: Option<&str>, out: &mut dyn Write) -> anyhow::Result<u8> {
    let started = Instant::now();
    let Some(mut log) = Log::open(file, database_url, 1, None, out)? else { return Ok(2) };
    let name = log.name.clone();
    // An export's sources are not covered by the chain: each must hash to its version.
    if file.is_some()
        && let Some(sources) = &log.sources
    {
        for (version, files) in sources {
            if let Some(problem) = check_sources(version, files) {
                writeln!(out, "FAILED: {name}: {problem}")?;
                return Ok(2);
            }
        }
    }
    let mut verifier = log.verifier();
    let stopped = walk(&mut log, &Work { replay: None }, "verify", |item| {
        verifier.accept(&item.checked).map_err(|failure| failure.to_string())
    })?;
    if let Some(problem) = stopped {
        writeln!(out, "FAILED: {name}: {problem}")?;
        writeln!(out, "{} entries before it verified", verifier.entries())?;
        log.close();
        return Ok(2);
    }
    let summary = match verifier.finish() {
        Ok(summary) => summary,
        Err(failure) => {
            writeln!(out, "FAILED: {name}: {failure}")?;
            log.close();
            return Ok(2);
        }
    };
    if let (Input::Database(database), Some(sources)) = (&log.input, &log.sources) {
        let (head_seq, head_hash) = &database.head;
        if summary.last.unwrap_or(0) == *head_seq && summary.last_hash != *head_hash {
            writeln!(
                out,
                "FAILED: {name}: audit_head says seq {head_seq} has hash {head_hash}, the entry's hash is {}",
                summary.last_hash
            )?;
            return Ok(2);
        }
        // The versions the entries name are stored (checked per entry); their texts must still
        // hash to them.
        for version in summary.versions.keys() {
            if let Some(problem) = sources.get(version).and_then(|files| check_sources(version, files)) {
                writeln!(out, "FAILED: {name}: {problem}")?;
                return Ok(2);
            }
        }
    }
    let has_sources = log.sources.is_some();
    log.close();
    let range = match (summary.first, summary.last) {
        (Some(first), Some(last)) => format!(" (seq {first}..={last})"),
        _ => String::new(),
    };
    writeln!(out, "verified {} entries{range} in {name}: the chain is intact", summary.entries)?;
    writeln!(out, "last hash: {}", summary.last_hash)?;
    for (version, entries) in &summary.versions {
        writeln!(out, "rules {version}: {entries} entries")?;
    }
    if has_sources {
        writeln!(out, "every rule version has its sources, and they hash to it")?;
    } else {
        writeln!(out, "rule sources: not checked (an entries-only file holds none; replay it with --rules DIR)")?;
    }
    writeln!(out, "took {:.3} s ({} threads)", started.elapsed().as_secs_f64(), worker_threads())?;
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// replay
// ---------------------------------------------------------------------------------------------

fn replay_log(
    file: Option<&Path>,
    range: Range,
    rules: Option<&Path>,
    database_url: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let given = match rules {
        Some(dir) => {
            let loaded = RhaiPack::load(dir)
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("loading rule pack {}", dir.display()))?;
            // Loaded again with no folder, as recorded sources are: a rule failure names its
            // script by its path in the pack.
            let pack = RhaiPack::from_sources("", loaded.sources())
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("loading rule pack {}", dir.display()))?;
            Some((dir.to_path_buf(), Arc::new(pack)))
        }
        None => None,
    };
    let Some(mut log) = Log::open(file, database_url, range.from, Some(range.to), out)? else { return Ok(2) };
    let name = log.name.clone();
    if given.is_none() && log.sources.is_none() {
        writeln!(
            out,
            "FAILED: {name} holds entries only, no rule sources (it is not an export): give the pack with --rules DIR"
        )?;
        return Ok(2);
    }
    let packs = Packs {
        given: given.as_ref().map(|(_, pack)| Arc::clone(pack)),
        sources: log.sources.clone().unwrap_or_default(),
        compiled: Mutex::new(HashMap::new()),
    };
    let work = Work { replay: Some((range, packs)) };
    let mut verifier = log.verifier();
    let mut report = Report::new(false);
    let stopped = walk(&mut log, &work, "replay", |item| {
        verifier.accept(&item.checked).map_err(|failure| format!("{name} does not verify: {failure}"))?;
        match item.replayed {
            None => Ok(()),
            Some(Err(problem)) => Err(problem),
            Some(Ok(done)) => {
                report.what_if |= done.what_if;
                report.add(&done.entry, &done.replayed, done.differences);
                Ok(())
            }
        }
    })?;
    // A log cut short is reported even when the range replayed was complete.
    let stopped =
        stopped.or_else(|| verifier.finish().err().map(|failure| format!("{name} does not verify: {failure}")));
    log.close();
    if let Some(problem) = stopped {
        writeln!(out, "FAILED: {problem}")?;
        writeln!(out, "{} entries replayed before it", report.replayed)?;
        return Ok(2);
    }
    let title = match &given {
        None => format!("replay of {name} with the recorded rule sources"),
        Some((dir, pack)) if report.what_if => format!(
            "what-if: the recorded inputs of {name} re-decided with {} ({} {})",
            dir.display(),
            pack.settings().version.pack,
            pack.version()
        ),
        Some((dir, pack)) => format!("replay of {name} with {} ({}, the pack recorded)", dir.display(), pack.version()),
    };
    write!(out, "{}", report.render(&title))?;
    writeln!(out, "took {:.3} s ({} threads)", started.elapsed().as_secs_f64(), worker_threads())?;
    Ok(if report.all_identical() { 0 } else { 1 })
}

// ---------------------------------------------------------------------------------------------
// export
// ---------------------------------------------------------------------------------------------

fn export(
    path: &Path,
    from: Option<u64>,
    to: Option<u64>,
    database_url: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut database = Database::connect(database_url)?;
    let head = database.head.0;
    if head == 0 {
        bail!("the audit log is empty: nothing to export");
    }
    let from = from.unwrap_or(1);
    let to = to.unwrap_or(head);
    if from == 0 || to < from {
        bail!("--from {from} --to {to} is not a range of sequence numbers (they start at 1)");
    }
    if to > head {
        bail!("the audit log ends at seq {head}: cannot export through seq {to}");
    }
    let prev_hash = if from == 1 { GENESIS_HASH.to_owned() } else { database.hash_of(from - 1)? };

    // First pass: the rule versions the entries name.
    database.after = from - 1;
    database.end = to;
    let mut versions = BTreeSet::new();
    let mut count = 0_u64;
    while let Some(text) = database.next()? {
        let entry: Value =
            serde_json::from_str(&text).with_context(|| format!("entry {} is not JSON", database.after))?;
        if let Some(version) = entry.get("rules").and_then(|rules| rules.get("version")).and_then(Value::as_str) {
            versions.insert(version.to_owned());
        }
        count += 1;
        progress("export (rule versions)", count, started);
    }
    let mut sources = BTreeMap::new();
    for version in &versions {
        match database.sources(version)? {
            Some(files) => {
                let files = files.into_iter().map(|file| SourceText { path: file.path, text: file.text }).collect();
                sources.insert(version.clone(), files);
            }
            None => eprintln!("warning: no rule sources stored for {version}: its entries cannot be replayed"),
        }
    }
    let header = ExportHeader { from, to, prev_hash, sources };

    // Second pass: the entries, exactly as stored, after the header; renamed into place once
    // complete, so a file named FILE is never half written.
    let partial = path.with_extension("partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut writer = BufWriter::new(file);
    serde_json::to_writer(&mut writer, &header.to_json())?;
    writer.write_all(b"\n")?;
    database.after = from - 1;
    database.page.clear();
    let mut written = 0_u64;
    while let Some(text) = database.next()? {
        writer.write_all(text.as_bytes())?;
        writer.write_all(b"\n")?;
        written += 1;
        progress("export", written, started);
    }
    writer.flush().with_context(|| format!("writing {}", partial.display()))?;
    drop(writer);
    database.close();
    if written != to - from + 1 {
        bail!("the audit log has {written} entries in seq {from}..={to}, expected {}", to - from + 1);
    }
    std::fs::rename(&partial, path).with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    writeln!(
        out,
        "exported {written} entries (seq {from}..={to}) and the sources of {} rule pack version(s) to {} in {:.3} s",
        header.sources.len(),
        path.display(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(0)
}
