//! Events: what a parser found in a line, in the host's own types.

use serde::Serialize;

/// How much an event or alert matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Critical,
}

/// One thing that happened on a server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// kebab-case kind: `chat`, `join`, `server-started`, ... (see DESIGN.md).
    pub kind: String,
    pub player: Option<String>,
    pub message: Option<String>,
    /// Further named values, in the order the parser gave them.
    #[serde(serialize_with = "fields_as_map")]
    pub fields: Vec<(String, String)>,
    pub severity: Severity,
    pub emoji: Option<String>,
    /// Formatted for people (Markdown).
    pub text: Option<String>,
    /// The name of a configured channel to route to.
    pub channel: Option<String>,
    /// A mention group of mentions.yml to ping with it; only the host sets this (for
    /// alerts), never a parser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
}

impl Event {
    /// An event of `kind` at severity `info`, with nothing else set.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            player: None,
            message: None,
            fields: Vec::new(),
            severity: Severity::Info,
            emoji: None,
            text: None,
            channel: None,
            mention: None,
        }
    }

    /// Its text for people (Markdown): its `text`, else what it has of player and message,
    /// else its kind.
    pub fn body(&self) -> String {
        match (&self.text, &self.player, &self.message) {
            (Some(t), _, _) => t.clone(),
            (None, Some(p), Some(m)) => format!("{p}: {m}"),
            (None, Some(p), None) => p.clone(),
            (None, None, Some(m)) => m.clone(),
            (None, None, None) => self.kind.clone(),
        }
    }

    /// Its line for people: the emoji, if it has one, then its [body](Self::body).
    pub fn line(&self) -> String {
        match &self.emoji {
            Some(emoji) => format!("{emoji} {}", self.body()),
            None => self.body(),
        }
    }

    /// The value of field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Fields are a list (names may repeat, order matters) but read best as a JSON object; a
/// repeated name keeps its last value there. (Also for alerts' fields.)
pub(crate) fn fields_as_map<S: serde::Serializer>(
    fields: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(fields.len()))?;
    for (k, v) in fields {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Serializes a `SystemTime` as milliseconds since the Unix epoch, as the API shows times.
pub mod unix_ms {
    use std::time::SystemTime;

    /// Milliseconds since the Unix epoch (0 for a time before it).
    pub fn millis(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// For `#[serde(with = "crate::event::unix_ms")]`.
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(millis(*t))
    }
}
