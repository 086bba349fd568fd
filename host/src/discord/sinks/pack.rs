//! Lines packed into as few Discord messages as its content limit allows, so a busy server
//! stays within the rate limits.

/// Discord's limit for a message's `content`, in UTF-16 units (as its limits module counts).
const MAX_CONTENT: usize = 2000;

/// The lines of a batch packed into messages of at most [`MAX_CONTENT`] characters, in
/// order, each with how many lines it holds; a longer line is cut.
pub fn pack(lines: impl IntoIterator<Item = String>) -> Vec<(String, usize)> {
    let mut messages = Vec::new();
    let mut current = String::new();
    let mut held = 0;
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
        if held > 0 && len(&current) + 1 + len(&line) > MAX_CONTENT {
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
        let packed = pack(lines.clone());
        let messages: Vec<&str> = packed.iter().map(|(m, _)| m.as_str()).collect();
        assert!(messages.len() > 1);
        assert!(messages.iter().all(|m| len(m) <= MAX_CONTENT));
        assert_eq!(messages.join("\n"), lines.join("\n"));
        for (m, n) in &packed {
            assert_eq!(m.lines().count(), *n);
        }
        assert_eq!(packed.iter().map(|(_, n)| n).sum::<usize>(), 100);
        let long = pack(vec!["é".repeat(5000)]);
        assert_eq!(len(&long[0].0), MAX_CONTENT);
        let emoji = pack(vec!["🚀".repeat(1500)]);
        assert!(len(&emoji[0].0) <= MAX_CONTENT, "{}", len(&emoji[0].0));
        assert_eq!(
            pack(vec![String::new(), "a".into()]),
            [("\na".to_owned(), 2)]
        );
    }
}
