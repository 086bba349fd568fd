//! The book of a server's open alerts: de-duplication by (source, key).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Alert, AlertState};
use crate::event::Severity;

/// Open alerts one source (one monitor) may have at once; more are refused and counted, so
/// that a monitor inventing a new key per call cannot grow the book without bound.
pub const MAX_OPEN_PER_SOURCE: usize = 100;

/// An alert that is open, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    /// The monitor (plugin name) or host check (`rcon`) that raised it.
    pub source: String,
    pub key: String,
    pub title: String,
    pub text: String,
    pub severity: Severity,
    #[serde(serialize_with = "crate::event::fields_as_map")]
    pub fields: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
    /// When it was raised.
    #[serde(with = "crate::event::unix_ms")]
    pub since: SystemTime,
}

/// What filing one alert changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new alert: people are told.
    Raised(ActiveAlert),
    /// An open alert got more severe: people are told again.
    Escalated(ActiveAlert),
    /// An open alert ended: people are told once. `alert` carries the resolving alert's
    /// title, text and fields and the time it was raised.
    Resolved { alert: ActiveAlert, open_secs: u64 },
    /// An open alert was closed without a message.
    Withdrawn(ActiveAlert),
    /// The alert was already open at this severity or above: its text is updated quietly.
    Repeated,
    /// A resolution or withdrawal of an alert that is not open: nothing to do.
    Unknown,
    /// The source has too many open alerts already.
    Refused,
}

/// The open alerts of one server.
#[derive(Debug, Default)]
pub struct AlertBook {
    open: BTreeMap<(String, String), ActiveAlert>,
}

impl AlertBook {
    /// Files `alert` from `source` at `now`.
    pub fn apply(&mut self, source: &str, alert: Alert, now: SystemTime) -> Change {
        let id = (source.to_owned(), alert.key.clone());
        let active = |since| ActiveAlert {
            source: source.to_owned(),
            key: alert.key.clone(),
            title: alert.title.clone(),
            text: alert.text.clone(),
            severity: alert.severity,
            fields: alert.fields.clone(),
            mention: alert.mention.clone(),
            since,
        };
        match alert.state {
            AlertState::Firing => match self.open.get_mut(&id) {
                Some(open) => {
                    let escalated = alert.severity > open.severity;
                    *open = active(open.since);
                    if escalated {
                        Change::Escalated(open.clone())
                    } else {
                        Change::Repeated
                    }
                }
                None => {
                    let of_source = self.open.keys().filter(|(s, _)| s == source).count();
                    if of_source >= MAX_OPEN_PER_SOURCE {
                        return Change::Refused;
                    }
                    let a = active(now);
                    self.open.insert(id, a.clone());
                    Change::Raised(a)
                }
            },
            AlertState::Resolved => match self.open.remove(&id) {
                Some(open) => {
                    let open_secs = now
                        .duration_since(open.since)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    Change::Resolved {
                        alert: active(open.since),
                        open_secs,
                    }
                }
                None => Change::Unknown,
            },
            AlertState::Withdrawn => match self.open.remove(&id) {
                Some(open) => Change::Withdrawn(open),
                None => Change::Unknown,
            },
        }
    }

    /// How many alerts are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no alert is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The open alerts, oldest first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut all: Vec<_> = self.open.values().cloned().collect();
        all.sort_by_key(|a| a.since);
        all
    }

    /// The open alerts as JSON, to keep outside the process (cluster mode: in etcd, so the
    /// next owner of the server knows them).
    pub fn export(&self) -> Vec<u8> {
        let kept: Vec<Kept> = self.open.values().map(Kept::from).collect();
        serde_json::to_vec(&kept).unwrap_or_default()
    }

    /// A book of what [`Self::export`] wrote.
    pub fn import(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let kept: Vec<Kept> = serde_json::from_slice(bytes)?;
        let open = kept
            .into_iter()
            .map(|k| {
                let a = ActiveAlert::from(k);
                ((a.source.clone(), a.key.clone()), a)
            })
            .collect();
        Ok(Self { open })
    }
}

/// An open alert as kept outside the process.
#[derive(Serialize, Deserialize)]
struct Kept {
    source: String,
    key: String,
    title: String,
    text: String,
    severity: Severity,
    fields: Vec<(String, String)>,
    mention: Option<String>,
    since_ms: u64,
}

