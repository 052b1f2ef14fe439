//! The outbox relay: publishes outbox rows that a worker committed but never marked published
//! (it crashed between its commit and its confirms, or could not reach the database to mark
//! them). Normally the redelivered claim re-publishes its stored decision first; the relay
//! covers what redelivery cannot, such as `claimctl claims retry` interrupted half-way.

use std::time::Duration;

use claims_store::Store;
use tokio::sync::watch;

use crate::WorkerError;
use crate::batch::stopped;
use crate::publish::{self, CONFIRM_TIMEOUT, Outgoing, Pending, Publisher};

/// How often to look for forgotten rows.
const INTERVAL: Duration = Duration::from_secs(2);
/// Rows younger than this belong to a batch still in flight in some worker.
const OLDER_THAN: Duration = Duration::from_secs(5);
/// Rows per round, so one round stays short.
const LIMIT: i64 = 500;

/// Runs until `stop` turns true (`Ok`) or the broker fails (`Err`: the session is rebuilt).
/// Database errors are logged and retried next round.
pub(crate) async fn run(
    store: Store,
    publisher: Publisher,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let rows = match store.pending_outbox(OLDER_THAN, LIMIT).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "outbox relay: cannot read the outbox");
                continue;
            }
        };
        if rows.is_empty() {
            continue;
        }
        let mut pending = Pending::default();
        let outgoing: Vec<Outgoing<'_>> = rows.iter().map(Outgoing::Message).collect();
        publisher.publish_all(&outgoing, &mut pending).await?;
        pending.confirmed(CONFIRM_TIMEOUT).await?;
        if let Err(error) = store.mark_published(&publish::outbox_ids(&rows)).await {
            tracing::warn!(%error, rows = rows.len(), "outbox relay: published but cannot mark the rows");
        } else {
            tracing::info!(rows = rows.len(), "outbox relay: published forgotten rows");
        }
    }
}
