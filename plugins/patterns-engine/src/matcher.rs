//! All rules of a parser compiled together: one multi-pattern search per line finds the rules
//! that may match, and the first of them in priority order that really matches gives the
//! event; only it runs its captures.
//!
//! The multi-pattern search is a prefilter, not the final word: Unicode word boundaries
//! (`\b`, `\B`) are dropped from its copy of each pattern, because the lazy DFA cannot
//! evaluate them on non-ASCII text and the whole search would otherwise fall back to a
//! slow engine (measured: 6M lines/s against 0.4M with one `\b` among the stock rules).
//! Dropping an assertion only widens what a pattern matches, so no match is missed, and
//! each candidate is confirmed by its own regex.

use std::collections::HashMap;

use regex_automata::hybrid;
use regex_automata::nfa::thompson::{self, pikevm, pikevm::PikeVM};
use regex_automata::{Input, MatchKind, PatternSet};
use regex_syntax::hir::{Hir, HirKind, Look};

use crate::ParsedEvent;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::file::{self, PatternFile};
use crate::groups::GroupFinder;
use crate::rule::{Outcome, Parts, Rule};
use crate::template::Template;

/// Transition-cache size for the multi-pattern search. The default (2 MiB) thrashes with a few
/// dozen rules and costs a factor of ~50 in throughput; this keeps the cache warm.
const SET_CACHE_BYTES: usize = 32 << 20;

/// Every rule of a set of pattern files, compiled and ordered by priority.
#[derive(Debug)]
pub struct RuleSet {
    /// Enabled and disabled rules, best first: by priority, then file name, then rule name.
    rules: Vec<Rule>,
    /// For each pattern of `set`, its rule's index in `rules`.
    active: Vec<usize>,
    set: Option<Prefilter>,
    warnings: Vec<Diagnostic>,
}

impl RuleSet {
    /// Reads and compiles `files`. Files are read in name order; a rule name used twice keeps
    /// the first (a warning names both places). Every error of every file is reported.
    pub fn compile(files: &[PatternFile]) -> Result<Self, Diagnostics> {
        let mut files: Vec<&PatternFile> = files.iter().collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));

        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut seen: HashMap<String, (String, Option<usize>)> = HashMap::new();
        let mut rules = Vec::new();
        for f in files {
            let loaded = file::load(f);
            errors.extend(loaded.errors);
            warnings.extend(loaded.warnings);
            for spec in loaded.rules {
                if let Some((first_file, first_line)) = seen.get(&spec.name) {
                    warnings.push(Diagnostic {
                        file: spec.file.clone(),
                        line: spec.line,
                        rule: Some(spec.name.clone()),
                        field: None,
                        problem: format!(
                            "this rule name is already used at {first_file}{}; the first one is kept",
                            first_line.map(|l| format!(":{l}")).unwrap_or_default()
                        ),
                    });
                    continue;
                }
                seen.insert(spec.name.clone(), (spec.file.clone(), spec.line));
                match compile_rule(spec) {
                    Ok(rule) => rules.push(rule),
                    Err(d) => errors.push(d),
                }
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }

        rules.sort_by(|a, b| (a.priority, &a.file, &a.name).cmp(&(b.priority, &b.file, &b.name)));
        let active: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].enabled).collect();
        let set = if active.is_empty() {
            None
        } else {
            let hirs: Vec<Hir> = active
                .iter()
                .map(|&i| without_unicode_word_boundaries(rules[i].hir.clone()))
                .collect();
            Some(Prefilter::build(&hirs).map_err(|e| Diagnostics(vec![whole_set_error(&e)]))?)
        };
        Ok(Self {
            rules,
            active,
            set,
            warnings,
        })
    }

    /// All rules, enabled or not, best first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Problems that did not stop compilation (duplicate names, unused keys, empty files).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// A matcher over these rules, with its own search caches.
    pub fn into_matcher(self) -> Matcher {
        let cache = self.set.as_ref().map(Prefilter::create_cache);
        let found = PatternSet::new(self.active.len());
        let scratch = self.active.iter().map(|_| None).collect();
        Matcher {
            rules: self,
            cache,
            found,
            scratch,
        }
    }
}

