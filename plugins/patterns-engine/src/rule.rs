//! One compiled rule: its regex, how its groups map to the event, and its template.

use std::ops::Range;

use regex_automata::util::captures::GroupInfo;
use regex_automata::{Anchored, Input, PatternID};
use regex_syntax::hir::{Hir, Look};

use crate::ParsedEvent;
use crate::groups::GroupFinder;
use crate::severity::Severity;
use crate::template::Template;
use factorio_isr_text::escape_into;

/// Where the event's player, message and fields come from in a match.
#[derive(Debug, Clone)]
enum Groups {
    /// No named groups: as in the Python bot, group 1 is the player and group 2 the message
    /// (with a single group, `server` events also take it as their message).
    Positional {
        /// How many groups the pattern has.
        count: usize,
    },
    /// Named groups: `player`, `message`, and every other name becomes a field.
    Named {
        player: Option<usize>,
        message: Option<usize>,
        fields: Vec<(String, usize)>,
    },
}

/// A rule that compiled, ready to turn a matching line into an event.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name (its key under `events`).
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Its line in that file, when known.
    pub line: Option<usize>,
    /// The event kind it gives.
    pub kind: String,
    /// Lower wins when several rules match a line.
    pub priority: u32,
    /// Disabled rules are compiled and checked, but never match.
    pub enabled: bool,
    /// The `description` as written, for listings.
    pub description: Option<String>,
    /// The pattern parsed, case-insensitive like the Python bot.
    pub(crate) hir: Hir,
    /// The pattern can only match at the start (`^...`): searches need not look further.
    anchored: bool,
    /// The pattern has no groups and the matcher's multi-pattern search decides it exactly
    /// (no word boundaries, which that search drops): when it says the rule matches, the
    /// rule's own regex has nothing to add.
    decided_by_search: bool,
    groups: Groups,
    template: Option<Template>,
    emoji: Option<String>,
    channel: Option<String>,
    severity: Severity,
}

/// The name a server's own chat carries in the log (`[CHAT] <server>: ...`).
const SERVER_NAME: &str = "<server>";

