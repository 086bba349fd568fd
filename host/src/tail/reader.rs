//! The synchronous core of a tailer: reads what was appended to a log file since the last
//! call, a bounded amount at a time, and follows the file through rotation, truncation,
//! deletion and re-creation. Only regular files are read: a FIFO, socket, device or folder
//! at the path is refused (opening never blocks), and a link is followed only into the
//! folders allowed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::position::{FINGERPRINT_BYTES, Fingerprint, Position};
use crate::tail::lines::{Line, LineSplitter};

/// Read size.
const CHUNK: usize = 64 << 10;

/// Where to start when the file is first opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At its end: only lines written from now on (the first start of a server).
    End,
    /// At its beginning.
    Beginning,
    /// At a saved position, if it is the same file; else at its beginning.
    Position(Position),
}

/// How much one [`TailReader::poll`] hands out at most, so memory stays flat however far
/// behind the reader is: it stops after the line that reaches either bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub lines: usize,
    pub bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            lines: 1024,
            bytes: 1 << 20,
        }
    }
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

/// Why a path is not followed, though it exists.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{path} is {kind}, not a regular file: only regular files are followed")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is a link to {target}, outside the folders a log's link may lead to ({allowed}); \
         add the folder to the server's `log_links_within` to follow it"
    )]
    LinkOutside {
        path: PathBuf,
        target: PathBuf,
        allowed: String,
    },
}

impl From<Refused> for io::Error {
    fn from(r: Refused) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, r)
    }
}

use crate::files::kind_of;

