//! The two kinds of plugin instance: a parser's (lines in, events out) and a monitor's
//! (events and samples in, alerts out, its state kept across instances).

use std::fmt;

use wasmtime::Store;

use super::batch::{batch_text, cap_per_line, events_of};
use super::bindings::{monitor, parser};
use super::instance::{Bindings, Instance};
use super::sandbox::SandboxState;
use super::{Fault, Pre, WitAlert, WitSample};
use crate::event::Event;

/// A parser plugin instance for one server, with the buffer its batches are handed over in.
pub struct ParserInstance(Instance, String);

/// A monitor plugin instance for one server.
pub struct MonitorInstance(Instance);

impl ParserInstance {
    /// Parses a batch of lines; returns (index in `lines`, event) pairs in line order.
    /// On a fault the whole batch gives nothing for this plugin.
    pub fn parse(&mut self, lines: &[String]) -> Result<Vec<(usize, Event)>, Fault> {
        self.parse_from("", lines)
    }

    /// [`Self::parse`] for lines read from the log `source` (its id in servers.yml), which
    /// the plugin can ask for (`host.log-source`, WIT 0.4.0).
    pub fn parse_from(
        &mut self,
        source: &str,
        lines: &[String],
    ) -> Result<Vec<(usize, Event)>, Fault> {
        let bytes = lines.iter().map(String::len).sum();
        if matches!(self.0.plugin.pre, Pre::Parser(_)) {
            batch_text(lines, &mut self.1);
        }
        let batch = &self.1;
        let (mut out, bad) = self.0.call(bytes, |b, store| {
            store.data_mut().set_log_source(source);
            match b {
                Bindings::Parser(b, rules) => {
                    let parsed = b.call_parse(&mut *store, batch)?;
                    Ok(events_of(parsed, rules, lines))
                }
                Bindings::OldParser(b) => {
                    let events = b.call_parse(store, lines)?;
                    let parsed = parser::Parsed {
                        matches: Vec::new(),
                        events,
                    };
                    Ok(events_of(parsed, &[], lines))
                }
                Bindings::Monitor(_) => wasmtime::bail!("not a parser"),
            }
        })?;
        out.sort_by_key(|(i, _)| *i);
        let excess = cap_per_line(&mut out);
        self.0.stats.bad_results += bad + excess;
        Ok(out)
    }
}

impl MonitorInstance {
    /// Feeds a batch of events read at `at_ms`; returns the alerts the monitor raised,
    /// updated or resolved.
    pub fn on_events(&mut self, at_ms: u64, events: &[Event]) -> Result<Vec<WitAlert>, Fault> {
        let bytes = events
            .iter()
            .map(|e| e.message.as_ref().map_or(0, String::len))
            .sum();
        let events: Vec<_> = events.iter().cloned().map(Into::into).collect();
        self.call_saving(bytes, |b, store| b.call_on_events(store, at_ms, &events))
    }

    /// Feeds one metrics sample; returns the alerts the monitor raised, updated or resolved.
    pub fn on_sample(&mut self, sample: &WitSample) -> Result<Vec<WitAlert>, Fault> {
        self.call_saving(0, |b, store| b.call_on_sample(store, sample))
    }

    /// The state the monitor saved after its last call that returned.
    pub fn saved_state(&self) -> &[u8] {
        &self.0.saved_state
    }

    /// Takes up `state` saved by another instance (the version this one replaces): the next
    /// call runs on an instance that was given it with `load-state`.
    pub fn adopt_state(&mut self, state: &[u8]) {
        if state.is_empty() {
            return;
        }
        self.0.saved_state = state.to_vec();
        self.0.live = None;
    }

    /// Calls `f`, then `save-state`, in one deadline; keeps the state.
    fn call_saving(
        &mut self,
        bytes: usize,
        f: impl Fn(&monitor::Monitor, &mut Store<SandboxState>) -> wasmtime::Result<Vec<WitAlert>>,
    ) -> Result<Vec<WitAlert>, Fault> {
        let (alerts, state) = self.0.call(bytes, |b, store| match b {
            Bindings::Monitor(b) => {
                let alerts = f(b, store)?;
                let state = b.call_save_state(&mut *store)?;
                Ok((alerts, state))
            }
            Bindings::Parser(..) | Bindings::OldParser(_) => wasmtime::bail!("not a monitor"),
        })?;
        if state.len() <= MAX_STATE_BYTES {
            self.0.saved_state = state;
        } else {
            self.0.stats.bad_results += 1;
        }
        Ok(alerts)
    }
}

/// The largest monitor state the host keeps; a bigger one is not kept (and counted as a
/// bad result), so the previous one stays.
const MAX_STATE_BYTES: usize = 1 << 20;

impl std::ops::Deref for ParserInstance {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.0
    }
}

impl std::ops::Deref for MonitorInstance {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.0
    }
}

impl From<Instance> for ParserInstance {
    fn from(i: Instance) -> Self {
        Self(i, String::new())
    }
}

impl From<Instance> for MonitorInstance {
    fn from(i: Instance) -> Self {
        Self(i)
    }
}

impl fmt::Debug for ParserInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for MonitorInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
