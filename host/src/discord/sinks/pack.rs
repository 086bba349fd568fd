//! Lines packed into as few Discord messages as its content limit allows, so a busy server
//! stays within the rate limits.

use crate::discord::rest::limits::{CONTENT, cut, length};

/// The lines of a batch packed into messages of at most [`CONTENT`] characters, in
/// order, each with how many lines it holds; a longer line is cut.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<(String, usize)> {
    let mut messages = Vec::new();
    let mut current = String::new();
    let mut held = 0;
    for mut line in lines {
        if length(&line) > CONTENT {
            line = cut(&line, CONTENT).into_owned();
        }
        if held > 0 && length(&current) + 1 + length(&line) > CONTENT {
            messages.push((std::mem::take(&mut current), std::mem::take(&mut held)));
        }
        if held > 0 {
            current.push('\n');
        }
        current.push_str(&line);
        held += 1;
    }
    if held > 0 {
        messages.push((current, held));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lines_into_messages_within_the_limit() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("{i:03} {}", "x".repeat(46)))
            .collect();
        let packed = pack(lines.clone());
        let messages: Vec<&str> = packed.iter().map(|(m, _)| m.as_str()).collect();
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| length(m) <= CONTENT));
        assert_eq!(messages.join("\n"), lines.join("\n"));
        for (m, n) in &packed {
            assert_eq!(m.lines().count(), *n);
        }
        assert_eq!(packed.iter().map(|(_, n)| n).sum::<usize>(), 100);
        let long = pack(vec!["é".repeat(5000)]);
        assert_eq!(length(&long[0].0), CONTENT);
        let emoji = pack(vec!["🚀".repeat(1500)]);
        assert!(length(&emoji[0].0) <= CONTENT, "{}", length(&emoji[0].0));
        assert_eq!(
            pack(vec![String::new(), "a".into()]),
            [("\na".to_owned(), 2)]
        );
    }
}
