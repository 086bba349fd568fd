//! The rules a parser declared in `init` (WIT 0.3.0), as the host keeps them, and the events
//! their matches become.
//!
//! A match names its rule and where its values are in the line; the host copies the values
//! out, adds what the rule said once (kind, severity, emoji, channel, field names) and fills
//! in the rule's text template. Filling templates in here rather than in the plugin means a
//! player's text is always Markdown-escaped by the host, whatever the plugin does, and the
//! text need not cross the sandbox boundary for every event.

use factorio_isr_patterns_engine::Template;

use super::{WitRule, WitRuleMatch, WitSpan};
use crate::event::Event;

/// A declared rule whose text template names a value its matches cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} ({kind}): its text template uses {{{name}}}, which is none of {}", .available.join(", "))]
pub(crate) struct UnknownValue {
    index: usize,
    kind: String,
    name: String,
    available: Vec<String>,
}

/// One declared rule: the WIT record with its text template parsed and checked.
#[derive(Debug)]
pub(crate) struct DeclaredRule {
    rule: WitRule,
    template: Option<Template>,
}

impl DeclaredRule {
    /// `rule`, the `index`-th the plugin declared, or why it cannot be used: its template
    /// names a value its matches cannot have.
    pub(crate) fn new(index: usize, rule: WitRule) -> Result<Self, UnknownValue> {
        let template = rule.text.as_deref().map(Template::parse);
        if let Some(template) = &template {
            let known = |name: &str| {
                name == "player" || name == "message" || rule.fields.iter().any(|f| f == name)
            };
            if let Some(bad) = template.names().find(|n| !known(n)) {
                let mut available = vec!["player".to_owned(), "message".to_owned()];
                available.extend(rule.fields.iter().cloned());
                return Err(UnknownValue {
                    index,
                    kind: rule.kind.clone(),
                    name: bad.to_owned(),
                    available,
                });
            }
        }
        Ok(Self { rule, template })
    }

    /// The event of match `m` of this rule in `line`; `None` when the match is malformed
    /// (a span outside the line or not on character boundaries, a field count other than
    /// the rule's).
    pub(crate) fn event(&self, m: WitRuleMatch, line: &str) -> Option<Event> {
        let rule = &self.rule;
        if m.fields.len() != rule.fields.len() {
            return None;
        }
        let player = part(line, m.player)?;
        let message = part(line, m.message)?;
        let mut fields = Vec::with_capacity(m.fields.len());
        for (name, span) in rule.fields.iter().zip(m.fields) {
            if let Some(value) = part(line, span)? {
                fields.push((name, value));
            }
        }
        let text = match (m.text, &self.template) {
            (Some(text), _) => Some(text),
            (None, Some(template)) => Some(template.render(|name| match name {
                "player" => player,
                "message" => message,
                field => fields.iter().find(|(n, _)| *n == field).map(|(_, v)| *v),
            })),
            (None, None) => None,
        };
        Some(Event {
            kind: rule.kind.clone(),
            player: player.map(str::to_owned),
            message: message.map(str::to_owned),
            fields: fields
                .into_iter()
                .map(|(n, v)| (n.clone(), v.to_owned()))
                .collect(),
            severity: rule.severity.into(),
            emoji: rule.emoji.clone(),
            text,
            channel: rule.channel.clone(),
            mention: None,
        })
    }
}

/// The part of `line` at `span`: `Some(None)` for no span, `None` for a span that is not a
/// part of the line.
fn part(line: &str, span: Option<WitSpan>) -> Option<Option<&str>> {
    match span {
        None => Some(None),
        Some(s) => line
            .get(usize::try_from(s.start).ok()?..usize::try_from(s.end).ok()?)
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::WitSeverity;

    fn rule(fields: &[&str], text: Option<&str>) -> WitRule {
        WitRule {
            kind: "kick".into(),
            severity: WitSeverity::Notice,
            emoji: None,
            channel: None,
            fields: fields.iter().map(|&f| f.into()).collect(),
            text: text.map(str::to_owned),
        }
    }

    fn matched(player: (u32, u32), fields: Vec<Option<WitSpan>>) -> WitRuleMatch {
        WitRuleMatch {
            rule: 0,
            player: Some(WitSpan {
                start: player.0,
                end: player.1,
            }),
            message: None,
            fields,
            text: None,
        }
    }

    #[test]
    fn the_host_fills_in_the_template_with_escaped_values() {
        let line = "[KICK] b_o*b by @Zoë";
        let declared = DeclaredRule::new(
            0,
            rule(
                &["by", "reason"],
                Some("**{player}** kicked by {by}: {reason} {not-a-name}  "),
            ),
        )
        .unwrap();
        let by = Some(WitSpan { start: 16, end: 21 });
        let event = declared
            .event(matched((7, 12), vec![by, None]), line)
            .unwrap();
        assert_eq!(
            event.text.as_deref(),
            Some("**b\\_o\\*b** kicked by @\u{200b}Zoë:  {not-a-name}")
        );
        assert_eq!(event.player.as_deref(), Some("b_o*b"));

        // The match's own text wins over the template.
        let mut own = matched((7, 12), vec![by, None]);
        own.text = Some("own".into());
        assert_eq!(
            declared.event(own, line).unwrap().text.as_deref(),
            Some("own")
        );

        // No template and no text of its own: no text.
        let bare = DeclaredRule::new(0, rule(&["by", "reason"], None)).unwrap();
        let event = bare.event(matched((7, 12), vec![by, None]), line).unwrap();
        assert_eq!(event.text, None);
    }

    #[test]
    fn a_template_naming_a_value_the_rule_cannot_have_is_refused() {
        let err = DeclaredRule::new(3, rule(&["by"], Some("{player} by {who}"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rule 3 (kick): its text template uses {who}, which is none of player, message, by"
        );
    }
}
