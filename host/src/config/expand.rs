//! `${VAR}` and `${VAR:-default}` in configuration text, from the environment.

/// Expands every `${...}` in `text`; an unset variable without a default is an error
/// `(line, problem)`. `$$` is a literal `$`.
pub(super) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    for (i, whole) in text.split_inclusive('\n').enumerate() {
        // Comments are copied as they are: `${VAR}` in a comment is documentation.
        let (line, comment) = whole.split_at(comment_start(whole));
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = body
                    .find('}')
                    .ok_or_else(|| (i + 1, "`${` without a closing `}`".to_owned()))?;
                let spec = &body[..end];
                let (name, default) = match spec.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (spec, None),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err((i + 1, format!("`${{{spec}}}` is not a variable name")));
                }
                match env(name).or_else(|| default.map(str::to_owned)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err((
                            i + 1,
                            format!(
                                "environment variable `{name}` is not set (write `${{{name}:-default}}` for a default)"
                            ),
                        ));
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// Where a YAML comment starts in `line` (its length if it has none): a `#` outside quotes,
/// at the start or after white space.
fn comment_start(line: &str) -> usize {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return i,
            _ => {}
        }
        prev = c;
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PASS").then(|| "s3cret".to_owned())
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(
            expand("a: ${PASS}\nb: ${NOPE:-x}\nc: $$5 $d", &env).unwrap(),
            "a: s3cret\nb: x\nc: $5 $d"
        );
    }

    #[test]
    fn comments_are_left_alone() {
        assert_eq!(
            expand("# ${X}\na: ${PASS} # ${Y}\nb: 'a # ${PASS}'\n", &env).unwrap(),
            "# ${X}\na: s3cret # ${Y}\nb: 'a # s3cret'\n"
        );
    }

    #[test]
    fn an_unset_variable_names_its_line() {
        let (line, problem) = expand("a: 1\nb: ${MISSING}\n", &env).unwrap_err();
        assert_eq!(line, 2);
        assert!(problem.contains("`MISSING` is not set"), "{problem}");
    }
}
