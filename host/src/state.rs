//! The state folder's files (checkpoints, kept versions, Discord selections): each written
//! whole or not at all, and durably, so neither a crash nor a power cut leaves a torn or
//! empty file; and a failure to write one is seen in `/ready` and `/metrics`, not only in a
//! log line.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use prometheus::IntCounterVec;

use crate::observe::health::{Health, State};

/// Writes `bytes` to `path` atomically and durably: to a temporary file in the same
/// folder, flushed to the disk, renamed over `path`, and the folder flushed so the rename
/// itself survives a power cut. The folder is created if missing. The error names the path.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_durably(path, None, bytes)
}

/// [`write_durably`], keeping the file it replaces as `previous` (when there is one). The
/// new content is written and flushed first; on a full disk the old `previous` is given up
/// to make room (the file at `path` is still good), and when even that is not enough the
/// write fails with nothing moved: `path` is still the last good file. A crash between the
/// two renames leaves `previous` and no `path`, which readers take for "the one before".
pub fn replace_durably(path: &Path, previous: Option<&Path>, bytes: &[u8]) -> io::Result<()> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(named)?;
    let write = || -> io::Result<tempfile::NamedTempFile> {
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        Ok(tmp)
    };
    let tmp = match (write(), previous) {
        (Ok(tmp), _) => tmp,
        // No room: the previous file is given up to make some (`path` is still good).
        (Err(e), Some(prev))
            if matches!(
                e.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) =>
        {
            match std::fs::remove_file(prev) {
                Ok(()) => write().map_err(named)?,
                Err(_) => return Err(named(e)),
            }
        }
        (Err(e), _) => return Err(named(e)),
    };
    if let Some(prev) = previous {
        match std::fs::rename(path, prev) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(named(e)),
        }
    }
    tmp.persist(path).map_err(|e| named(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(named)
}

/// What kind of state a write was for: the `what` label of `state_write_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A server's checkpoint.
    Checkpoint,
    /// A version of a server's parsers or monitors chosen at run time (a pin).
    Versions,
    /// The servers Discord users chose.
    Selections,
}

impl What {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            What::Checkpoint => "checkpoint",
            What::Versions => "versions",
            What::Selections => "selections",
        }
    }
}

/// Where state writes report: each failure degrades its component in health and counts in
/// `state_write_failures_total{what}`; the next success makes the component ready again.
#[derive(Debug, Clone)]
pub struct StateReport {
    health: Health,
    failures: Option<IntCounterVec>,
}

impl StateReport {
    /// Reports to `health` and (when given) the failure counter of the metrics.
    pub fn new(health: Health, failures: Option<IntCounterVec>) -> Self {
        Self { health, failures }
    }

    /// Reports to the server parts' health and metrics.
    pub fn of(shared: &crate::observe::Shared) -> Self {
        Self::new(
            shared.health.clone(),
            Some(shared.metrics.state_write_failures.clone()),
        )
    }

    /// A report that goes nowhere (tools and tests that keep no health).
    pub fn none() -> Self {
        Self::new(Health::default(), None)
    }

    /// Records how writing `what` for `component` went, and hands the result back.
    pub fn record<T>(&self, what: What, component: &str, result: io::Result<T>) -> io::Result<T> {
        match &result {
            Ok(_) => self.health.set(component, State::Ready, None),
            Err(e) => {
                if let Some(f) = &self.failures {
                    f.with_label_values(&[what.label()]).inc();
                }
                self.health.error(
                    component,
                    format!("cannot write the {} state: {e}", what.label()),
                );
            }
        }
        result
    }

    /// The health it reports to.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_durably(&path, b"one").unwrap();
        write_durably(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_failure_names_the_path_degrades_and_counts_and_a_success_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the folder should be: nothing can be written under it.
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let path = dir.path().join("blocked/state.json");
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["what"]).unwrap();
        let report = StateReport::new(Health::default(), Some(failures.clone()));
        let err = report
            .record(What::Versions, "versions:prod", write_durably(&path, b"x"))
            .unwrap_err();
        assert!(err.to_string().contains("blocked"), "{err}");
        assert_eq!(failures.with_label_values(&["versions"]).get(), 1);
        let c = &report.health().snapshot()[0];
        assert_eq!(
            (c.name.as_str(), c.state),
            ("versions:prod", State::Degraded)
        );
        assert!(c.detail.as_deref().unwrap_or("").contains("blocked"));
        report
            .record(What::Versions, "versions:prod", Ok(()))
            .unwrap();
        assert_eq!(report.health().snapshot()[0].state, State::Ready);
    }
}
