//! Turning bytes into lines with bounded memory: invalid UTF-8 is replaced, a line longer
//! than the cap is cut (and says so), `\r\n` and `\n` both end a line.

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

/// Splits a stream of byte chunks into [`Line`]s, holding at most `max_line_bytes` of the
/// line in progress.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    partial: Vec<u8>,
    dropped: u64,
}

impl LineSplitter {
    /// A splitter that cuts lines at `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            partial: Vec::new(),
            dropped: 0,
        }
    }

    /// Feeds `bytes`; every line completed by a newline is pushed to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        self.push_some(bytes, out, usize::MAX);
    }

    /// Feeds `bytes` until `max_lines` lines are complete, pushing them to `out`; returns
    /// how many bytes it took (all of them unless it stopped at `max_lines`).
    pub fn push_some(&mut self, bytes: &[u8], out: &mut Vec<Line>, max_lines: usize) -> usize {
        let mut rest = bytes;
        let mut done_lines = 0;
        while !rest.is_empty() && done_lines < max_lines {
            let (take, done) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (rest.len(), false),
            };
            let room = self.max_line_bytes.saturating_sub(self.partial.len());
            let keep = take.min(room);
            self.partial.extend_from_slice(&rest[..keep]);
            self.dropped += (take - keep) as u64;
            if done {
                out.push(self.take_line());
                done_lines += 1;
                rest = &rest[take + 1..];
            } else {
                rest = &[];
            }
        }
        bytes.len() - rest.len()
    }

    /// The unterminated rest, as a line, if there is one (at the end of input).
    pub fn finish(&mut self) -> Option<Line> {
        (!self.partial.is_empty() || self.dropped > 0).then(|| self.take_line())
    }

    /// Forgets the unterminated rest; returns how many bytes it held.
    pub fn discard(&mut self) -> u64 {
        let n = self.pending_bytes();
        self.partial.clear();
        self.dropped = 0;
        n
    }

    /// Bytes received since the last complete line (kept or dropped).
    pub fn pending_bytes(&self) -> u64 {
        self.partial.len() as u64 + self.dropped
    }

    fn take_line(&mut self) -> Line {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Line {
            text,
            truncated_bytes: std::mem::take(&mut self.dropped),
        }
    }
}

/// Reads [`Line`]s from `reader`; a last line without a newline counts.
pub struct LineReader<R> {
    reader: R,
    splitter: LineSplitter,
    ready: std::collections::VecDeque<Line>,
    buf: Vec<Line>,
    eof: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A reader that cuts lines at `max_line_bytes`.
    pub fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            reader,
            splitter: LineSplitter::new(max_line_bytes),
            ready: Default::default(),
            buf: Vec::new(),
            eof: false,
        }
    }

    /// The next line, or `None` at the end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line>> {
        while self.ready.is_empty() && !self.eof {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.eof = true;
                self.ready.extend(self.splitter.finish());
                break;
            }
            let n = chunk.len();
            self.splitter.push(chunk, &mut self.buf);
            self.reader.consume(n);
            self.ready.extend(self.buf.drain(..));
        }
        Ok(self.ready.pop_front())
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

    #[test]
    fn the_splitter_holds_a_partial_line_until_its_newline() {
        let mut s = LineSplitter::new(100);
        let mut out = Vec::new();
        s.push(b"hel", &mut out);
        assert!(out.is_empty());
        assert_eq!(s.pending_bytes(), 3);
        s.push(b"lo\nwor", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "hello");
        assert_eq!(s.discard(), 3);
        assert!(s.finish().is_none());
    }

    #[test]
    fn the_splitter_stops_after_as_many_lines_as_asked() {
        let mut s = LineSplitter::new(100);
        let mut out = Vec::new();
        let input = b"a\nbb\nccc\nd";
        let took = s.push_some(input, &mut out, 2);
        assert_eq!((took, out.len()), (5, 2), "two lines and their newlines");
        assert_eq!(s.pending_bytes(), 0, "nothing of the third line is taken");
        let took = s.push_some(&input[took..], &mut out, 2);
        assert_eq!(took, 5, "the third line and the partial fourth");
        assert_eq!(out.last().unwrap().text, "ccc");
        assert_eq!(s.pending_bytes(), 1);
    }
}
