//! RCON up/down, reported by the host (the connection is the host's): an alert on each
//! change that held for `rcon_status_alert_hold` seconds, one "unstable" alert for a link
//! that keeps flapping (`rcon_status_alert_mode: transition`), or a summary every
//! `rcon_status_alert_interval` seconds (`interval`).

use std::time::{Duration, SystemTime};

use crate::alert::{Alert, duration_text};
use crate::event::{Event, Severity};
use crate::rcon::LinkState;

/// The key of the RCON alert (source `rcon`).
pub const KEY: &str = "rcon-down";

/// Connections lost, with no state holding in between, that make a link "unstable".
pub const UNSTABLE_AFTER: u32 = 3;

/// The link as it is.
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

/// What people were last told.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Told {
    /// Nothing yet (the first connection is not news).
    Nothing,
    Up,
    /// Down since then.
    Down(SystemTime),
    /// Unstable since then.
    Unstable(SystemTime),
}

/// Follows one server's RCON link and decides what people hear of it: a state is announced
/// only once it has held for `hold`, so a link that drops and comes back within it says
/// nothing, and one that keeps flapping says "unstable" once instead of every drop.
#[derive(Debug)]
pub struct RconStatus {
    name: String,
    hold: Duration,
    seen: Seen,
    /// When `seen` last changed between up and down.
    changed_at: SystemTime,
    told: Told,
    /// Connections lost since a state last held.
    unsettled_drops: u32,
    /// Connections lost since the last summary.
    drops: u32,
}

impl RconStatus {
    /// Follows the link of the server shown as `name`; a state must hold for `hold` to be
    /// announced (zero: at once).
    pub fn new(name: &str, hold: Duration) -> Self {
        Self {
            name: name.to_owned(),
            hold,
            seen: Seen::Nothing,
            changed_at: SystemTime::UNIX_EPOCH,
            told: Told::Nothing,
            unsettled_drops: 0,
            drops: 0,
        }
    }

    /// People were told, before a restart, that the link was down since `since` (the alert
    /// is still open): when it is up again, they are told it reconnected.
    pub fn told_down(&mut self, since: SystemTime) {
        self.told = Told::Down(since);
    }

    /// Takes in a change of the link at `now`. It gives an alert at once only when the
    /// link has become unstable, or when `hold` is zero; otherwise see [`Self::due`].
    pub fn on_change(&mut self, state: &LinkState, now: SystemTime) -> Option<Alert> {
        match state {
            LinkState::Connecting | LinkState::Standby => return None,
            LinkState::Up { since } => {
                if matches!(self.seen, Seen::Up(_)) {
                    return None;
                }
                self.seen = Seen::Up(*since);
            }
            LinkState::Down { since, error, .. } => {
                if let Seen::Down { error: e, .. } = &mut self.seen {
                    // Still down: keep the latest reason, nothing changed.
                    e.clone_from(error);
                    return None;
                }
                let was_up = matches!(self.seen, Seen::Up(_));
                if was_up {
                    self.drops += 1;
                    self.unsettled_drops += 1;
                }
                self.seen = Seen::Down {
                    since: *since,
                    error: error.clone(),
                    was_up,
                };
            }
        }
        self.changed_at = now;
        if self.unsettled_drops >= UNSTABLE_AFTER && matches!(self.told, Told::Nothing | Told::Up) {
            self.told = Told::Unstable(now);
            return Some(self.unstable());
        }
        if self.hold.is_zero() {
            return self.tick(now);
        }
        None
    }

    /// When the link's state will have held long enough to be announced, if it is news.
    pub fn due(&self) -> Option<SystemTime> {
        self.news().then(|| self.changed_at + self.hold)
    }

