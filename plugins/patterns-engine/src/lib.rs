//! The rule engine behind the stock `patterns` parser.
//!
//! It reads pattern files in the Python factorio-isr format
//! (`events: {name: {pattern, type, emoji, message, enabled, priority, channel, description}}`),
//! with the same meaning, and compiles every enabled rule into one matcher so that the cost of
//! a line does not grow with the number of rules.
//!
//! The crate is plain Rust with no WebAssembly in it: the `patterns` plugin wraps it for the
//! sandbox, and the host uses it natively to validate pattern files (`factorio-isr check`) and
//! to benchmark the plugin against native code.
//!
//! ```
//! use factorio_isr_patterns_engine::{PatternFile, RuleSet};
//! let file = PatternFile::new("chat.yml", r#"
//! events:
//!   chat:
//!     pattern: '\[CHAT\] (\S+): (.+)'
//!     emoji: "💬"
//! "#);
//! let mut matcher = RuleSet::compile(&[file]).unwrap().into_matcher();
//! let event = matcher.parse_line("2026-01-01 10:00:00 [CHAT] Alice: hi").unwrap();
//! assert_eq!(event.kind, "chat");
//! assert_eq!(event.player.as_deref(), Some("Alice"));
//! assert_eq!(event.message.as_deref(), Some("hi"));
//! ```

mod diagnostic;
mod file;
mod groups;
mod matcher;
mod rule;
mod severity;
mod template;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use file::{PatternFile, key_of as yaml_key_of};
pub use matcher::{Match, Matcher, RuleSet};
pub use rule::{Parts, Rule};
pub use severity::Severity;
pub use template::Template;

/// One event found in one line, before it is handed to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    /// The rule's `type` (or its name when it has none).
    pub kind: String,
    pub player: Option<String>,
    pub message: Option<String>,
    /// Named groups other than `player` and `message`, in the order they appear in the pattern.
    pub fields: Vec<(String, String)>,
    pub severity: Severity,
    pub emoji: Option<String>,
    /// The rule's `message` template, filled in (Markdown, with values escaped).
    pub text: Option<String>,
    pub channel: Option<String>,
}
