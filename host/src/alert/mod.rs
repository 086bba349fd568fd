//! Alerts: what monitors (and the host's own checks) want people to know about.
//!
//! Monitors return alerts keyed by a stable `key`; the [`AlertBook`] of each server keeps the
//! open ones and turns a stream of repeated alerts into the few changes people are told about
//! (raised, escalated, resolved). Each change is a [`Notice`] for the server's sinks, typed
//! until a sink shows it (a record flattens it into the documented event of kind `alert` or
//! `alert-resolved`).

mod book;
mod mentions;
mod notice;
pub mod present;

pub use book::{ActiveAlert, AlertBook, Change};
pub use mentions::{Group, MentionError, Mentions};
pub use notice::{AlertNotice, Notice, Told};
pub use present::ServerLabel;

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::SystemTime;

use crate::event::Severity;
use crate::observe::metrics::Metrics;
use crate::plugin::{WitAlert, WitAlertState};
use factorio_isr_text::cut;

/// Limits on what a monitor may hand over, so that a hostile plugin cannot flood the book
/// or a Discord message: longer texts are cut, further fields dropped.
const MAX_KEY: usize = 128;
const MAX_TITLE: usize = 256;
const MAX_TEXT: usize = 2000;
const MAX_FIELDS: usize = 20;
const MAX_FIELD: usize = 512;

/// Where an alert stands (see the WIT `alert-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
    Withdrawn,
}

/// An alert as a monitor returned it, cut to the host's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub key: String,
    pub title: String,
    pub text: String,
    pub severity: Severity,
    pub fields: Vec<(String, String)>,
    pub state: AlertState,
    /// A mention group; checked against mentions.yml before anyone is pinged.
    pub mention: Option<String>,
}

impl Alert {
    /// A firing alert at severity `warning`.
    pub fn firing(
        key: impl Into<String>,
        title: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            title: title.into(),
            text: text.into(),
            severity: Severity::Warning,
            fields: Vec::new(),
            state: AlertState::Firing,
            mention: None,
        }
    }

    /// The same alert marked resolved, at severity `info`.
    pub fn resolved(mut self) -> Self {
        self.state = AlertState::Resolved;
        self.severity = Severity::Info;
        self
    }

    /// Adds a named value.
    pub fn field(mut self, name: &str, value: impl Into<String>) -> Self {
        self.fields.push((name.to_owned(), value.into()));
        self
    }
}

impl From<WitAlert> for Alert {
    fn from(a: WitAlert) -> Self {
        Self {
            key: cut(a.key, MAX_KEY),
            title: cut(a.title, MAX_TITLE),
            text: cut(a.text, MAX_TEXT),
            severity: a.severity.into(),
            fields: a
                .fields
                .into_iter()
                .take(MAX_FIELDS)
                .map(|(k, v)| (cut(k, MAX_KEY), cut(v, MAX_FIELD)))
                .collect(),
            state: match a.state {
                WitAlertState::Firing => AlertState::Firing,
                WitAlertState::Resolved => AlertState::Resolved,
                WitAlertState::Withdrawn => AlertState::Withdrawn,
            },
            mention: a.mention.map(|m| cut(m, MAX_KEY)),
        }
    }
}

/// One server's alert desk: its book of open alerts, the mention groups alerts may use, and
/// the counters. Shared by the server's monitor thread and its host-side checks.
pub struct Alerts {
    server: String,
    /// The server as people know it, in every alert's first line.
    label: ServerLabel,
    book: Mutex<AlertBook>,
    mentions: Arc<Mentions>,
    metrics: Option<Arc<Metrics>>,
    /// Cluster mode: where each new state of the book goes (the run's writer to etcd).
    keeper: Mutex<Option<tokio::sync::watch::Sender<Vec<u8>>>>,
}

