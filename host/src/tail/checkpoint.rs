//! Where each server's log was read up to, saved after its events reached the sinks, so a
//! restart neither loses nor repeats lines.
//!
//! Checkpoints are kept in a [`Store`]: in the state folder `checkpoints/<log>.checkpoint.json`,
//! written durably, and the one it replaces kept as `<log>.checkpoint.prev.json`, so a
//! damaged checkpoint falls back to the one before it (a batch more is repeated, nothing is
//! lost). Checkpoints of earlier releases,
//! whose fingerprints were `DefaultHasher` values, are still understood and are rewritten in
//! today's form at the next save.
//!
//! In cluster mode the checkpoints are in etcd instead ([`CheckpointStore::fenced`]): each
//! save is a transaction guarded by the owner's fence, so an owner that lost the server
//! cannot move it. Every call here blocks (see [`crate::store`]): make it on a blocking
//! thread. Before a batch is delivered, its extent is recorded as in flight
//! ([`ServerCheckpoint::begin`]); the next owner delivers exactly that batch again first, so
//! what it posts is what was posted, with the same Discord nonces.

use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Change, FileStore, Key, Store};
use crate::tail::{FINGERPRINT_BYTES, Fingerprint, Position};

/// The form written today.
const VERSION: u32 = 2;
/// A checkpoint is under 200 bytes: anything much larger is damage.
const MAX_CHECKPOINT: usize = 64 << 10;

/// Where each log's checkpoint is kept: the state folder, or (cluster mode) etcd under the
/// owner's fence.
#[derive(Clone)]
pub struct CheckpointStore {
    store: Arc<dyn Store>,
    /// Cluster mode: where this process last knew each log delivered up to (saved or found
    /// in etcd) and the batch it had in flight, shared by every fenced copy: when etcd has
    /// lost the cluster's state, a log this instance delivered resumes exactly there.
    known: Known,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointStore({:?})", self.store)
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
    Previous { position: Position, damage: Damage },
    /// The checkpoint was damaged and there is no good one before it: where the log was
    /// read up to is lost.
    Lost { damage: Damage },
}

/// What is wrong with a checkpoint that cannot be used; `at` names where it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("{at} is missing")]
    Missing { at: String },
    #[error("{at} is too large to be a checkpoint")]
    TooLarge { at: String },
    #[error("{at} is empty")]
    Empty { at: String },
    #[error("{at} is not a checkpoint: {reason}")]
    NotACheckpoint { at: String, reason: String },
    #[error("cannot read the checkpoint: {0}")]
    Unreadable(String),
    #[error("etcd lost the cluster's state (wiped or replaced), this checkpoint with it")]
    LostWithEtcd,
    /// The checkpoint and the one before it are both damaged.
    #[error("{this}; and the one before it: {before}")]
    AndBefore {
        this: Box<Damage>,
        before: Box<Damage>,
    },
}

/// One log's checkpoint, for saving.
pub struct ServerCheckpoint {
    store: Arc<dyn Store>,
    log: String,
    /// Whether the checkpoint kept now is good (then a save keeps it as the previous one).
    good: bool,
    /// Cluster mode: the lines of the batch that was in flight when the last owner stopped.
    replay: Option<usize>,
    known: Known,
}

impl std::fmt::Debug for ServerCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.store.locate(&Key::Checkpoint(self.log.clone()));
        write!(f, "ServerCheckpoint({at})")
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
    /// Checkpoints in the state folder `state_dir` (created when first written).
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        Self::in_store(Arc::new(FileStore::new(state_dir.as_ref())))
    }

    /// Checkpoints kept in `store`.
    pub fn in_store(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            known: Arc::default(),
        }
    }

    /// The same checkpoints kept in `store` instead (cluster mode: etcd under a server's
    /// fence), remembering what this process knew of each log across them.
    pub fn fenced(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            known: self.known.clone(),
        }
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

    /// What is saved for `log`, and its checkpoint for saving.
    pub fn open(&self, log: &str) -> (ServerCheckpoint, Loaded) {
        let (loaded, replay) = if self.store.shared() {
            open_shared(self.store.as_ref(), log, &self.known)
        } else {
            (open_own(self.store.as_ref(), log), None)
        };
        if self.store.shared()
            && let Loaded::Found(p) = &loaded
        {
            remember(&self.known, log, p);
        }
        let checkpoint = ServerCheckpoint {
            store: self.store.clone(),
            log: log.to_owned(),
            good: matches!(loaded, Loaded::Found(_)),
            replay,
            known: self.known.clone(),
        };
        (checkpoint, loaded)
    }
}

