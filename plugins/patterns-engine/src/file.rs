//! Reading one pattern file: YAML in, rule specifications with their line numbers out.

use std::collections::HashMap;

use serde_norway::Value;

use crate::diagnostic::Diagnostic;
use crate::severity::Severity;

/// A pattern file's name and text. The engine never touches the filesystem: the caller reads
/// the files (the host does, since plugins have no filesystem) and hands their text over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatternFile {
    /// The file's name (used in messages and to break priority ties), e.g. `vanilla.yml`.
    pub name: String,
    /// The file's YAML text.
    pub text: String,
}

impl PatternFile {
    /// A pattern file named `name` whose YAML is `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The keys a rule may have: the Python bot's eight, plus `severity`.
pub(crate) const RULE_KEYS: &[&str] = &[
    "pattern",
    "type",
    "emoji",
    "message",
    "enabled",
    "priority",
    "channel",
    "description",
    "severity",
];

/// The keys `defaults:` may have; they apply to every rule of the file that lacks them.
const DEFAULT_KEYS: &[&str] = &[
    "emoji", "message", "enabled", "priority", "channel", "severity",
];

/// The Python bot's default priority.
pub(crate) const DEFAULT_PRIORITY: u32 = 10;

/// One rule as written, before its regex is compiled.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec {
    pub file: String,
    pub name: String,
    pub line: Option<usize>,
    pub pattern: String,
    pub pattern_line: Option<usize>,
    pub kind: Option<String>,
    pub emoji: Option<String>,
    pub message: Option<String>,
    pub message_line: Option<usize>,
    pub enabled: bool,
    pub priority: u32,
    pub channel: Option<String>,
    pub description: Option<String>,
    pub severity: Option<Severity>,
}

/// Values that may be given per rule or per file.
#[derive(Debug, Default, Clone)]
struct Inherited {
    emoji: Option<String>,
    message: Option<String>,
    enabled: Option<bool>,
    priority: Option<u32>,
    channel: Option<String>,
    severity: Option<Severity>,
}

/// What reading one file gave: its rules, and the problems found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub rules: Vec<RuleSpec>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