/// The file to open for the log at `path`: the path itself when it is a regular file, or
/// where its link leads when that is a regular file inside one of `links_within` (the
/// log's own folder when empty). `NotFound` when there is nothing there (yet); a
/// [`Refused`] error (kind `InvalidInput`) when it is there but must not be read.
pub fn resolve(path: &Path, links_within: &[PathBuf]) -> io::Result<PathBuf> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_symlink() {
        if let Some(kind) = kind_of(&meta) {
            return Err(Refused::NotAFile {
                path: path.to_owned(),
                kind,
            }
            .into());
        }
        return Ok(path.to_owned());
    }
    let target = std::fs::canonicalize(path)?;
    let own = [path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()];
    let dirs = if links_within.is_empty() {
        &own[..]
    } else {
        links_within
    };
    let inside = dirs
        .iter()
        .any(|d| std::fs::canonicalize(d).is_ok_and(|d| target.starts_with(d)));
    if !inside {
        return Err(Refused::LinkOutside {
            path: path.to_owned(),
            target,
            allowed: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    let meta = std::fs::metadata(&target)?;
    if let Some(kind) = kind_of(&meta) {
        return Err(Refused::NotAFile { path: target, kind }.into());
    }
    Ok(target)
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
    links_within: Vec<PathBuf>,
    start: StartAt,
    open: Option<Open>,
    splitter: LineSplitter,
    limits: ReadLimits,
    /// The number of lines the first poll reads, when it must end where a batch of an
    /// earlier run ended (cluster mode: a batch in flight is delivered again the same way).
    replay: Option<usize>,
    buf: Vec<u8>,
    stats: TailStats,
}

impl TailReader {
    /// A reader of `path` that cuts lines at `max_line_bytes`.
    pub fn new(path: impl Into<PathBuf>, start: StartAt, max_line_bytes: usize) -> Self {
        Self {
            path: path.into(),
            links_within: Vec::new(),
            start,
            open: None,
            splitter: LineSplitter::new(max_line_bytes),
            limits: ReadLimits::default(),
            replay: None,
            buf: Vec::new(),
            stats: TailStats::default(),
        }
    }

    /// Follows a link at the path into these folders (default: the log's own folder).
    pub fn links_within(mut self, dirs: Vec<PathBuf>) -> Self {
        self.links_within = dirs;
        self
    }

    /// Hands out at most this much per poll.
    pub fn limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The first poll reads exactly `lines` lines (if the file has them), whatever the
    /// limits: the batch an earlier run was delivering, read again the same way.
    pub fn replay(mut self, lines: Option<usize>) -> Self {
        self.replay = lines.filter(|n| *n > 0);
        self
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
            fingerprint: Fingerprint::of(&open.head),
        })
    }

    /// Opens the file if it is there, without reading, and says where reading starts: the
    /// position to save before anything is read. A missing file is read from its beginning
    /// once it appears; none when the file is there but cannot be opened (the next poll
    /// says why).
    pub fn start(&mut self) -> Option<Position> {
        if self.open.is_some() {
            return self.position();
        }
        match self.open_file() {
            Ok(()) => self.position(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.start = StartAt::Beginning;
                Some(Position::beginning())
            }
            Err(_) => None,
        }
    }

    /// Reads complete lines appended since the last call into `out`, up to the reader's
    /// limits; returns whether there may be more to read now (a limit was reached, or the
    /// file was replaced by a new one). An error is about the file (unreadable, say, or
    /// not a regular file); the reader stays usable and tries again next time.
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        if self.open.is_none() {
            match self.open_file() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Missing now: whatever file appears later is new, so read all of it.
                    if self.start == StartAt::End {
                        self.start = StartAt::Beginning;
                    }
                    return Ok(false);
                }
                Err(e) => {
                    // Not a file we may follow: likewise, a file put there later is new.
                    if e.kind() == io::ErrorKind::InvalidInput && self.start == StartAt::End {
                        self.start = StartAt::Beginning;
                    }
                    return Err(e);
                }
            }
        }
        self.check_truncated()?;
        let limits = match self.replay.take() {
            Some(lines) => ReadLimits {
                lines,
                bytes: usize::MAX,
            },
            None => self.limits,
        };
        let before = out.len();
        if self.read_some(out, limits)? {
            return Ok(true);
        }
        match std::fs::metadata(&self.path) {
            // Gone: keep reading the open file; its writer may still have it open.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
            Ok(meta) => {
                let Some(open) = &self.open else {
                    return Ok(false);
                };
                if (meta.dev(), meta.ino()) == (open.dev, open.ino) {
                    return Ok(false);
                }
                // A new file at the path: finish the old one (what was written to it since
                // the read above first), then start the new one.
                let room = ReadLimits {
                    lines: limits.lines.saturating_sub(out.len() - before).max(1),
                    ..limits
                };
                if self.read_some(out, room)? {
                    return Ok(true);
                }
                out.extend(self.splitter.finish().map(|l| self.count(l)));
                self.open = None;
                self.stats.rotations += 1;
                self.start = StartAt::Beginning;
                self.open_file()?;
                Ok(true)
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
        let target = resolve(&self.path, &self.links_within)?;
        // Non-blocking, so that even a FIFO swapped in after `resolve` looked cannot hold
        // the open; what was opened is checked again below.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&target)?;
        let meta = file.metadata()?;
        if let Some(kind) = kind_of(&meta) {
            return Err(Refused::NotAFile { path: target, kind }.into());
        }
        let mut head = Vec::new();
        (&mut file)
            .take(FINGERPRINT_BYTES as u64)
            .read_to_end(&mut head)?;
        let offset = match self.start {
            StartAt::Beginning => 0,
            StartAt::End => meta.len(),
            StartAt::Position(p) => {
                if p.fingerprint.matches(&head) && p.offset <= meta.len() {
                    p.offset
                } else {
                    0
                }
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

    /// Reads into `out` until the end of the file or a limit; true when it stopped at a
    /// limit (the rest of the file is read by the next call).
    fn read_some(&mut self, out: &mut Vec<Line>, limits: ReadLimits) -> io::Result<bool> {
        let Some(open) = &mut self.open else {
            return Ok(false);
        };
        self.buf.resize(CHUNK, 0);
        let first = out.len();
        let mut bytes = 0usize;
        let stopped = loop {
            let lines = out.len() - first;
            if lines >= limits.lines || bytes >= limits.bytes {
                break true;
            }
            let n = match open.file.read(&mut self.buf) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let took = self
                .splitter
                .push_some(&self.buf[..n], out, limits.lines - lines);
            let chunk = &self.buf[..took];
            if open.head.len() < FINGERPRINT_BYTES {
                let want = (FINGERPRINT_BYTES - open.head.len()).min(took);
                open.head.extend_from_slice(&chunk[..want]);
            }
            open.offset += took as u64;
            self.stats.bytes += took as u64;
            bytes += took;
            if took < n {
                // Stopped at the line limit: the rest of the chunk is read next time.
                open.file.seek(SeekFrom::Start(open.offset))?;
                break true;
            }
        };
        for line in &out[first..] {
            self.stats.lines += 1;
            if line.truncated_bytes > 0 {
                self.stats.truncated_lines += 1;
                self.stats.truncated_bytes += line.truncated_bytes;
            }
        }
        Ok(stopped)
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
