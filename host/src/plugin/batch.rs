//! What a parser call hands over and gives back: the batch as one text, the matches it
//! returns checked against the rules its `init` declared and turned into events (the
//! malformed ones counted, not trusted), and the cap on events per line.

use super::bindings::parser;
use super::declared::DeclaredRule;
use crate::event::Event;

/// The most events a parser may give for one line: the first are kept, the rest thrown
/// away and counted as bad results (as monitors' alerts are capped per call), so one line
/// can never become a flood at the sinks.
pub const MAX_EVENTS_PER_LINE: usize = 8;

/// Keeps at most [`MAX_EVENTS_PER_LINE`] of the events of each line in `out` (sorted by
/// line); returns how many it threw away.
pub(super) fn cap_per_line(out: &mut Vec<(usize, Event)>) -> u64 {
    let before = out.len();
    let mut run = (usize::MAX, 0usize);
    out.retain(|(i, _)| {
        if *i == run.0 {
            run.1 += 1;
        } else {
            run = (*i, 1);
        }
        run.1 <= MAX_EVENTS_PER_LINE
    });
    (before - out.len()) as u64
}

/// Writes a batch of lines into `text` as the 0.3.0 `parse` takes it: each ended by a
/// `\n`. A line that holds a `\n` of its own (none read from a log does) has it replaced by
/// a space, so that the plugin sees the same lines, of the same lengths, as the host.
pub(super) fn batch_text(lines: &[String], text: &mut String) {
    text.clear();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    // One count over the whole batch (which the compiler vectorises) is much cheaper than
    // a search in every line.
    if text.bytes().filter(|&b| b == b'\n').count() != lines.len() {
        text.clear();
        for line in lines {
            text.push_str(&line.replace('\n', " "));
            text.push('\n');
        }
    }
}

/// The events of what a parser found in `lines`, with the number of results thrown away as
/// malformed (a line or rule that does not exist, a span outside its line or not on
/// character boundaries, a field count other than the rule's).
pub(super) fn events_of(
    parsed: parser::Parsed,
    rules: &[DeclaredRule],
    lines: &[String],
) -> (Vec<(usize, Event)>, u64) {
    let mut bad = 0;
    let mut out = Vec::with_capacity(parsed.matches.len() + parsed.events.len());
    for (index, m) in parsed.matches {
        let event = usize::try_from(index)
            .ok()
            .and_then(|i| lines.get(i))
            .zip(usize::try_from(m.rule).ok().and_then(|r| rules.get(r)))
            .and_then(|(line, rule)| rule.event(m, line));
        match event {
            Some(event) => out.push((index as usize, event)),
            None => bad += 1,
        }
    }
    for (index, event) in parsed.events {
        match usize::try_from(index).ok().filter(|&i| i < lines.len()) {
            Some(i) => out.push((i, event.into())),
            None => bad += 1,
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{WitEvent, WitRule, WitRuleMatch, WitSeverity, WitSpan};

    fn rule(kind: &str, fields: &[&str]) -> DeclaredRule {
        let rule = WitRule {
            kind: kind.into(),
            severity: WitSeverity::Notice,
            emoji: Some("👢".into()),
            channel: Some("mods".into()),
            fields: fields.iter().map(|&f| f.into()).collect(),
            text: None,
        };
        DeclaredRule::new(0, rule).unwrap()
    }

    fn span(start: u32, end: u32) -> Option<WitSpan> {
        Some(WitSpan { start, end })
    }

    fn matched(rule: u32, player: Option<WitSpan>, fields: Vec<Option<WitSpan>>) -> WitRuleMatch {
        WitRuleMatch {
            rule,
            player,
            message: None,
            fields,
            text: Some("text".into()),
        }
    }

    #[test]
    fn a_match_becomes_the_event_its_rule_and_spans_describe() {
        let lines = vec!["[KICK] Bob by Zoë".to_owned(), "noise".to_owned()];
        let rules = [rule("join", &[]), rule("kick", &["by", "reason"])];
        let parsed = parser::Parsed {
            matches: vec![(0, matched(1, span(7, 10), vec![span(14, 18), None]))],
            events: vec![(
                1,
                WitEvent {
                    kind: "full".into(),
                    player: None,
                    message: None,
                    fields: Vec::new(),
                    severity: WitSeverity::Info,
                    emoji: None,
                    text: None,
                    channel: None,
                },
            )],
        };
        let (events, bad) = events_of(parsed, &rules, &lines);
        assert_eq!(bad, 0);
        assert_eq!(events.len(), 2);
        let (line, kick) = &events[0];
        assert_eq!(*line, 0);
        assert_eq!(kick.kind, "kick");
        assert_eq!(kick.player.as_deref(), Some("Bob"));
        assert_eq!(kick.fields, vec![("by".to_owned(), "Zoë".to_owned())]);
        assert_eq!(kick.severity, crate::event::Severity::Notice);
        assert_eq!(kick.emoji.as_deref(), Some("👢"));
        assert_eq!(kick.channel.as_deref(), Some("mods"));
        assert_eq!(kick.text.as_deref(), Some("text"));
        assert_eq!(events[1].0, 1);
        assert_eq!(events[1].1.kind, "full");
    }

    #[test]
    fn malformed_matches_are_dropped_and_counted() {
        let lines = vec!["[KICK] Bob by Zoë".to_owned()];
        let rules = [rule("kick", &["by"])];
        let bad_ones = vec![
            // A line that is not in the batch.
            (1, matched(0, span(7, 10), vec![None])),
            // A rule that was not declared.
            (0, matched(1, span(7, 10), vec![None])),
            // A span past the end of the line.
            (0, matched(0, span(7, 99), vec![None])),
            // A span inside the two bytes of `ë`.
            (0, matched(0, span(7, 17), vec![None])),
            // A span that ends before it starts.
            (0, matched(0, span(10, 7), vec![None])),
            // More fields than the rule has.
            (0, matched(0, span(7, 10), vec![None, None])),
            // A bad span in a field.
            (0, matched(0, span(7, 10), vec![span(0, 1000)])),
        ];
        let count = bad_ones.len() as u64;
        let parsed = parser::Parsed {
            matches: bad_ones,
            events: Vec::new(),
        };
        let (events, bad) = events_of(parsed, &rules, &lines);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(bad, count);
    }

    #[test]
    fn a_batch_hands_over_every_line_with_its_length_kept() {
        let lines = vec!["a".to_owned(), String::new(), "b\nc".to_owned()];
        let mut text = "left over".to_owned();
        batch_text(&lines, &mut text);
        assert_eq!(text, "a\n\nb c\n");
        assert_eq!(text.split_terminator('\n').count(), lines.len());
        batch_text(&[], &mut text);
        assert_eq!(text, "");
    }
}
