//! Reading lines from any byte source with bounded memory: invalid UTF-8 is replaced, a line
//! longer than the cap is cut (and said to be), `\r\n` and `\n` both end a line.

use std::io::{self, BufRead};

/// The longest line kept whole by default; the rest of a longer line is dropped.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// One line of text, ready for a parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line without its terminator, invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// How many bytes were dropped because the line was longer than the cap.
    pub truncated_bytes: u64,
}

/// Reads [`Line`]s from `reader`, never holding more than `max_line_bytes` of one line.
pub struct LineReader<R> {
    reader: R,
    max_line_bytes: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// A reader that cuts lines at `max_line_bytes`.
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            reader,
            max_line_bytes,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of input. A last line without a newline counts.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.buf.clear();
        let mut truncated = 0u64;
        let mut saw_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = self.max_line_bytes.saturating_sub(self.buf.len());
            let keep = take.min(room);
            self.buf.extend_from_slice(&chunk[..keep]);
            truncated += (take - keep) as u64;
            self.reader.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        Ok(Some(Line {
            text,
            truncated_bytes: truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_on_lf_and_crlf_and_keeps_a_last_unterminated_line() {
        let lines = read_all(b"a\r\nbb\n\nlast", 100);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "bb", "", "last"]);
    }

    #[test]
    fn replaces_invalid_utf8() {
        let lines = read_all(b"ok \xff\xfe end\n", 100);
        assert_eq!(lines[0].text, "ok \u{FFFD}\u{FFFD} end");
    }

    #[test]
    fn cuts_long_lines_and_counts_what_it_dropped() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nnext\n");
        let lines = read_all(&input, 20);
        assert_eq!(lines[0].text.len(), 20);
        assert_eq!(lines[0].truncated_bytes, 30);
        assert_eq!(lines[1].text, "next");
    }
}
