//! Where each server's log was read up to, saved after its events reached the sinks, so a
//! restart neither loses nor repeats lines.
//!
//! `<server>.checkpoint.json` is written durably (see [`crate::state`]); the one it replaces
//! is kept as `<server>.checkpoint.prev.json`, so a damaged checkpoint falls back to the one
//! before it (a batch more is repeated, nothing is lost). Checkpoints of earlier releases,
//! whose fingerprints were `DefaultHasher` values, are still understood and are rewritten in
//! today's form at the next save.
//!
//! In cluster mode the checkpoints are in etcd instead ([`CheckpointStore::fenced`]): each
//! save is a transaction guarded by the owner's fence, so an owner that lost the server
//! cannot move it. Before a batch is delivered, its extent is recorded as in flight
//! ([`ServerCheckpoint::begin`]); the next owner delivers exactly that batch again first, so
//! what it posts is what was posted, with the same Discord nonces.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cluster::Fence;
use crate::tail::{FINGERPRINT_BYTES, Fingerprint, Position};

/// The form written today.
const VERSION: u32 = 2;

/// A folder of `<server>.checkpoint.json` files, or (cluster mode) etcd under a fence.
#[derive(Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    fence: Option<Arc<Fence>>,
    /// Cluster mode: where this process last knew each log delivered up to (saved or found
    /// in etcd) and the batch it had in flight, shared by every fenced copy: when etcd has
    /// lost the cluster's state, a log this instance delivered resumes exactly there.
    known: Known,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fence {
            None => write!(f, "CheckpointStore({})", self.dir.display()),
            Some(fence) => write!(f, "CheckpointStore(etcd, {})", fence.what),
        }
    }
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

/// One log's checkpoint, for saving.
pub struct ServerCheckpoint {
    at: Saved,
}

enum Saved {
    File {
        main: PathBuf,
        prev: PathBuf,
        /// Whether the file at `main` is a good checkpoint (then a save keeps it as `prev`).
        main_good: bool,
    },
    Etcd {
        fence: Arc<Fence>,
        key: String,
        /// The lines of the batch that was in flight when the last owner stopped.
        replay: Option<usize>,
        known: Known,
    },
}

impl std::fmt::Debug for ServerCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Saved::File { main, .. } => write!(f, "ServerCheckpoint({})", main.display()),
            Saved::Etcd { key, .. } => write!(f, "ServerCheckpoint(etcd {key})"),
        }
    }
}

/// A batch in flight, as recorded in etcd.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InFlight {
    /// Lines in the batch, counted from the checkpoint.
    lines: usize,
    to: Stored,
}

