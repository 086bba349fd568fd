//! A server's monitors as compare mode's candidate: fed exactly what the live monitors were
//! fed, on a thread of their own (see [`crate::swap::candidate`]); the alerts they raise are
//! compared with the live ones input by input and go nowhere else.

use std::borrow::Cow;

use super::MonitorInput;
use crate::plugin::MonitorInstance;
use crate::swap::candidate::Contender;
use crate::swap::compare::AlertView;

impl Contender for Vec<MonitorInstance> {
    /// Events or a sample.
    type Input = MonitorInput;
    type Out = AlertView;
    const THREAD: &'static str = "candidate";

    fn names(&self) -> String {
        (self.iter())
            .map(|m| m.plugin().name().to_owned())
            .collect::<Vec<_>>()
            .join("+")
    }

    fn version(&self) -> String {
        super::version(self)
    }

    fn run(&mut self, input: &MonitorInput) -> Option<Vec<(usize, AlertView)>> {
        let mut raised = Vec::new();
        for monitor in self.iter_mut() {
            let result = match input {
                MonitorInput::Events { at_ms, events, .. } => monitor.on_events(*at_ms, events),
                MonitorInput::Sample(sample) => monitor.on_sample(sample),
                _ => continue,
            };
            // Capped like the live monitors' alerts, so a candidate cannot make the host
            // hold (and compare) alerts without bound.
            let alerts = result.ok()?;
            raised.extend(
                (alerts.into_iter())
                    .take(super::MAX_ALERTS_PER_CALL)
                    .map(crate::alert::Alert::from)
                    .map(|a| (0, AlertView::from(&a))),
            );
        }
        Some(raised)
    }

    fn describe(input: &MonitorInput) -> Cow<'_, [String]> {
        Cow::Owned(vec![describe(input)])
    }
}

/// What a comparison example says the input was.
fn describe(input: &MonitorInput) -> String {
    match input {
        MonitorInput::Events { events, .. } => {
            let first: Vec<String> = (events.iter().take(3))
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
