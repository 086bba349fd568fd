//! The monitor thread of one server: events and samples in, alerts out, and between two
//! calls the swaps, rollbacks and candidate changes of its monitors.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use super::{MonitorInput, MonitorOutputs};
use crate::alert::{Alert, Notice};
use crate::observe::Watchdog;
use crate::observe::health::{Part, State};
use crate::plugin::MonitorInstance;
use crate::swap::Slot;
use crate::swap::candidate::Candidate;
use crate::swap::compare::{AlertView, MonitorReport};
use crate::swap::owner::SlotOwner;

use super::MAX_ALERTS_PER_CALL;

/// The monitor thread's state, built with [`MonitorStage::new`] and the `with_` methods.
pub struct MonitorStage {
    /// The monitors: live, rollback target, automatic rollback, pins and versions.
    slot: SlotOwner<Vec<MonitorInstance>>,
    /// The candidate of compare mode, if any, at start.
    candidate: Option<Vec<MonitorInstance>>,
    /// Its report, for the API (none: no candidate).
    report: Arc<Mutex<Option<MonitorReport>>>,
    out: MonitorOutputs,
    /// What the thread runs under (at first: nobody restarts it).
    watchdog: Watchdog,
    /// Who is online, for servers with RCON: leaves the log did not write are inferred.
    roster: Option<super::Roster>,
    /// Where the monitors' states are kept after each call (none: not kept).
    states: Option<super::MonitorStates>,
}

/// What runs while the thread runs.
struct Running {
    stage: MonitorStage,
    names: Vec<String>,
    candidate: Candidate<Vec<MonitorInstance>>,
}

impl MonitorStage {
    /// A stage running `live` with no rollback target, candidate, pins or automatic
    /// rollback (see [`Self::with_slot`] and the other `with_` methods).
    pub fn new(tag: &str, live: Vec<MonitorInstance>, out: MonitorOutputs) -> Self {
        Self {
            slot: SlotOwner::new(tag, Slot::Monitors, live, out.shared.clone()),
            candidate: None,
            report: Arc::default(),
            watchdog: Watchdog::unsupervised(&out.shared, tag),
            roster: None,
            states: None,
            out,
        }
    }

    /// With the slot set up by `f` (its rollback target, automatic rollback, pins and
    /// versions: see [`SlotOwner`]'s `with_` methods).
    pub fn with_slot(
        mut self,
        f: impl FnOnce(SlotOwner<Vec<MonitorInstance>>) -> SlotOwner<Vec<MonitorInstance>>,
    ) -> Self {
        self.slot = f(self.slot);
        self
    }

    /// With `candidate` beside the live monitors from the start, compared into `report`
    /// (which the API reads).
    pub fn with_candidate(
        mut self,
        candidate: Option<Vec<MonitorInstance>>,
        report: Arc<Mutex<Option<MonitorReport>>>,
    ) -> Self {
        self.candidate = candidate;
        self.report = report;
        self
    }

    /// Running under `watchdog` (a supervised run's).
    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// Inferring the leaves the log does not write from who is online (servers with RCON).
    pub fn with_roster(mut self, roster: Option<super::Roster>) -> Self {
        self.roster = roster;
        self
    }

    /// Keeping the monitors' states in `states` after each call.
    pub fn with_states(mut self, states: super::MonitorStates) -> Self {
        self.states = Some(states);
        self
    }

    /// Starts the thread; it runs until `rx` closes.
    pub fn spawn(
        mut self,
        rx: mpsc::Receiver<MonitorInput>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let candidate = self.candidate.take();
        let tag = self.slot.tag.clone();
        let dog = self.watchdog.clone();
        std::thread::Builder::new()
            .name(format!("monitor-{tag}"))
            .spawn(move || {
                dog.guarded("monitors", || {
                    let mut running = Running {
                        names: names(&self.slot.live),
                        candidate: Candidate::new(
                            &tag,
                            self.report.clone(),
                            self.out.shared.metrics.clone(),
                        ),
                        stage: self,
                    };
                    running.set_candidate(candidate);
                    running.went_live(None);
                    running.run(rx);
                });
            })
    }
}

fn names(monitors: &[MonitorInstance]) -> Vec<String> {
    monitors
        .iter()
        .map(|m| m.plugin().name().to_owned())
        .collect()
}

impl Running {
    fn run(&mut self, mut rx: mpsc::Receiver<MonitorInput>) {
        while let Some(input) = rx.blocking_recv() {
            match input {
                MonitorInput::Swap {
                    monitors,
                    pin,
                    done,
                } => {
                    let swapped = self.stage.slot.swap(monitors, pin);
                    self.went_live(Some(SystemTime::now()));
                    let _ = done.send(swapped);
                }
                MonitorInput::Rollback { done } => {
                    let rolled = self
                        .stage
                        .slot
                        .rollback(crate::swap::pins::PinReason::RolledBack);
                    if rolled.is_some() {
                        self.went_live(Some(SystemTime::now()));
                    }
                    let _ = done.send(rolled);
                }
                MonitorInput::Candidate { monitors, done } => {
                    self.set_candidate(monitors);
                    let _ = done.send(());
                }
                MonitorInput::Players { at_ms, players } => {
                    let Some(roster) = &mut self.stage.roster else {
                        continue;
                    };
                    let left: Vec<Notice> = (roster.reading(at_ms, &players).into_iter())
                        .map(Notice::Event)
                        .collect();
                    if !left.is_empty() && self.stage.out.notices.blocking_send(left).is_err() {
                        break;
                    }
                }
                input => {
                    if let (MonitorInput::Events { at_ms, events, .. }, Some(roster)) =
                        (&input, &mut self.stage.roster)
                    {
                        roster.events(*at_ms, events);
                    }
                    if let MonitorInput::Events { events, .. } = &input {
                        for e in events {
                            let text = e.message.as_deref().unwrap_or_default();
                            crate::observe::fault::panic_if_asked("monitors", text);
                        }
                    }
                    if !self.call(input) {
                        break;
                    }
                }
            }
        }
    }

