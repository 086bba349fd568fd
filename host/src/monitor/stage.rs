//! The monitor thread of one server: events and samples in, alerts out, and between two
//! calls the swaps, rollbacks and candidate changes of its monitors.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use super::{CandidateInput, MonitorInput, MonitorOutputs, version};
use crate::alert::Alert;
use crate::observe::health::State;
use crate::plugin::MonitorInstance;
use crate::swap::compare::{AlertView, MonitorReport};
use crate::swap::pins::PinStore;
use crate::swap::slot::{self, AutoRollback, Probation, Slot, SlotVersions, Swapped, Verdict};

/// Alerts taken from one monitor call; more are dropped and counted, so a monitor cannot
/// make the host file (and render) alerts without bound.
pub(super) const MAX_ALERTS_PER_CALL: usize = 200;

/// The monitor thread's state.
pub struct MonitorStage {
    pub tag: String,
    pub live: Vec<MonitorInstance>,
    /// The rollback target.
    pub previous: Option<Vec<MonitorInstance>>,
    /// When newly swapped-in monitors are rolled back by themselves (none: never).
    pub auto_rollback: Option<AutoRollback>,
    /// Where run-time choices of version are kept across restarts.
    pub pins: Option<PinStore>,
    pub versions: Arc<Mutex<SlotVersions>>,
    /// The candidate of compare mode, if any, at start.
    pub candidate: Option<Vec<MonitorInstance>>,
    /// Its report, for the API (none: no candidate).
    pub report: Arc<Mutex<Option<MonitorReport>>>,
    pub out: MonitorOutputs,
}

/// What runs while the thread runs.
struct Running {
    stage: MonitorStage,
    names: Vec<String>,
    probation: Option<Probation>,
    candidate: Option<mpsc::Sender<CandidateInput>>,
}

impl MonitorStage {
    /// A stage running `live` with no rollback target, candidate, pins or automatic
    /// rollback (set the fields for those).
    pub fn new(tag: &str, live: Vec<MonitorInstance>, out: MonitorOutputs) -> Self {
        Self {
            tag: tag.to_owned(),
            live,
            previous: None,
            auto_rollback: None,
            pins: None,
            versions: Arc::default(),
            candidate: None,
            report: Arc::default(),
            out,
        }
    }

