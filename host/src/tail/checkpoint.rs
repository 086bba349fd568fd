//! Where each server's log was read up to, saved after its events reached the sinks, so a
//! restart neither loses nor repeats lines.
//!
//! `<server>.checkpoint.json` is written durably (see [`crate::state`]); the one it replaces
//! is kept as `<server>.checkpoint.prev.json`, so a damaged checkpoint falls back to the one
//! before it (a batch more is repeated, nothing is lost). Checkpoints of earlier releases,
//! whose fingerprints were `DefaultHasher` values, are still understood and are rewritten in
//! today's form at the next save.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tail::{FINGERPRINT_BYTES, Fingerprint, Position};

/// The form written today.
const VERSION: u32 = 2;

/// A folder of `<server>.checkpoint.json` files.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// What was found for a server at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No checkpoint: the server's first start.
    Fresh,
    /// The checkpoint.
    Found(Position),
    /// The checkpoint was damaged or missing (`damage` says how); the one before it is used.
    Previous { position: Position, damage: String },
    /// The checkpoint was damaged and there is no good one before it: where the log was
    /// read up to is lost.
    Lost { damage: String },
}

/// One server's checkpoint file, for saving.
#[derive(Debug)]
pub struct ServerCheckpoint {
    main: PathBuf,
    prev: PathBuf,
    /// Whether the file at `main` is a good checkpoint (then a save keeps it as `prev`).
    main_good: bool,
}

impl CheckpointStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, server: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{server}.checkpoint.json")),
            self.dir.join(format!("{server}.checkpoint.prev.json")),
        )
    }

    /// What is saved for `server`, and its file for saving.
    pub fn open(&self, server: &str) -> (ServerCheckpoint, Loaded) {
        let (main, prev) = self.paths(server);
        let loaded = match read(&main) {
            Ok(Some(position)) => Loaded::Found(position),
            Ok(None) => match read(&prev) {
                Ok(Some(position)) => Loaded::Previous {
                    position,
                    damage: format!("{} is missing", main.display()),
                },
                _ => Loaded::Fresh,
            },
            Err(damage) => match read(&prev) {
                Ok(Some(position)) => Loaded::Previous { position, damage },
                Ok(None) => Loaded::Lost { damage },
                Err(also) => Loaded::Lost {
                    damage: format!("{damage}; and the one before it: {also}"),
                },
            },
        };
        let main_good = matches!(loaded, Loaded::Found(_));
        (
            ServerCheckpoint {
                main,
                prev,
                main_good,
            },
            loaded,
        )
    }
}

impl ServerCheckpoint {
    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.main
    }

    /// Saves `position` durably; the checkpoint it replaces is kept as the previous one. A
    /// crash at any moment leaves a good checkpoint or a good previous one.
    pub fn save(&mut self, position: &Position) -> io::Result<()> {
        let json = serde_json::to_vec(&Stored::from(position)).map_err(io::Error::other)?;
        if self.main_good {
            std::fs::rename(&self.main, &self.prev)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.main.display())))?;
            self.main_good = false;
        }
        crate::state::write_durably(&self.main, &json)?;
        self.main_good = true;
        Ok(())
    }
}

/// The checkpoint in `path`: none if there is no file; an error saying what is wrong with
/// it if it cannot be used.
fn read(path: &Path) -> Result<Option<Position>, String> {
    // A checkpoint is under 200 bytes; anything at the path that is not a small regular
    // file (a FIFO would block the read) is damage.
    let bytes = match crate::files::read_regular(path, 64 << 10) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the checkpoint: {e}")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("{} is empty", path.display()));
    }
    let stored: Stored = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a checkpoint: {e}", path.display()))?;
    stored
        .position()
        .map(Some)
        .map_err(|e| format!("{} is not a checkpoint: {e}", path.display()))
}

/// A checkpoint as saved: today's (`version: 2`, SHA-256 in hex) or an earlier release's
/// (no version, a `DefaultHasher` value in `fingerprint`).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(default = "first_version")]
    version: u32,
    offset: u64,
    fingerprint_len: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<u64>,
}

fn first_version() -> u32 {
    1
}

