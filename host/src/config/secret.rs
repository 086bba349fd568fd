//! A value that must never be shown (passwords, tokens, webhook URLs), and reading any YAML
//! scalar as text.

use serde::Deserialize;

/// A value that never reaches a log line or an HTTP response: `Debug` prints `***`. Any
/// scalar is a secret's text (`12345678` is the password `12345678`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        any_scalar(d).map(Secret)
    }
}

/// A string field that takes any scalar as its text (a number or a switch that came from a
/// `${VAR}`, say); a sequence or mapping is an error that shows no value.
pub(super) fn any_scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match serde_norway::Value::deserialize(d)? {
        serde_norway::Value::String(s) => Ok(s),
        serde_norway::Value::Number(n) => Ok(n.to_string()),
        serde_norway::Value::Bool(b) => Ok(b.to_string()),
        serde_norway::Value::Null => Err(D::Error::custom("a value is needed here")),
        _ => Err(D::Error::custom(
            "a text is needed here, not a list or a mapping",
        )),
    }
}

/// [`any_scalar`], for an optional field.
pub(super) fn any_scalar_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    any_scalar(d).map(Some)
}

impl Secret {
    /// Wraps a value that must not be shown.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
