//! The stock `patterns` parser: the [`factorio_isr_patterns_engine`] in the plugin sandbox.
//!
//! Plugins have no filesystem, so the host reads the pattern files and passes their text in
//! the configuration: `{"files": [{"name": "vanilla.yml", "text": "events: ..."}]}`.

use std::ops::Range;

use factorio_isr_patterns_engine::{Matcher, PatternFile, RuleSet};
use factorio_isr_sdk::{Rule, RuleMatch, RuleParser, Severity, Span, export_rule_parser, log};

/// The configuration the host hands to `init`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    files: Vec<PatternFile>,
}

struct Patterns {
    matcher: Matcher,
}

impl RuleParser for Patterns {
    fn new(_server: &str, config: &str) -> Result<(Self, Vec<Rule>), String> {
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
        let declared = rules.rules().iter().map(declare).collect();
        Ok((
            Self {
                matcher: rules.into_matcher(),
            },
            declared,
        ))
    }

    fn parse_line(&mut self, line: &str) -> Option<RuleMatch> {
        let m = self.matcher.find(line)?;
        let span = |r: Option<Range<usize>>| {
            let r = r?;
            Some(Span {
                start: u32::try_from(r.start).ok()?,
                end: u32::try_from(r.end).ok()?,
            })
        };
        // The host fills in a rule's template itself (and escapes the values); only a rule
        // without one has its text made here.
        let rule = &self.matcher.rules().rules()[m.rule];
        let text = match rule.template() {
            Some(_) => None,
            None => rule.text(line, &m.parts),
        };
        Some(RuleMatch {
            rule: u32::try_from(m.rule).ok()?,
            player: span(m.parts.player),
            message: span(m.parts.message),
            fields: m.parts.fields.into_iter().map(span).collect(),
            text,
        })
    }
}

/// What every event of `rule` has in common, as the host is told once.
fn declare(rule: &factorio_isr_patterns_engine::Rule) -> Rule {
    use factorio_isr_patterns_engine::Severity as S;
    Rule {
        kind: rule.kind.clone(),
        severity: match rule.severity() {
            S::Debug => Severity::Debug,
            S::Info => Severity::Info,
            S::Notice => Severity::Notice,
            S::Warning => Severity::Warning,
            S::Critical => Severity::Critical,
        },
        emoji: rule.emoji().map(str::to_owned),
        channel: rule.channel().map(str::to_owned),
        fields: rule.field_names().map(str::to_owned).collect(),
        text: rule.template().map(|t| t.as_str().to_owned()),
    }
}

export_rule_parser!(Patterns);
