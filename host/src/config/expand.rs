//! `${VAR}` and `${VAR:-default}` in configuration values, from the environment.
//!
//! Expansion happens after the YAML is parsed, inside string values only: a variable's
//! value is the value, whatever it contains (`#`, quotes, newlines, `: `, backslashes), and
//! can never add keys or break the YAML. A value that is exactly one `${VAR}` and whose text
//! is a plain number or `true`/`false` (one that reads back as the same text) fills number
//! and switch fields; every string field that may take such a value (secrets above all)
//! takes it as its text, so a password `12345678` stays `12345678`.

use serde_norway::Value;

/// A variable that was expanded, to keep its value out of error messages.
#[derive(Debug, Clone)]
pub(super) struct Used {
    pub name: String,
    pub value: String,
}

/// A reference that could not be expanded.
#[derive(Debug)]
pub(super) struct Unexpanded {
    /// The text that starts the reference (`${NAME`), to find its line.
    pub reference: String,
    pub problem: String,
}

/// Expands every `${...}` in the string values under `value` (keys are left alone). On an
/// unset variable without a default, or a malformed reference, the error names it.
pub(super) fn expand_value(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<Used>,
) -> Result<(), Unexpanded> {
    match value {
        Value::String(s) if s.contains('$') => {
            let (text, whole) = expand_str(s, env, used)?;
            *value = if whole {
                typed(text)
            } else {
                Value::String(text)
            };
        }
        Value::Sequence(items) => {
            for item in items {
                expand_value(item, env, used)?;
            }
        }
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                expand_value(v, env, used)?;
            }
        }
        Value::Tagged(t) => expand_value(&mut t.value, env, used)?,
        _ => {}
    }
    Ok(())
}

/// The variable `value` is exactly a reference to (`${NAME}`, no default), when it is not
/// set.
pub(super) fn unset_whole_reference(
    value: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let name = value.as_str()?.strip_prefix("${")?.strip_suffix('}')?;
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (plain && env(name).is_none()).then(|| name.to_owned())
}

/// The value of a scalar that was exactly one reference: a number or a switch when its
/// text reads back as exactly that, else the text.
fn typed(text: String) -> Value {
    let number = if let Ok(n) = text.parse::<u64>() {
        Some(serde_norway::Number::from(n))
    } else if let Ok(n) = text.parse::<i64>() {
        Some(serde_norway::Number::from(n))
    } else if text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        text.parse::<f64>().ok().map(serde_norway::Number::from)
    } else {
        None
    };
    match (number, text.as_str()) {
        (Some(n), _) if n.to_string() == text => Value::Number(n),
        (_, "true") => Value::Bool(true),
        (_, "false") => Value::Bool(false),
        _ => Value::String(text),
    }
}

/// Expands the references in `s`; also says whether `s` was exactly one reference. `$$` is
/// a literal `$`.
fn expand_str(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    used: &mut Vec<Used>,
) -> Result<(String, bool), Unexpanded> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut references = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| Unexpanded {
                reference: "${".into(),
                problem: "`${` without a closing `}`".into(),
            })?;
            let spec = &body[..end];
            let (name, default) = match spec.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (spec, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(Unexpanded {
                    reference: format!("${{{spec}"),
                    problem: format!("`${{{spec}}}` is not a variable name"),
                });
            }
            let value = env(name).or_else(|| default.map(str::to_owned)).ok_or_else(|| Unexpanded {
                reference: format!("${{{name}"),
                problem: format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                ),
            })?;
            out.push_str(&value);
            used.push(Used {
                name: name.to_owned(),
                value,
            });
            references += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    let whole = references == 1 && s.starts_with("${") && s.find('}') == Some(s.len() - 1);
    Ok((out, whole))
}

/// `message` with every expanded value of three characters or more shown as the reference
/// it came from: no error ever shows a variable's value (a password put in the wrong field
/// included).
pub(super) fn redact(message: &str, used: &[Used]) -> String {
    let mut out = message.to_owned();
    let mut by_length: Vec<&Used> = used.iter().filter(|u| u.value.len() >= 3).collect();
    by_length.sort_by_key(|u| std::cmp::Reverse(u.value.len()));
    for u in by_length {
        let reference = format!("${{{}}}", u.name);
        // serde shows a wrong string as Rust's debug form (`\"` for `"`): hide that too.
        let quoted = format!("{:?}", u.value);
        let escaped = &quoted[1..quoted.len() - 1];
        if escaped != u.value {
            out = out.replace(escaped, &reference);
        }
        out = out.replace(&u.value, &reference);
    }
    out
}