impl Alerts {
    /// A desk for the server `label` with an empty book.
    pub fn new(label: ServerLabel, mentions: Arc<Mentions>, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            server: label.tag.clone(),
            label,
            book: Mutex::new(AlertBook::default()),
            mentions,
            metrics,
            keeper: Mutex::new(None),
        }
    }

    /// Cluster mode: starts from the open alerts `kept` (what the last owner left; none:
    /// an empty book), and sends every new state of the book to `keeper` from now on.
    pub fn keep_with(&self, kept: Option<AlertBook>, keeper: tokio::sync::watch::Sender<Vec<u8>>) {
        let mut book = self.book.lock();
        *book = kept.unwrap_or_default();
        if let Some(m) = &self.metrics {
            m.alerts_active
                .with_label_values(&[&self.server])
                .set(i64::try_from(book.len()).unwrap_or(i64::MAX));
        }
        *self.keeper.lock() = Some(keeper);
    }

    /// Files the alerts `source` returned at `now`; returns the notices to post for the
    /// changes among them (none for repeats).
    pub fn file(&self, source: &str, alerts: Vec<Alert>, now: SystemTime) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut changed = false;
        let mut book = self.book.lock();
        for mut alert in alerts {
            if let Some(group) = alert.mention.take() {
                alert.mention = self.mentions.allowed(&group, source);
            }
            let change = book.apply(source, alert, now);
            if let Some(m) = &self.metrics {
                let what = match &change {
                    Change::Raised(_) => "raised",
                    Change::Escalated(_) => "escalated",
                    Change::Resolved { .. } => "resolved",
                    Change::Withdrawn(_) => "withdrawn",
                    Change::Repeated => "repeated",
                    Change::Unknown => "unknown",
                    Change::Refused => "refused",
                };
                m.alerts
                    .with_label_values(&[&self.server, source, what])
                    .inc();
            }
            changed |= matches!(
                change,
                Change::Raised(_)
                    | Change::Escalated(_)
                    | Change::Resolved { .. }
                    | Change::Withdrawn(_)
            );
            if let Some(n) = told(change, &self.label) {
                notices.push(n);
            }
        }
        if changed && let Some(k) = &*self.keeper.lock() {
            k.send_replace(book.export());
        }
        if let Some(m) = &self.metrics {
            m.alerts_active
                .with_label_values(&[&self.server])
                .set(i64::try_from(book.len()).unwrap_or(i64::MAX));
        }
        notices
    }

    /// Since when the alert `key` of `source` is open, if it is (a restart finds the
    /// alerts open before it here).
    pub fn open_since(&self, source: &str, key: &str) -> Option<SystemTime> {
        let book = self.book.lock();
        book.active()
            .into_iter()
            .find(|a| a.source == source && a.key == key)
            .map(|a| a.since)
    }

    /// The alerts open right now, oldest first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let book = self.book.lock();
        book.active()
    }
}

/// The notice that tells people about a change, if it is one they are told about.
fn told(change: Change, server: &ServerLabel) -> Option<Notice> {
    let (told, alert) = match change {
        Change::Raised(a) => (Told::Raised, a),
        Change::Escalated(a) => (Told::Escalated, a),
        Change::Resolved { alert, open_secs } => (Told::Resolved { open_secs }, alert),
        _ => return None,
    };
    Some(Notice::Alert(AlertNotice {
        told,
        alert,
        server: server.clone(),
    }))
}

/// A duration for people: `45 s`, `4 min 5 s`, `2 h 5 min`, `3 d 4 h`.
pub fn duration_text(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 if secs.is_multiple_of(60) => format!("{} min", secs / 60),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        let shown: Vec<_> = [0, 45, 60, 245, 7500, 200_000]
            .into_iter()
            .map(duration_text)
            .collect();
        assert_eq!(
            shown,
            ["0 s", "45 s", "1 min", "4 min 5 s", "2 h 5 min", "2 d 7 h"]
        );
    }

    #[test]
    fn a_desk_posts_changes_only_and_keeps_mentions_to_known_groups() {
        let label = ServerLabel {
            tag: "prod".into(),
            name: Some("Production".into()),
        };
        let desk = Alerts::new(label, Arc::new(Mentions::builtin()), None);
        let now = SystemTime::now();
        let mut a = Alert::firing("ups-low", "Low UPS", "42");
        a.mention = Some("admins".into());
        let posted = desk.file("ups-alert", vec![a.clone(), a.clone()], now);
        assert_eq!(posted.len(), 1);
        let Notice::Alert(n) = &posted[0] else {
            panic!("{posted:?}")
        };
        assert_eq!(n.told, Told::Raised);
        assert_eq!(n.mention(), Some("admins"));
        assert_eq!(n.alert.source, "ups-alert");
        assert_eq!(
            n.line(),
            "**Low UPS** on **Production** (`prod`): 42",
            "every alert names its server"
        );
        let record = n.to_event();
        assert_eq!(record.kind, "alert");
        assert_eq!(record.field("source"), Some("ups-alert"));
        assert_eq!(record.field("key"), Some("ups-low"));
        assert_eq!(record.field("title"), Some("Low UPS"));
        assert_eq!(record.mention.as_deref(), Some("admins"));
        a.mention = Some("everyone".into());
        a.key = "other".into();
        let posted = desk.file("ups-alert", vec![a], now);
        let Notice::Alert(n) = &posted[0] else {
            panic!("{posted:?}")
        };
        assert_eq!(n.mention(), None, "everyone is never a group to ping");
        assert_eq!(desk.active().len(), 2);
        let posted = desk.file(
            "ups-alert",
            vec![Alert::firing("ups-low", "UPS back", "60").resolved()],
            now,
        );
        assert_eq!(posted.len(), 1);
        let Notice::Alert(n) = &posted[0] else {
            panic!("{posted:?}")
        };
        assert!(matches!(n.told, Told::Resolved { .. }), "{n:?}");
        assert_eq!(n.kind(), "alert-resolved");
        assert_eq!(n.emoji(), "✅");
        assert_eq!(n.mention(), None);
        assert!(n.to_event().field("open_secs").is_some());
        assert_eq!(desk.active().len(), 1);
    }
}
