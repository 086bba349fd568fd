//! Text from the game (player, server and surface names, chat) as it is shown in Discord,
//! written once for the host, the plugin SDK and the patterns engine:
//!
//! - [`escape`] makes it plain text in Discord's Markdown: it cannot bold, strike, link,
//!   quote or start a heading or list, and `@everyone` pings nobody;
//! - [`cut`] keeps it within a size in bytes, on a character boundary, marked `…` when cut.
//!
//! Discord's own limits count UTF-16 units; the host's Discord module cuts by those.

#![no_std]

extern crate alloc;

use alloc::string::String;

/// `text` made safe to show in Discord's Markdown (see [`escape_into`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(text, &mut out);
    out
}

/// Appends `text` to `out` with every character that means something in Discord's Markdown
/// escaped by a backslash (`\`, `*`, `_`, `~`, `` ` ``, `|`, `>`, `[`, `]`, and `#` or `-` at
/// its start, where they make a heading or a list), and a zero-width space after each `@`,
/// so `@everyone` and `@here` are text even where a message's allowed mentions would let
/// them ping.
pub fn escape_into(text: &str, out: &mut String) {
    if text.starts_with(['#', '-']) {
        out.push('\\');
    }
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when it was
/// cut (the `…` counts toward `max`).
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let end = text.floor_char_boundary(max.saturating_sub('…'.len_utf8()));
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn markdown_and_mentions_are_defused_and_plain_text_is_kept() {
        assert_eq!(escape("Eve_42"), "Eve\\_42");
        assert_eq!(
            escape("**bold** ~~x~~ `c` ||s|| [l](u) > q"),
            "\\*\\*bold\\*\\* \\~\\~x\\~\\~ \\`c\\` \\|\\|s\\|\\| \\[l\\](u) \\> q"
        );
        assert_eq!(escape("@everyone"), "@\u{200b}everyone");
        assert_eq!(escape("# big"), "\\# big");
        assert_eq!(escape("- item"), "\\- item");
        assert_eq!(escape("a-b #1"), "a-b #1");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("Ünïcödé ✓"), "Ünïcödé ✓");
    }

    #[test]
    fn cut_keeps_short_text_and_ends_long_text_within_the_limit() {
        assert_eq!(cut("short".to_string(), 11), "short");
        let long = cut("é".repeat(2000), 11);
        assert!(long.len() <= 11, "{long}");
        assert!(long.ends_with('…'));
        assert_eq!(long, "éééé…");
        assert_eq!(cut("abcdef".to_string(), 0), "…");
    }
}
