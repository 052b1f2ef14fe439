//! The rule pack in force, and its hot reload: at start the worker uses its pack's active
//! publication from the database (else the pack in `--rules DIR`); then it polls the active
//! version every [`Config::rules_poll`](crate::Config) and swaps in a newly published pack.
//!
//! A swap never touches a batch in flight: each batch takes its own `Arc<RhaiPack>` when its
//! decide starts (`decide.rs`) and keeps it to the end, retries and one-by-one isolation
//! included; the next batch takes the new pack. A published pack that fails to load is logged
//! and ignored: the worker keeps deciding with the pack it has.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use claims_domain::rules::RulePack;
use claims_rules::{RhaiPack, SourceFile};
use claims_store::{Store, StoreError};
use tokio::sync::watch;

use crate::batch::stopped;
use crate::{Metrics, WorkerError};

/// The pack new batches use; replaced whole, never mutated.
#[derive(Debug)]
pub(crate) struct ActivePack {
    current: RwLock<Arc<RhaiPack>>,
}

impl ActivePack {
    pub(crate) fn new(pack: RhaiPack) -> ActivePack {
        ActivePack { current: RwLock::new(Arc::new(pack)) }
    }

    /// The pack for one batch, from start to finish.
    pub(crate) fn current(&self) -> Arc<RhaiPack> {
        // A poisoned lock still holds a whole pack: the swap is one assignment.
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn replace(&self, pack: RhaiPack) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(pack);
    }
}

/// The pack to start with: the active publication of `dir`'s pack if there is one, else the
/// pack in `dir` (whose sources are then stored, so every decision's pack can be replayed).
pub(crate) async fn initial_pack(store: &Store, dir: &Path) -> Result<RhaiPack, WorkerError> {
    let from_dir =
        RhaiPack::load(dir).map_err(|error| WorkerError::Rules { dir: dir.to_owned(), message: error.to_string() })?;
    let name = from_dir.settings().version.pack.clone();
    if let Some((version, sources)) = store.active_rule_pack(&name).await? {
        if version == from_dir.version() {
            return Ok(from_dir);
        }
        let published = load_stored(dir, &version, sources).map_err(|message| WorkerError::Rules {
            dir: dir.to_owned(),
            message: format!("the active publication of pack {name}, {version}, does not load: {message}"),
        })?;
        tracing::warn!(
            pack = %name,
            active = %version,
            dir = %dir.display(),
            dir_version = %from_dir.version(),
            "the folder's pack is not the published one: deciding with the active publication"
        );
        return Ok(published);
    }
    let sources: Vec<(String, String)> =
        from_dir.sources().iter().map(|file| (file.path.clone(), file.text.clone())).collect();
    // Every decision names its pack version; the store keeps the sources under that hash so a
    // replay runs the very scripts that decided.
    store.save_rule_pack(&name, from_dir.version(), &sources).await?;
    Ok(from_dir)
}

/// Compiles stored sources; messages name the files under `dir`, as a pack loaded from the
/// folder would, so an `error` decision reads the same whichever way the pack came.
fn load_stored(dir: &Path, version: &str, sources: Vec<(String, String)>) -> Result<RhaiPack, String> {
    let files: Vec<SourceFile> = sources.into_iter().map(|(path, text)| SourceFile { path, text }).collect();
    let pack = RhaiPack::from_sources(&dir.to_string_lossy(), &files).map_err(|error| error.to_string())?;
    if pack.version() != version {
        // The engine or its limits changed since the pack was stored: its hash is another one.
        return Err(format!("its sources hash to {} under this engine", pack.version()));
    }
    Ok(pack)
}

/// Polls the active version of the pack every `every` and swaps a new one in, until `stop`.
pub(crate) async fn poll(
    store: Store,
    dir: std::path::PathBuf,
    active: Arc<ActivePack>,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let name = active.current().settings().version.pack.clone();
    let mut watcher = Watcher { failed: None, database_down: false };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(every) => {}
        }
        watcher.check(&store, &dir, &name, &active, &metrics).await;
    }
}

/// What the poller remembers, so a broken pack or a database outage is logged once, not on
/// every poll.
struct Watcher {
    /// The last published version that failed to load.
    failed: Option<String>,
    database_down: bool,
}

impl Watcher {
    async fn check(&mut self, store: &Store, dir: &Path, name: &str, active: &ActivePack, metrics: &Metrics) {
        let version = match store.active_rule_version(name).await {
            Ok(version) => {
                if std::mem::take(&mut self.database_down) {
                    tracing::info!(pack = %name, "reading the active rule pack again");
                }
                version
            }
            Err(error) => {
                self.unreadable(name, &error);
                return;
            }
        };
        // Never published: the folder's pack stays.
        let Some(version) = version else { return };
        if version == active.current().version() || self.failed.as_deref() == Some(version.as_str()) {
            return;
        }
        let sources = match store.rule_pack_sources(&version).await {
            Ok(Some(sources)) => sources,
            Ok(None) => {
                self.refuse(name, &version, "its sources are not stored".to_owned(), metrics);
                return;
            }
            Err(error) => {
                self.unreadable(name, &error);
                return;
            }
        };
        match load_stored(dir, &version, sources) {
            Ok(pack) => {
                let previous = active.current().version().to_owned();
                active.replace(pack);
                self.failed = None;
                metrics.rules_loaded(name, &version);
                tracing::info!(pack = %name, version = %version, previous = %previous, "rule pack reloaded: the next batch uses it");
            }
            Err(message) => self.refuse(name, &version, message, metrics),
        }
    }

    fn refuse(&mut self, name: &str, version: &str, message: String, metrics: &Metrics) {
        tracing::error!(pack = %name, version = %version, %message, "the published rule pack does not load; keeping the current one");
        metrics.rules_reload_failed();
        self.failed = Some(version.to_owned());
    }

    fn unreadable(&mut self, name: &str, error: &StoreError) {
        if !std::mem::replace(&mut self.database_down, true) {
            tracing::warn!(pack = %name, %error, "cannot read the active rule pack; keeping the current one");
        }
    }
}