    /// Starts the thread; it runs until `rx` closes.
    pub fn spawn(
        mut self,
        rx: mpsc::Receiver<MonitorInput>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let candidate = self.candidate.take();
        let tag = self.tag.clone();
        let shared = self.out.shared.clone();
        std::thread::Builder::new()
            .name(format!("monitor-{tag}"))
            .spawn(move || {
                crate::observe::guarded(&shared, &tag, "monitors", || {
                    let mut running = Running {
                        names: names(&self.live),
                        stage: self,
                        probation: None,
                        candidate: None,
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

/// Each monitor of `new` takes up the state of the monitor of the same plugin in `old`.
fn carry_state(old: &[MonitorInstance], new: &mut [MonitorInstance]) {
    // The n-th entry of a plugin takes the state of the n-th entry of the same plugin: two
    // `chat-guard` entries each keep their own.
    let mut taken = vec![false; old.len()];
    for m in new {
        let found = old
            .iter()
            .enumerate()
            .position(|(i, o)| !taken[i] && o.plugin().name() == m.plugin().name());
        if let Some(i) = found {
            taken[i] = true;
            m.adopt_state(old[i].saved_state());
        }
    }
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
                    let _ = done.send(self.swap(monitors, pin));
                }
                MonitorInput::Rollback { done } => {
                    let _ = done.send(self.rollback("rolled_back"));
                }
                MonitorInput::Candidate { monitors, done } => {
                    self.set_candidate(monitors);
                    let _ = done.send(());
                }
                input => {
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

    /// Makes `new` live; the live monitors become the rollback target.
    fn swap(&mut self, mut new: Vec<MonitorInstance>, pin: Option<&'static str>) -> Swapped {
        let s = &mut self.stage;
        carry_state(&s.live, &mut new);
        let from = version(&s.live);
        s.previous = Some(std::mem::replace(&mut s.live, new));
        let to = version(&s.live);
        let not_kept = self.pin(pin);
        self.went_live(Some(SystemTime::now()));
        self.probation = Some(Probation::start());
        tracing::info!(server = %self.stage.tag, from = %from, to = %to, "monitors swapped");
        Swapped { from, to, not_kept }
    }

    /// Makes the rollback target live; the live monitors become the rollback target.
    fn rollback(&mut self, reason: &'static str) -> Option<Swapped> {
        let s = &mut self.stage;
        let mut prev = s.previous.take()?;
        carry_state(&s.live, &mut prev);
        let from = version(&s.live);
        s.previous = Some(std::mem::replace(&mut s.live, prev));
        let to = version(&s.live);
        self.probation = None;
        let not_kept = self.pin(Some(reason));
        self.went_live(Some(SystemTime::now()));
        tracing::info!(server = %self.stage.tag, from = %from, to = %to, "monitors rolled back");
        Some(Swapped { from, to, not_kept })
    }

    /// Keeps the live monitors across restarts for `reason`, or (none) forgets any kept ones.
    fn pin(&self, reason: Option<&'static str>) -> Option<String> {
        let s = &self.stage;
        let plugins = s.live.iter().map(|m| (m.plugin(), m.config()));
        slot::pin(
            s.pins.as_ref(),
            &crate::state::StateReport::of(&s.out.shared),
            &s.versions,
            &s.tag,
            Slot::Monitors,
            (&version(&s.live), plugins),
            reason,
        )
    }

    /// Starts, replaces or (none) stops the candidate; its comparison starts afresh.
    fn set_candidate(&mut self, monitors: Option<Vec<MonitorInstance>>) {
        let s = &self.stage;
        let mut report = s.report.lock().unwrap_or_else(|p| p.into_inner());
        match monitors {
            None => {
                self.candidate = None;
                *report = None;
            }
            Some(monitors) => {
                *report = Some(MonitorReport::new(version(&monitors)));
                match &self.candidate {
                    Some(tx) => {
                        // The thread is gone only if it panicked; then the candidate stops.
                        if tx.blocking_send(CandidateInput::Replace(monitors)).is_err() {
                            self.candidate = None;
                        }
                    }
                    None => match super::spawn_candidate(
                        &s.tag,
                        monitors,
                        s.report.clone(),
                        s.out.shared.metrics.clone(),
                    ) {
                        Ok(tx) => self.candidate = Some(tx),
                        Err(e) => {
                            tracing::error!(server = %s.tag, "cannot start the monitor candidate: {e}");
                            *report = None;
                        }
                    },
                }
            }
        }
        drop(report);
        self.listen();
    }

    fn listen(&self) {
        let s = &self.stage;
        s.out
            .listening
            .set(!s.live.is_empty() || self.candidate.is_some());
    }

    /// Records the live monitors in health, the plugin board and the versions.
    fn went_live(&mut self, at: Option<SystemTime>) {
        self.names = names(&self.stage.live);
        let s = &self.stage;
        s.out.board.clear("monitor");
        for (i, m) in s.live.iter().enumerate() {
            s.out.shared.health.set(
                &format!("monitor:{}:{}", s.tag, m.plugin().name()),
                State::Ready,
                None,
            );
            s.out.board.record("monitor", i, m, None);
        }
        let mut v = s.versions.lock().unwrap_or_else(|p| p.into_inner());
        v.live = version(&s.live);
        v.previous = s.previous.as_deref().map(version);
        if at.is_some() {
            v.since = at;
        }
        drop(v);
        self.listen();
    }

    /// Calls every live monitor with `input`, files their alerts, hands the input to the
    /// candidate, and judges faults. False when the delivery task is gone.
    fn call(&mut self, input: MonitorInput) -> bool {
        let s = &mut self.stage;
        let tag = s.tag.as_str();
        let mut notices = Vec::new();
        let mut raised = Vec::new();
        let mut faults = 0;
        for (i, monitor) in s.live.iter_mut().enumerate() {
            let name = &self.names[i];
            let started = Instant::now();
            let result = match &input {
                MonitorInput::Events { at_ms, events } => monitor.on_events(*at_ms, events),
                MonitorInput::Sample(sample) => monitor.on_sample(sample),
                _ => continue,
            };
            let m = &s.out.shared.metrics;
            m.plugin_call_seconds
                .with_label_values(&[tag, name])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(alerts) => {
                    m.plugin_calls.with_label_values(&[tag, name]).inc();
                    s.out.board.record("monitor", i, monitor, None);
                    if alerts.len() > MAX_ALERTS_PER_CALL {
                        m.errors
                            .with_label_values(&[
                                &format!("monitor:{tag}:{name}"),
                                "too_many_alerts",
                            ])
                            .inc_by((alerts.len() - MAX_ALERTS_PER_CALL) as u64);
                    }
                    if !alerts.is_empty() {
                        let alerts: Vec<Alert> = alerts
                            .into_iter()
                            .take(MAX_ALERTS_PER_CALL)
                            .map(Alert::from)
                            .collect();
                        if self.candidate.is_some() {
                            raised.extend(alerts.iter().map(AlertView::from));
                        }
                        notices.extend(s.out.alerts.file(name, alerts, SystemTime::now()));
                    }
                }
                Err(fault) => {
                    faults += 1;
                    m.plugin_traps
                        .with_label_values(&[tag, name, fault.kind()])
                        .inc();
                    m.errors
                        .with_label_values(&[&format!("monitor:{tag}:{name}"), fault.kind()])
                        .inc();
                    s.out.shared.health.error(
                        &format!("monitor:{tag}:{name}"),
                        format!("the plugin {fault}"),
                    );
                    s.out.board.record("monitor", i, monitor, Some(&fault));
                }
            }
        }
        if !notices.is_empty() && s.out.notices.blocking_send(notices).is_err() {
            return false;
        }
        // The candidate runs after the live alerts are on their way, on its own thread.
        if let Some(tx) = &self.candidate {
            let handed = faults == 0
                && tx
                    .try_send(CandidateInput::Input {
                        input,
                        live: raised,
                    })
                    .is_ok();
            if !handed && let Some(r) = s.report.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
            {
                r.skipped += 1;
            }
        }
        if faults > 0 {
            self.judge(faults);
        }
        true
    }

    /// Counts a call's faults against monitors on probation; rolls them back when they have
    /// used up their budget.
    fn judge(&mut self, faults: usize) {
        let guard = self.stage.auto_rollback.as_ref();
        let count = match slot::judge(guard, self.probation.as_mut(), faults) {
            Verdict::Keep => return,
            Verdict::Passed => {
                self.probation = None;
                return;
            }
            Verdict::RollBack(count) => count,
        };
        let Some(done) = self.rollback("auto_rolled_back") else {
            return;
        };
        let s = &self.stage;
        if let Some(guard) = &s.auto_rollback {
            guard.rolled_back(&s.tag, Slot::Monitors, &s.out.shared.metrics, &done, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::plugin::{ComponentCache, Limits, Runtime, WitAlertState};

    #[test]
    fn two_entries_of_one_plugin_each_keep_their_own_state() {
        let rt = Runtime::new(ComponentCache::new(None), Limits::default()).unwrap();
        let guard = rt
            .load("chat-guard", crate::plugin::stock::CHAT_GUARD_WASM)
            .unwrap();
        let make = || {
            vec![
                guard
                    .monitor("prod", r#"{"words": ["x"], "quiet_secs": 10}"#)
                    .unwrap(),
                guard
                    .monitor("prod", r#"{"words": ["y"], "quiet_secs": 10}"#)
                    .unwrap(),
            ]
        };
        let mut old = make();
        let said = Event {
            player: Some("Dan".into()),
            message: Some("x".into()),
            ..Event::new("chat")
        };
        for m in &mut old {
            m.on_events(1_000, std::slice::from_ref(&said)).unwrap();
        }
        let mut new = make();
        carry_state(&old, &mut new);
        // After the quiet time only the first entry, which raised `word:Dan`, withdraws it.
        let quiet: Vec<_> = new
            .iter_mut()
            .map(|m| {
                m.on_events(20_000, &[])
                    .unwrap()
                    .into_iter()
                    .map(|a| (a.key, a.state))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            quiet,
            vec![
                vec![("word:Dan".to_owned(), WitAlertState::Withdrawn)],
                vec![]
            ]
        );
    }
}