impl CheckpointStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fence: None,
            known: Arc::default(),
        }
    }

    /// The same store kept in etcd, written only while `fence` holds (cluster mode).
    pub fn fenced(&self, fence: Arc<Fence>) -> Self {
        Self {
            dir: self.dir.clone(),
            fence: Some(fence),
            known: self.known.clone(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cluster mode: each log this process delivered, where it last knew it was delivered
    /// up to and the batch it had in flight, in the stored form (to give etcd back what it
    /// lost, so the next owner posts that batch again the same way, with the same nonces).
    pub fn known(&self) -> Vec<KnownLog> {
        self.known
            .lock()
            .iter()
            .filter_map(|(log, r)| {
                Some(KnownLog {
                    log: log.clone(),
                    checkpoint: serde_json::to_vec(&Stored::from(&r.delivered)).ok()?,
                    in_flight: match &r.in_flight {
                        Some(f) => Some(serde_json::to_vec(f).ok()?),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// Cluster mode: forgets what this process knew of `server`'s logs, once another
    /// instance owns it (what it knew is stale from then on, and must not be given back).
    pub fn forget_server(&self, server: &str) {
        self.known.lock().retain(|log, _| {
            log != server && !log.strip_prefix(server).is_some_and(|r| r.starts_with('.'))
        });
    }

    fn paths(&self, server: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{server}.checkpoint.json")),
            self.dir.join(format!("{server}.checkpoint.prev.json")),
        )
    }

    /// What is saved for `server`, and its file for saving. In cluster mode this reads etcd:
    /// call it from a blocking thread of the runtime.
    pub fn open(&self, server: &str) -> (ServerCheckpoint, Loaded) {
        if let Some(fence) = &self.fence {
            return open_in_etcd(fence.clone(), server, &self.known);
        }
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
                at: Saved::File {
                    main,
                    prev,
                    main_good,
                },
            },
            loaded,
        )
    }
}

/// Blocks on `f` (a blocking thread of the runtime, which etcd's client needs).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}

/// A checkpoint and batch in flight of `key` in etcd; etcd out of reach is tried for as long
/// as the lease may still be valid, then the checkpoint counts as lost.
fn open_in_etcd(fence: Arc<Fence>, key: &str, known: &Known) -> (ServerCheckpoint, Loaded) {
    type Read = (Option<Vec<u8>>, Option<Vec<u8>>, bool);
    let read = || -> Result<Read, String> {
        block_on(async {
            let main = fence.get(&format!("checkpoints/{key}")).await;
            let flight = fence.get(&format!("inflight/{key}")).await;
            let lost = fence.get(crate::cluster::STATE_LOST_KEY).await;
            Ok((
                main.map_err(|e| e.to_string())?,
                flight.map_err(|e| e.to_string())?,
                lost.map_err(|e| e.to_string())?.is_some(),
            ))
        })
    };
    let mut tries = 0;
    let got = loop {
        match read() {
            Ok(got) => break Ok(got),
            Err(e) if tries < 10 && fence.valid() => {
                tries += 1;
                tracing::debug!(
                    checkpoint = key,
                    "cannot read the checkpoint from etcd yet: {e}"
                );
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            Err(e) => break Err(e),
        }
    };
    let (loaded, replay) = match got {
        Err(e) => (
            Loaded::Lost {
                damage: format!("etcd: {e}"),
            },
            None,
        ),
        Ok((None, _, false)) => (Loaded::Fresh, None),
        // etcd lost the cluster's state: this log was not started fresh.
        Ok((None, _, true)) => lost_in_etcd(&fence, key, known),
        Ok((Some(bytes), flight, _)) => {
            let parsed = serde_json::from_slice::<Stored>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| s.position());
            match parsed {
                Ok(p) => {
                    let replay = flight
                        .and_then(|f| serde_json::from_slice::<InFlight>(&f).ok())
                        .map(|f| f.lines);
                    (Loaded::Found(p), replay)
                }
                Err(e) => (
                    Loaded::Lost {
                        damage: format!("etcd's checkpoints/{key} is not a checkpoint: {e}"),
                    },
                    None,
                ),
            }
        }
    };
    if let Loaded::Found(p) = &loaded {
        remember(known, key, p);
    }
    let checkpoint = ServerCheckpoint {
        at: Saved::Etcd {
            fence,
            key: key.to_owned(),
            replay,
            known: known.clone(),
        },
    };
    (checkpoint, loaded)
}

/// Where a log whose checkpoint etcd lost (with the cluster's state) resumes, with the
/// lines of the batch to deliver again first: where this instance delivered it up to, if
/// it did; else the checkpoint its last owner puts back (each instance gives back what it
/// knew when it finds the state lost, within a lease TTL or so), waited for that long;
/// else it is lost.
fn lost_in_etcd(fence: &Fence, key: &str, known: &Known) -> (Loaded, Option<usize>) {
    if let Some(r) = known.lock().get(key) {
        tracing::warn!(
            checkpoint = key,
            "etcd lost this log's checkpoint with the cluster's state; resuming where this instance delivered up to"
        );
        return (
            Loaded::Found(r.delivered),
            r.in_flight.as_ref().map(|f| f.lines),
        );
    }
    let until = std::time::Instant::now() + fence.lease_ttl() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < until && fence.valid() {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let back = block_on(async {
            let main = fence.get(&format!("checkpoints/{key}")).await?;
            let flight = fence.get(&format!("inflight/{key}")).await?;
            Ok::<_, crate::cluster::ClusterError>((main, flight))
        });
        if let Ok((Some(bytes), flight)) = back
            && let Ok(p) = serde_json::from_slice::<Stored>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| s.position())
        {
            tracing::warn!(
                checkpoint = key,
                "etcd lost this log's checkpoint with the cluster's state; its last owner put it back"
            );
            let replay = flight
                .and_then(|f| serde_json::from_slice::<InFlight>(&f).ok())
                .map(|f| f.lines);
            return (Loaded::Found(p), replay);
        }
    }
    let damage = "etcd lost the cluster's state (wiped or replaced), this checkpoint with it";
    (
        Loaded::Lost {
            damage: damage.into(),
        },
        None,
    )
}

/// What this process last knew of one log it delivered (cluster mode).
#[derive(Debug, Clone)]
struct Remembered {
    delivered: Position,
    in_flight: Option<InFlight>,
}

/// One log as this process knew it, in etcd's stored forms.
#[derive(Debug, Clone)]
pub struct KnownLog {
    /// The log's checkpoint name.
    pub log: String,
    /// Its checkpoint.
    pub checkpoint: Vec<u8>,
    /// The batch that was in flight, if one was.
    pub in_flight: Option<Vec<u8>>,
}

/// Each log this process delivered, as it last knew it (cluster mode).
type Known = Arc<parking_lot::Mutex<std::collections::HashMap<String, Remembered>>>;

fn remember(known: &Known, key: &str, p: &Position) {
    known.lock().insert(
        key.to_owned(),
        Remembered {
            delivered: *p,
            in_flight: None,
        },
    );
}

impl ServerCheckpoint {
    /// How many lines the first batch must have to be the one the last owner was
    /// delivering when it stopped (cluster mode), so it is delivered the same way again.
    pub fn replay(&self) -> Option<usize> {
        match &self.at {
            Saved::Etcd { replay, .. } => *replay,
            Saved::File { .. } => None,
        }
    }

    /// Whether saves go to etcd (and batches are recorded in flight before delivery).
    pub fn in_cluster(&self) -> bool {
        matches!(self.at, Saved::Etcd { .. })
    }

    /// Records (cluster mode) that the batch of `lines` lines ending at `to` is about to be
    /// delivered. Call it from a blocking thread of the runtime.
    pub fn begin(&mut self, lines: usize, to: &Position) -> io::Result<()> {
        let Saved::Etcd {
            fence, key, known, ..
        } = &self.at
        else {
            return Ok(());
        };
        let flight = InFlight {
            lines,
            to: Stored::from(to),
        };
        let json = serde_json::to_vec(&flight).map_err(io::Error::other)?;
        if let Some(r) = known.lock().get_mut(key) {
            r.in_flight = Some(flight.clone());
        }
        // Any failure ends this ownership: delivering on without the record (or past a
        // checkpoint etcd may or may not have) could deliver a line twice or skip it; the
        // next owner (this instance again, if it is first) starts from what etcd has.
        block_on(fence.write(vec![(format!("inflight/{key}"), json)], Vec::new())).map_err(|e| {
            fence.lose();
            io::Error::other(e)
        })
    }

    /// Saves `position` durably; the checkpoint it replaces is kept as the previous one. A
    /// crash at any moment leaves a good checkpoint or a good previous one, and a save that
    /// fails leaves the last one saved in place. In cluster mode
    /// it is one fenced transaction in etcd, which also ends the batch in flight; call it
    /// from a blocking thread of the runtime.
    pub fn save(&mut self, position: &Position) -> io::Result<()> {
        let json = serde_json::to_vec(&Stored::from(position)).map_err(io::Error::other)?;
        match &mut self.at {
            Saved::Etcd {
                fence,
                key,
                replay,
                known,
            } => {
                *replay = None;
                block_on(fence.write(
                    vec![(format!("checkpoints/{key}"), json)],
                    vec![format!("inflight/{key}")],
                ))
                .map_err(|e| {
                    fence.lose();
                    io::Error::other(e)
                })?;
                remember(known, key, position);
                Ok(())
            }
            Saved::File {
                main,
                prev,
                main_good,
            } => {
                // The new checkpoint is on the disk before the one it replaces moves: a
                // save that fails (a full disk) leaves the last good one where it was.
                let keep = main_good.then_some(prev.as_path());
                crate::store::durable::replace_durably(main, keep, &json)?;
                *main_good = true;
                Ok(())
            }
        }
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    fn another_owner_makes_what_was_known_of_a_server_stale_and_only_that_server() {
        let store = CheckpointStore::new("/nonexistent");
        for log in ["prod", "prod.chat", "production", "dev"] {
            remember(&store.known, log, &position(10));
        }
        store.forget_server("prod");
        let mut left: Vec<String> = store.known().into_iter().map(|k| k.log).collect();
        left.sort();
        assert_eq!(left, ["dev", "production"]);
    }

    #[test]
    fn what_is_given_back_carries_the_batch_in_flight() {
        let store = CheckpointStore::new("/nonexistent");
        remember(&store.known, "prod", &position(10));
        if let Some(r) = store.known.lock().get_mut("prod") {
            r.in_flight = Some(InFlight {
                lines: 7,
                to: Stored::from(&position(90)),
            });
        }
        let back = store.known();
        let flight: InFlight =
            serde_json::from_slice(back[0].in_flight.as_deref().unwrap_or_default()).unwrap();
        assert_eq!(flight.lines, 7);
        let at: Stored = serde_json::from_slice(&back[0].checkpoint).unwrap();
        assert_eq!(at.position().unwrap(), position(10));
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