pub(crate) fn load(file: &PatternFile) -> Loaded {
    let mut out = Loaded::default();
    let lines = Locator::new(&file.text);
    let diag = |line: Option<usize>, rule: Option<&str>, field: Option<&str>, problem: String| {
        Diagnostic {
            file: file.name.clone(),
            line,
            rule: rule.map(str::to_owned),
            field: field.map(str::to_owned),
            problem,
        }
    };

    let root: Value = match serde_norway::from_str(&file.text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            out.errors
                .push(diag(line, None, None, format!("not valid YAML: {e}")));
            return out;
        }
    };
    let root = match root {
        Value::Mapping(m) => m,
        Value::Null => {
            out.warnings
                .push(diag(None, None, None, "the file is empty".into()));
            return out;
        }
        other => {
            out.errors.push(diag(
                Some(1),
                None,
                None,
                format!(
                    "expected a mapping with an `events` key, found {}",
                    describe(&other)
                ),
            ));
            return out;
        }
    };

    let mut defaults = Inherited::default();
    let mut events = None;
    for (key, value) in &root {
        match key.as_str() {
            Some("events") => events = Some(value),
            Some("defaults") => {
                let line = lines.top_level("defaults");
                match value {
                    Value::Mapping(m) => {
                        for (k, v) in m {
                            let k = k.as_str().unwrap_or("");
                            let at = line.and_then(|l| lines.field(l, k)).or(line);
                            if !DEFAULT_KEYS.contains(&k) {
                                out.errors.push(diag(
                                    at,
                                    None,
                                    None,
                                    format!(
                                        "unknown key `{k}` in `defaults` (allowed: {})",
                                        DEFAULT_KEYS.join(", ")
                                    ),
                                ));
                                continue;
                            }
                            if let Err(problem) = defaults.set(k, v) {
                                out.errors.push(diag(
                                    at,
                                    None,
                                    None,
                                    format!("`defaults.{k}`: {problem}"),
                                ));
                            }
                        }
                    }
                    Value::Null => {}
                    other => out.errors.push(diag(
                        line,
                        None,
                        None,
                        format!("`defaults` must be a mapping, found {}", describe(other)),
                    )),
                }
            }
            _ => {
                let name = key_text(key);
                let problem = if name == "patterns" && matches!(value, Value::Sequence(_)) {
                    "`patterns:` (a list of rules with `regex:`) is the form of the Python \
                     bot's pattern guide, which its loader never read either: nothing in it \
                     is read; write the rules under `events:` (docs/patterns.md)"
                        .to_owned()
                } else {
                    format!("top-level key `{name}` is not used (only `events` and `defaults` are)")
                };
                out.warnings
                    .push(diag(lines.top_level(&name), None, None, problem));
            }
        }
    }

    let events_line = lines.top_level("events");
    let events = match events {
        Some(Value::Mapping(m)) => m,
        Some(Value::Null) | None => {
            out.warnings.push(diag(
                events_line,
                None,
                None,
                "no `events` in this file".into(),
            ));
            return out;
        }
        Some(other) => {
            out.errors.push(diag(
                events_line,
                None,
                None,
                format!(
                    "`events` must be a mapping of rule names to rules, found {}",
                    describe(other)
                ),
            ));
            return out;
        }
    };

    for (key, value) in events {
        let name = key_text(key);
        let rule_line = events_line.and_then(|l| lines.child(l, &name));
        let Value::Mapping(body) = value else {
            out.errors.push(diag(
                rule_line,
                Some(&name),
                None,
                format!(
                    "a rule must be a mapping of keys to values, found {}",
                    describe(value)
                ),
            ));
            continue;
        };
        let field_line = |field: &str| rule_line.and_then(|l| lines.field(l, field)).or(rule_line);
        let mut own = Inherited::default();
        let mut pattern = None;
        let mut kind = None;
        let mut description = None;
        let mut failed = false;
        for (k, v) in body {
            let k_text = key_text(k);
            let result = match k_text.as_str() {
                "pattern" => string(v).map(|s| pattern = s),
                "type" => string(v).map(|s| kind = s),
                "description" => string(v).map(|s| description = s),
                other if RULE_KEYS.contains(&other) => own.set(other, v),
                other => Err(format!(
                    "unknown key `{other}` (allowed: {})",
                    RULE_KEYS.join(", ")
                )),
            };
            if let Err(problem) = result {
                failed = true;
                out.errors.push(diag(
                    field_line(&k_text),
                    Some(&name),
                    Some(&k_text),
                    problem,
                ));
            }
        }
        let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
            if !failed {
                out.errors.push(diag(
                    rule_line,
                    Some(&name),
                    Some("pattern"),
                    "the rule has no `pattern`".into(),
                ));
            }
            continue;
        };
        if failed {
            continue;
        }
        if kind.as_deref() == Some("") {
            out.errors.push(diag(
                field_line("type"),
                Some(&name),
                Some("type"),
                "`type` may not be empty".into(),
            ));
            continue;
        }
        out.rules.push(RuleSpec {
            file: file.name.clone(),
            name: name.clone(),
            line: rule_line,
            pattern,
            pattern_line: field_line("pattern"),
            kind,
            emoji: own.emoji.or_else(|| defaults.emoji.clone()),
            message: own.message.or_else(|| defaults.message.clone()),
            message_line: field_line("message"),
            enabled: own.enabled.or(defaults.enabled).unwrap_or(true),
            priority: own
                .priority
                .or(defaults.priority)
                .unwrap_or(DEFAULT_PRIORITY),
            channel: own.channel.or_else(|| defaults.channel.clone()),
            description,
            severity: own.severity.or(defaults.severity),
        });
    }
    out
}

