//! The synchronous core of a tailer: reads what was appended to a log file since the last
//! call, and follows the file through rotation, truncation, deletion and re-creation.

use std::fs::File;
use std::hash::Hasher;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lines::{Line, LineSplitter};

/// How many bytes at the start of a file identify it across restarts.
const FINGERPRINT_BYTES: usize = 256;
/// Read size.
const CHUNK: usize = 64 << 10;

/// Where reading resumes: a byte offset in a file recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Offset just past the last complete line handed out.
    pub offset: u64,
    /// Hash of the file's first `fingerprint_len` bytes.
    pub fingerprint: u64,
    pub fingerprint_len: u32,
}

/// Where to start when the file is first opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At its end: only lines written from now on (the default with no checkpoint).
    End,
    /// At its beginning.
    Beginning,
    /// At a saved position, if it is the same file; else at its beginning.
    Position(Position),
}

/// What the reader has seen, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailStats {
    pub lines: u64,
    pub bytes: u64,
    /// Lines cut at the length cap, and the bytes dropped from them.
    pub truncated_lines: u64,
    pub truncated_bytes: u64,
    /// A new file at the path (rename-and-create rotation, or delete and re-create).
    pub rotations: u64,
    /// The file shrank under us (copy-truncate rotation).
    pub truncations: u64,
    /// Bytes of a partial line thrown away because the file was truncated under it.
    pub discarded_bytes: u64,
}

struct Open {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes read from this file so far.
    offset: u64,
    /// The first bytes of the file, as far as they have been read.
    head: Vec<u8>,
}

/// Follows one log file. Never fails because the file is missing: it waits for it.
pub struct TailReader {
    path: PathBuf,
    start: StartAt,
    open: Option<Open>,
    splitter: LineSplitter,
    stats: TailStats,
}

impl TailReader {
    /// A reader of `path` that cuts lines at `max_line_bytes`.
    pub fn new(path: impl Into<PathBuf>, start: StartAt, max_line_bytes: usize) -> Self {
        Self {
            path: path.into(),
            start,
            open: None,
            splitter: LineSplitter::new(max_line_bytes),
            stats: TailStats::default(),
        }
    }

    /// The file it follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is open (it exists and could be read).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// What it has seen.
    pub fn stats(&self) -> &TailStats {
        &self.stats
    }

    /// The position just past the last complete line handed out, for a checkpoint.
    pub fn position(&self) -> Option<Position> {
        let open = self.open.as_ref()?;
        Some(Position {
            offset: open.offset - self.splitter.pending_bytes(),
            fingerprint: fingerprint(&open.head),
            fingerprint_len: open.head.len() as u32,
        })
    }

    /// Reads every complete line appended since the last call into `out`. An error is
    /// about the file (unreadable, say); the reader stays usable and tries again next time.
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        if self.open.is_none() {
            match self.open_file() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Missing now: whatever file appears later is new, so read all of it.
                    if self.start == StartAt::End {
                        self.start = StartAt::Beginning;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.check_truncated()?;
        self.read_to_end(out)?;
        match std::fs::metadata(&self.path) {
            // Gone: keep reading the open file; its writer may still have it open.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(meta) => {
                let Some(open) = &self.open else {
                    return Ok(());
                };
                if (meta.dev(), meta.ino()) == (open.dev, open.ino) {
                    return Ok(());
                }
                // A new file at the path: finish the old one, then start the new one.
                self.read_to_end(out)?;
                out.extend(self.splitter.finish().map(|l| self.count(l)));
                self.open = None;
                self.stats.rotations += 1;
                self.start = StartAt::Beginning;
                self.open_file()?;
                self.read_to_end(out)
            }
        }
    }

    /// Copy-truncate: the open file was emptied in place, and may have grown back past
    /// where we were before we looked; its first bytes tell. Reading starts over.
    fn check_truncated(&mut self) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let len = open.file.metadata()?.len();
        if len >= open.offset && head_unchanged(open)? {
            return Ok(());
        }
        self.stats.truncations += 1;
        self.stats.discarded_bytes += self.splitter.discard();
        open.offset = 0;
        open.head.clear();
        open.file.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    fn open_file(&mut self) -> io::Result<()> {
        let mut file = File::open(&self.path)?;
        let meta = file.metadata()?;
        let mut head = Vec::new();
        (&mut file)
            .take(FINGERPRINT_BYTES as u64)
            .read_to_end(&mut head)?;
        let offset = match self.start {
            StartAt::Beginning => 0,
            StartAt::End => meta.len(),
            StartAt::Position(p) => {
                let same = p.fingerprint_len as usize <= head.len()
                    && fingerprint(&head[..p.fingerprint_len as usize]) == p.fingerprint
                    && p.offset <= meta.len();
                if same { p.offset } else { 0 }
            }
        };
        head.truncate(offset.min(FINGERPRINT_BYTES as u64) as usize);
        file.seek(SeekFrom::Start(offset))?;
        self.splitter.discard();
        self.open = Some(Open {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            head,
        });
        // Whatever happens to this file later, the next one is read from its beginning.
        self.start = StartAt::Beginning;
        Ok(())
    }

    fn read_to_end(&mut self, out: &mut Vec<Line>) -> io::Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let mut buf = vec![0u8; CHUNK];
        let mut lines = Vec::new();
        loop {
            let n = match open.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = &buf[..n];
            if open.head.len() < FINGERPRINT_BYTES {
                let want = (FINGERPRINT_BYTES - open.head.len()).min(n);
                open.head.extend_from_slice(&chunk[..want]);
            }
            open.offset += n as u64;
            self.stats.bytes += n as u64;
            self.splitter.push(chunk, &mut lines);
        }
        for line in lines {
            let line = self.count(line);
            out.push(line);
        }
        Ok(())
    }

    fn count(&mut self, line: Line) -> Line {
        self.stats.lines += 1;
        if line.truncated_bytes > 0 {
            self.stats.truncated_lines += 1;
            self.stats.truncated_bytes += line.truncated_bytes;
        }
        line
    }
}

/// Whether the file still starts with the bytes it started with when we read them.
fn head_unchanged(open: &Open) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut now = vec![0u8; open.head.len()];
    let mut filled = 0;
    while filled < now.len() {
        match open.file.read_at(&mut now[filled..], filled as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(now == open.head)
}

fn fingerprint(bytes: &[u8]) -> u64 {
    // Fixed keys: the same bytes give the same value in every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}
