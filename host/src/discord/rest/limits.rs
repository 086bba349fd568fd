//! Discord's documented limits on what it accepts, and the check of the slash-command
//! definitions against them (the same check runs offline in `factorio-isr check`).
//!
//! Discord gives its limits in characters without saying whether it counts code points or
//! UTF-16 units; [`length`] counts UTF-16 units, never fewer than code points, so text cut
//! to a limit here fits however Discord counts.

use std::borrow::Cow;

use serde_json::Value;

/// A message's `content`.
pub const CONTENT: usize = 2000;
/// An embed's title.
pub const EMBED_TITLE: usize = 256;
/// An embed's description.
pub const EMBED_DESCRIPTION: usize = 4096;
/// Fields in one embed.
pub const EMBED_FIELDS: usize = 25;
/// A field's name.
pub const FIELD_NAME: usize = 256;
/// A field's value.
pub const FIELD_VALUE: usize = 1024;
/// An embed's footer text.
pub const FOOTER: usize = 2048;
/// An embed author's name.
pub const AUTHOR: usize = 256;
/// All the text of all the embeds of one message together.
pub const EMBEDS_TOTAL: usize = 6000;
/// Embeds in one message.
pub const EMBEDS: usize = 10;
/// A message's `nonce`.
pub const NONCE: usize = 25;
/// Results of one autocomplete answer, and choices of one option.
pub const CHOICES: usize = 25;
/// A choice's name.
pub const CHOICE_NAME: usize = 100;
/// A command's or option's name.
pub const COMMAND_NAME: usize = 32;
/// A command's or option's description.
pub const COMMAND_DESCRIPTION: usize = 100;
/// Options of one command, subcommand group or subcommand.
pub const OPTIONS: usize = 25;
/// Names, descriptions and choices of one command and all its options together.
pub const COMMAND_TOTAL: usize = 8000;

