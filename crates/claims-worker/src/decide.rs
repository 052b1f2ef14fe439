//! Calling the store for a batch: retry what the database may get over (connection lost,
//! serialization failure, restart) in place and with backoff, and isolate a message the
//! database refuses for its content so that it alone is dead-lettered.

use std::time::{Duration, Instant};

use claims_rules::RhaiPack;
use claims_store::{Handled, Incoming, StoreError};
use tokio::sync::watch;

use crate::Shared;
use crate::batch::stopped;

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// One [`Handled`] per message, in order; `None` if a stop was asked for while the database
/// was failing (the caller hands the batch back to the queue).
///
/// `on_locked` is called once the store holds the batch's locks (see
/// `Store::decide_signalling`); the one-by-one isolation after a refused batch calls it again,
/// which a caller must tolerate.
pub(crate) async fn decide(
    shared: &Shared,
    messages: &[Incoming],
    stop: &mut watch::Receiver<bool>,
    on_locked: &mut (dyn FnMut() + Send),
) -> Option<Vec<Handled>> {
    if messages.is_empty() {
        return Some(Vec::new());
    }
    // The whole batch, retries and one-by-one isolation included, is decided with the pack in
    // force when it started; a reload only affects the next batch.
    let pack = shared.pack.current();
    match retrying(shared, &pack, messages, stop, on_locked).await? {
        Ok(handled) => Some(handled),
        Err(error) if messages.len() == 1 => Some(vec![refused(&error)]),
        Err(error) => {
            tracing::warn!(%error, batch = messages.len(), "the store refused a batch; deciding its messages one by one");
            let mut handled = Vec::with_capacity(messages.len());
            for message in messages {
                match retrying(shared, &pack, std::slice::from_ref(message), stop, on_locked).await? {
                    Ok(answer) => handled.extend(answer),
                    Err(error) => handled.push(refused(&error)),
                }
            }
            Some(handled)
        }
    }
}

fn refused(error: &StoreError) -> Handled {
    Handled::DeadLetter { reason: format!("the store cannot record this message: {error}") }
}

/// Calls `decide` until it succeeds or fails for a reason a retry cannot fix.
async fn retrying(
    shared: &Shared,
    pack: &RhaiPack,
    messages: &[Incoming],
    stop: &mut watch::Receiver<bool>,
    on_locked: &mut (dyn FnMut() + Send),
) -> Option<Result<Vec<Handled>, StoreError>> {
    let mut delay = RETRY_FIRST;
    loop {
        let started = Instant::now();
        match shared.store.decide_signalling(messages, pack, on_locked).await {
            Ok(handled) => {
                shared.metrics.adjudicated(messages.len(), started.elapsed());
                shared.metrics.set_consuming(true);
                return Some(Ok(handled));
            }
            Err(error) if is_transient(&error) => {
                // Not healthy while the database is away: a load balancer or an orchestrator
                // should know, even though the process is fine and will carry on by itself.
                shared.metrics.set_consuming(false);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "database unavailable; retrying the batch");
                tokio::select! {
                    _ = stopped(stop) => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_CAP);
            }
            Err(error) => return Some(Err(error)),
        }
    }
}

/// Whether the same call may succeed later. Only errors tied to the content of a message are
/// final: PostgreSQL data exceptions (class 22, e.g. a `\u0000` that `jsonb` refuses),
/// program limits (54, e.g. a value too large to index), values the driver cannot encode or
/// decode, and stored data the store found corrupt. Anything else (connection, pool,
/// serialization failure, deadlock, server restart) is worth waiting for.
pub(crate) fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(database)) => {
            let code = database.code().unwrap_or_default();
            !(code.starts_with("22") || code.starts_with("54"))
        }
        StoreError::Database(sqlx::Error::Encode(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }) => {
            false
        }
        StoreError::Corrupt(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_problems_are_transient_and_content_problems_are_not() {
        assert!(is_transient(&StoreError::Database(sqlx::Error::PoolTimedOut)));
        assert!(is_transient(&StoreError::Database(sqlx::Error::Io(std::io::Error::other("reset")))));
        assert!(!is_transient(&StoreError::Corrupt("decision of C-1".to_owned())));
        assert!(!is_transient(&StoreError::Database(sqlx::Error::Decode("bad".into()))));
    }
}
