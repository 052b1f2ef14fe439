//! Micro-batching: take up to `max_size` deliveries, or whatever arrived within `max_wait` of
//! the first one. One database transaction and one fsync then serve the whole batch (stack.md
//! 8.2.3), while a lone claim waits at most `max_wait` for company.
//!
//! Waiting only pays while the previous batch is still being decided: the next one could not get
//! through the audit log before it anyway, and the claims that arrive meanwhile share its
//! transaction. Once the previous batch is decided, collecting stops at what is already buffered,
//! so at low load a claim goes straight to the database, and under load batches grow to what
//! arrives while one is decided (natural batching).

use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_size: usize,
    pub max_wait: Duration,
}

/// Why collecting stopped before the batch was full or its time was up.
#[derive(Debug)]
pub enum BatchEnd<E> {
    /// Shutdown was asked for: process what was collected, then stop.
    Stopped,
    /// The stream ended (consumer cancelled, channel closed).
    Closed,
    /// The stream yielded an error (it ends right after): the channel is gone.
    Failed(E),
}

#[derive(Debug)]
pub struct Collected<T, E> {
    pub items: Vec<T>,
    /// `None`: the batch is complete and the stream is still open.
    pub end: Option<BatchEnd<E>>,
}

/// The batch decided before the one being collected: `None` once it is decided (or when there
/// was none). Its sender fires, or is dropped, when that batch's decision ends.
pub type Previous = Option<oneshot::Receiver<()>>;

/// Waits (without limit) for a first item, then collects until the batch is full, `max_wait`
/// has passed since the first item, the previous batch is decided (then it takes what is
/// already buffered and stops), the stream ends, or `stop` turns true.
pub async fn collect<S, T, E>(
    stream: &mut S,
    settings: BatchSettings,
    previous: &mut Previous,
    stop: &mut watch::Receiver<bool>,
) -> Collected<T, E>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    let max_size = settings.max_size.max(1);
    let mut items = Vec::with_capacity(max_size);
    let mut deadline: Option<Instant> = None;
    while items.len() < max_size {
        if !items.is_empty() && previous.is_none() {
            // Nothing else is being decided: no reason to wait for company.
            return take_buffered(stream, items, max_size);
        }
        let next = async {
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, stream.next()).await.ok(),
                None => Some(stream.next().await),
            }
        };
        let previous_decided = async {
            match previous.as_mut() {
                // Decided, or its task is gone: either way it no longer holds the database.
                Some(receiver) => {
                    let _ = receiver.await;
                }
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            // Shutdown first: a busy queue must not keep a stopping worker collecting.
            biased;
            _ = stopped(stop) => return Collected { items, end: Some(BatchEnd::Stopped) },
            outcome = next => outcome,
            () = previous_decided => {
                *previous = None;
                continue;
            }
        };
        match outcome {
            // The batch's time is up.
            None => break,
            Some(None) => return Collected { items, end: Some(BatchEnd::Closed) },
            Some(Some(Err(error))) => return Collected { items, end: Some(BatchEnd::Failed(error)) },
            Some(Some(Ok(item))) => {
                items.push(item);
                deadline.get_or_insert_with(|| Instant::now() + settings.max_wait);
            }
        }
    }
    Collected { items, end: None }
}

/// Adds to `items` what `stream` yields without waiting, up to `max_size`.
fn take_buffered<S, T, E>(stream: &mut S, mut items: Vec<T>, max_size: usize) -> Collected<T, E>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    while items.len() < max_size {
        match stream.next().now_or_never() {
            None => break,
            Some(None) => return Collected { items, end: Some(BatchEnd::Closed) },
            Some(Some(Err(error))) => return Collected { items, end: Some(BatchEnd::Failed(error)) },
            Some(Some(Ok(item))) => items.push(item),
        }
    }
    Collected { items, end: None }
}

