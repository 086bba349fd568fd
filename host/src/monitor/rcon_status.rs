//! RCON up/down, reported by the host (the connection is the host's): an alert on each
//! change (`rcon_status_alert_mode: transition`), or a summary every
//! `rcon_status_alert_interval` seconds (`interval`).

use std::time::SystemTime;

use crate::alert::{Alert, duration_text};
use crate::event::{Event, Severity};
use crate::rcon::LinkState;

/// The key of the RCON alert (source `rcon`).
pub const KEY: &str = "rcon-down";

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Nothing,
    Up(SystemTime),
    Down {
        since: SystemTime,
        error: String,
        was_up: bool,
    },
}

/// Follows one server's RCON link.
#[derive(Debug)]
pub struct RconStatus {
    name: String,
    seen: Seen,
    /// Connections lost since the last summary.
    drops: u32,
}

impl RconStatus {
    /// Follows the link of the server shown as `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            seen: Seen::Nothing,
            drops: 0,
        }
    }

    /// The alert a change of the link gives, if any: firing when it goes down (or cannot
    /// connect at all), resolved with the downtime when it comes back. Retries while down
    /// and the first connection give none.
    pub fn on_change(&mut self, state: &LinkState) -> Option<Alert> {
        match state {
            LinkState::Connecting => None,
            LinkState::Up { since } => {
                let before = std::mem::replace(&mut self.seen, Seen::Up(*since));
                let Seen::Down { since: down, .. } = before else {
                    return None;
                };
                let secs = since.duration_since(down).map(|d| d.as_secs()).unwrap_or(0);
                Some(
                    Alert::firing(
                        KEY,
                        "RCON reconnected",
                        format!(
                            "{}: reconnected after {} down",
                            self.name,
                            duration_text(secs)
                        ),
                    )
                    .field("down_secs", secs.to_string())
                    .resolved(),
                )
            }
            LinkState::Down { since, error } => {
                let was_up = match &self.seen {
                    Seen::Down { .. } => return None,
                    Seen::Up(_) => true,
                    Seen::Nothing => false,
                };
                if was_up {
                    self.drops += 1;
                }
                self.seen = Seen::Down {
                    since: *since,
                    error: error.clone(),
                    was_up,
                };
                let title = if was_up {
                    "RCON connection lost"
                } else {
                    "RCON unreachable"
                };
                Some(
                    Alert::firing(KEY, title, format!("{}: {error}", self.name))
                        .field("error", error.clone()),
                )
            }
        }
    }

    /// The summary of the last period, for the interval mode; counts from zero again.
    pub fn summary(&mut self, now: SystemTime) -> Event {
        let drops = std::mem::take(&mut self.drops);
        let since = |t: &SystemTime| {
            duration_text(now.duration_since(*t).map(|d| d.as_secs()).unwrap_or(0))
        };
        let (emoji, severity, state) = match &self.seen {
            Seen::Nothing => ("⏳", Severity::Info, "connecting".to_owned()),
            Seen::Up(t) => ("🟢", Severity::Info, format!("connected for {}", since(t))),
            Seen::Down {
                since: t,
                error,
                was_up,
            } => (
                "🔴",
                Severity::Warning,
                format!(
                    "{} for {}: {error}",
                    if *was_up { "down" } else { "unreachable" },
                    since(t)
                ),
            ),
        };
        let mut text = format!("**{}** RCON {state}", self.name);
        if drops > 0 {
            text.push_str(&format!(
                " ({drops} connection{} lost since the last report)",
                if drops == 1 { "" } else { "s" }
            ));
        }
        let mut e = Event::new("rcon-status");
        e.severity = severity;
        e.emoji = Some(emoji.into());
        e.text = Some(text);
        e.channel = Some("alerts".into());
        e.fields = vec![("drops".into(), drops.to_string())];
        e
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::AlertState;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn down(secs: u64, error: &str) -> LinkState {
        LinkState::Down {
            since: at(secs),
            error: error.into(),
        }
    }

    #[test]
    fn one_lost_and_one_reconnected_with_the_downtime() {
        let mut s = RconStatus::new("Prod");
        assert_eq!(s.on_change(&LinkState::Connecting), None);
        assert_eq!(s.on_change(&LinkState::Up { since: at(0) }), None);
        let lost = s.on_change(&down(100, "connection reset")).unwrap();
        assert_eq!(
            (lost.title.as_str(), lost.state),
            ("RCON connection lost", AlertState::Firing)
        );
        assert_eq!(lost.text, "Prod: connection reset");
        // Retries while down say nothing.
        assert_eq!(s.on_change(&down(100, "connection refused")), None);
        assert_eq!(s.on_change(&LinkState::Connecting), None);
        let back = s.on_change(&LinkState::Up { since: at(325) }).unwrap();
        assert_eq!(back.state, AlertState::Resolved);
        assert_eq!(back.text, "Prod: reconnected after 3 min 45 s down");
        assert!(back.fields.contains(&("down_secs".into(), "225".into())));
    }

    #[test]
    fn a_server_never_reached_is_unreachable_and_summaries_count_drops() {
        let mut s = RconStatus::new("Prod");
        let first = s.on_change(&down(0, "connection refused")).unwrap();
        assert_eq!(first.title, "RCON unreachable");
        let summary = s.summary(at(120));
        assert_eq!(
            summary.text.as_deref(),
            Some("**Prod** RCON unreachable for 2 min: connection refused")
        );
        s.on_change(&LinkState::Up { since: at(130) });
        s.on_change(&down(140, "reset"));
        s.on_change(&LinkState::Up { since: at(150) });
        let summary = s.summary(at(210));
        assert_eq!(
            summary.text.as_deref(),
            Some("**Prod** RCON connected for 1 min (1 connection lost since the last report)")
        );
        assert_eq!(s.summary(at(220)).field("drops"), Some("0"));
    }
}