    /// Starts, replaces or (none) stops the candidate; its comparison starts afresh.
    fn set_candidate(&mut self, monitors: Option<Vec<MonitorInstance>>) {
        self.candidate.set(monitors);
        self.listen();
    }

    fn listen(&self) {
        let s = &self.stage;
        s.out
            .listening
            .set(!s.slot.live.is_empty() || self.candidate.is_running() || s.roster.is_some());
    }

    /// Records the live monitors in health, the plugin board and the versions.
    fn went_live(&mut self, at: Option<SystemTime>) {
        self.names = names(&self.stage.slot.live);
        let s = &self.stage;
        s.out.board.clear("monitor");
        for (i, m) in s.slot.live.iter().enumerate() {
            s.out.shared.health.set(
                &Part::Monitor {
                    server: s.slot.tag.clone(),
                    plugin: m.plugin().name().to_owned(),
                },
                State::Ready,
                None,
            );
            s.out.board.record("monitor", i, m, None);
            let metrics = &s.out.shared.metrics;
            metrics.prime_plugin(&s.slot.tag, m.plugin().name());
            metrics.prime_alerts(&s.slot.tag, m.plugin().name());
        }
        s.slot.record_versions(at);
        self.listen();
    }

    /// Calls every live monitor with `input`, files their alerts, hands the input to the
    /// candidate, and judges faults. False when the delivery task is gone.
    fn call(&mut self, mut input: MonitorInput) -> bool {
        let s = &mut self.stage;
        let tag = s.slot.tag.as_str();
        // A batch's events are part of its trace; the candidate's calls are not.
        let span = match &mut input {
            MonitorInput::Events { span: trace, .. } => {
                let trace = std::mem::replace(trace, tracing::Span::none());
                tracing::info_span!(parent: &trace, "monitors", server = tag, alerts = tracing::field::Empty)
            }
            _ => tracing::Span::none(),
        };
        let _in_span = span.enter();
        let mut notices = Vec::new();
        let mut raised = Vec::new();
        let mut faults = 0;
        for (i, monitor) in s.slot.live.iter_mut().enumerate() {
            let name = &self.names[i];
            let started = Instant::now();
            let result = match &input {
                MonitorInput::Events { at_ms, events, .. } => monitor.on_events(*at_ms, events),
                MonitorInput::Sample(sample) => monitor.on_sample(sample),
                _ => continue,
            };
            let took = started.elapsed();
            match answered(&s.out, (tag, name), i, monitor, took, result) {
                Some(alerts) if !alerts.is_empty() => {
                    if self.candidate.is_running() {
                        raised.extend(alerts.iter().map(|a| (0, AlertView::from(a))));
                    }
                    notices.extend(s.out.alerts.file(name, alerts, SystemTime::now()));
                }
                Some(_) => {}
                None => faults += 1,
            }
        }
        span.record("alerts", notices.len());
        if let Some(states) = &mut s.states {
            states.note(&s.slot.live);
        }
        if !notices.is_empty() && s.out.notices.blocking_send(notices).is_err() {
            return false;
        }
        // The candidate runs after the live alerts are on their way, on its own thread.
        self.candidate.offer(input, raised, faults > 0);
        if faults > 0 && self.stage.slot.judge(faults) {
            self.went_live(Some(SystemTime::now()));
        }
        true
    }
}

/// Counts a monitor's call and takes its alerts (at most [`MAX_ALERTS_PER_CALL`]); none if
/// it faulted (counted, shown in health).
fn answered(
    out: &MonitorOutputs,
    (tag, name): (&str, &str),
    i: usize,
    monitor: &MonitorInstance,
    took: std::time::Duration,
    result: Result<Vec<crate::plugin::WitAlert>, crate::plugin::Fault>,
) -> Option<Vec<Alert>> {
    let m = &out.shared.metrics;
    m.plugin_call_seconds
        .with_label_values(&[tag, name])
        .observe(took.as_secs_f64());
    let component = Part::Monitor {
        server: tag.to_owned(),
        plugin: name.to_owned(),
    };
    let label = component.to_string();
    match result {
        Ok(alerts) => {
            m.plugin_calls.with_label_values(&[tag, name]).inc();
            out.board.record("monitor", i, monitor, None);
            if alerts.len() > MAX_ALERTS_PER_CALL {
                m.errors
                    .with_label_values(&[&label, "too_many_alerts"])
                    .inc_by((alerts.len() - MAX_ALERTS_PER_CALL) as u64);
            }
            Some(
                alerts
                    .into_iter()
                    .take(MAX_ALERTS_PER_CALL)
                    .map(Alert::from)
                    .collect(),
            )
        }
        Err(fault) => {
            m.plugin_traps
                .with_label_values(&[tag, name, fault.kind()])
                .inc();
            m.errors.with_label_values(&[&label, fault.kind()]).inc();
            out.shared
                .health
                .error(&component, format!("the plugin {fault}"));
            out.board.record("monitor", i, monitor, Some(&fault));
            None
        }
    }
}
