//! Events and alerts printed for people, one line each.

use std::io::Write;

use super::{Batch, Delivery, Sink};
use crate::alert::Notice;

/// Prints events on stdout as `[server] emoji text`.
#[derive(Debug, Default)]
pub struct ConsoleSink;

impl Sink for ConsoleSink {
    fn name(&self) -> &str {
        "console"
    }

    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            for e in batch.events() {
                writeln!(out, "{}", render(batch.server(), e))?;
            }
            out.flush()?;
            batch.all_done();
            Ok(())
        })
    }
}

/// One notice as a terminal line. Texts are written for Discord; the terminal gets them
/// without Markdown (`**Bob**` → `Bob`, `Eve\_42` → `Eve_42`).
pub fn render(server: &str, notice: &Notice) -> String {
    let e = notice.as_event();
    let body = without_markdown(&e.body());
    match &e.emoji {
        Some(emoji) => format!("[{server}] {emoji} {body}"),
        None => format!("[{server}] {} {body}", e.kind),
    }
}

/// `text` with Discord's bold/underline markers removed and Markdown escapes undone.
fn without_markdown(text: &str) -> String {
    let text = text.replace("**", "").replace("__", "");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|n| n.is_ascii_punctuation()) {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_gets_plain_text() {
        assert_eq!(
            without_markdown(r"**Eve\_42**: need more \*\*iron\*\* a\\b"),
            r"Eve_42: need more **iron** a\b"
        );
    }
}
