//! The state folder as a [`Store`]: one file per key, each written whole and durably.

use std::path::{Path, PathBuf};

use super::durable::{replace_durably, write_durably};
use super::{Change, Keep, Key, Store, StoreError};
use crate::slot::Slot;

/// The largest file read back for `key`: what is larger is damage, refused before it is
/// read into memory (a checkpoint is under 200 bytes; a blob is a plugin).
fn max_read(key: &Key) -> u64 {
    match key {
        Key::Checkpoint(_) | Key::PreviousCheckpoint(_) | Key::InFlight(_) | Key::StateLost => {
            64 << 10
        }
        Key::Selections => 16 << 20,
        Key::Pin { .. } | Key::Alerts(_) | Key::Monitors(_) => 64 << 20,
        Key::Blob(_) => 256 << 20,
    }
}

/// Keeps values in files under a state folder:
///
/// ```text
/// checkpoints/<log>.checkpoint.json        (and .checkpoint.prev.json, the one it replaced)
/// versions/<server>.json                   the pinned parsers
/// versions/<server>.monitors.json          the pinned monitors
/// versions/blobs/<sha256>.wasm             their plugins
/// alerts/<server>.json, monitors/<server>.json
/// discord-selections.json
/// ```
///
/// A batch in flight is not kept here (one instance reads again at most that batch).
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store in state folder `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key` (none: not kept in files).
    pub fn path(&self, key: &Key) -> Option<PathBuf> {
        let (folder, name) = match key {
            Key::Checkpoint(log) => ("checkpoints", format!("{log}.checkpoint.json")),
            Key::PreviousCheckpoint(log) => ("checkpoints", format!("{log}.checkpoint.prev.json")),
            Key::InFlight(_) | Key::StateLost => return None,
            Key::Pin {
                server,
                slot: Slot::Parsers,
            } => ("versions", format!("{server}.json")),
            Key::Pin {
                server,
                slot: Slot::Monitors,
            } => ("versions", format!("{server}.monitors.json")),
            Key::Blob(hash) => ("versions/blobs", format!("{hash}.wasm")),
            Key::Alerts(server) => ("alerts", format!("{server}.json")),
            Key::Monitors(server) => ("monitors", format!("{server}.json")),
            Key::Selections => ("", "discord-selections.json".to_owned()),
        };
        Some(self.dir.join(folder).join(name))
    }

    fn put(&self, key: &Key, bytes: &[u8], keep: Keep) -> Result<(), StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        match (key, keep) {
            (Key::PreviousCheckpoint(_) | Key::StateLost, _) => {
                Err(StoreError::ReadOnly(key.clone()))
            }
            (Key::Checkpoint(log), Keep::Previous) => {
                let prev = self.path(&Key::PreviousCheckpoint(log.clone()));
                Ok(replace_durably(&path, prev.as_deref(), bytes)?)
            }
            // A blob is named by its content: one already there is the same.
            (Key::Blob(_), _) if path.exists() => Ok(()),
            _ => Ok(write_durably(&path, bytes)?),
        }
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            // Nothing there, or nothing can be there (a file where the folder should be).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())).into()),
        }
    }
}

impl Store for FileStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        match crate::files::read_regular(&path, max_read(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn locate(&self, key: &Key) -> String {
        match self.path(key) {
            Some(path) => path.display().to_string(),
            None => key.to_string(),
        }
    }

    fn apply(&self, change: Change) -> Result<(), StoreError> {
        for (key, bytes, keep) in &change.puts {
            self.put(key, bytes, *keep)?;
        }
        change.deletes.iter().try_for_each(|k| self.delete(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_file_and_a_replaced_checkpoint_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let cp = Key::Checkpoint("prod".into());
        store
            .apply(Change::default().and_replace(cp.clone(), b"one".to_vec()))
            .unwrap();
        store
            .apply(Change::default().and_replace(cp.clone(), b"two".to_vec()))
            .unwrap();
        assert_eq!(store.get(&cp).unwrap().as_deref(), Some(&b"two"[..]));
        let prev = Key::PreviousCheckpoint("prod".into());
        assert_eq!(store.get(&prev).unwrap().as_deref(), Some(&b"one"[..]));
        assert!(
            dir.path()
                .join("checkpoints/prod.checkpoint.prev.json")
                .is_file()
        );
        assert!(matches!(
            store.apply(Change::put(prev, Vec::new())),
            Err(StoreError::ReadOnly(_))
        ));
        let pin = Key::Pin {
            server: "prod".into(),
            slot: Slot::Monitors,
        };
        store
            .apply(Change::put(pin.clone(), b"{}".to_vec()))
            .unwrap();
        assert!(dir.path().join("versions/prod.monitors.json").is_file());
        store.apply(Change::delete(pin.clone())).unwrap();
        assert_eq!(store.get(&pin).unwrap(), None);
        store.apply(Change::delete(pin)).unwrap();
        let flight = Key::InFlight("prod".into());
        store
            .apply(Change::put(flight.clone(), b"x".to_vec()))
            .unwrap();
        assert_eq!(store.get(&flight).unwrap(), None);
    }

    #[test]
    fn a_checkpoint_far_over_its_size_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let key = Key::Checkpoint("prod".into());
        let path = store.path(&key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b' '; 1 << 20]).unwrap();
        let err = store.get(&key).unwrap_err();
        assert!(err.to_string().contains("prod.checkpoint.json"), "{err}");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it_not_a_missing_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("alerts/prod.json")).unwrap();
        let err = FileStore::new(dir.path())
            .get(&Key::Alerts("prod".into()))
            .unwrap_err();
        assert!(err.to_string().contains("prod.json"), "{err}");
    }
}
