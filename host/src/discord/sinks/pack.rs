//! Lines packed into as few Discord messages as its content limit allows, so a busy server
//! stays within the rate limits.

/// Discord's limit for a message's `content`, in UTF-16 units (as its limits module counts).
const MAX_CONTENT: usize = 2000;

/// The lines of a batch packed into messages of at most [`MAX_CONTENT`] characters; a
/// longer line is cut.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current = String::new();
    for mut line in lines {
        if len(&line) > MAX_CONTENT {
            let mut cut = String::new();
            for c in line.chars() {
                if len(&cut) + c.len_utf16() > MAX_CONTENT - 1 {
                    break;
                }
                cut.push(c);
            }
            line = cut + "…";
        }
        if !current.is_empty() && len(&current) + 1 + len(&line) > MAX_CONTENT {
            messages.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

fn len(s: &str) -> usize {
    s.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_lines_into_messages_within_the_limit() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("{i:03} {}", "x".repeat(46)))
            .collect();
        let messages = pack(lines.clone());
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| len(m) <= MAX_CONTENT));
        assert_eq!(messages.join("\n"), lines.join("\n"));
        let long = pack(vec!["é".repeat(5000)]);
        assert_eq!(len(&long[0]), MAX_CONTENT);
        let emoji = pack(vec!["🚀".repeat(1500)]);
        assert!(len(&emoji[0]) <= MAX_CONTENT, "{}", len(&emoji[0]));
    }
}
