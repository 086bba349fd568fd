//! What a server's sinks are told: an event (of the log, or a report of the host's), or a
//! change of an alert, kept typed all the way to the sink that shows it. A record (JSON
//! lines, a webhook's line) flattens an alert into the documented event of kind `alert` or
//! `alert-resolved` in one place, [`AlertNotice::to_event`].

use std::borrow::Cow;

use super::ServerLabel;
use super::book::ActiveAlert;
use crate::event::{Event, Severity};

/// One thing for a server's sinks.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// What a parser found in a line, or a report of the host's (stats, rollbacks,
    /// inferred leaves).
    Event(Event),
    /// An alert raised, escalated or resolved.
    Alert(AlertNotice),
}

/// Which change of an alert people are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    Raised,
    /// It got more severe.
    Escalated,
    /// It ended, after `open_secs` open.
    Resolved {
        open_secs: u64,
    },
}

/// An alert's change, with the alert as the book has it and the server it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotice {
    pub told: Told,
    pub alert: ActiveAlert,
    pub server: ServerLabel,
}

impl AlertNotice {
    /// `alert` or `alert-resolved`: its kind as a record and the `events:` filter know it.
    pub fn kind(&self) -> &'static str {
        match self.told {
            Told::Resolved { .. } => "alert-resolved",
            Told::Raised | Told::Escalated => "alert",
        }
    }

    /// ✅ resolved, 🚨 critical, ⚠️ warning, else ℹ️.
    pub fn emoji(&self) -> &'static str {
        match (self.told, self.alert.severity) {
            (Told::Resolved { .. }, _) => "✅",
            (_, Severity::Critical) => "🚨",
            (_, Severity::Warning) => "⚠️",
            _ => "ℹ️",
        }
    }

    /// The mention group to ping: none for a resolution.
    pub fn mention(&self) -> Option<&str> {
        match self.told {
            Told::Resolved { .. } => None,
            Told::Raised | Told::Escalated => self.alert.mention.as_deref(),
        }
    }

    /// Its line for people, naming the server: `**Low UPS** on **Production** (`prod`): …`.
    pub fn line(&self) -> String {
        let a = &self.alert;
        if a.text.is_empty() {
            format!("**{}** on {}", a.title, self.server.markdown())
        } else {
            format!("**{}** on {}: {}", a.title, self.server.markdown(), a.text)
        }
    }

    /// The documented record: an event of kind `alert` or `alert-resolved` with the monitor
    /// in `source`, the key in `key`, the title in `title`, then the alert's fields (and
    /// `open_secs` for a resolution).
    pub fn to_event(&self) -> Event {
        let a = &self.alert;
        let mut fields = vec![
            ("source".to_owned(), a.source.clone()),
            ("key".to_owned(), a.key.clone()),
            ("title".to_owned(), a.title.clone()),
        ];
        fields.extend(a.fields.iter().cloned());
        if let Told::Resolved { open_secs } = self.told {
            fields.push(("open_secs".into(), open_secs.to_string()));
        }
        Event {
            kind: self.kind().into(),
            player: None,
            message: Some(a.text.clone()),
            fields,
            severity: a.severity,
            emoji: Some(self.emoji().into()),
            text: Some(self.line()),
            channel: Some("alerts".into()),
            mention: self.mention().map(str::to_owned),
        }
    }
}

impl Notice {
    /// The kind of event it is, or `alert` / `alert-resolved`.
    pub fn kind(&self) -> &str {
        match self {
            Notice::Event(e) => &e.kind,
            Notice::Alert(a) => a.kind(),
        }
    }

    /// It as an event: itself, or an alert's record ([`AlertNotice::to_event`]).
    pub fn as_event(&self) -> Cow<'_, Event> {
        match self {
            Notice::Event(e) => Cow::Borrowed(e),
            Notice::Alert(a) => Cow::Owned(a.to_event()),
        }
    }

    /// Its line for people (Markdown): the emoji, then the event's body or the alert's line.
    pub fn line(&self) -> String {
        match self {
            Notice::Event(e) => e.line(),
            Notice::Alert(a) => format!("{} {}", a.emoji(), a.line()),
        }
    }

    /// The configured channel it asks for (`alerts` for every alert).
    pub fn channel(&self) -> Option<&str> {
        match self {
            Notice::Event(e) => e.channel.as_deref(),
            Notice::Alert(_) => Some("alerts"),
        }
    }
}

impl From<Event> for Notice {
    fn from(e: Event) -> Self {
        Notice::Event(e)
    }
}

impl serde::Serialize for Notice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_event().serialize(s)
    }
}