impl Rule {
    /// `groups_info` is the layout of the pattern's groups; the matcher compiles the pattern
    /// when the rule is first needed (see [`GroupFinder`]).
    pub(crate) fn new(
        spec: crate::file::RuleSpec,
        hir: Hir,
        groups_info: &GroupInfo,
        template: Option<Template>,
    ) -> Result<Self, String> {
        let anchored = hir.properties().look_set_prefix().contains(Look::Start);
        let has_word_boundary = hir.properties().look_set().contains_word_unicode();
        let named: Vec<(usize, &str)> = groups_info
            .pattern_names(PatternID::ZERO)
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, n)))
            .collect();
        let groups = if named.is_empty() {
            Groups::Positional {
                count: groups_info.group_len(PatternID::ZERO) - 1,
            }
        } else {
            let find = |want: &str| named.iter().find(|(_, n)| *n == want).map(|(i, _)| *i);
            Groups::Named {
                player: find("player"),
                message: find("message"),
                fields: named
                    .iter()
                    .filter(|(_, n)| *n != "player" && *n != "message")
                    .map(|(i, n)| ((*n).to_owned(), *i))
                    .collect(),
            }
        };
        if let Some(template) = &template {
            let known = |name: &str| {
                name == "player"
                    || name == "message"
                    || matches!(&groups, Groups::Named { fields, .. } if fields.iter().any(|(n, _)| n == name))
            };
            if let Some(bad) = template.names().find(|n| !known(n)) {
                let available = match &groups {
                    Groups::Positional { .. } => "player, message".to_owned(),
                    Groups::Named { fields, .. } => std::iter::once("player")
                        .chain(std::iter::once("message"))
                        .chain(fields.iter().map(|(n, _)| n.as_str()))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                return Err(format!(
                    "the template uses `{{{bad}}}`, which the pattern does not capture (available: {available})"
                ));
            }
        }
        let kind = spec.kind.unwrap_or_else(|| spec.name.clone());
        Ok(Self {
            anchored,
            decided_by_search: groups_info.group_len(PatternID::ZERO) == 1 && !has_word_boundary,
            severity: spec
                .severity
                .unwrap_or_else(|| Severity::default_for(&kind)),
            name: spec.name,
            file: spec.file,
            line: spec.line,
            kind,
            priority: spec.priority,
            enabled: spec.enabled,
            description: spec.description,
            hir,
            groups,
            template,
            emoji: spec.emoji.filter(|e| !e.is_empty()),
            channel: spec.channel.filter(|c| !c.is_empty()),
        })
    }

    fn input<'h>(&self, line: &'h str) -> Input<'h> {
        let input = Input::new(line);
        if self.anchored {
            input.anchored(Anchored::Yes)
        } else {
            input
        }
    }

    /// The severity of its events.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Its `message` template, if it has one.
    pub fn template(&self) -> Option<&Template> {
        self.template.as_ref()
    }

    /// The emoji of its events, if any.
    pub fn emoji(&self) -> Option<&str> {
        self.emoji.as_deref()
    }

    /// The channel its events are routed to, if any.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The names of the fields of its events, in the order of [`Parts::fields`].
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        let fields = match &self.groups {
            Groups::Positional { .. } => &[][..],
            Groups::Named { fields, .. } => &fields[..],
        };
        fields.iter().map(|(name, _)| name.as_str())
    }

    /// Runs this rule on `line`, which the multi-pattern search says it may match: where its
    /// values are, nothing (the line is the server's own chat), or no match at all. `slot`
    /// holds the rule's compiled regex, built on first use.
    pub(crate) fn apply(&self, line: &str, slot: &mut Option<GroupFinder>) -> Outcome {
        if self.decided_by_search {
            return Outcome::Match(Parts::default());
        }
        if slot.is_none() {
            // Checked when the rules were loaded; should it fail now anyway, the rule does
            // not match.
            *slot = GroupFinder::new(&self.hir);
        }
        let Some(finder) = slot else {
            return Outcome::NoMatch;
        };
        let Some(found) = finder.find(line, &self.input(line)) else {
            return Outcome::NoMatch;
        };
        let group = |i: usize| found.group(i);
        let parts = match &self.groups {
            Groups::Positional { count } => {
                let player = group(1);
                let message = match count {
                    0 => None,
                    1 if self.kind.eq_ignore_ascii_case("server") => group(1),
                    1 => None,
                    _ => group(2),
                };
                Parts {
                    player,
                    message,
                    fields: Vec::new(),
                }
            }
            Groups::Named {
                player,
                message,
                fields,
            } => Parts {
                player: player.and_then(group),
                message: message.and_then(group),
                fields: fields.iter().map(|(_, i)| group(*i)).collect(),
            },
        };
        if part(line, &parts.player) == Some(SERVER_NAME) {
            return Outcome::Suppressed;
        }
        Outcome::Match(parts)
    }

    /// The text of a match of this rule in `line`: its template filled in, or the Python
    /// bot's `player: message`; values Markdown-escaped.
    pub fn text(&self, line: &str, parts: &Parts) -> Option<String> {
        let player = part(line, &parts.player);
        let message = part(line, &parts.message);
        match &self.template {
            Some(t) => Some(t.render(|name| {
                match name {
                    "player" => player,
                    "message" => message,
                    other => self
                        .field_names()
                        .zip(&parts.fields)
                        .find(|(n, _)| *n == other)
                        .and_then(|(_, r)| part(line, r)),
                }
            })),
            None => default_text(player, message),
        }
    }

    /// The event of a match of this rule in `line`, every value copied out.
    pub(crate) fn event(&self, line: &str, parts: &Parts) -> ParsedEvent {
        let value = |r| part(line, r).map(str::to_owned);
        ParsedEvent {
            kind: self.kind.clone(),
            player: value(&parts.player),
            message: value(&parts.message),
            fields: self
                .field_names()
                .zip(&parts.fields)
                .filter_map(|(n, r)| value(r).map(|v| (n.to_owned(), v)))
                .collect(),
            severity: self.severity,
            emoji: self.emoji.clone(),
            text: self.text(line, parts),
            channel: self.channel.clone(),
        }
    }
}

/// The part of `line` at `range`, if there is one.
fn part<'l>(line: &'l str, range: &Option<Range<usize>>) -> Option<&'l str> {
    range.as_ref().and_then(|r| line.get(r.clone()))
}

/// Where a match's values are in its line, as byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub player: Option<Range<usize>>,
    pub message: Option<Range<usize>>,
    /// One per name of [`Rule::field_names`]; `None` where the group did not take part.
    pub fields: Vec<Option<Range<usize>>>,
}

/// What applying a rule to a line gave.
pub(crate) enum Outcome {
    Match(Parts),
    /// The rule matched, but the line must give no event.
    Suppressed,
    NoMatch,
}

/// The Python bot's text for a rule without a template: `player: message`, or whichever is there.
fn default_text(player: Option<&str>, message: Option<&str>) -> Option<String> {
    let mut out = String::new();
    match (player, message) {
        (Some(p), Some(m)) => {
            escape_into(p, &mut out);
            out.push_str(": ");
            escape_into(m, &mut out);
        }
        (Some(v), None) | (None, Some(v)) => escape_into(v, &mut out),
        (None, None) => return None,
    }
    Some(out)
}
