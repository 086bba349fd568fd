//! The parser thread of one server: batches of lines in, events out, and between two batches
//! the swaps and rollbacks of its parser chain (hot swap).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::Parsed;
use crate::alert::Notice;
use crate::event::Event;
use crate::monitor::MonitorInput;
use crate::observe::health::{Part, State};
use crate::plugin::{ParserChain, PluginBoard};
use crate::swap::candidate::Candidate;
use crate::swap::owner::SlotOwner;
use crate::swap::slot::Swapped;
use crate::tail::Batch;

/// What the parser thread takes, in order: a swap or rollback sent while lines are queued
/// takes effect after them, and before any line queued after it.
pub enum ParseInput {
    Batch(Batch),
    /// Make `chain` live; the live chain becomes the rollback target. With `pin`, the
    /// choice is kept across restarts for that reason; without, any pin is removed (the
    /// configuration rules again).
    Swap {
        chain: ParserChain,
        pin: Option<crate::swap::pins::PinReason>,
        done: oneshot::Sender<Swapped>,
    },
    /// Make the rollback target live again; the live chain becomes the rollback target.
    Rollback {
        done: oneshot::Sender<Option<Swapped>>,
    },
    /// A new candidate for compare mode (none: stop comparing); the comparison starts afresh.
    /// Answers once it is in place.
    Candidate {
        chain: Option<ParserChain>,
        done: oneshot::Sender<()>,
    },
}

impl From<Batch> for ParseInput {
    fn from(b: Batch) -> Self {
        Self::Batch(b)
    }
}

/// The parser thread's state.
pub(super) struct ParseStage {
    /// The parser chain: live, rollback target, probation, pins.
    pub slot: SlotOwner<ParserChain>,
    /// The ids of the server's logs, by index (what a batch's `log` refers to).
    pub sources: Vec<String>,
    /// The candidate of compare mode (its report is the API's).
    pub candidate: Candidate<ParserChain>,
    /// The monitor thread, fed events while it listens.
    pub monitors: Option<(mpsc::Sender<MonitorInput>, crate::monitor::Listening)>,
    pub board: Arc<PluginBoard>,
}

impl ParseStage {
    /// Runs on a thread of its own (`parse-<tag>`), under `watchdog`, with `candidate`
    /// beside the live chain, from the tailers' lines to the delivery task's batches.
    pub fn spawn(
        mut self,
        tag: &str,
        candidate: Option<ParserChain>,
        (rx, tx): (mpsc::Receiver<ParseInput>, mpsc::Sender<Parsed>),
        watchdog: &crate::observe::Watchdog,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let dog = watchdog.clone();
        std::thread::Builder::new()
            .name(format!("parse-{tag}"))
            .spawn(move || {
                dog.guarded("parser", || {
                    self.candidate.set(candidate);
                    self.run(rx, tx)
                });
            })
    }

    /// Runs until the inputs close or the delivery task is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<ParseInput>, tx: mpsc::Sender<Parsed>) {
        self.went_live(None);
        while let Some(input) = rx.blocking_recv() {
            match input {
                ParseInput::Batch(batch) => {
                    for line in &batch.lines {
                        crate::observe::fault::panic_if_asked("parser", &line.text);
                    }
                    let (parsed, faults) = self.batch(batch);
                    if faults > 0 && self.slot.judge(faults) {
                        self.went_live(Some(SystemTime::now()));
                    }
                    if tx.blocking_send(parsed).is_err() {
                        break;
                    }
                }
                ParseInput::Swap { chain, pin, done } => {
                    let swapped = self.slot.swap(chain, pin);
                    self.went_live(Some(SystemTime::now()));
                    let _ = done.send(swapped);
                }
                ParseInput::Rollback { done } => {
                    let rolled = self.slot.rollback(crate::swap::pins::PinReason::RolledBack);
                    if rolled.is_some() {
                        self.went_live(Some(SystemTime::now()));
                    }
                    let _ = done.send(rolled);
                }
                ParseInput::Candidate { chain, done } => {
                    self.candidate.set(chain);
                    let _ = done.send(());
                }
            }
        }
    }

    /// Records the live chain in health, the plugin board and the versions.
    fn went_live(&self, at: Option<SystemTime>) {
        let slot = &self.slot;
        self.board.clear("parser");
        for (i, p) in slot.live.parsers().iter().enumerate() {
            let name = p.plugin().name();
            let component = Part::Parser {
                server: slot.tag.clone(),
                plugin: name.to_owned(),
            };
            slot.shared.health.set(&component, State::Ready, None);
            self.board.record("parser", i, p, None);
            slot.shared.metrics.prime_plugin(&slot.tag, name);
        }
        slot.record_versions(at);
    }

    /// Parses one batch; returns its events and how many parsers faulted on it.
    fn batch(&mut self, batch: Batch) -> (Parsed, usize) {
        let tag = self.slot.tag.as_str();
        let m = &self.slot.shared.metrics;
        m.lines_read
            .with_label_values(&[tag])
            .inc_by(batch.lines.len() as u64);
        let cut = batch.lines.iter().filter(|l| l.truncated_bytes > 0).count();
        if cut > 0 {
            m.lines_dropped
                .with_label_values(&[tag, "too_long"])
                .inc_by(cut as u64);
        }
        let trace = batch.span;
        let span = tracing::info_span!(parent: &trace, "parse", server = tag, events = tracing::field::Empty, faults = tracing::field::Empty);
        let _in_span = span.enter();
        let lines: Vec<String> = batch.lines.into_iter().map(|l| l.text).collect();
        let line_count = lines.len();
        let source = self.sources.get(batch.log).map_or("", String::as_str);
        let out = self.slot.live.parse_from(source, &lines);
        span.record("events", out.events.len());
        span.record("faults", out.faults.len());
        for (i, parser) in self.slot.live.parsers().iter().enumerate() {
            let name = parser.plugin().name();
            if let Some(t) = out.timings.get(i) {
                m.plugin_call_seconds
                    .with_label_values(&[tag, name])
                    .observe(t.as_secs_f64());
            }
            let fault = out.faults.iter().find(|(p, _)| *p == i).map(|(_, f)| f);
            self.board.record("parser", i, parser, fault);
            match fault {
                Some(fault) => {
                    m.plugin_traps
                        .with_label_values(&[tag, name, fault.kind()])
                        .inc();
                    m.lines_dropped
                        .with_label_values(&[tag, "plugin_fault"])
                        .inc_by(lines.len() as u64);
                    let component = Part::Parser {
                        server: tag.to_owned(),
                        plugin: name.to_owned(),
                    };
                    m.errors
                        .with_label_values(&[&component.to_string(), fault.kind()])
                        .inc();
                    (self.slot.shared.health).error(&component, format!("the plugin {fault}"));
                }
                None => m.plugin_calls.with_label_values(&[tag, name]).inc(),
            }
        }
        let faults = out.faults.len();
        if self.candidate.is_running() {
            (self.candidate).offer(lines, out.events.clone(), !out.faults.is_empty());
        }
        let events: Vec<Event> = out.events.into_iter().map(|(_, e)| e).collect();
        if let Some((feed, listening)) = &self.monitors
            && listening.get()
            && !events.is_empty()
        {
            // A closed feed means the monitor thread is gone; the events still go on.
            let input = MonitorInput::events(events.clone()).in_trace(&trace);
            let _ = feed.blocking_send(input);
        }
        let parsed = Parsed {
            events: events.into_iter().map(Notice::Event).collect(),
            position: batch.position,
            log: batch.log,
            lines: line_count,
            span: trace,
        };
        (parsed, faults)
    }
}