impl Inherited {
    fn set(&mut self, key: &str, value: &Value) -> Result<(), String> {
        match key {
            "emoji" => self.emoji = string(value)?,
            "message" => self.message = string(value)?,
            "channel" => self.channel = string(value)?,
            "enabled" => {
                self.enabled = match value {
                    Value::Bool(b) => Some(*b),
                    Value::Null => None,
                    other => {
                        return Err(format!("expected true or false, found {}", describe(other)));
                    }
                }
            }
            "priority" => {
                self.priority = match value {
                    Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => Some(n),
                        None => {
                            return Err(format!(
                                "expected a whole number from 0 to {}, found {n}",
                                u32::MAX
                            ));
                        }
                    },
                    Value::Null => None,
                    other => {
                        return Err(format!(
                            "expected a whole number, found {}",
                            describe(other)
                        ));
                    }
                }
            }
            "severity" => self.severity = match string(value)? {
                None => None,
                Some(s) => Some(Severity::from_name(&s).ok_or_else(|| {
                    format!(
                        "unknown severity `{s}` (allowed: debug, info, notice, warning, critical)"
                    )
                })?),
            },
            _ => return Err(format!("`{key}` cannot be set here")),
        }
        Ok(())
    }
}

/// A string value; null counts as absent, as in the Python bot's `config.get`.
fn string(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        other => Err(format!("expected a string, found {}", describe(other))),
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => describe(other),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Finds the line of a key in block-style YAML, so that problems found after parsing (a bad
/// regex, a bad template) can still name their line. Flow-style YAML falls back to the
/// nearest enclosing key's line.
struct Locator<'a> {
    lines: Vec<&'a str>,
    /// The direct children of each parent line looked at so far: key → 1-based line (the
    /// first, if a key repeats). Built in one pass per parent, so finding every rule of a
    /// file costs one scan, not one per rule.
    children: std::cell::RefCell<HashMap<usize, HashMap<&'a str, usize>>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
            children: Default::default(),
        }
    }

    /// The 1-based line of a key at column 0.
    fn top_level(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| indent(l) == 0 && key_of(l) == Some(key))
            .map(|i| i + 1)
    }

    /// The 1-based line of `key` among the direct children of the key on `parent` (1-based).
    fn child(&self, parent: usize, key: &str) -> Option<usize> {
        let mut children = self.children.borrow_mut();
        let of_parent = children
            .entry(parent)
            .or_insert_with(|| self.scan_children(parent));
        of_parent.get(key).copied()
    }

    fn scan_children(&self, parent: usize) -> HashMap<&'a str, usize> {
        let mut found = HashMap::new();
        let Some(parent_line) = parent.checked_sub(1).and_then(|i| self.lines.get(i)) else {
            return found;
        };
        let parent_indent = indent(parent_line);
        let mut child_indent = None;
        for (i, &line) in self.lines.iter().enumerate().skip(parent) {
            if is_blank(line) {
                continue;
            }
            let ind = indent(line);
            if ind <= parent_indent {
                break;
            }
            let want = *child_indent.get_or_insert(ind);
            if ind == want
                && let Some(key) = key_of(line)
            {
                found.entry(key).or_insert(i + 1);
            }
        }
        found
    }

    /// The line of `key` inside the mapping that starts on `parent`.
    fn field(&self, parent: usize, key: &str) -> Option<usize> {
        self.child(parent, key)
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The key of a block-style YAML `key: value` line, unquoted (`'a b': 1` gives `a b`); none
/// for a line that is not a key (a `:` must end the key or be followed by a space, so
/// `http://x` is no key). Shared with the host, which locates configuration errors the same
/// way.
pub fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for quote in ['\'', '"'] {
        if let Some(rest) = t.strip_prefix(quote) {
            let end = rest.find(quote)?;
            return rest[end + 1..]
                .trim_start()
                .starts_with(':')
                .then(|| &rest[..end]);
        }
    }
    let end = t.find(':')?;
    let after = &t[end + 1..];
    (after.is_empty() || after.starts_with([' ', '\t'])).then(|| t[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_finds_rules_and_fields_by_indentation() {
        let text = "# comment\nevents:\n  first:\n    pattern: a\n\n  'second':\n    type: x\n    pattern: b\n";
        let l = Locator::new(text);
        let events = l.top_level("events").unwrap();
        assert_eq!(events, 2);
        let second = l.child(events, "second").unwrap();
        assert_eq!(second, 6);
        assert_eq!(l.field(second, "pattern"), Some(8));
        assert_eq!(l.field(l.child(events, "first").unwrap(), "type"), None);
    }
}