/// The multi-pattern search over every enabled rule: a lazy DFA over a forward-only NFA
/// (the `meta` engine would also build a reverse NFA, which for Unicode classes is most of
/// its memory, and which a "which patterns match" search never uses), with the PikeVM as
/// the fallback should the lazy DFA give up.
#[derive(Debug)]
struct Prefilter {
    dfa: hybrid::dfa::DFA,
    pikevm: PikeVM,
}

#[derive(Debug)]
struct PrefilterCache {
    dfa: hybrid::dfa::Cache,
    pikevm: pikevm::Cache,
}

impl Prefilter {
    fn build(hirs: &[Hir]) -> Result<Self, String> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .nfa_size_limit(Some(crate::groups::RULE_SIZE_LIMIT * 4))
                    // It only says which rules may match: no groups needed.
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_many_from_hir(hirs)
            .map_err(|e| e.to_string())?;
        let dfa = hybrid::dfa::DFA::builder()
            .configure(
                hybrid::dfa::Config::new()
                    .match_kind(MatchKind::All)
                    .cache_capacity(SET_CACHE_BYTES),
            )
            .build_from_nfa(nfa.clone())
            .map_err(|e| e.to_string())?;
        let pikevm = PikeVM::builder()
            .configure(pikevm::Config::new().match_kind(MatchKind::All))
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        Ok(Self { dfa, pikevm })
    }

    fn create_cache(&self) -> PrefilterCache {
        PrefilterCache {
            dfa: self.dfa.create_cache(),
            pikevm: self.pikevm.create_cache(),
        }
    }

    /// Adds every pattern that matches somewhere in `line` to `found`.
    fn which(&self, cache: &mut PrefilterCache, line: &str, found: &mut PatternSet) {
        if self.which_lazy(&mut cache.dfa, line, found).is_err() {
            found.clear();
            self.pikevm
                .which_overlapping_matches(&mut cache.pikevm, &Input::new(line), found);
        }
    }

    /// What `DFA::try_which_overlapping_matches` does, in a loop of its own: the library's
    /// overlapping search keeps its position in memory and does some bookkeeping at every
    /// byte, which under WebAssembly made it a quarter of all the time spent on a line.
    /// Here a run of ordinary states costs one table lookup per byte; the lazy DFA is only
    /// asked to do more when a transition is not yet computed or the state is special.
    fn which_lazy(
        &self,
        cache: &mut hybrid::dfa::Cache,
        line: &str,
        found: &mut PatternSet,
    ) -> Result<(), LazyGaveUp> {
        let dfa = &self.dfa;
        let mut record = |cache: &hybrid::dfa::Cache, sid: hybrid::LazyStateID| {
            for i in 0..dfa.match_len(cache, sid) {
                found.insert(dfa.match_pattern(cache, sid, i));
            }
        };
        let mut sid = dfa
            .start_state_forward(cache, &Input::new(line))
            .map_err(|_| LazyGaveUp)?;
        let bytes = line.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            // Four ordinary transitions per round while they stay ordinary.
            while !sid.is_tagged() && at + 4 <= bytes.len() {
                let s1 = dfa.next_state_untagged(cache, sid, bytes[at]);
                if s1.is_tagged() {
                    break;
                }
                let s2 = dfa.next_state_untagged(cache, s1, bytes[at + 1]);
                if s2.is_tagged() {
                    (sid, at) = (s1, at + 1);
                    break;
                }
                let s3 = dfa.next_state_untagged(cache, s2, bytes[at + 2]);
                if s3.is_tagged() {
                    (sid, at) = (s2, at + 2);
                    break;
                }
                let s4 = dfa.next_state_untagged(cache, s3, bytes[at + 3]);
                if s4.is_tagged() {
                    (sid, at) = (s3, at + 3);
                    break;
                }
                (sid, at) = (s4, at + 4);
            }
            if at == bytes.len() {
                break;
            }
            let byte = bytes[at];
            at += 1;
            if !sid.is_tagged() {
                let next = dfa.next_state_untagged(cache, sid, byte);
                if !next.is_tagged() {
                    sid = next;
                    continue;
                }
            }
            sid = dfa.next_state(cache, sid, byte).map_err(|_| LazyGaveUp)?;
            if sid.is_match() {
                record(cache, sid);
            } else if sid.is_dead() {
                return Ok(());
            } else if sid.is_quit() {
                return Err(LazyGaveUp);
            }
        }
        sid = dfa.next_eoi_state(cache, sid).map_err(|_| LazyGaveUp)?;
        if sid.is_match() {
            record(cache, sid);
        }
        Ok(())
    }
}

