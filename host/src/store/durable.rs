//! Files written whole or not at all, and durably, so neither a crash nor a power cut
//! leaves a torn or empty file.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

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
}