/// The length of `s` as Discord may count it (UTF-16 units).
pub fn length(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `s` cut to at most `max` (as [`length`] counts), ending in `…` when it was cut.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if length(s) <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut used = 0;
    let budget = max.saturating_sub(1);
    for c in s.chars() {
        if used + c.len_utf16() > budget {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    if max > 0 {
        out.push('…');
    }
    Cow::Owned(out)
}

/// One way a command definition breaks Discord's rules, with the JSON path it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// Every way the command definitions (the body of a bulk overwrite) break Discord's limits:
/// name form and length, description length, option and choice counts, required options
/// before optional ones, and the 8,000-character total per command.
pub fn check_commands(commands: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(list) = commands.as_array() else {
        out.push(Violation {
            path: String::new(),
            problem: "must be a list of commands".into(),
        });
        return out;
    };
    if list.len() > 100 {
        out.push(Violation {
            path: String::new(),
            problem: "at most 100 commands".into(),
        });
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, cmd) in list.iter().enumerate() {
        let path = format!("[{i}]");
        let name = cmd["name"].as_str().unwrap_or_default();
        if names.contains(&name) {
            out.push(Violation {
                path: format!("{path}.name"),
                problem: format!("`{name}` is registered twice"),
            });
        }
        names.push(name);
        let mut total = 0;
        check_entry(cmd, &path, 0, &mut total, &mut out);
        if total > COMMAND_TOTAL {
            out.push(Violation {
                path,
                problem: format!(
                    "names, descriptions and choices total {total} characters; at most {COMMAND_TOTAL}"
                ),
            });
        }
    }
    out
}

/// Checks one command (depth 0) or option, and its options.
fn check_entry(v: &Value, path: &str, depth: usize, total: &mut usize, out: &mut Vec<Violation>) {
    let mut bad = |field: &str, problem: String| {
        out.push(Violation {
            path: format!("{path}.{field}"),
            problem,
        })
    };
    let name = v["name"].as_str().unwrap_or_default();
    *total += length(name);
    if !valid_name(name) {
        bad(
            "name",
            format!("`{name}` must be 1 to {COMMAND_NAME} lowercase letters, digits, `-` or `_`"),
        );
    }
    let description = v["description"].as_str().unwrap_or_default();
    *total += length(description);
    if !(1..=COMMAND_DESCRIPTION).contains(&length(description)) {
        bad(
            "description",
            format!(
                "must be 1 to {COMMAND_DESCRIPTION} characters, is {}",
                length(description)
            ),
        );
    }
    if let Some(choices) = v["choices"].as_array() {
        check_choices(choices, &mut bad, total);
    }
    let Some(options) = v["options"].as_array() else {
        return;
    };
    if options.len() > OPTIONS {
        bad(
            "options",
            format!("Must be {OPTIONS} or fewer in length, is {}", options.len()),
        );
    }
    if depth > 2 {
        bad("options", "nested deeper than a subcommand group".into());
    }
    check_options(options, path, depth, total, out);
}

/// An option's choices: how many, and each one's name.
fn check_choices(choices: &[Value], bad: &mut impl FnMut(&str, String), total: &mut usize) {
    if choices.len() > CHOICES {
        bad(
            "choices",
            format!("Must be {CHOICES} or fewer in length, is {}", choices.len()),
        );
    }
    for (j, c) in choices.iter().enumerate() {
        let n = c["name"].as_str().unwrap_or_default();
        *total += length(n) + c["value"].as_str().map_or(0, length);
        if !(1..=CHOICE_NAME).contains(&length(n)) {
            bad(
                &format!("choices[{j}].name"),
                format!("must be 1 to {CHOICE_NAME} characters"),
            );
        }
    }
}

/// The options of the entry at `path`: names once each, required ones first, and each
/// one checked in turn.
fn check_options(
    options: &[Value],
    path: &str,
    depth: usize,
    total: &mut usize,
    out: &mut Vec<Violation>,
) {
    let mut optional_seen = false;
    let mut seen: Vec<&str> = Vec::new();
    for (j, o) in options.iter().enumerate() {
        let opt_path = format!("{path}.options[{j}]");
        let n = o["name"].as_str().unwrap_or_default();
        if seen.contains(&n) {
            out.push(Violation {
                path: format!("{opt_path}.name"),
                problem: format!("`{n}` appears twice"),
            });
        }
        seen.push(n);
        // Subcommands (1) and groups (2) have no `required`; for values it must come first.
        let is_sub = matches!(o["type"].as_u64(), Some(1 | 2));
        if !is_sub {
            let required = o["required"].as_bool().unwrap_or(false);
            if required && optional_seen {
                out.push(Violation {
                    path: opt_path.clone(),
                    problem: "a required option must come before the optional ones".into(),
                });
            }
            optional_seen |= !required;
        }
        check_entry(o, &opt_path, depth + 1, total, out);
    }
}

/// Discord's rule for command and option names (for the characters this project uses:
/// lowercase ASCII letters, digits, `-` and `_`).
fn valid_name(name: &str) -> bool {
    (1..=COMMAND_NAME).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cut_keeps_short_text_and_ends_long_text_within_the_limit() {
        assert_eq!(cut("hello", 5), "hello");
        assert_eq!(cut("hello!", 5), "hell…");
        // An emoji is two UTF-16 units: never split, never over.
        let s = "🚀".repeat(10);
        let c = cut(&s, 7);
        assert!(length(&c) <= 7, "{c}");
        assert_eq!(c, "🚀🚀🚀…");
        assert_eq!(length(&cut(&"é".repeat(5000), CONTENT)), CONTENT);
    }

    #[test]
    fn twenty_six_subcommands_are_one_too_many() {
        let sub = |i: usize| json!({"type": 1, "name": format!("s{i}"), "description": "d"});
        let cmd = |n: usize| json!([{"name": "factorio", "description": "d", "options": (0..n).map(sub).collect::<Vec<_>>()}]);
        assert!(check_commands(&cmd(25)).is_empty());
        let v = check_commands(&cmd(26));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].path, "[0].options");
    }

    #[test]
    fn names_descriptions_choices_and_order_are_checked() {
        let bad = json!([{
            "name": "Factorio", "description": "",
            "options": [
                {"type": 3, "name": "a", "description": "d", "required": false},
                {"type": 3, "name": "b", "description": "d", "required": true,
                 "choices": (0..26).map(|i| json!({"name": format!("c{i}"), "value": "v"})).collect::<Vec<_>>()},
            ]
        }]);
        let v: Vec<String> = check_commands(&bad).iter().map(|v| v.to_string()).collect();
        assert!(v.iter().any(|v| v.starts_with("[0].name:")), "{v:?}");
        assert!(v.iter().any(|v| v.starts_with("[0].description:")), "{v:?}");
        assert!(
            v.iter()
                .any(|v| v.starts_with("[0].options[1]: a required")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|v| v.starts_with("[0].options[1].choices:")),
            "{v:?}"
        );
    }
}
