//! The parser thread of one server: batches of lines in, events out, and between two batches
//! the swaps and rollbacks of its parser chain (hot swap).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{Parsed, Shared};
use crate::health::State;
use crate::monitor::MonitorInput;
use crate::plugin::{ParserChain, PluginBoard};
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
        pin: Option<&'static str>,
        done: oneshot::Sender<Swapped>,
    },
    /// Make the rollback target live again; the live chain becomes the rollback target.
    Rollback {
        done: oneshot::Sender<Option<Swapped>>,
    },
}

impl From<Batch> for ParseInput {
    fn from(b: Batch) -> Self {
        Self::Batch(b)
    }
}

/// A change of the live chain: the versions before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Swapped {
    pub from: String,
    pub to: String,
}

/// Which parser chain versions a server has, for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParserVersions {
    /// The live chain's version (see `ParserChain::version`).
    pub live: String,
    /// The version a rollback returns to, if there is one.
    pub previous: Option<String>,
    /// The version servers.yml gives (at start, or at the last reload).
    pub config: String,
    /// Why the live version is not servers.yml's, when it was chosen at run time and is
    /// kept across restarts: `promoted`, `rolled_back`, `auto_rolled_back`.
    pub pinned: Option<String>,
    /// When the live version became live (null: since start).
    #[serde(serialize_with = "opt_ms")]
    pub since: Option<SystemTime>,
    /// Why the last reload was rejected, if it was (cleared by the next good one).
    pub last_error: Option<String>,
}

fn opt_ms<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_u64(crate::event::unix_ms::millis(*t)),
        None => s.serialize_none(),
    }
}

/// A newly swapped-in chain that faults more than `faults` times within `window` of its
/// swap is rolled back by the parser thread itself, and an alert says so.
pub struct AutoRollback {
    pub faults: u32,
    pub window: Duration,
    pub alerts: Arc<crate::alert::Alerts>,
    pub notices: mpsc::Sender<Vec<crate::event::Event>>,
}

/// A batch for the candidate of compare mode: the lines and the live chain's events for
/// them, by line index.
pub struct ShadowBatch {
    pub lines: Vec<String>,
    pub live: Vec<(usize, crate::event::Event)>,
}

/// What the candidate's thread takes.
pub enum ShadowInput {
    Batch(ShadowBatch),
    /// A new candidate (its files changed): the comparison starts afresh.
    Replace(ParserChain),
}

fn candidate_names(candidate: &ParserChain) -> String {
    candidate
        .parsers()
        .iter()
        .map(|p| p.plugin().name().to_owned())
        .collect::<Vec<_>>()
        .join("+")
}

