//! Finding where a rule's groups are in a line its pattern matches.
//!
//! Captures cost several times per byte what a plain search costs: the one-pass DFA updates
//! its slots at every step and the backtracker explores. Most rules end in a group that runs
//! to the end of the line (`...: (?P<message>.*)$`, the shape of every chat rule), so a
//! pattern of that shape is split in two: the part before its last group is searched with
//! captures, which gives every other group and where the last one starts, and the rest of
//! the line is only checked against what that group must match. Measured natively on a
//! chat line: 290 ns → 175 ns for the chat rule, 865 ns → 220 ns for the call-for-admins
//! rule (its `.*?@` is not one-pass, and the backtracker no longer walks the message).
//!
//! The split gives the same groups as the whole pattern: the pattern's preferred match
//! takes the first way through its head (in the order a backtracking engine tries them)
//! after which the rest matches. The head's own preferred match is the first way through
//! it; when the rest matches after it, that is the answer, and when it does not (rare: the
//! multi-pattern search already said the rule matches), the whole pattern is searched.

use std::ops::Range;

use regex_automata::meta;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::{Dot, Hir, HirKind, Look};

/// Compiled size limit for one rule's regex (the `regex` default, stated so it is visible).
pub(crate) const RULE_SIZE_LIMIT: usize = 10 << 20;

/// Size limit of one rule's one-pass DFA: it makes captures cheap (+25% lines/s on the
/// stock rules), and the default limit is too small for rules with Unicode classes.
const ONEPASS_BYTES: usize = 64 << 20;

/// A rule's compiled pattern with its search state.
#[derive(Debug)]
pub(crate) struct GroupFinder {
    hir: Hir,
    /// The whole pattern, built when first needed (for a split pattern, seldom or never).
    whole: Option<Searcher>,
    split: Option<Split>,
}

/// A regex with its cache and capture slots.
#[derive(Debug)]
struct Searcher {
    regex: meta::Regex,
    cache: meta::Cache,
    caps: Captures,
}

impl Searcher {
    fn new(hir: &Hir) -> Option<Self> {
        let regex = build(hir)?;
        Some(Self {
            cache: regex.create_cache(),
            caps: regex.create_captures(),
            regex,
        })
    }

    fn search(&mut self, input: &Input<'_>) -> bool {
        self.regex
            .search_captures_with(&mut self.cache, input, &mut self.caps);
        self.caps.is_match()
    }
}

/// A pattern that ends in a group followed by `$`, in two parts.
#[derive(Debug)]
struct Split {
    /// Everything before the last group, with the other groups.
    head: Searcher,
    /// What the last group must match, then the end of the line; `None` when it takes any
    /// rest of the line without a line feed (`.*`), which needs no regex to check.
    rest: Option<(meta::Regex, meta::Cache)>,
    /// The last group's index.
    last: usize,
}

impl Split {
    /// `hir` as a head and a rest, when it has that shape.
    fn of(hir: &Hir) -> Option<Self> {
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let [head @ .., last, end] = parts.as_slice() else {
            return None;
        };
        let (HirKind::Capture(group), HirKind::Look(Look::End)) = (last.kind(), end.kind()) else {
            return None;
        };
        if group.sub.properties().explicit_captures_len() > 0 {
            return None;
        }
        let any_rest = matches!(
            group.sub.kind(),
            HirKind::Repetition(r) if r.min == 0 && r.max.is_none()
                && *r.sub == Hir::dot(Dot::AnyCharExceptLF)
        );
        let rest = if any_rest {
            None
        } else {
            let regex = build(&Hir::concat(vec![(*group.sub).clone(), end.clone()]))?;
            let cache = regex.create_cache();
            Some((regex, cache))
        };
        Some(Self {
            head: Searcher::new(&Hir::concat(head.to_vec()))?,
            rest,
            last: usize::try_from(group.index).ok()?,
        })
    }

    /// Where the last group is in `line`, or why it is not known.
    fn find(&mut self, line: &str, input: &Input<'_>) -> SplitFound {
        if !self.head.search(input) {
            // Nothing matches the whole pattern either.
            return SplitFound::NoMatch;
        }
        let Some(start) = self.head.caps.get_match().map(|m| m.end()) else {
            return SplitFound::AskWhole;
        };
        let matches = match &mut self.rest {
            None => line.get(start..).is_some_and(|rest| !rest.contains('\n')),
            Some((regex, cache)) => regex.is_match_with(
                cache,
                &Input::new(line).range(start..).anchored(Anchored::Yes),
            ),
        };
        if matches {
            SplitFound::Last(start..line.len())
        } else {
            SplitFound::AskWhole
        }
    }
}

/// What searching a split pattern found.
enum SplitFound {
    /// The span of the last group; the head's captures hold the others.
    Last(Range<usize>),
    NoMatch,
    /// The rest does not match after the head's preferred match; another way through the
    /// head might still lead to a match.
    AskWhole,
}

/// Where the groups of a match are.
pub(crate) enum Found<'a> {
    Whole(&'a Captures),
    /// The head's groups, and the last group at `last_span`.
    Split {
        head: &'a Captures,
        last: usize,
        last_span: Range<usize>,
    },
}

