//! Problems found in pattern files, each pointing at a file, a line and a rule.

use std::fmt;

/// One problem in a pattern file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The pattern file's name, as it was given.
    pub file: String,
    /// 1-based line, when it could be told.
    pub line: Option<usize>,
    /// The rule (key under `events`), when the problem is in one.
    pub rule: Option<String>,
    /// The key inside the rule, when the problem is in one.
    pub field: Option<String>,
    /// What is wrong, in words.
    pub problem: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ":")?;
        if let Some(rule) = &self.rule {
            write!(f, " rule `{rule}`")?;
            if let Some(field) = &self.field {
                write!(f, ", field `{field}`")?;
            }
            write!(f, ":")?;
        }
        write!(f, " {}", self.problem)
    }
}

/// Every error found while compiling a set of pattern files (compilation reports them all,
/// not only the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