    /// The alert for the link's state if it has held for `hold` by `now` and is news.
    pub fn tick(&mut self, now: SystemTime) -> Option<Alert> {
        if !self.news() || now < self.changed_at + self.hold {
            return None;
        }
        self.unsettled_drops = 0;
        match self.seen.clone() {
            Seen::Nothing => None,
            Seen::Up(up) => match std::mem::replace(&mut self.told, Told::Up) {
                Told::Down(down) => {
                    let secs = secs_between(down, up);
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
                Told::Unstable(since) => Some(
                    Alert::firing(
                        KEY,
                        "RCON stable again",
                        format!(
                            "{}: connected for {} after {} unstable",
                            self.name,
                            duration_text(self.hold.as_secs()),
                            duration_text(secs_between(since, self.changed_at))
                        ),
                    )
                    .resolved(),
                ),
                Told::Nothing | Told::Up => None,
            },
            Seen::Down {
                since,
                error,
                was_up,
            } => {
                self.told = Told::Down(since);
                let title = if was_up {
                    "RCON connection lost"
                } else {
                    "RCON unreachable"
                };
                Some(
                    Alert::firing(KEY, title, format!("{}: {error}", self.name))
                        .field("error", error),
                )
            }
        }
    }

    /// Whether the link's state differs from what people were told.
    fn news(&self) -> bool {
        !matches!(
            (&self.seen, self.told),
            (Seen::Nothing, _)
                | (Seen::Up(_), Told::Up | Told::Nothing)
                | (Seen::Down { .. }, Told::Down(_))
        )
    }

    fn unstable(&self) -> Alert {
        let error = match &self.seen {
            Seen::Down { error, .. } => error.as_str(),
            _ => "",
        };
        let mut a = Alert::firing(
            KEY,
            "RCON unstable",
            format!(
                "{}: the connection was lost {} times without holding for {}; last error: {error}",
                self.name,
                self.unsettled_drops,
                duration_text(self.hold.as_secs())
            ),
        )
        .field("drops", self.unsettled_drops.to_string());
        // Below a lasting outage, so that one escalates from it and is heard.
        a.severity = Severity::Notice;
        a
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

fn secs_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map(|d| d.as_secs()).unwrap_or(0)
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
            failures: 1,
            retry_in_ms: 1000,
        }
    }

    fn up(secs: u64) -> LinkState {
        LinkState::Up { since: at(secs) }
    }

    #[test]
    fn a_link_told_down_before_a_restart_is_told_back_up_once() {
        let mut s = RconStatus::new("Prod", Duration::ZERO);
        s.told_down(at(0));
        let back = s.on_change(&up(60), at(60)).unwrap();
        assert_eq!(back.state, AlertState::Resolved);
        assert_eq!(back.text, "Prod: reconnected after 1 min down");
        assert_eq!(s.on_change(&up(61), at(61)), None, "once");
        // Without it, a first connection is not news.
        let mut fresh = RconStatus::new("Prod", Duration::ZERO);
        assert_eq!(fresh.on_change(&up(60), at(60)), None);
    }

    #[test]
    fn one_lost_and_one_reconnected_with_the_downtime() {
        let mut s = RconStatus::new("Prod", Duration::ZERO);
        assert_eq!(s.on_change(&LinkState::Connecting, at(0)), None);
        assert_eq!(s.on_change(&up(0), at(0)), None);
        let lost = s
            .on_change(&down(100, "connection reset"), at(100))
            .unwrap();
        assert_eq!(
            (lost.title.as_str(), lost.state),
            ("RCON connection lost", AlertState::Firing)
        );
        assert_eq!(lost.text, "Prod: connection reset");
        // Retries while down say nothing.
        assert_eq!(s.on_change(&down(100, "connection refused"), at(110)), None);
        assert_eq!(s.on_change(&LinkState::Connecting, at(111)), None);
        let back = s.on_change(&up(325), at(325)).unwrap();
        assert_eq!(back.state, AlertState::Resolved);
        assert_eq!(back.text, "Prod: reconnected after 3 min 45 s down");
        assert!(back.fields.contains(&("down_secs".into(), "225".into())));
    }