/// The first line holding `needle` outside a comment, for an error.
pub(super) fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let code = l.split(" #").next().unwrap_or(l);
            !l.trim_start().starts_with('#') && code.contains(needle)
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("s3cret".into()),
            "NUM" => Some("12345678".into()),
            "HEX" => Some("0x1F".into()),
            "EXP" => Some("1e3".into()),
            "ZEROS" => Some("007".into()),
            "HOSTILE" => Some("pass #word\nextra: key\n  - [x: *y \\t \\u0041 \"".into()),
            _ => None,
        }
    }

    fn expanded(yaml: &str) -> Value {
        let mut v: Value = serde_norway::from_str(yaml).unwrap();
        expand_value(&mut v, &env, &mut Vec::new()).unwrap();
        v
    }

    #[test]
    fn expands_variables_and_defaults_inside_values() {
        let v = expanded("a: ${PASS}\nb: ${NOPE:-x}\nc: $$5 $d\nd: 'at ${PASS}!'\n");
        assert_eq!(v["a"], Value::String("s3cret".into()));
        assert_eq!(v["b"], Value::String("x".into()));
        assert_eq!(v["c"], Value::String("$5 $d".into()));
        assert_eq!(v["d"], Value::String("at s3cret!".into()));
    }

    #[test]
    fn a_value_is_the_value_whatever_it_contains() {
        let v = expanded("a: ${HOSTILE}\nb: \"${HOSTILE}\"\n");
        let hostile = env("HOSTILE").unwrap();
        assert_eq!(v["a"], Value::String(hostile.clone()));
        assert_eq!(v["b"], Value::String(hostile));
        assert_eq!(v.as_mapping().unwrap().len(), 2, "no key was injected");
    }

    #[test]
    fn only_a_number_that_reads_back_as_itself_becomes_a_number() {
        let v = expanded("a: ${NUM}\nb: ${HEX}\nc: ${EXP}\nd: ${ZEROS}\ne: x${NUM}\n");
        assert_eq!(v["a"], Value::Number(12345678u64.into()));
        assert_eq!(v["b"], Value::String("0x1F".into()));
        assert_eq!(v["c"], Value::String("1e3".into()));
        assert_eq!(v["d"], Value::String("007".into()));
        assert_eq!(v["e"], Value::String("x12345678".into()));
    }

    #[test]
    fn comments_are_no_values() {
        let v = expanded("# ${UNSET}\na: ${PASS} # ${ALSO_UNSET}\n");
        assert_eq!(v["a"], Value::String("s3cret".into()));
    }

    #[test]
    fn an_unset_variable_is_named_and_found() {
        let mut v: Value = serde_norway::from_str("a: 1\nb: ${MISSING}\n").unwrap();
        let e = expand_value(&mut v, &env, &mut Vec::new()).unwrap_err();
        assert!(e.problem.contains("`MISSING` is not set"), "{}", e.problem);
        assert_eq!(e.reference, "${MISSING");
        assert_eq!(
            line_of("# ${MISSING}\na: 1\nb: ${MISSING}\n", "${MISSING"),
            Some(3)
        );
    }

    #[test]
    fn values_are_redacted_longest_first() {
        let used = vec![
            Used {
                name: "A".into(),
                value: "hunter2".into(),
            },
            Used {
                name: "B".into(),
                value: "hunter".into(),
            },
            Used {
                name: "C".into(),
                value: "x".into(),
            },
        ];
        assert_eq!(
            redact("invalid type: string \"hunter2\", hunter, x", &used),
            "invalid type: string \"${A}\", ${B}, x"
        );
    }

    #[test]
    fn a_value_is_redacted_as_serde_shows_it_too() {
        // Found by the property test: serde shows a wrong string in its debug form, where
        // `"` is `\"`, so the value as written was not found in the message.
        let used = vec![Used {
            name: "PORT".into(),
            value: "a\"b}\\c\n".into(),
        }];
        let message = format!("invalid type: string {:?}, expected u16", used[0].value);
        assert_eq!(
            redact(&message, &used),
            "invalid type: string \"${PORT}\", expected u16"
        );
    }
}