impl From<&Position> for Stored {
    fn from(p: &Position) -> Self {
        let (len, sha256, fingerprint) = match p.fingerprint {
            Fingerprint::Sha256 { len, digest } => (len, Some(hex::encode(digest)), None),
            Fingerprint::Legacy { len, sip13 } => (len, None, Some(sip13)),
        };
        Self {
            version: VERSION,
            offset: p.offset,
            fingerprint_len: len,
            sha256,
            fingerprint,
        }
    }
}

impl Stored {
    fn position(&self) -> Result<Position, String> {
        let len = self.fingerprint_len;
        if len as usize > FINGERPRINT_BYTES {
            return Err(format!(
                "fingerprint_len {len} is more than {FINGERPRINT_BYTES}"
            ));
        }
        let fingerprint = match (&self.sha256, self.fingerprint) {
            (Some(hex), _) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex, &mut digest)
                    .map_err(|e| format!("sha256 `{hex}`: {e}"))?;
                Fingerprint::Sha256 { len, digest }
            }
            (None, Some(sip13)) if self.version == 1 => Fingerprint::Legacy { len, sip13 },
            _ => return Err(format!("version {} without a fingerprint", self.version)),
        };
        Ok(Position {
            offset: self.offset,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64) -> Position {
        Position {
            offset,
            fingerprint: Fingerprint::of(b"2026-01-01 first line"),
        }
    }

    #[test]
    fn saves_and_loads_and_keeps_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("state"));
        let (mut cp, loaded) = store.open("prod");
        assert_eq!(loaded, Loaded::Fresh);
        cp.save(&position(42)).unwrap();
        cp.save(&position(99)).unwrap();
        assert_eq!(store.open("prod").1, Loaded::Found(position(99)));
        let (_, prev) = store.paths("prod");
        assert_eq!(read(&prev), Ok(Some(position(42))));
    }

    #[test]
    fn each_kind_of_damage_falls_back_to_the_one_before_or_is_lost_not_fresh() {
        let damaged: [(&str, &[u8]); 5] = [
            ("garbage", b"\x00\xffnot json"),
            ("truncated", br#"{"version":2,"offset":12,"fingerpr"#),
            ("empty", b""),
            (
                "out of range",
                br#"{"version":2,"offset":-5,"fingerprint_len":3}"#,
            ),
            (
                "too long a head",
                br#"{"version":2,"offset":5,"fingerprint_len":9999,"sha256":"00"}"#,
            ),
        ];
        for (what, bytes) in damaged {
            let dir = tempfile::tempdir().unwrap();
            let store = CheckpointStore::new(dir.path());
            let (main, prev) = store.paths("prod");
            std::fs::write(&main, bytes).unwrap();
            let Loaded::Lost { damage } = store.open("prod").1 else {
                panic!("{what}: a damaged checkpoint with none before it is lost");
            };
            assert!(damage.contains("prod.checkpoint.json"), "{what}: {damage}");
            std::fs::write(
                &prev,
                serde_json::to_vec(&Stored::from(&position(7))).unwrap(),
            )
            .unwrap();
            match store.open("prod").1 {
                Loaded::Previous { position: p, .. } => assert_eq!(p, position(7), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_folder_where_the_checkpoint_should_be_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        std::fs::create_dir(store.paths("prod").0).unwrap();
        assert!(matches!(store.open("prod").1, Loaded::Lost { .. }));
    }

    #[test]
    fn a_checkpoint_of_an_earlier_release_is_understood_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let head = b"2026-01-01 10:00:00 [JOIN] Alice joined the game\n";
        // Exactly what 0.3 wrote: DefaultHasher's value of the head.
        let old = format!(
            r#"{{"offset":120,"fingerprint":{},"fingerprint_len":{}}}"#,
            crate::tail::legacy_hash(head),
            head.len()
        );
        std::fs::write(store.paths("prod").0, old).unwrap();
        let (mut cp, loaded) = store.open("prod");
        let Loaded::Found(p) = loaded else {
            panic!("{loaded:?}")
        };
        assert_eq!(p.offset, 120);
        assert!(p.fingerprint.matches(head));
        let renewed = Position {
            offset: 130,
            fingerprint: Fingerprint::of(head),
        };
        cp.save(&renewed).unwrap();
        let text = std::fs::read_to_string(store.paths("prod").0).unwrap();
        assert!(
            text.contains("\"version\":2") && text.contains("sha256"),
            "{text}"
        );
        assert_eq!(store.open("prod").1, Loaded::Found(renewed));
    }
}
