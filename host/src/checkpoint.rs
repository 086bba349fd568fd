//! Where each server's log was read up to, saved after its events reached the sinks, so a
//! restart neither loses nor repeats lines.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::tail::Position;

/// A folder of `<server>.checkpoint.json` files.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, server: &str) -> PathBuf {
        self.dir.join(format!("{server}.checkpoint.json"))
    }

    /// The saved position of `server`, if any. A damaged file counts as none (and says so).
    pub fn load(&self, server: &str) -> Option<Position> {
        let path = self.path(server);
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(server, path = %path.display(), "ignoring a damaged checkpoint: {e}");
                None
            }
        }
    }

    /// Saves `position` for `server`, atomically (a crash leaves the old or the new one).
    pub fn save(&self, server: &str, position: &Position) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        serde_json::to_writer(&mut tmp, position)?;
        tmp.flush()?;
        tmp.persist(self.path(server)).map_err(|e| e.error)?;
        Ok(())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_ignores_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("state"));
        assert_eq!(store.load("prod"), None);
        let p = Position {
            offset: 42,
            fingerprint: 7,
            fingerprint_len: 3,
        };
        store.save("prod", &p).unwrap();
        assert_eq!(store.load("prod"), Some(p));
        std::fs::write(store.path("prod"), "{not json").unwrap();
        assert_eq!(store.load("prod"), None);
    }
}