/// The checkpoint of `log` in a store of this instance's own, falling back to the one
/// before it.
fn open_own(store: &dyn Store, log: &str) -> Loaded {
    let (main, prev) = (
        Key::Checkpoint(log.to_owned()),
        Key::PreviousCheckpoint(log.to_owned()),
    );
    match read(store, &main) {
        Ok(Some(position)) => Loaded::Found(position),
        Ok(None) => match read(store, &prev) {
            Ok(Some(position)) => Loaded::Previous {
                position,
                damage: Damage::Missing {
                    at: store.locate(&main),
                },
            },
            _ => Loaded::Fresh,
        },
        Err(damage) => match read(store, &prev) {
            Ok(Some(position)) => Loaded::Previous { position, damage },
            Ok(None) => Loaded::Lost { damage },
            Err(before) => Loaded::Lost {
                damage: Damage::AndBefore {
                    this: Box::new(damage),
                    before: Box::new(before),
                },
            },
        },
    }
}

/// The checkpoint and batch in flight of `log` in a shared store (etcd), which is tried for
/// as long as the claim may still hold, then the checkpoint counts as lost.
fn open_shared(store: &dyn Store, log: &str, known: &Known) -> (Loaded, Option<usize>) {
    let read_all = || -> Result<_, crate::store::StoreError> {
        let main = store.get(&Key::Checkpoint(log.to_owned()))?;
        let flight = store.get(&Key::InFlight(log.to_owned()))?;
        let lost = store.get(&Key::StateLost)?;
        Ok((main, flight, lost.is_some()))
    };
    let mut tries = 0;
    let got = loop {
        match read_all() {
            Ok(got) => break Ok(got),
            Err(e) if tries < 10 && store.holds() => {
                tries += 1;
                tracing::debug!(checkpoint = log, "cannot read the checkpoint yet: {e}");
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            Err(e) => break Err(e),
        }
    };
    match got {
        Err(e) => (
            Loaded::Lost {
                damage: Damage::Unreadable(e.to_string()),
            },
            None,
        ),
        Ok((None, _, false)) => (Loaded::Fresh, None),
        // etcd lost the cluster's state: this log was not started fresh.
        Ok((None, _, true)) => lost_in_etcd(store, log, known),
        Ok((Some(bytes), flight, _)) => {
            match parse(&bytes, &store.locate(&Key::Checkpoint(log.to_owned()))) {
                Ok(p) => (Loaded::Found(p), replay_of(flight)),
                Err(damage) => (Loaded::Lost { damage }, None),
            }
        }
    }
}

/// The lines of a batch in flight, as recorded.
fn replay_of(flight: Option<Vec<u8>>) -> Option<usize> {
    flight
        .and_then(|f| serde_json::from_slice::<InFlight>(&f).ok())
        .map(|f| f.lines)
}

/// Where a log whose checkpoint etcd lost (with the cluster's state) resumes, with the
/// lines of the batch to deliver again first: where this instance delivered it up to, if
/// it did; else the checkpoint its last owner puts back (each instance gives back what it
/// knew when it finds the state lost, within a lease TTL or so), waited for that long;
/// else it is lost.
fn lost_in_etcd(store: &dyn Store, log: &str, known: &Known) -> (Loaded, Option<usize>) {
    if let Some(r) = known.lock().get(log) {
        tracing::warn!(
            checkpoint = log,
            "etcd lost this log's checkpoint with the cluster's state; resuming where this instance delivered up to"
        );
        return (
            Loaded::Found(r.delivered),
            r.in_flight.as_ref().map(|f| f.lines),
        );
    }
    let settle = store.settle_time().unwrap_or_default();
    let until = std::time::Instant::now() + settle + std::time::Duration::from_secs(3);
    let (main, flight) = (
        Key::Checkpoint(log.to_owned()),
        Key::InFlight(log.to_owned()),
    );
    while std::time::Instant::now() < until && store.holds() {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if let Ok(Some(bytes)) = store.get(&main)
            && let Ok(p) = parse(&bytes, &store.locate(&main))
        {
            tracing::warn!(
                checkpoint = log,
                "etcd lost this log's checkpoint with the cluster's state; its last owner put it back"
            );
            return (
                Loaded::Found(p),
                replay_of(store.get(&flight).ok().flatten()),
            );
        }
    }
    (
        Loaded::Lost {
            damage: Damage::LostWithEtcd,
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
        self.replay
    }

    /// Whether saves go to etcd (and batches are recorded in flight before delivery).
    pub fn in_cluster(&self) -> bool {
        self.store.shared()
    }

    /// Records (cluster mode) that the batch of `lines` lines ending at `to` is about to be
    /// delivered.
    pub fn begin(&mut self, lines: usize, to: &Position) -> io::Result<()> {
        if !self.store.shared() {
            return Ok(());
        }
        let flight = InFlight {
            lines,
            to: Stored::from(to),
        };
        let json = serde_json::to_vec(&flight).map_err(io::Error::other)?;
        if let Some(r) = self.known.lock().get_mut(&self.log) {
            r.in_flight = Some(flight);
        }
        // Any failure ends this ownership: delivering on without the record (or past a
        // checkpoint etcd may or may not have) could deliver a line twice or skip it; the
        // next owner (this instance again, if it is first) starts from what etcd has.
        let key = Key::InFlight(self.log.clone());
        self.store.apply(Change::put(key, json)).map_err(|e| {
            self.store.release();
            e.into()
        })
    }

    /// Saves `position` durably; the checkpoint it replaces is kept as the previous one. A
    /// crash at any moment leaves a good checkpoint or a good previous one, and a save that
    /// fails leaves the last one saved in place. In cluster mode it is one fenced
    /// transaction in etcd, which also ends the batch in flight.
    pub fn save(&mut self, position: &Position) -> io::Result<()> {
        let json = serde_json::to_vec(&Stored::from(position)).map_err(io::Error::other)?;
        let key = Key::Checkpoint(self.log.clone());
        if self.store.shared() {
            self.replay = None;
            let change = Change::put(key, json).and_delete(Key::InFlight(self.log.clone()));
            self.store.apply(change).map_err(|e| {
                self.store.release();
                io::Error::from(e)
            })?;
            remember(&self.known, &self.log, position);
            return Ok(());
        }
        // The new checkpoint is on the disk before the one it replaces moves: a save that
        // fails (a full disk) leaves the last good one where it was.
        let change = if self.good {
            Change::default().and_replace(key, json)
        } else {
            Change::put(key, json)
        };
        self.store.apply(change)?;
        self.good = true;
        Ok(())
    }
}

/// The checkpoint at `key`: none if there is none; an error saying what is wrong with it
/// if it cannot be used.
fn read(store: &dyn Store, key: &Key) -> Result<Option<Position>, Damage> {
    let bytes = match store.get(key) {
        Ok(None) => return Ok(None),
        Ok(Some(b)) => b,
        Err(e) => return Err(Damage::Unreadable(e.to_string())),
    };
    parse(&bytes, &store.locate(key)).map(Some)
}

/// A checkpoint from its stored bytes; `at` names where they were, for the error.
fn parse(bytes: &[u8], at: &str) -> Result<Position, Damage> {
    let at = || at.to_owned();
    if bytes.len() > MAX_CHECKPOINT {
        return Err(Damage::TooLarge { at: at() });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Damage::Empty { at: at() });
    }
    let not_one = |reason: String| Damage::NotACheckpoint { at: at(), reason };
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| not_one(e.to_string()))?;
    stored.position().map_err(not_one)
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

    /// The files of `prod`'s checkpoint and the one before it in state folder `dir`.
    fn paths(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let files = FileStore::new(dir);
        let main = files.path(&Key::Checkpoint("prod".into())).unwrap();
        let prev = files.path(&Key::PreviousCheckpoint("prod".into())).unwrap();
        std::fs::create_dir_all(main.parent().unwrap()).unwrap();
        (main, prev)
    }

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
        let state = dir.path().join("state");
        let store = CheckpointStore::new(&state);
        let (mut cp, loaded) = store.open("prod");
        assert_eq!(loaded, Loaded::Fresh);
        cp.save(&position(42)).unwrap();
        cp.save(&position(99)).unwrap();
        assert_eq!(store.open("prod").1, Loaded::Found(position(99)));
        let files = FileStore::new(&state);
        let prev = Key::PreviousCheckpoint("prod".into());
        assert_eq!(read(&files, &prev), Ok(Some(position(42))));
        assert!(paths(&state).1.is_file());
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
            let (main, prev) = paths(dir.path());
            std::fs::write(&main, bytes).unwrap();
            let Loaded::Lost { damage } = store.open("prod").1 else {
                panic!("{what}: a damaged checkpoint with none before it is lost");
            };
            assert!(
                damage.to_string().contains("prod.checkpoint.json"),
                "{what}: {damage}"
            );
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
        std::fs::create_dir(paths(dir.path()).0).unwrap();
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
        std::fs::write(paths(dir.path()).0, old).unwrap();
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
        let text = std::fs::read_to_string(paths(dir.path()).0).unwrap();
        assert!(
            text.contains("\"version\":2") && text.contains("sha256"),
            "{text}"
        );
        assert_eq!(store.open("prod").1, Loaded::Found(renewed));
    }
}