impl From<&ActiveAlert> for Kept {
    fn from(a: &ActiveAlert) -> Self {
        Self {
            source: a.source.clone(),
            key: a.key.clone(),
            title: a.title.clone(),
            text: a.text.clone(),
            severity: a.severity,
            fields: a.fields.clone(),
            mention: a.mention.clone(),
            since_ms: crate::event::unix_ms::millis(a.since),
        }
    }
}

impl From<Kept> for ActiveAlert {
    fn from(k: Kept) -> Self {
        Self {
            source: k.source,
            key: k.key,
            title: k.title,
            text: k.text,
            severity: k.severity,
            fields: k.fields,
            mention: k.mention,
            since: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(k.since_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn kind(c: &Change) -> &'static str {
        match c {
            Change::Raised(_) => "raised",
            Change::Escalated(_) => "escalated",
            Change::Resolved { .. } => "resolved",
            Change::Withdrawn(_) => "withdrawn",
            Change::Repeated => "repeated",
            Change::Unknown => "unknown",
            Change::Refused => "refused",
        }
    }

    #[test]
    fn a_book_kept_outside_resumes_where_it_was() {
        let mut book = AlertBook::default();
        let a = Alert::firing("low-ups", "Low UPS", "41").field("ups", "41");
        book.apply("ups-alert", a.clone(), at(0));
        book.apply("rcon", Alert::firing("down", "RCON down", "refused"), at(3));
        let mut again = AlertBook::import(&book.export()).unwrap();
        assert_eq!(again.active(), book.active());
        // The next owner's monitor reports the same alert: quiet; its resolution: told,
        // with the time it was raised by the last owner.
        assert_eq!(
            again.apply("ups-alert", a.clone(), at(10)),
            Change::Repeated
        );
        let Change::Resolved { open_secs, .. } = again.apply("ups-alert", a.resolved(), at(70))
        else {
            panic!("not resolved");
        };
        assert_eq!(open_secs, 70);
        assert!(AlertBook::import(b"not json").is_err());
    }

    #[test]
    fn repeats_are_quiet_escalations_and_resolutions_are_told_once() {
        let mut book = AlertBook::default();
        let a = Alert::firing("k", "t", "1");
        let mut seen = Vec::new();
        seen.push(kind(&book.apply("m", a.clone(), at(0))));
        seen.push(kind(&book.apply("m", a.clone(), at(5))));
        let mut worse = a.clone();
        worse.severity = Severity::Critical;
        seen.push(kind(&book.apply("m", worse.clone(), at(6))));
        seen.push(kind(&book.apply("m", a.clone(), at(7))));
        let resolved = book.apply("m", a.clone().resolved(), at(65));
        assert_eq!(
            resolved,
            Change::Resolved {
                alert: ActiveAlert {
                    source: "m".into(),
                    key: "k".into(),
                    title: "t".into(),
                    text: "1".into(),
                    severity: Severity::Info,
                    fields: vec![],
                    mention: None,
                    since: at(0),
                },
                open_secs: 65
            }
        );
        seen.push(kind(&book.apply("m", a.clone().resolved(), at(70))));
        assert_eq!(
            seen,
            ["raised", "repeated", "escalated", "repeated", "unknown"]
        );
        assert!(book.is_empty());
    }

    #[test]
    fn keys_are_per_source_and_withdrawal_is_quiet() {
        let mut book = AlertBook::default();
        let a = Alert::firing("k", "t", "");
        assert_eq!(kind(&book.apply("one", a.clone(), at(0))), "raised");
        assert_eq!(kind(&book.apply("two", a.clone(), at(1))), "raised");
        let mut w = a.clone();
        w.state = AlertState::Withdrawn;
        assert_eq!(kind(&book.apply("one", w.clone(), at(2))), "withdrawn");
        assert_eq!(kind(&book.apply("one", w, at(3))), "unknown");
        assert_eq!(book.active().len(), 1);
        assert_eq!(book.active()[0].source, "two");
    }

    #[test]
    fn a_source_cannot_open_alerts_without_bound() {
        let mut book = AlertBook::default();
        for i in 0..MAX_OPEN_PER_SOURCE + 10 {
            book.apply("spammy", Alert::firing(format!("k{i}"), "t", ""), at(0));
        }
        assert_eq!(book.len(), MAX_OPEN_PER_SOURCE);
        assert_eq!(
            kind(&book.apply("spammy", Alert::firing("new", "t", ""), at(1))),
            "refused"
        );
        assert_eq!(
            kind(&book.apply("other", Alert::firing("new", "t", ""), at(1))),
            "raised"
        );
    }
}
