//! A rule parser (WIT 0.3.0 `rule-match`es) for the host's checks of what it is given. It
//! declares one rule, `word`, with one field, `rest`. A line `WORD w rest` gives a good match
//! (player `w`, field `rest`); the other first words give a malformed one: `PASTEND` a span
//! past the end of the line, `MIDCHAR` a span that ends inside `é`, `BACKWARDS` a span that
//! ends before it starts, `NORULE` a rule that was not declared, `FIELDS` two fields for the
//! rule's one. `TEMPLATE w rest` gives a good match without a text of its own, so the host
//! fills in the rule's template (`{player} said {rest}`). Other lines give nothing. With the
//! configuration `"bad-template"` its template names a value the rule cannot have.

use factorio_isr_sdk::{Rule, RuleMatch, RuleParser, Severity, Span, export_rule_parser, span_of};

struct BadMatches;

impl RuleParser for BadMatches {
    fn new(_server: &str, config: &str) -> Result<(Self, Vec<Rule>), String> {
        let template = match config {
            "\"bad-template\"" => "{player} said {nope}",
            _ => "{player} said {rest}",
        };
        let word = Rule {
            kind: "word".into(),
            severity: Severity::Notice,
            emoji: Some("🔤".into()),
            channel: None,
            fields: vec!["rest".into()],
            text: Some(template.into()),
        };
        Ok((BadMatches, vec![word]))
    }

    fn parse_line(&mut self, line: &str) -> Option<RuleMatch> {
        let mut words = line.splitn(3, ' ');
        let first = words.next()?;
        let good = RuleMatch {
            rule: 0,
            player: words.next().and_then(|w| span_of(line, w)),
            message: None,
            fields: vec![words.next().and_then(|r| span_of(line, r))],
            text: Some(format!("text of {line}")),
        };
        let len = line.len() as u32;
        let broken = |start, end| Some(Span { start, end });
        Some(match first {
            "WORD" => good,
            "TEMPLATE" => RuleMatch { text: None, ..good },
            "PASTEND" => RuleMatch {
                player: broken(0, len + 1),
                ..good
            },
            "MIDCHAR" => RuleMatch {
                // The line ends in `é`, two bytes: end one byte into it.
                player: broken(0, len - 1),
                ..good
            },
            "BACKWARDS" => RuleMatch {
                player: broken(3, 1),
                ..good
            },
            "NORULE" => RuleMatch { rule: 7, ..good },
            "FIELDS" => RuleMatch {
                fields: vec![None, None],
                ..good
            },
            _ => return None,
        })
    }
}

export_rule_parser!(BadMatches);
