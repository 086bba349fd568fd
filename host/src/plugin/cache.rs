//! Compiled components on disk, so that a restart compiles nothing.
//!
//! An entry is named by the SHA-256 of the `.wasm` and a hash of everything in the engine
//! that affects compiled code, and holds its own SHA-256: an entry that does not check out
//! (cut short, tampered with, from another build) is rebuilt, never loaded.
//!
//! Entries are kept while they are used: a hit marks its entry as used now, and whenever an
//! entry is written, those unused for [`KEEP_UNUSED`] (old plugin builds, other versions of
//! the host) are removed, so the folder does not grow without bound.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Identifies our entries and their layout.
const MAGIC: &[u8; 8] = b"FISRCW01";

/// How long an entry may go unused before it is removed.
pub const KEEP_UNUSED: Duration = Duration::from_secs(30 * 24 * 3600);

/// What loading a component cost: where it came from, how long it took, and how large
/// its compiled form is (what the cache holds, and roughly what its code takes in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    pub outcome: CacheOutcome,
    pub took: Duration,
    pub compiled_bytes: u64,
}

/// Where a component came from on this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing was compiled.
    Hit,
    /// Compiled, and stored for next time.
    Compiled,
    /// Compiled; there is no cache (or it could not be written).
    Uncached,
}

/// A folder of compiled components (or none, to always compile).
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir` (created when first written), or none.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The default folder: `$FACTORIO_ISR_CACHE_DIR`, else the user's cache folder.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("FACTORIO_ISR_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("factorio-isr")))
    }

    /// The folder in use, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The compiled form of `wasm` (whose SHA-256 is `hash`), from the cache when it holds a
    /// sound entry, else compiled now and stored.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        hash: &str,
    ) -> wasmtime::Result<(Component, LoadReport)> {
        let started = std::time::Instant::now();
        let report = |outcome, compiled_bytes| LoadReport {
            outcome,
            took: started.elapsed(),
            compiled_bytes,
        };
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{hash}-{:016x}.cwasm", engine_key(engine))));
        if let Some(path) = &path
            && let Some(component) = read_entry(engine, path)
        {
            mark_used(path);
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            return Ok((component, report(CacheOutcome::Hit, size)));
        }
        let (component, compiled) = super::compile::compile(engine, wasm)?;
        let size = compiled.len() as u64;
        let outcome = match (&self.dir, &path) {
            (Some(dir), Some(path)) => match write_entry(dir, path, &compiled) {
                Ok(()) => {
                    prune(dir, SystemTime::now());
                    CacheOutcome::Compiled
                }
                Err(e) => {
                    tracing::warn!(cache = %path.display(), "could not write the plugin cache: {e}");
                    CacheOutcome::Uncached
                }
            },
            _ => CacheOutcome::Uncached,
        };
        drop(compiled);
        super::compile::give_back();
        Ok((component, report(outcome, size)))
    }
}

/// Marks an entry as used now (best effort: a read-only cache still works).
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes the entries of `dir` not used within [`KEEP_UNUSED`] of `now`; returns how many.
pub fn prune(dir: &Path, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "cwasm") {
            continue;
        }
        let unused_for = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        if unused_for.is_some_and(|d| d > KEEP_UNUSED) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(cache = %dir.display(), removed, "removed plugin cache entries unused for 30 days");
    }
    removed
}

fn engine_key(engine: &Engine) -> u64 {
    // DefaultHasher::new() has fixed keys, so the key is the same in every run of a build.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = std::fs::read(path).ok()?;
    let sound = bytes.len() > MAGIC.len() + 32 && &bytes[..MAGIC.len()] == MAGIC && {
        let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
        Sha256::digest(payload).as_slice() == sum
    };
    if !sound {
        tracing::warn!(cache = %path.display(), "ignoring a corrupt plugin cache entry; recompiling");
        return None;
    }
    let payload = &bytes[MAGIC.len() + 32..];
    // SAFETY: the payload is byte-for-byte what `precompile_component` wrote for this engine
    // configuration (checked by its SHA-256 above and by the engine key in the file name);
    // `deserialize` itself also checks the wasmtime version and settings.
    match unsafe { Component::deserialize(engine, payload) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(cache = %path.display(), "ignoring a plugin cache entry: {e}");
            None
        }
    }
}

fn write_entry(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(&Sha256::digest(compiled))?;
    tmp.write_all(compiled)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, name: &str, age: Duration) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    #[test]
    fn entries_unused_for_long_are_pruned_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let old = entry(dir.path(), "a-1.cwasm", 40 * day);
        let recent = entry(dir.path(), "b-1.cwasm", 2 * day);
        let other = entry(dir.path(), "notes.txt", 400 * day);
        assert_eq!(prune(dir.path(), SystemTime::now()), 1);
        assert!(!old.exists());
        assert!(recent.exists() && other.exists());
        assert_eq!(prune(&dir.path().join("missing"), SystemTime::now()), 0);
    }

    #[test]
    fn a_hit_marks_its_entry_as_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(dir.path(), "c-1.cwasm", Duration::from_secs(60 * 24 * 3600));
        mark_used(&path);
        assert_eq!(prune(dir.path(), SystemTime::now()), 0);
        assert!(path.exists());
    }
}