    #[test]
    fn a_server_never_reached_is_unreachable_and_summaries_count_drops() {
        let mut s = RconStatus::new("Prod", Duration::ZERO);
        let first = s.on_change(&down(0, "connection refused"), at(0)).unwrap();
        assert_eq!(first.title, "RCON unreachable");
        let summary = s.summary(at(120));
        assert_eq!(
            summary.text.as_deref(),
            Some("**Prod** RCON unreachable for 2 min: connection refused")
        );
        s.on_change(&up(130), at(130));
        s.on_change(&down(140, "reset"), at(140));
        s.on_change(&up(150), at(150));
        let summary = s.summary(at(210));
        assert_eq!(
            summary.text.as_deref(),
            Some("**Prod** RCON connected for 1 min (1 connection lost since the last report)")
        );
        assert_eq!(s.summary(at(220)).field("drops"), Some("0"));
    }

    #[test]
    fn a_drop_shorter_than_the_hold_is_never_announced() {
        let hold = Duration::from_secs(30);
        let mut s = RconStatus::new("Prod", hold);
        assert_eq!(s.on_change(&up(0), at(0)), None);
        assert_eq!(s.due(), None, "the first connection is not news");
        assert_eq!(s.on_change(&down(100, "reset"), at(100)), None);
        assert_eq!(s.due(), Some(at(130)));
        assert_eq!(s.tick(at(129)), None);
        assert_eq!(s.on_change(&up(110), at(110)), None);
        assert_eq!(s.due(), None, "back up before anyone was told");
        assert_eq!(s.tick(at(500)), None);
    }

    #[test]
    fn a_lasting_outage_is_announced_once_it_held_and_its_end_likewise() {
        let hold = Duration::from_secs(30);
        let mut s = RconStatus::new("Prod", hold);
        s.on_change(&up(0), at(0));
        s.on_change(&down(100, "reset"), at(100));
        let lost = s.tick(at(130)).unwrap();
        assert_eq!(lost.title, "RCON connection lost");
        assert_eq!(s.tick(at(131)), None, "told once");
        assert_eq!(s.on_change(&down(100, "refused"), at(140)), None);
        s.on_change(&up(200), at(200));
        assert_eq!(s.tick(at(229)), None);
        let back = s.tick(at(230)).unwrap();
        assert_eq!(back.state, AlertState::Resolved);
        assert_eq!(back.text, "Prod: reconnected after 1 min 40 s down");
    }

    #[test]
    fn a_flapping_link_gives_one_unstable_alert_and_one_when_it_settles() {
        let hold = Duration::from_secs(30);
        let mut s = RconStatus::new("Prod", hold);
        let mut alerts = Vec::new();
        // An hour of a link that comes up and drops every 4 s (a peer that answers the
        // first command and then stops).
        let mut t = 0;
        while t < 3600 {
            alerts.extend(s.on_change(&up(t), at(t)));
            alerts.extend(s.tick(at(t + 2)));
            alerts.extend(s.on_change(&down(t + 2, "no answer within 5000 ms"), at(t + 2)));
            alerts.extend(s.tick(at(t + 4)));
            t += 4;
        }
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0].title, "RCON unstable");
        assert_eq!(alerts[0].severity, Severity::Notice);
        assert!(
            alerts[0].text.contains("lost 3 times"),
            "{}",
            alerts[0].text
        );
        // It settles: one resolution, after the hold.
        s.on_change(&up(t), at(t));
        assert_eq!(s.tick(at(t + 29)), None);
        let settled = s.tick(at(t + 30)).unwrap();
        assert_eq!(settled.title, "RCON stable again");
        assert_eq!(settled.state, AlertState::Resolved);
        assert_eq!(s.summary(at(t + 30)).field("drops"), Some("900"));
    }

    #[test]
    fn an_unstable_link_that_then_stays_down_escalates_to_lost() {
        let mut s = RconStatus::new("Prod", Duration::from_secs(30));
        for t in [0, 10, 20] {
            s.on_change(&up(t), at(t));
            s.on_change(&down(t + 5, "reset"), at(t + 5));
        }
        assert_eq!(s.tick(at(26)), None);
        let lost = s.tick(at(55)).unwrap();
        assert_eq!(lost.title, "RCON connection lost");
        assert!(lost.severity > Severity::Notice);
    }
}
