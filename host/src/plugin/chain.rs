//! A server's parsers in order: each sees every line, and their events are merged in line
//! order (for one line, in the order of the parsers).

use crate::event::Event;

use super::{Fault, ParserInstance};

/// Several parser instances run as one.
pub struct ParserChain {
    parsers: Vec<ParserInstance>,
}

/// What one batch gave: the events, and the parsers that faulted on it (by index).
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// (index of the line in the batch, event), in line order.
    pub events: Vec<(usize, Event)>,
    /// (index of the parser in the chain, its fault) for every parser that lost this batch.
    pub faults: Vec<(usize, Fault)>,
    /// How long each parser took, in chain order.
    pub timings: Vec<std::time::Duration>,
}

impl ParserChain {
    /// A chain of these instances, first to last.
    pub fn new(parsers: Vec<ParserInstance>) -> Self {
        Self { parsers }
    }

    /// The instances, first to last.
    pub fn parsers(&self) -> &[ParserInstance] {
        &self.parsers
    }

    /// The identity of what this chain does: 12 hex digits of a SHA-256 over each plugin's
    /// content hash and configuration (pattern files included, for the stock parser), so an
    /// edited pattern file gives a new version and an unchanged reload the same one.
    pub fn version(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for p in &self.parsers {
            h.update(p.plugin().hash().as_bytes());
            h.update([0]);
            h.update(p.config().as_bytes());
            h.update([0]);
        }
        h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Runs every parser over `lines`. A parser that faults loses this batch; the others'
    /// events are kept.
    pub fn parse(&mut self, lines: &[String]) -> ChainOutput {
        self.parse_from("", lines)
    }

    /// [`Self::parse`] for lines read from the log `source` (its id in servers.yml).
    pub fn parse_from(&mut self, source: &str, lines: &[String]) -> ChainOutput {
        let mut out = ChainOutput::default();
        for (p, parser) in self.parsers.iter_mut().enumerate() {
            let started = std::time::Instant::now();
            let result = parser.parse_from(source, lines);
            out.timings.push(started.elapsed());
            match result {
                Ok(events) => out.events.extend(events),
                Err(fault) => out.faults.push((p, fault)),
            }
        }
        // Stable: for one line, events keep the order of the parsers.
        out.events.sort_by_key(|(i, _)| *i);
        out
    }
}
