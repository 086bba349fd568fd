//! Each user's chosen server (`/factorio connect`), kept across restarts in the state folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Users' chosen servers, by Discord user id.
pub struct Selections {
    path: PathBuf,
    chosen: Mutex<BTreeMap<u64, String>>,
}

impl Selections {
    /// Loads the choices saved at `path` (none if the file is missing or unreadable).
    pub fn load(path: PathBuf) -> Self {
        let chosen = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            chosen: Mutex::new(chosen),
        }
    }

    /// The server `user` chose, if any.
    pub fn get(&self, user: u64) -> Option<String> {
        self.chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .cloned()
    }

    /// Remembers `tag` for `user` and saves all choices (atomically).
    pub fn set(&self, user: u64, tag: &str) {
        let snapshot = {
            let mut chosen = self.chosen.lock().unwrap_or_else(|p| p.into_inner());
            chosen.insert(user, tag.to_owned());
            chosen.clone()
        };
        if let Err(e) = self.save(&snapshot) {
            tracing::warn!(
                "cannot save the users' chosen servers to {}: {e}",
                self.path.display()
            );
        }
    }

    fn save(&self, chosen: &BTreeMap<u64, String>) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, chosen)?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/discord-selections.json");
        let s = Selections::load(path.clone());
        assert_eq!(s.get(1), None);
        s.set(1, "prod");
        s.set(2, "test");
        let again = Selections::load(path);
        assert_eq!(
            (again.get(1).as_deref(), again.get(2).as_deref()),
            (Some("prod"), Some("test"))
        );
    }
}
