//! Which of a server's plugin slots: its parsers or its monitors.

use serde::Serialize;

/// Which of a server's plugin slots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Parsers,
    Monitors,
}

impl Slot {
    /// `parsers` or `monitors`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parsers => "parsers",
            Self::Monitors => "monitors",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Parsers => "Parsers",
            Self::Monitors => "Monitors",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
