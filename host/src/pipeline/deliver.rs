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