impl Found<'_> {
    /// The span of group `index` (0 is the whole match), if it took part in the match.
    pub(crate) fn group(&self, index: usize) -> Option<Range<usize>> {
        match self {
            Found::Whole(caps) => caps.get_group(index).map(|s| s.range()),
            Found::Split {
                head,
                last,
                last_span,
            } => match index {
                0 => Some(head.get_match()?.start()..last_span.end),
                i if i == *last => Some(last_span.clone()),
                i => head.get_group(i).map(|s| s.range()),
            },
        }
    }
}

impl GroupFinder {
    /// A finder for `hir`, which loading already compiled once; `None` should building its
    /// regexes fail now anyway.
    pub(crate) fn new(hir: &Hir) -> Option<Self> {
        let split = Split::of(hir);
        let whole = match split {
            Some(_) => None,
            None => Some(Searcher::new(hir)?),
        };
        Some(Self {
            hir: hir.clone(),
            whole,
            split,
        })
    }

    /// The groups of the pattern's match in `line` (searched as `input` says), if it matches.
    pub(crate) fn find(&mut self, line: &str, input: &Input<'_>) -> Option<Found<'_>> {
        if let Some(split) = &mut self.split {
            match split.find(line, input) {
                SplitFound::Last(last_span) => {
                    return Some(Found::Split {
                        head: &split.head.caps,
                        last: split.last,
                        last_span,
                    });
                }
                SplitFound::NoMatch => return None,
                SplitFound::AskWhole => {}
            }
        }
        if self.whole.is_none() {
            self.whole = Some(Searcher::new(&self.hir)?);
        }
        let whole = self.whole.as_mut()?;
        whole.search(input).then_some(Found::Whole(&whole.caps))
    }
}

/// Compiles a rule's pattern for searching with captures.
fn build(hir: &Hir) -> Option<meta::Regex> {
    meta::Regex::builder()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(RULE_SIZE_LIMIT))
                .onepass_size_limit(Some(ONEPASS_BYTES)),
        )
        .build_from_hir(hir)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hir(pattern: &str) -> Hir {
        regex_syntax::ParserBuilder::new()
            .case_insensitive(true)
            .build()
            .parse(pattern)
            .unwrap()
    }

    /// Every group of `pattern` in `line` as the finder gives them and as one captures
    /// search over the whole pattern gives them.
    fn both(pattern: &str, line: &str) -> [Option<Vec<Option<Range<usize>>>>; 2] {
        let hir = hir(pattern);
        let anchored = hir.properties().look_set_prefix().contains(Look::Start);
        let input = || {
            let input = Input::new(line);
            if anchored {
                input.anchored(Anchored::Yes)
            } else {
                input
            }
        };
        let regex = build(&hir).unwrap();
        let mut caps = regex.create_captures();
        regex.captures(input(), &mut caps);
        let count = caps.group_len();
        let expected = caps.is_match().then(|| {
            (0..count)
                .map(|i| caps.get_group(i).map(|s| s.range()))
                .collect()
        });
        let mut finder = GroupFinder::new(&hir).unwrap();
        let found = finder
            .find(line, &input())
            .map(|f| (0..count).map(|i| f.group(i)).collect());
        [found, expected]
    }

    #[test]
    fn a_pattern_ending_in_a_group_is_split_and_one_without_is_not() {
        for (pattern, split) in [
            (r"^\[CHAT\] (?P<player>\S+): (?P<message>.*)$", true),
            (r"^\[CHAT\] (\S+): (.*@admins\b.*)$", true),
            (r"(?P<reason>crashed\..*?)\s*$", false),
            (r"^(?P<a>.*)", false),
            (r"^(?P<a>x(?P<b>y))$", false),
        ] {
            let finder = GroupFinder::new(&hir(pattern)).unwrap();
            assert_eq!(finder.split.is_some(), split, "{pattern}");
        }
    }

    #[test]
    fn a_split_pattern_finds_the_groups_the_whole_pattern_finds() {
        let cases = [
            (
                r"^(?:\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} )?\[CHAT\] (?P<player>[\p{L}\p{N}_.\-]+): (?P<message>.*)$",
                &[
                    "2026-03-02 11:00:01 [CHAT] Zoë: bonjour à tous: ça va?",
                    "[chat] bob.the-builder: ",
                    "[CHAT] <server>: hi",
                    "[CHAT] a: two\nlines",
                    "no chat here",
                ][..],
            ),
            (
                r"^\[CHAT\] (?P<player>[\p{L}\p{N}_.\-]+): (?P<message>.*?@(?:admins?|mods?)\b.*)$",
                &[
                    "[CHAT] a: need help @admins now",
                    "[CHAT] a: mail me at x@adminsville, or @mods",
                    "[CHAT] a: @administrators",
                    "[CHAT] a: nothing",
                ][..],
            ),
            // Unanchored, positional groups.
            (
                r"\[SHOUT\] (\S+): (.*)$",
                &[
                    "  12.0 [SHOUT] x: y",
                    "[SHOUT] x:y",
                    "[SHOUT] x: [SHOUT] y: z",
                ][..],
            ),
            // The head's first choice leaves a rest that does not match; another choice does.
            (r"^(?P<a>a+?)(?P<b>ab)$", &["aaab", "ab", "aab", "aaa"][..]),
            (
                r"^(?P<a>\w+) (?P<b>\w+\b)$",
                &["one two", "one two three", "one"][..],
            ),
        ];
        for (pattern, lines) in cases {
            for line in lines {
                let [found, expected] = both(pattern, line);
                assert_eq!(found, expected, "{pattern} on {line:?}");
            }
        }
    }
}
