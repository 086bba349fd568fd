//! How much an event matters.

/// How much an event matters; mirrors the WIT `severity` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Critical,
}

impl Severity {
    /// Parses a lowercase severity name as written in pattern files.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "notice" => Self::Notice,
            "warning" | "warn" => Self::Warning,
            "critical" | "error" => Self::Critical,
            _ => return None,
        })
    }

    /// The lowercase name, as in pattern files and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// The severity an event of `kind` gets when its rule does not say.
    pub fn default_for(kind: &str) -> Self {
        match kind {
            "server-crashed" => Self::Critical,
            "desync" => Self::Warning,
            "kick" | "ban" | "server-stopped" | "mention" => Self::Notice,
            _ => Self::Info,
        }
    }
}