/// Runs a candidate chain on its own thread over what the live chain parsed, and keeps the
/// comparison in `report`. The live path only hands batches over without waiting; a batch
/// that finds the candidate behind is skipped and counted.
pub fn spawn_shadow(
    tag: &str,
    mut candidate: ParserChain,
    report: Arc<Mutex<crate::compare::CompareReport>>,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<mpsc::Sender<ShadowInput>> {
    let (tx, mut rx) = mpsc::channel::<ShadowInput>(8);
    let mut names = candidate_names(&candidate);
    let tag = tag.to_owned();
    report.lock().unwrap_or_else(|p| p.into_inner()).candidate = candidate.version();
    std::thread::Builder::new()
        .name(format!("shadow-{tag}"))
        .spawn(move || {
            while let Some(input) = rx.blocking_recv() {
                let batch = match input {
                    ShadowInput::Batch(b) => b,
                    ShadowInput::Replace(new) => {
                        candidate = new;
                        names = candidate_names(&candidate);
                        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                        *r = crate::compare::CompareReport {
                            candidate: candidate.version(),
                            ..Default::default()
                        };
                        tracing::info!(server = %tag, candidate = %r.candidate, "compare mode: a new candidate");
                        continue;
                    }
                };
                let out = candidate.parse(&batch.lines);
                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                if !out.faults.is_empty() {
                    r.candidate_faults += 1;
                    continue;
                }
                let shown = r.sample.len();
                let found = r.add(&batch.lines, &batch.live, &out.events);
                if found > 0 {
                    metrics
                        .plugin_discrepancies
                        .with_label_values(&[&tag, &names])
                        .inc_by(found);
                    for e in &r.sample[shown..] {
                        tracing::info!(server = %tag, candidate = %names, what = ?e.what, line = %e.line, "the candidate disagrees");
                    }
                }
            }
        })?;
    Ok(tx)
}

/// How a chain swapped in is doing since its swap.
pub(super) struct Probation {
    since: Instant,
    faults: u32,
}

/// The parser thread's state.
pub(super) struct ParseStage {
    pub tag: String,
    pub live: ParserChain,
    pub previous: Option<ParserChain>,
    pub auto_rollback: Option<AutoRollback>,
    pub probation: Option<Probation>,
    /// The candidate of compare mode, when the server has one.
    pub shadow: Option<(
        mpsc::Sender<ShadowInput>,
        Arc<Mutex<crate::compare::CompareReport>>,
    )>,
    /// Where run-time choices of version are kept.
    pub pins: Option<crate::pins::PinStore>,
    pub monitors: Option<mpsc::Sender<MonitorInput>>,
    pub board: Arc<PluginBoard>,
    pub versions: Arc<Mutex<ParserVersions>>,
    pub shared: Shared,
}

impl ParseStage {
    /// Runs until the inputs close or the delivery task is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<ParseInput>, tx: mpsc::Sender<Parsed>) {
        self.went_live(None);
        while let Some(input) = rx.blocking_recv() {
            match input {
                ParseInput::Batch(batch) => {
                    let (parsed, faults) = self.batch(batch);
                    if faults > 0 {
                        self.judge(faults);
                    }
                    if tx.blocking_send(parsed).is_err() {
                        break;
                    }
                }
                ParseInput::Swap { chain, pin, done } => {
                    let from = self.live.version();
                    let old = std::mem::replace(&mut self.live, chain);
                    self.previous = Some(old);
                    let to = self.live.version();
                    self.pin(pin);
                    self.went_live(Some(SystemTime::now()));
                    self.probation = Some(Probation {
                        since: Instant::now(),
                        faults: 0,
                    });
                    tracing::info!(server = %self.tag, from = %from, to = %to, "parsers swapped");
                    let _ = done.send(Swapped { from, to });
                }
                ParseInput::Rollback { done } => {
                    let _ = done.send(self.rollback("rolled_back"));
                }
            }
        }
    }

    /// Keeps the live chain across restarts for `reason`, or (none) forgets any kept one.
    fn pin(&self, reason: Option<&'static str>) {
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.pinned = reason.map(str::to_owned);
        let Some(pins) = &self.pins else { return };
        match reason {
            None => pins.clear(&self.tag),
            Some(reason) => {
                if let Err(e) = pins.save(&self.tag, &self.live, reason, &v.config) {
                    tracing::warn!(server = %self.tag, "cannot keep the {reason} version for the next start: {e}");
                }
            }
        }
    }

    /// Makes the rollback target live; the live chain becomes the rollback target.
    fn rollback(&mut self, reason: &'static str) -> Option<Swapped> {
        let prev = self.previous.take()?;
        let from = self.live.version();
        self.previous = Some(std::mem::replace(&mut self.live, prev));
        let to = self.live.version();
        self.probation = None;
        self.pin(Some(reason));
        self.went_live(Some(SystemTime::now()));
        tracing::info!(server = %self.tag, from = %from, to = %to, "parsers rolled back");
        Some(Swapped { from, to })
    }

    /// Counts a batch's faults against a chain on probation; rolls it back when it has
    /// used up its budget.
    fn judge(&mut self, faults: usize) {
        let (Some(guard), Some(p)) = (&self.auto_rollback, &mut self.probation) else {
            return;
        };
        if p.since.elapsed() > guard.window {
            self.probation = None;
            return;
        }
        p.faults += u32::try_from(faults).unwrap_or(u32::MAX);
        if p.faults <= guard.faults {
            return;
        }
        let (count, window) = (p.faults, guard.window);
        let Some(Swapped { from, to }) = self.rollback("auto_rolled_back") else {
            return;
        };
        tracing::error!(server = %self.tag, from = %from, to = %to, "the new parsers faulted {count} times within {} s of their swap; rolled back", window.as_secs());
        self.shared
            .metrics
            .plugin_reloads
            .with_label_values(&[&self.tag, "auto_rolled_back"])
            .inc();
        if let Some(guard) = &self.auto_rollback {
            let alert = crate::alert::Alert::firing(
                format!("auto-rollback:{from}"),
                "Parsers rolled back",
                format!("version `{from}` faulted {count} times within {} s of going live; `{to}` is live again", window.as_secs()),
            )
            .field("from", from.clone())
            .field("to", to);
            // A one-off: raised (posted) and closed quietly at once, so it stays in no list.
            let mut closed = alert.clone();
            closed.state = crate::alert::AlertState::Withdrawn;
            let notices = guard
                .alerts
                .file("host", vec![alert, closed], SystemTime::now());
            if !notices.is_empty() {
                let _ = guard.notices.blocking_send(notices);
            }
        }
    }

    /// Records the live chain in health, the plugin board and the versions.
    fn went_live(&self, at: Option<SystemTime>) {
        self.board.clear("parser");
        for (i, p) in self.live.parsers().iter().enumerate() {
            let name = p.plugin().name();
            self.shared
                .health
                .set(&format!("parser:{}:{name}", self.tag), State::Ready, None);
            self.board.record("parser", i, p, None);
        }
        let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.live = self.live.version();
        v.previous = self.previous.as_ref().map(ParserChain::version);
        if at.is_some() {
            v.since = at;
        }
    }

    /// Parses one batch; returns its events and how many parsers faulted on it.
    fn batch(&mut self, batch: Batch) -> (Parsed, usize) {
        let tag = self.tag.as_str();
        let m = &self.shared.metrics;
        m.lines_read
            .with_label_values(&[tag])
            .inc_by(batch.lines.len() as u64);
        let cut = batch.lines.iter().filter(|l| l.truncated_bytes > 0).count();
        if cut > 0 {
            m.lines_dropped
                .with_label_values(&[tag, "too_long"])
                .inc_by(cut as u64);
        }
        let lines: Vec<String> = batch.lines.into_iter().map(|l| l.text).collect();
        let out = self.live.parse(&lines);
        for (i, parser) in self.live.parsers().iter().enumerate() {
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
                    m.errors
                        .with_label_values(&[&format!("parser:{tag}:{name}"), fault.kind()])
                        .inc();
                    self.shared.health.error(
                        &format!("parser:{tag}:{name}"),
                        format!("the plugin {fault}"),
                    );
                }
                None => m.plugin_calls.with_label_values(&[tag, name]).inc(),
            }
        }
        let faults = out.faults.len();
        if let Some((tx, report)) = &self.shadow
            && out.faults.is_empty()
        {
            let batch = ShadowBatch {
                lines,
                live: out.events.clone(),
            };
            if tx.try_send(ShadowInput::Batch(batch)).is_err() {
                report
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .skipped_batches += 1;
            }
        }
        let parsed = Parsed {
            events: out.events.into_iter().map(|(_, e)| e).collect(),
            position: batch.position,
        };
        if let Some(feed) = &self.monitors
            && !parsed.events.is_empty()
        {
            // A closed feed means the monitor thread is gone; the events still go on.
            let _ = feed.blocking_send(MonitorInput::events(parsed.events.clone()));
        }
        (parsed, faults)
    }
}
