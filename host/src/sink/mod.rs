//! Where events go: one interface for the console, a JSON-lines file, and Discord (whose
//! two sinks, the bot's and a webhook's, live in `discord/`).
//!
//! A sink takes a [`Batch`] of one server's events, retries what it sends by its own
//! policy, and marks each event [done](Batch::done) once it is delivered (for a file:
//! written and flushed) or given up for good. The pipeline only applies a deadline: a
//! delivery that fails or overruns it is resumed after a backoff with the events not done
//! yet, so nothing a sink took is sent to it twice, and the checkpoint moves once every
//! sink is through.

pub mod console;
mod jsonl;

use std::future::Future;
use std::pin::Pin;

pub use console::ConsoleSink;
pub use jsonl::JsonlSink;

use crate::alert::Notice;

/// Why a delivery failed; the pipeline resumes it, then counts and logs it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The future a sink returns.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// One server's events for one sink, and which of them are done.
pub struct Batch<'a> {
    server: &'a str,
    events: &'a [Notice],
    /// Each event's place in the batch as first delivered: a resumed delivery keeps it, so
    /// what is named after it (Discord's nonces) stays the same.
    places: Vec<usize>,
    id: Option<&'a str>,
    done: parking_lot::Mutex<Vec<bool>>,
}

impl<'a> Batch<'a> {
    /// `events` of `server`, none done.
    pub fn new(server: &'a str, events: &'a [Notice]) -> Self {
        Self::resumed(server, events, (0..events.len()).collect())
    }

    /// The rest of a batch: `events` at `places` of the batch first delivered.
    fn resumed(server: &'a str, events: &'a [Notice], places: Vec<usize>) -> Self {
        Self {
            server,
            events,
            places,
            id: None,
            done: parking_lot::Mutex::new(vec![false; events.len()]),
        }
    }

    /// The same batch with an identity that a delivery of it again has too (the log and
    /// where the batch starts in it): a sink that can de-duplicate by it (Discord's nonces)
    /// does.
    pub fn with_id(mut self, id: Option<&'a str>) -> Self {
        self.id = id;
        self
    }

    /// The server the events are of.
    pub fn server(&self) -> &'a str {
        self.server
    }

    /// The events to deliver.
    pub fn events(&self) -> &'a [Notice] {
        self.events
    }

    /// The batch's identity, if it has one.
    pub fn id(&self) -> Option<&'a str> {
        self.id
    }

    /// The place of `events()[i]` in the batch as first delivered.
    pub fn place(&self, i: usize) -> usize {
        self.places.get(i).copied().unwrap_or(i)
    }

    /// Marks `events()[i]` for each `i` as delivered, or given up for good (refused): a
    /// resumed delivery does not send them again.
    pub fn done(&self, indexes: impl IntoIterator<Item = usize>) {
        let mut done = self.done.lock();
        for i in indexes {
            if let Some(d) = done.get_mut(i) {
                *d = true;
            }
        }
    }

    /// Marks every event done.
    pub fn all_done(&self) {
        self.done(0..self.events.len());
    }

    /// How many events are not done.
    pub fn left(&self) -> usize {
        self.done.lock().iter().filter(|d| !**d).count()
    }

    /// The events not done, each with its place.
    pub fn rest(&self) -> (Vec<Notice>, Vec<usize>) {
        let done = self.done.lock();
        (self.events.iter().zip(&self.places).zip(done.iter()))
            .filter(|(_, d)| !**d)
            .map(|((e, p), _)| (e.clone(), *p))
            .unzip()
    }

    /// The rest of this batch (see [`Batch::rest`]) as a batch of its own.
    pub fn resume(&self, events: &'a [Notice], places: Vec<usize>) -> Self {
        Self::resumed(self.server, events, places).with_id(self.id)
    }
}

/// A destination for events.
pub trait Sink: Send + Sync {
    /// A short name for logs, metrics and `/ready` (`console`, `jsonl`, ...).
    fn name(&self) -> &str;

    /// How long one delivery may take before the pipeline gives it up and resumes it with
    /// what is not done (a sink that retries inside, like Discord's, says so with a longer
    /// patience).
    fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(10)
    }

    /// Whether it keeps its own component (`sink:<server>:<name>`) in health: one that
    /// retries inside knows best when it is degraded (failing, retrying) and down (giving
    /// messages up); the pipeline then leaves the component to it.
    fn reports_health(&self) -> bool {
        false
    }

    /// Whether people read it (Discord, the console): they are shown only the kinds of
    /// event the server's `events:` leaves on. A record (JSON lines) gets every event.
    fn for_people(&self) -> bool {
        true
    }

    /// Delivers `batch`: `Ok` once every event is delivered. A sink that sends in several
    /// steps marks each event [done](Batch::done) as it goes: when it gives up (an error)
    /// or overruns its deadline, only what is marked is taken as delivered.
    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_batch_holds_only_what_is_not_done_at_its_first_places() {
        let events: Vec<Notice> = (0..5)
            .map(|i| Notice::Event(crate::event::Event::new(format!("k{i}"))))
            .collect();
        let first = Batch::new("prod", &events).with_id(Some("log@0"));
        first.done([0, 2]);
        assert_eq!(first.left(), 3);
        let (rest, places) = first.rest();
        assert_eq!(places, [1, 3, 4]);
        let again = first.resume(&rest, places);
        assert_eq!(again.id(), Some("log@0"));
        assert_eq!(again.events()[1].kind(), "k3");
        assert_eq!(again.place(1), 3);
        again.done([1]);
        let (rest, places) = again.rest();
        assert_eq!(places, [1, 4]);
        assert_eq!(rest.len(), 2);
        again.all_done();
        assert_eq!(again.left(), 0);
    }
}