/// The lazy DFA could not finish a search (its cache was exhausted, or it met a byte it
/// cannot handle); the PikeVM takes over.
struct LazyGaveUp;

fn whole_set_error(problem: &str) -> Diagnostic {
    Diagnostic {
        file: "(all pattern files)".into(),
        line: None,
        rule: None,
        field: None,
        problem: format!("the enabled rules together do not compile: {problem}"),
    }
}

/// `hir` with every Unicode word-boundary assertion replaced by "always true".
fn without_unicode_word_boundaries(hir: Hir) -> Hir {
    if !hir.properties().look_set().contains_word_unicode() {
        return hir;
    }
    match hir.into_kind() {
        HirKind::Look(
            Look::WordUnicode
            | Look::WordUnicodeNegate
            | Look::WordStartUnicode
            | Look::WordEndUnicode
            | Look::WordStartHalfUnicode
            | Look::WordEndHalfUnicode,
        ) => Hir::empty(),
        HirKind::Look(look) => Hir::look(look),
        HirKind::Repetition(mut rep) => {
            rep.sub = Box::new(without_unicode_word_boundaries(*rep.sub));
            Hir::repetition(rep)
        }
        HirKind::Capture(mut cap) => {
            cap.sub = Box::new(without_unicode_word_boundaries(*cap.sub));
            Hir::capture(cap)
        }
        HirKind::Concat(subs) => Hir::concat(
            subs.into_iter()
                .map(without_unicode_word_boundaries)
                .collect(),
        ),
        HirKind::Alternation(subs) => Hir::alternation(
            subs.into_iter()
                .map(without_unicode_word_boundaries)
                .collect(),
        ),
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => Hir::literal(lit.0),
        HirKind::Class(class) => Hir::class(class),
    }
}

fn compile_rule(spec: file::RuleSpec) -> Result<Rule, Diagnostic> {
    let at = |line: Option<usize>, field: &str, problem: String| Diagnostic {
        file: spec.file.clone(),
        line: line.or(spec.line),
        rule: Some(spec.name.clone()),
        field: Some(field.to_owned()),
        problem,
    };
    // Checked here without building the search engines (that happens on first use): the
    // syntax, then the automaton's size.
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(&spec.pattern)
        .map_err(|e| {
            at(
                spec.pattern_line,
                "pattern",
                format!("invalid regex: regex parse error:\n{e}"),
            )
        })?;
    let nfa = thompson::Compiler::new()
        .configure(thompson::Config::new().nfa_size_limit(Some(crate::groups::RULE_SIZE_LIMIT)))
        .build_from_hir(&hir)
        .map_err(|e| at(spec.pattern_line, "pattern", format!("invalid regex: {e}")))?;
    let template = spec.message.as_deref().map(Template::parse);
    let message_line = spec.message_line;
    let name = spec.name.clone();
    let file = spec.file.clone();
    let line = spec.line;
    Rule::new(spec, hir, nfa.group_info(), template).map_err(|problem| Diagnostic {
        file,
        line: message_line.or(line),
        rule: Some(name),
        field: Some("message".into()),
        problem,
    })
}