/// Resolves once `stop` is true (or its sender is gone, which also means stop).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use tokio::sync::mpsc;

    /// A stream fed over time through an mpsc channel.
    fn fed<T: 'static>(receiver: mpsc::Receiver<T>) -> impl Stream<Item = T> + Unpin {
        Box::pin(stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ))
    }

    const SETTINGS: BatchSettings = BatchSettings { max_size: 3, max_wait: Duration::from_millis(5) };

    fn running() -> (watch::Sender<bool>, watch::Receiver<bool>) {
        watch::channel(false)
    }

    /// A previous batch still being decided, and the sender that ends its decision.
    fn deciding() -> (oneshot::Sender<()>, Previous) {
        let (sender, receiver) = oneshot::channel();
        (sender, Some(receiver))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_returned_at_once() {
        let (_sender, mut stop) = running();
        let mut source = stream::iter((1..=7).map(Ok::<i32, ()>)).chain(stream::pending());
        let (_decision, mut previous) = deciding();
        let first = collect(&mut source, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(first.items, vec![1, 2, 3]);
        assert!(first.end.is_none());
        let second = collect(&mut source, SETTINGS, &mut None, &mut stop).await;
        assert_eq!(second.items, vec![4, 5, 6]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_waits_max_wait_after_the_first_item_while_the_previous_is_decided() {
        let (_sender, mut stop) = running();
        let (items, receiver) = mpsc::channel(8);
        let mut source = fed(receiver);
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let _ = items.send(Ok::<i32, ()>(1)).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            let _ = items.send(Ok(2)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = items.send(Ok(3)).await;
            items
        });
        let (_decision, mut previous) = deciding();
        let started = Instant::now();
        let batch = collect(&mut source, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(batch.items, vec![1, 2]);
        assert!(batch.end.is_none());
        // Ten seconds idle before the first item, then exactly max_wait.
        assert_eq!(started.elapsed(), Duration::from_secs(10) + Duration::from_millis(5));
        assert!(previous.is_some(), "the previous batch is still being decided");
        let (_decision, mut previous) = deciding();
        let next = collect(&mut source, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(next.items, vec![3]);
        drop(feeder);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_an_idle_wait_and_keeps_what_was_collected() {
        let (sender, mut stop) = running();
        let mut idle = stream::pending::<Result<i32, ()>>();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = sender.send(true);
            sender
        });
        let batch = collect(&mut idle, SETTINGS, &mut None, &mut stop).await;
        assert!(batch.items.is_empty());
        assert!(matches!(batch.end, Some(BatchEnd::Stopped)));
        drop(stopper);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_or_the_end_of_the_stream_ends_the_batch() {
        let (_sender, mut stop) = running();
        let mut failing = stream::iter(vec![Ok(1), Err("channel closed"), Ok(2)]);
        let (_decision, mut previous) = deciding();
        let batch = collect(&mut failing, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(batch.items, vec![1]);
        assert!(matches!(batch.end, Some(BatchEnd::Failed("channel closed"))));

        let mut short = stream::iter(vec![Ok::<i32, ()>(1)]);
        let (_decision, mut previous) = deciding();
        let batch = collect(&mut short, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(batch.items, vec![1]);
        assert!(matches!(batch.end, Some(BatchEnd::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_being_decided_a_batch_is_what_is_buffered() {
        let (_sender, mut stop) = running();
        let (items, receiver) = mpsc::channel(8);
        let mut source = fed(receiver);
        for item in [1, 2] {
            assert!(items.send(Ok::<i32, ()>(item)).await.is_ok(), "the channel has room");
        }
        let started = Instant::now();
        let batch = collect(&mut source, SETTINGS, &mut None, &mut stop).await;
        assert_eq!(batch.items, vec![1, 2]);
        assert!(batch.end.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait for company");

        // Idle: the first item to arrive is a batch of its own, at once.
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = items.send(Ok(3)).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = items.send(Ok(4)).await;
            items
        });
        let started = Instant::now();
        let batch = collect(&mut source, SETTINGS, &mut None, &mut stop).await;
        assert_eq!(batch.items, vec![3]);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        drop(feeder);
    }

    #[tokio::test(start_paused = true)]
    async fn collecting_stops_when_the_previous_batch_is_decided() {
        let (_sender, mut stop) = running();
        let (items, receiver) = mpsc::channel(8);
        let mut source = fed(receiver);
        let (decision, mut previous) = deciding();
        let feeder = tokio::spawn(async move {
            let _ = items.send(Ok::<i32, ()>(1)).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            // Decided 2 ms after the first item, with a second item buffered at that moment.
            let _ = items.send(Ok(2)).await;
            let _ = decision.send(());
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = items.send(Ok(3)).await;
            items
        });
        let started = Instant::now();
        let batch = collect(&mut source, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(batch.items, vec![1, 2]);
        assert!(batch.end.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(2), "not the whole max_wait");
        assert!(previous.is_none());

        // A previous batch whose task is gone (its sender dropped) counts as decided too.
        let (decision, mut previous) = deciding();
        drop(decision);
        let batch = collect(&mut source, SETTINGS, &mut previous, &mut stop).await;
        assert_eq!(batch.items, vec![3]);
        drop(feeder);
    }
}
