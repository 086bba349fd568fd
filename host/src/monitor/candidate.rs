//! The candidate monitors of compare mode: fed exactly what the live monitors were fed, on a
//! thread of their own; the alerts they raise are compared with the live ones and go nowhere
//! else.

use parking_lot::Mutex;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::MonitorInput;
use crate::observe::metrics::Metrics;
use crate::plugin::MonitorInstance;
use crate::swap::compare::{AlertView, MonitorReport};

/// Inputs queued for the candidate; an input that finds the queue full is skipped and
/// counted (the live monitors never wait for it).
const QUEUE: usize = 64;

/// What the candidate's thread takes.
pub enum CandidateInput {
    /// An input the live monitors had (events or a sample) and the alerts they raised on it.
    Input {
        input: MonitorInput,
        live: Vec<AlertView>,
    },
    /// New candidate monitors: the comparison starts afresh (the report is reset by the
    /// monitor thread).
    Replace(Vec<MonitorInstance>),
}

fn names(monitors: &[MonitorInstance]) -> String {
    monitors
        .iter()
        .map(|m| m.plugin().name().to_owned())
        .collect::<Vec<_>>()
        .join("+")
}

/// What a comparison example says the input was.
fn describe(input: &MonitorInput) -> String {
    match input {
        MonitorInput::Events { events, .. } => {
            let first: Vec<String> = events
                .iter()
                .take(3)
                .map(|e| match &e.text {
                    Some(t) => t.clone(),
                    None => format!(
                        "{} {} {}",
                        e.kind,
                        e.player.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    ),
                })
                .collect();
            let more = events.len().saturating_sub(first.len());
            let more = if more > 0 {
                format!(" (+{more} more)")
            } else {
                String::new()
            };
            format!("events: {}{more}", first.join(" | "))
        }
        MonitorInput::Sample(s) => format!(
            "sample: rcon_up {}, paused {}, ups {:?}, ema {:?}, {} players",
            s.rcon_up,
            s.paused,
            s.ups,
            s.ups_ema,
            s.players.len()
        ),
        _ => String::new(),
    }
}

/// Runs `candidate` on its own thread over what the live monitors had, keeping the
/// comparison in `report`.
pub fn spawn_candidate(
    tag: &str,
    mut candidate: Vec<MonitorInstance>,
    report: Arc<Mutex<Option<MonitorReport>>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<mpsc::Sender<CandidateInput>> {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let tag = tag.to_owned();
    let mut label = names(&candidate);
    std::thread::Builder::new()
        .name(format!("candidate-{tag}"))
        .spawn(move || {
            while let Some(msg) = rx.blocking_recv() {
                let (input, live) = match msg {
                    CandidateInput::Input { input, live } => (input, live),
                    CandidateInput::Replace(new) => {
                        candidate = new;
                        label = names(&candidate);
                        tracing::info!(server = %tag, candidate = %label, "compare mode: new candidate monitors");
                        continue;
                    }
                };
                let mut raised = Vec::new();
                let mut faulted = false;
                for monitor in &mut candidate {
                    let result = match &input {
                        MonitorInput::Events { at_ms, events, .. } => {
                            monitor.on_events(*at_ms, events)
                        }
                        MonitorInput::Sample(sample) => monitor.on_sample(sample),
                        _ => continue,
                    };
                    match result {
                        // Capped like the live monitors' alerts, so a candidate cannot
                        // make the host hold (and compare) alerts without bound.
                        Ok(alerts) => raised.extend(
                            alerts
                                .into_iter()
                                .take(super::MAX_ALERTS_PER_CALL)
                                .map(crate::alert::Alert::from)
                                .map(|a| AlertView::from(&a)),
                        ),
                        Err(_) => faulted = true,
                    }
                }
                let mut guard = report.lock();
                let Some(r) = guard.as_mut() else { continue };
                if faulted {
                    r.candidate_faults += 1;
                    continue;
                }
                let shown = r.sample.len();
                let at = |v: Vec<AlertView>| v.into_iter().map(|a| (0, a)).collect::<Vec<_>>();
                let found = r.add(&[describe(&input)], &at(live), &at(raised));
                if found > 0 {
                    metrics
                        .plugin_discrepancies
                        .with_label_values(&[&tag, &label])
                        .inc_by(found);
                    for e in &r.sample[shown..] {
                        tracing::info!(server = %tag, candidate = %label, what = ?e.what, input = %e.input, key = ?e.live.as_ref().or(e.candidate.as_ref()).map(|a| &a.key), "the candidate monitor disagrees");
                    }
                }
            }
        })?;
    Ok(tx)
}
