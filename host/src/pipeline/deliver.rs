//! One batch to one sink: the sink retries inside by its own policy and marks what it
//! delivered; this applies the sink's deadline and, when a delivery fails or overruns it,
//! resumes it after a backoff with only what is not done. A sink that makes no progress
//! [`STALLED`] times in a row has the rest given up, counted and logged.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::alert::Notice;
use crate::backoff::Backoff;
use crate::observe::Telemetry;
use crate::observe::health::{Part, State};
use crate::sink::{Batch, Sink};

/// Deliveries in a row that got nothing through before the rest is given up.
pub const STALLED: u32 = 3;

/// Delivers `events` of server `tag` to `sink` (see the module's doc); `id` names the batch
/// for sinks that de-duplicate by it.
pub async fn deliver(
    tag: &str,
    sink: &dyn Sink,
    events: &[Notice],
    id: Option<&str>,
    shared: &Telemetry,
) {
    let span = tracing::info_span!(
        "deliver",
        server = tag,
        sink = sink.name(),
        events = events.len(),
        attempts = tracing::field::Empty,
        outcome = tracing::field::Empty
    );
    resume_until_done(Batch::new(tag, events).with_id(id), sink, shared)
        .instrument(span)
        .await
}

async fn resume_until_done(first: Batch<'_>, sink: &dyn Sink, shared: &Telemetry) {
    let span = tracing::Span::current();
    let tag = first.server();
    let component = Part::Sink {
        server: tag.to_owned(),
        sink: sink.name().to_owned(),
    };
    let label = component.to_string();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    // The events are copied only when a delivery has to be resumed: the first attempt
    // delivers the batch as it came.
    let mut rest: Option<(Vec<Notice>, Vec<usize>)> = None;
    let (mut attempts, mut stalled) = (0, 0);
    loop {
        attempts += 1;
        let (held, resumed);
        let batch = match rest.take() {
            None => &first,
            Some((events, places)) => {
                held = events;
                resumed = first.resume(&held, places);
                &resumed
            }
        };
        let Err(problem) = attempt(batch, sink, shared).await else {
            if !sink.reports_health() {
                shared.health.set(&component, State::Ready, None);
            }
            span.record("attempts", attempts);
            span.record("outcome", "delivered");
            return;
        };
        let before = batch.events().len();
        let (events, places) = batch.rest();
        let left = events.len();
        rest = Some((events, places));
        stalled = if left < before { 0 } else { stalled + 1 };
        shared
            .metrics
            .errors
            .with_label_values(&[&label, "delivery"])
            .inc();
        shared.health.error(&component, problem.to_string());
        if stalled == STALLED {
            span.record("attempts", attempts);
            span.record("outcome", "dropped");
            tracing::error!(server = %tag, sink = sink.name(), "gave up delivering {left} events after {STALLED} attempts that got none through: {problem}");
            shared
                .metrics
                .errors
                .with_label_values(&[&label, "dropped"])
                .inc();
            return;
        }
        let wait = backoff.next_wait();
        tracing::warn!(server = %tag, sink = sink.name(), "delivery failed with {left} events left: {problem}; resuming in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
}

/// Why one delivery did not get the whole batch through.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Sink(#[from] crate::sink::SinkError),
    #[error("no answer within {} s", .0.as_secs())]
    Overran(Duration),
}

/// One delivery under the sink's deadline, timed.
async fn attempt(batch: &Batch<'_>, sink: &dyn Sink, shared: &Telemetry) -> Result<(), Failed> {
    let started = Instant::now();
    let result = tokio::time::timeout(sink.patience(), sink.deliver(batch)).await;
    shared
        .metrics
        .sink_seconds
        .with_label_values(&[batch.server(), sink.name()])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(done) => done.map_err(Failed::from),
        Err(_) => Err(Failed::Overran(sink.patience())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::observe::health::Health;
    use crate::observe::metrics::Metrics;
    use crate::sink::{Delivery, SinkError};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sink that, for its first `failing` deliveries, gets `per_try` events through and
    /// then fails (or, with `hang`, never answers); after those it delivers everything.
    struct Flaky {
        per_try: usize,
        failing: usize,
        hang: bool,
        tries: AtomicUsize,
        got: parking_lot::Mutex<Vec<String>>,
    }

    impl Flaky {
        fn new(per_try: usize, failing: usize) -> Self {
            Self {
                per_try,
                failing,
                hang: false,
                tries: AtomicUsize::new(0),
                got: Default::default(),
            }
        }
    }

    impl Sink for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }

        fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
            Box::pin(async move {
                let n = self.tries.fetch_add(1, Ordering::SeqCst);
                let failing = n < self.failing;
                let take = if failing { self.per_try } else { usize::MAX };
                for (i, e) in batch.events().iter().enumerate().take(take) {
                    self.got.lock().push(e.kind().to_owned());
                    batch.done([i]);
                }
                match (failing, self.hang) {
                    (false, _) => Ok(()),
                    (true, true) => std::future::pending().await,
                    (true, false) => Err(SinkError::Other("down".into())),
                }
            })
        }
    }

    fn notices(n: usize) -> Vec<Notice> {
        (0..n)
            .map(|i| Notice::Event(Event::new(format!("k{i}"))))
            .collect()
    }

    fn telemetry() -> Telemetry {
        Telemetry {
            health: Health::default(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn kinds(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_sink_is_resumed_after_what_it_delivered_with_waits_that_double() {
        let sink = Flaky::new(2, 3);
        let shared = telemetry();
        let started = tokio::time::Instant::now();
        deliver("prod", &sink, &notices(10), None, &shared).await;
        assert_eq!(*sink.got.lock(), kinds(10), "every event once, in order");
        assert_eq!(sink.tries.load(Ordering::SeqCst), 4);
        // Three waits on the paused clock: 250 ms, then 500 ms, then 1 s.
        assert_eq!(started.elapsed(), Duration::from_millis(1750));
        let failed = (shared.metrics.errors)
            .with_label_values(&["sink:prod:flaky", "delivery"])
            .get();
        assert_eq!(failed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_that_gets_nothing_through_is_given_up_after_stalled_attempts() {
        let sink = Flaky::new(0, usize::MAX);
        let shared = telemetry();
        let started = tokio::time::Instant::now();
        deliver("prod", &sink, &notices(3), None, &shared).await;
        assert_eq!(sink.tries.load(Ordering::SeqCst), STALLED as usize);
        assert!(sink.got.lock().is_empty());
        assert_eq!(started.elapsed(), Duration::from_millis(250 + 500));
        let dropped = (shared.metrics.errors)
            .with_label_values(&["sink:prod:flaky", "dropped"])
            .get();
        assert_eq!(dropped, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_that_overruns_the_sinks_patience_is_resumed_with_the_rest() {
        let mut sink = Flaky::new(1, 1);
        sink.hang = true;
        let shared = telemetry();
        let started = tokio::time::Instant::now();
        deliver("prod", &sink, &notices(4), None, &shared).await;
        assert_eq!(
            *sink.got.lock(),
            kinds(4),
            "the first one is not sent again"
        );
        assert_eq!(
            started.elapsed(),
            sink.patience() + Duration::from_millis(250)
        );
    }
}
