//! How an alert reads for people: which server it is about, and its fields in words with
//! units (`low_for_secs: 125` is "Low for: 2 min 5 s"). Monitors keep machine keys (the
//! JSON-lines sink and the API show them as they are); what people read is made here, the
//! same for every monitor, in any language.

use super::duration_text;
use factorio_isr_text::escape;

/// The server an alert is about, as people know it: its name and its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLabel {
    pub tag: String,
    pub name: Option<String>,
}

impl ServerLabel {
    /// The server `tag`, called `name` if it has one.
    pub fn new(tag: &str, name: Option<&str>) -> Self {
        Self {
            tag: tag.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    /// `Production (prod)`, or `prod` without a name: plain text (an embed title).
    pub fn plain(&self) -> String {
        match &self.name {
            Some(n) if n != &self.tag => format!("{n} ({})", self.tag),
            _ => self.tag.clone(),
        }
    }

    /// `**Production** (`prod`)`: Markdown, the name escaped.
    pub fn markdown(&self) -> String {
        match &self.name {
            Some(n) if n != &self.tag => format!("**{}** (`{}`)", escape(n), self.tag),
            _ => format!("`{}`", self.tag),
        }
    }
}

/// Words that are written in capitals.
const ACRONYMS: &[&str] = &[
    "ups", "sma", "ema", "rcon", "id", "url", "api", "cpu", "ram",
];

/// A field's name and value as people read them.
pub fn field(key: &str, value: &str) -> (String, String) {
    let (stem, value) = match unit(key) {
        Some((stem, unit)) => (stem, unit.show(value)),
        None => (key, shown_value(key, value)),
    };
    match LABELS.iter().find(|(k, _)| *k == key) {
        Some((_, label)) => ((*label).to_owned(), value),
        None => (words(stem), value),
    }
}

/// Names that read better said otherwise than word by word.
const LABELS: &[(&str, &str)] = &[
    ("down_secs", "Down for"),
    ("open_secs", "Open for"),
    ("judged", "Judged by"),
    ("ups_sma", "UPS (SMA)"),
    ("ups_ema", "UPS (EMA)"),
];

/// Units a key's suffix names.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
    Percent,
}

impl Unit {
    fn show(self, value: &str) -> String {
        match (self, value.trim().parse::<u64>()) {
            (Self::Seconds, Ok(secs)) => duration_text(secs),
            (Self::Millis, _) => format!("{value} ms"),
            (Self::Percent, _) => format!("{value} %"),
            (Self::Seconds, Err(_)) => value.to_owned(),
        }
    }
}

fn unit(key: &str) -> Option<(&str, Unit)> {
    [
        ("_secs", Unit::Seconds),
        ("_seconds", Unit::Seconds),
        ("_ms", Unit::Millis),
        ("_pct", Unit::Percent),
        ("_percent", Unit::Percent),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| key.strip_suffix(suffix).map(|stem| (stem, unit)))
    .filter(|(stem, _)| !stem.is_empty())
}

/// A value that is itself a key (`judged: ups_ema`) is shown as its label.
fn shown_value(key: &str, value: &str) -> String {
    let is_key = |v: &str| LABELS.iter().any(|(k, _)| *k == v) || v == "ups";
    if key == "judged" && is_key(value) {
        return field(value, "").0;
    }
    value.to_owned()
}

/// `low_for` → `Low for`, `ups_warning_threshold` → `UPS warning threshold`.
fn words(key: &str) -> String {
    let mut out = Vec::new();
    for (i, w) in key
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        let lower = w.to_lowercase();
        if ACRONYMS.contains(&lower.as_str()) {
            out.push(lower.to_uppercase());
        } else if i == 0 {
            let mut chars = lower.chars();
            out.push(match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => String::new(),
            });
        } else {
            out.push(lower);
        }
    }
    if out.is_empty() {
        key.to_owned()
    } else {
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_words_with_units() {
        let shown = |k: &str, v: &str| {
            let (k, v) = field(k, v);
            format!("{k}: {v}")
        };
        assert_eq!(shown("low_for_secs", "125"), "Low for: 2 min 5 s");
        assert_eq!(shown("down_secs", "225"), "Down for: 3 min 45 s");
        assert_eq!(shown("open_secs", "60"), "Open for: 1 min");
        assert_eq!(shown("judged", "ups_ema"), "Judged by: UPS (EMA)");
        assert_eq!(shown("judged", "ups"), "Judged by: UPS");
        assert_eq!(shown("ups", "42.0"), "UPS: 42.0");
        assert_eq!(shown("warning_threshold", "55"), "Warning threshold: 55");
        assert_eq!(shown("latency_ms", "12"), "Latency: 12 ms");
        assert_eq!(shown("load_pct", "97"), "Load: 97 %");
        assert_eq!(shown("rcon-error", "refused"), "RCON error: refused");
        assert_eq!(shown("Custom Field", "x"), "Custom field: x");
        assert_eq!(shown("_secs", "5"), "Secs: 5");
    }

    #[test]
    fn a_server_is_named_by_name_and_tag() {
        let named = ServerLabel {
            tag: "prod".into(),
            name: Some("Pro*duction".into()),
        };
        assert_eq!(named.plain(), "Pro*duction (prod)");
        assert_eq!(named.markdown(), "**Pro\\*duction** (`prod`)");
        let bare = ServerLabel {
            tag: "prod".into(),
            name: None,
        };
        assert_eq!(
            (bare.plain(), bare.markdown()),
            ("prod".into(), "`prod`".into())
        );
    }
}
