//! Monitors: each server's monitor plugins, fed its events and metric samples, and the
//! host's own checks (RCON up/down, stats reports).
//!
//! ```text
//! parser thread ──events──┐
//!                         ├─► monitor thread ──alerts──► Alerts (book) ──notices──► delivery
//! checks task ──samples───┘                                 ▲
//! checks task ──RCON up/down────────────────────────────────┘
//! checks task ──stats reports──────────────────────────────────────────notices──► delivery
//! ```
//!
//! Monitor plugins are called on a thread of their own (plugin calls are synchronous), so a
//! slow monitor never delays parsing; events reach it through a bounded queue (a full queue
//! holds the parser back, nothing is lost), samples through the same queue but without
//! waiting (a sample that finds the queue full is dropped and counted: the next one comes).

mod checks;
mod rcon_status;
mod report;
mod setup;

pub use checks::{CheckOutputs, CheckSettings, spawn_checks};
pub use rcon_status::RconStatus;
pub use report::stats_report;
pub use setup::{effective_monitors, monitor_instances};

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::alert::{Alert, Alerts};
use crate::event::{Event, unix_ms};
use crate::health::State;
use crate::pipeline::Shared;
use crate::plugin::{MonitorInstance, PluginBoard, WitSample};

/// Alerts taken from one monitor call; more are dropped and counted, so a monitor cannot
/// make the host file (and render) alerts without bound.
const MAX_ALERTS_PER_CALL: usize = 200;

/// Inputs queued for a server's monitors.
pub const QUEUE: usize = 64;

/// What a monitor thread is fed.
#[derive(Debug)]
pub enum MonitorInput {
    /// A batch of the server's events, read at `at_ms`.
    Events { at_ms: u64, events: Vec<Event> },
    /// A reading of the server's metrics engine.
    Sample(WitSample),
    /// New monitors (a reload): each takes up the state of the monitor of the same plugin
    /// it replaces. Answers with the new version.
    Swap {
        monitors: Vec<MonitorInstance>,
        done: tokio::sync::oneshot::Sender<String>,
    },
}

/// The identity of a server's monitors: 12 hex digits of a SHA-256 over each one's content
/// hash and configuration.
pub fn version(monitors: &[MonitorInstance]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in monitors {
        h.update(m.plugin().hash().as_bytes());
        h.update([0]);
        h.update(m.config().as_bytes());
        h.update([0]);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A server's monitor thread, as reloads reach it (weakly: it does not keep the thread's
/// queue open when the server stops).
#[derive(Clone)]
pub struct MonitorHandle {
    pub feed: mpsc::WeakSender<MonitorInput>,
    /// The live monitors' version.
    pub version: Arc<std::sync::Mutex<String>>,
}

impl MonitorInput {
    /// Events read now.
    pub fn events(events: Vec<Event>) -> Self {
        Self::Events {
            at_ms: unix_ms::millis(SystemTime::now()),
            events,
        }
    }
}

/// Where a server's monitor thread reports.
pub struct MonitorOutputs {
    pub alerts: Arc<Alerts>,
    pub notices: mpsc::Sender<Vec<Event>>,
    pub board: Arc<PluginBoard>,
    pub shared: Shared,
}

/// Starts the thread that runs `monitors` for server `tag` until `rx` closes.
pub fn spawn(
    tag: &str,
    monitors: Vec<MonitorInstance>,
    rx: mpsc::Receiver<MonitorInput>,
    out: MonitorOutputs,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let tag = tag.to_owned();
    std::thread::Builder::new()
        .name(format!("monitor-{tag}"))
        .spawn(move || run(&tag, monitors, rx, &out))
}

fn names(monitors: &[MonitorInstance]) -> Vec<String> {
    monitors
        .iter()
        .map(|m| m.plugin().name().to_owned())
        .collect()
}

fn went_live(tag: &str, monitors: &[MonitorInstance], out: &MonitorOutputs) {
    out.board.clear("monitor");
    for (i, m) in monitors.iter().enumerate() {
        out.shared.health.set(
            &format!("monitor:{tag}:{}", m.plugin().name()),
            State::Ready,
            None,
        );
        out.board.record("monitor", i, m, None);
    }
}

fn run(
    tag: &str,
    mut monitors: Vec<MonitorInstance>,
    mut rx: mpsc::Receiver<MonitorInput>,
    out: &MonitorOutputs,
) {
    let mut names = names(&monitors);
    went_live(tag, &monitors, out);
    while let Some(input) = rx.blocking_recv() {
        if let MonitorInput::Swap {
            monitors: mut new,
            done,
        } = input
        {
            for m in &mut new {
                if let Some(old) = monitors
                    .iter()
                    .find(|o| o.plugin().name() == m.plugin().name())
                {
                    m.adopt_state(old.saved_state());
                }
            }
            monitors = new;
            names = self::names(&monitors);
            went_live(tag, &monitors, out);
            let v = version(&monitors);
            tracing::info!(server = %tag, version = %v, "monitors swapped");
            let _ = done.send(v);
            continue;
        }
        let mut notices = Vec::new();
        for (i, monitor) in monitors.iter_mut().enumerate() {
            let name = &names[i];
            let started = std::time::Instant::now();
            let result = match &input {
                MonitorInput::Events { at_ms, events } => monitor.on_events(*at_ms, events),
                MonitorInput::Sample(sample) => monitor.on_sample(sample),
                MonitorInput::Swap { .. } => continue,
            };
            let m = &out.shared.metrics;
            m.plugin_call_seconds
                .with_label_values(&[tag, name])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(alerts) => {
                    m.plugin_calls.with_label_values(&[tag, name]).inc();
                    out.board.record("monitor", i, monitor, None);
                    if alerts.len() > MAX_ALERTS_PER_CALL {
                        m.errors
                            .with_label_values(&[
                                &format!("monitor:{tag}:{name}"),
                                "too_many_alerts",
                            ])
                            .inc_by((alerts.len() - MAX_ALERTS_PER_CALL) as u64);
                    }
                    if !alerts.is_empty() {
                        let alerts = alerts
                            .into_iter()
                            .take(MAX_ALERTS_PER_CALL)
                            .map(Alert::from)
                            .collect();
                        notices.extend(out.alerts.file(name, alerts, SystemTime::now()));
                    }
                }
                Err(fault) => {
                    m.plugin_traps
                        .with_label_values(&[tag, name, fault.kind()])
                        .inc();
                    m.errors
                        .with_label_values(&[&format!("monitor:{tag}:{name}"), fault.kind()])
                        .inc();
                    out.shared.health.error(
                        &format!("monitor:{tag}:{name}"),
                        format!("the plugin {fault}"),
                    );
                    out.board.record("monitor", i, monitor, Some(&fault));
                }
            }
        }
        if !notices.is_empty() && out.notices.blocking_send(notices).is_err() {
            break;
        }
    }
}
