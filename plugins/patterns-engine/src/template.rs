//! `message` templates: `{player}`, `{message}` and any named group, filled in with values
//! escaped for Markdown (templates are Markdown, as in the Python bot: `**{player}** joined`).

use factorio_isr_text::escape_into;

/// A parsed template: literal text and the names to fill in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// A starting capacity for rendered text: the literal text plus room for values.
    len_hint: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(String),
}

impl Template {
    /// Parses `text`; like the Python bot, only `{word}` (letters, digits, `_`) is a
    /// placeholder and any other brace is literal text.
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('}') {
                literal.push_str(&rest[..open]);
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Value(after[..name_len].to_owned()));
                rest = &after[name_len + 1..];
            } else {
                literal.push_str(&rest[..=open]);
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let len_hint = text.len() + 64;
        Self {
            source: text.to_owned(),
            parts,
            len_hint,
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The placeholder names, in order of appearance.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the template in; a value that is absent (an optional group that did not take
    /// part in the match) renders as nothing, and trailing white space is trimmed.
    pub fn render<'v>(&self, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
        let mut out = String::with_capacity(self.len_hint);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(name) => {
                    if let Some(v) = lookup(name) {
                        escape_into(v, &mut out);
                    }
                }
            }
        }
        out.truncate(out.trim_end().len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, values: &[(&str, &str)]) -> String {
        Template::parse(t).render(|n| values.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
    }

    #[test]
    fn fills_placeholders_and_keeps_other_braces() {
        assert_eq!(
            render(
                "**{player}** said {message} {not a name} {",
                &[("player", "Al"), ("message", "hi")]
            ),
            "**Al** said hi {not a name} {"
        );
        let names: Vec<_> = Template::parse("{a}{b_2}x{c")
            .names()
            .map(str::to_owned)
            .collect();
        assert_eq!(names, ["a", "b_2"]);
    }

    #[test]
    fn escapes_markdown_in_values_but_not_in_the_template() {
        assert_eq!(
            render(
                "**{player}**: {message}",
                &[("player", "a_b"), ("message", "*bold* `x` > q")]
            ),
            "**a\\_b**: \\*bold\\* \\`x\\` \\> q"
        );
    }

    #[test]
    fn absent_values_render_empty_and_trailing_space_is_trimmed() {
        assert_eq!(
            render("**{player}** {message}", &[("player", "Al")]),
            "**Al**"
        );
    }
}