/// The best rule's match in a line, as [`Matcher::find`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The rule's index in [`RuleSet::rules`].
    pub rule: usize,
    /// Where its player, message and fields are in the line.
    pub parts: Parts,
}

/// Turns lines into events with a [`RuleSet`]; holds the search cache, so use one per thread.
#[derive(Debug)]
pub struct Matcher {
    rules: RuleSet,
    cache: Option<PrefilterCache>,
    found: PatternSet,
    /// Per enabled rule (by pattern id), its regex's cache and capture slots.
    scratch: Vec<Option<GroupFinder>>,
}

impl Matcher {
    /// The rules this matcher applies.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The event of the best rule that matches `line`, if any. Blank lines give nothing, and
    /// so does the server's own chat (`[CHAT] <server>: ...`), whatever the rules say.
    pub fn parse_line(&mut self, line: &str) -> Option<ParsedEvent> {
        let m = self.find(line)?;
        Some(self.rules.rules[m.rule].event(line, &m.parts))
    }

    /// The best rule that matches `line` and where its values are, without copying them:
    /// what [`Matcher::parse_line`] gives, in terms of the line.
    pub fn find(&mut self, line: &str) -> Option<Match> {
        let (Some(set), Some(cache)) = (&self.rules.set, &mut self.cache) else {
            return None;
        };
        if line.trim().is_empty() {
            return None;
        }
        self.found.clear();
        set.which(cache, line, &mut self.found);
        for candidate in self.found.iter() {
            let p = candidate.as_usize();
            let index = self.rules.active[p];
            let rule = &self.rules.rules[index];
            match rule.apply(line, &mut self.scratch[p]) {
                Outcome::Match(parts) => {
                    return Some(Match { rule: index, parts });
                }
                Outcome::Suppressed => return None,
                Outcome::NoMatch => continue,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_search_finds_what_the_pikevm_finds() {
        let patterns = [
            r"^(?:\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} )?\[CHAT\] (?P<player>[\p{L}\p{N}_.\-]+): (?P<message>.*)$",
            r"^\[CHAT\] (\S+): (.*?@admins.*)$",
            r"^\s*\d+\.\d+ .*Saving finished",
            r"Factorio crashed\..*?\s*$",
            r"DesyncedWaitingForMap|Multiplayer desynchroni[sz]ation",
            r"joined",
            r"^$",
        ];
        let hirs: Vec<Hir> = patterns
            .iter()
            .map(|p| {
                regex_syntax::ParserBuilder::new()
                    .case_insensitive(true)
                    .build()
                    .parse(p)
                    .unwrap()
            })
            .collect();
        let set = Prefilter::build(&hirs).unwrap();
        let mut cache = set.create_cache();
        let lines = [
            "2026-03-02 11:00:01 [CHAT] Zoë: bonjour à tous: ça va?",
            "[CHAT] x: help @ADMINS",
            "   3.250 Info AppManagerStates.cpp:1802: Saving finished",
            "   3.250 Info Saving finished and Factorio crashed. joined",
            "Multiplayer desynchronisation, DESYNCEDWAITINGFORMAP",
            "",
            "é",
            "a\nb",
            "nothing at all",
        ];
        for line in lines {
            let mut fast = PatternSet::new(patterns.len());
            set.which(&mut cache, line, &mut fast);
            let mut slow = PatternSet::new(patterns.len());
            set.pikevm
                .which_overlapping_matches(&mut cache.pikevm, &Input::new(line), &mut slow);
            assert_eq!(
                fast.iter().collect::<Vec<_>>(),
                slow.iter().collect::<Vec<_>>(),
                "{line:?}"
            );
        }
    }
}
