//! Where events go: one interface for the console, a JSON-lines file, and Discord (whose
//! two sinks, the bot's and a webhook's, live in `discord/`).
//!
//! A sink takes a batch of one server's events and returns once they are delivered (for a
//! file: written and flushed), so that the pipeline may then save its checkpoint.

pub mod console;
mod jsonl;

use std::future::Future;
use std::pin::Pin;

pub use console::ConsoleSink;
pub use jsonl::JsonlSink;

use crate::event::Event;

/// Why a delivery failed; the pipeline retries, then counts and logs it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The future a sink returns.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for events.
pub trait Sink: Send + Sync {
    /// A short name for logs, metrics and `/ready` (`console`, `jsonl`, ...).
    fn name(&self) -> &str;

    /// How long one delivery may take before the pipeline gives it up and tries again (a
    /// sink that retries inside, like Discord's, says so with a longer patience).
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

    /// Delivers `events` of server `server`; resolves when they are safely handed over.
    fn deliver<'a>(&'a self, server: &'a str, events: &'a [Event]) -> Delivery<'a>;

    /// [`Sink::deliver`] for a batch that has an identity a delivery of the same batch
    /// again will have too (cluster mode, where a new owner delivers again exactly what the
    /// last one was delivering): a sink that can de-duplicate by it (Discord's nonces) does.
    fn deliver_batch<'a>(
        &'a self,
        server: &'a str,
        events: &'a [Event],
        batch: Option<&'a str>,
    ) -> Delivery<'a> {
        let _ = batch;
        self.deliver(server, events)
    }
}
