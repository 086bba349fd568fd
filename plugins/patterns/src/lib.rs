//! The stock `patterns` parser: the [`factorio_isr_patterns_engine`] in the plugin sandbox.
//!
//! Plugins have no filesystem, so the host reads the pattern files and passes their text in
//! the configuration: `{"files": [{"name": "vanilla.yml", "text": "events: ..."}]}`.

use factorio_isr_patterns_engine::{Matcher, ParsedEvent, PatternFile, RuleSet};
use factorio_isr_sdk::{Event, Parser, Severity, export_parser, log};

/// The configuration the host hands to `init`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    files: Vec<PatternFile>,
}

struct Patterns {
    matcher: Matcher,
}

impl Parser for Patterns {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| format!("patterns: bad configuration (expected {{\"files\": [{{\"name\", \"text\"}}]}}): {e}"))?;
        let rules = RuleSet::compile(&config.files).map_err(|e| e.to_string())?;
        for warning in rules.warnings() {
            log(Severity::Warning, &warning.to_string());
        }
        let enabled = rules.rules().iter().filter(|r| r.enabled).count();
        log(
            Severity::Debug,
            &format!(
                "{enabled} rules enabled from {} pattern files",
                config.files.len()
            ),
        );
        Ok(Self {
            matcher: rules.into_matcher(),
        })
    }

    fn parse_line(&mut self, line: &str) -> Option<Event> {
        self.matcher.parse_line(line).map(to_wit)
    }
}

fn to_wit(e: ParsedEvent) -> Event {
    use factorio_isr_patterns_engine::Severity as S;
    Event {
        kind: e.kind,
        player: e.player,
        message: e.message,
        fields: e.fields,
        severity: match e.severity {
            S::Debug => Severity::Debug,
            S::Info => Severity::Info,
            S::Notice => Severity::Notice,
            S::Warning => Severity::Warning,
            S::Critical => Severity::Critical,
        },
        emoji: e.emoji,
        text: e.text,
        channel: e.channel,
    }
}

export_parser!(Patterns);
