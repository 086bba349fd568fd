//! Finds the line of a value in block-style YAML text by its path (`servers` → `prod` →
//! `sinks` → item 1), so that an error found after parsing (a wrong type, an unknown field)
//! names the line of the field, not of the whole server. Flow style (`{a: 1}`) is not
//! followed: the line of the deepest step found is given instead.

use factorio_isr_patterns_engine::yaml_key_of;

/// One step of a path: a key of a mapping or an item of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A node found so far: its line (0-based), the column its children must be right of, and
/// for an item of a sequence the column its first key starts at on the item's own line.
#[derive(Debug, Clone, Copy)]
struct Node {
    line: usize,
    indent: usize,
    body: Option<usize>,
}

/// The 1-based line of the deepest step of `path` found in `text`.
pub fn line_of(text: &str, path: &[Step]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut at: Option<Node> = None;
    for step in path {
        let kids = children(&lines, at);
        let found = match step {
            Step::Key(k) => kids
                .into_iter()
                .find(|(_, content)| yaml_key_of(content) == Some(k.as_str())),
            Step::Index(n) => kids
                .into_iter()
                .filter(|(_, content)| content.starts_with('-'))
                .nth(*n),
        };
        let Some((line, content)) = found else { break };
        let column = lines[line].len() - content.len();
        at = Some(Node {
            line,
            indent: column,
            // An item's own keys may start on its line: `- jsonl: x`.
            body: matches!(step, Step::Index(_))
                .then(|| column + (content.len() - item_body(content).len())),
        });
    }
    at.map(|n| n.line + 1)
}

/// The direct children of `parent` (the top level when none): (line, content from the
/// child's column).
fn children<'a>(lines: &[&'a str], parent: Option<Node>) -> Vec<(usize, &'a str)> {
    let mut out = Vec::new();
    let mut child_indent = None;
    let first = match parent {
        Some(n) => {
            let line = lines[n.line];
            // The first key of an item sits on the item's own line, after the `- `.
            if let Some(col) = n.body
                && let Some(body) = line.get(col..)
                && !body.trim().is_empty()
            {
                out.push((n.line, body));
                child_indent = Some(col);
            }
            n.line + 1
        }
        None => 0,
    };
    let parent_indent = parent.map(|n| n.indent);
    for (i, line) in lines.iter().enumerate().skip(first) {
        if is_blank(line) {
            continue;
        }
        let ind = indent(line);
        let inside = match parent_indent {
            None => true,
            // YAML allows a sequence at its key's own column: `key:\n- a\n- b`.
            Some(p) => {
                ind > p
                    || (ind == p
                        && line.trim_start().starts_with('-')
                        && child_indent.is_none_or(|c| c == p))
            }
        };
        if !inside {
            break;
        }
        let want = *child_indent.get_or_insert(ind);
        if ind == want {
            out.push((i, &line[ind..]));
        }
    }
    out
}

/// The 1-based line of the first alias (`*name`) in `text`: where a document whose aliases
/// expand to too much (a "billion laughs") starts to. Quoted text and comments are skipped.
pub fn first_alias(text: &str) -> Option<usize> {
    text.lines().position(has_alias).map(|i| i + 1)
}

fn has_alias(line: &str) -> bool {
    let mut quote = None;
    let mut before = ' ';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if before.is_whitespace() => return false,
            (None, '*')
                if matches!(before, ' ' | '\t' | '[' | '{' | ',' | ':' | '-')
                    && chars
                        .peek()
                        .is_some_and(|n| n.is_alphanumeric() || *n == '_') =>
            {
                return true;
            }
            _ => {}
        }
        before = c;
    }
    false
}

fn item_body(content: &str) -> &str {
    content
        .strip_prefix('-')
        .map_or(content, |r| r.trim_start_matches(' '))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    const TEXT: &str = "\
# servers
servers:
  prod:
    name: Prod

    rcon_port: abc
    sinks:
      - jsonl: /tmp/a
      - console
      - webhook: x
        extra: 1
    parsers:
    - plugin: patterns
      config: {dir: p}
  'test':
    name: T
discord:
  guild_id: 1
";

    #[test]
    fn the_first_alias_outside_quotes_and_comments_is_found() {
        let text = "a: '*no'\nb: \"x *no\" # *no\nc: 2 * 3\nd: &x [1]\ne: [*x, *x]\nf: *x\n";
        assert_eq!(first_alias(text), Some(5));
        assert_eq!(first_alias("a: 1\n"), None);
    }

    #[test]
    fn keys_and_items_are_found_by_indentation() {
        let at = |path: &[Step]| line_of(TEXT, path);
        assert_eq!(at(&[key("servers")]), Some(2));
        assert_eq!(at(&[key("servers"), key("prod")]), Some(3));
        assert_eq!(
            at(&[key("servers"), key("prod"), key("rcon_port")]),
            Some(6)
        );
        assert_eq!(at(&[key("servers"), key("test"), key("name")]), Some(16));
        assert_eq!(at(&[key("discord"), key("guild_id")]), Some(18));
        let sinks = |rest: &[Step]| {
            let mut p = vec![key("servers"), key("prod"), key("sinks")];
            p.extend_from_slice(rest);
            at(&p)
        };
        assert_eq!(sinks(&[]), Some(7));
        assert_eq!(sinks(&[Step::Index(0)]), Some(8));
        assert_eq!(sinks(&[Step::Index(1)]), Some(9));
        assert_eq!(sinks(&[Step::Index(2), key("webhook")]), Some(10));
        assert_eq!(sinks(&[Step::Index(2), key("extra")]), Some(11));
        // A sequence at its key's column.
        let parsers = [key("servers"), key("prod"), key("parsers"), Step::Index(0)];
        assert_eq!(at(&parsers), Some(13));
        let mut config = parsers.to_vec();
        config.push(key("config"));
        assert_eq!(at(&config), Some(14));
        // Not there (or inside flow style): the deepest step found.
        config.push(key("dir"));
        assert_eq!(at(&config), Some(14));
        assert_eq!(at(&[key("servers"), key("prod"), key("nope")]), Some(3));
        assert_eq!(at(&[key("nope")]), None);
    }
}
