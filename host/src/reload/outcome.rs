//! What a reload, promotion or rollback answers: per slot, what it did or why it did
//! nothing, as the API, `factorio-isr reload` and `/factorio reload` show it.

use serde::Serialize;

use crate::swap::slot::Slot;

/// What a reload did to one slot.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// A new version is live.
    Swapped {
        from: String,
        to: String,
        /// Building the new version (compile, read, init), off the hot path.
        build_ms: f64,
        /// From handing it to the slot's thread to its being live (includes the inputs
        /// queued before it).
        swap_ms: f64,
        /// Why the new version could not be kept for the next start, if it could not.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_kept: Option<String>,
    },
    /// The configuration gives the version that is live already.
    Unchanged { version: String },
}

/// Why a reload, promotion or rollback of a slot did nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("server `{0}` does not follow a log, so it has no parsers")]
    NoLog(String),
    #[error("server `{0}` has no monitor thread")]
    NoMonitors(String),
    #[error("rejected, the live version keeps running: {0}")]
    Rejected(String),
    #[error("there is no earlier version to roll back to")]
    NoPrevious,
    #[error("server `{0}` has no `shadow` candidate to promote")]
    NoCandidate(String),
    #[error("the server's pipeline has stopped")]
    Stopped,
    #[error("{0}")]
    NotKept(String),
}

/// Why servers.yml gave no configuration for a server just now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// The file does not load (the configuration error, which names file and line).
    #[error("{0}")]
    Config(String),
    #[error("{path} no longer has a server `{tag}`")]
    NoServer { path: String, tag: String },
    /// The reading was cut short (the blocking task panicked or was cancelled).
    #[error("reading the configuration failed: {0}")]
    Interrupted(String),
}

/// What a reload or promotion did to each of a server's slots (none: the server lacks that
/// slot, or it was not asked).
#[derive(Debug, Default)]
pub struct ServerReload {
    pub parsers: Option<Result<ReloadOutcome, ReloadError>>,
    pub monitors: Option<Result<ReloadOutcome, ReloadError>>,
}

impl ServerReload {
    /// The first slot's error, if one failed.
    pub fn error(&self) -> Option<&ReloadError> {
        [&self.parsers, &self.monitors]
            .into_iter()
            .find_map(|r| r.as_ref().and_then(|r| r.as_ref().err()))
    }

    /// Why a slot's new version could not be kept for the next start, if one could not.
    pub fn not_kept(&self) -> Option<&str> {
        [&self.parsers, &self.monitors]
            .into_iter()
            .find_map(|r| match r {
                Some(Ok(ReloadOutcome::Swapped {
                    not_kept: Some(why),
                    ..
                })) => Some(why.as_str()),
                _ => None,
            })
    }

    /// One line per slot, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (slot, r) in [
            (Slot::Parsers, &self.parsers),
            (Slot::Monitors, &self.monitors),
        ] {
            match r {
                None => {}
                Some(Ok(ReloadOutcome::Swapped {
                    from, to, not_kept, ..
                })) => {
                    lines.push(format!("{slot}: `{from}` → `{to}`"));
                    lines.extend(not_kept.iter().map(|why| format!("{slot}: {why}")));
                }
                Some(Ok(ReloadOutcome::Unchanged { version })) => {
                    lines.push(format!("{slot}: already at `{version}`"))
                }
                Some(Err(e)) => lines.push(format!("{slot}: {e}")),
            }
        }
        lines
    }
}

impl Serialize for ServerReload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        for (slot, r) in [
            (Slot::Parsers, &self.parsers),
            (Slot::Monitors, &self.monitors),
        ] {
            match r {
                None => map.serialize_entry(slot.name(), &None::<()>)?,
                Some(Ok(outcome)) => map.serialize_entry(slot.name(), outcome)?,
                Some(Err(e)) => map.serialize_entry(
                    slot.name(),
                    &serde_json::json!({
                        "result": if matches!(e, ReloadError::Rejected(_)) { "rejected" } else { "error" },
                        "error": e.to_string(),
                    }),
                )?,
            }
        }
        map.end()
    }
}
