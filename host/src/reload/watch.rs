//! The watcher: reloads a server when servers.yml, one of its pattern files or one of its
//! `.wasm` plugins changes, once the writes have settled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{ReloadOutcome, Reloader};
use crate::config::Config;
use crate::servers::Server;
use crate::swap::Slot;

/// The folders whose changes may change a server's plugins: the configuration file's, each
/// `.wasm` plugin's (parsers, monitors, candidates), and each patterns folder (the stock
/// parser's `dir`, else `./patterns`).
pub fn watched_dirs(config: &Config) -> Vec<PathBuf> {
    use crate::plugin::stock::PluginSource;
    let mut dirs = vec![parent(&config.path)];
    for server in &config.servers {
        let follows_log = server.log_path.is_some();
        if follows_log && server.parsers.is_empty() {
            dirs.push(PathBuf::from("patterns"));
        }
        let parsers = server.parsers.iter().chain(&server.shadow.parsers);
        let monitors = server
            .monitors
            .iter()
            .flatten()
            .chain(&server.shadow.monitors);
        for (entry, is_parser) in parsers
            .map(|e| (e, true))
            .chain(monitors.map(|e| (e, false)))
        {
            match PluginSource::parse(&entry.plugin) {
                PluginSource::File(path) => dirs.push(parent(&path)),
                PluginSource::Stock(_) if is_parser && follows_log => {
                    match entry.config.get("dir").and_then(|d| d.as_str()) {
                        Some(dir) => dirs.push(PathBuf::from(dir)),
                        None => dirs.push(PathBuf::from("patterns")),
                    }
                }
                PluginSource::Stock(_) => {}
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs.retain(|d| d.is_dir());
    dirs
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned()
}

/// Whether a file event may change a server's plugins: only configuration, pattern files
/// and plugins count (logs and event files written beside them change all the time); an
/// error does, to be safe.
fn relevant(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(e) => {
            !matches!(e.kind, notify::EventKind::Access(_))
                && e.paths.iter().any(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yml" || x == "yaml" || x == "wasm")
                })
        }
        Err(_) => true,
    }
}

/// How long the watcher waits for a burst of file events (an editor's save, a copy of
/// several files) to end before it reloads.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `dirs` and reloads every server when something in them changes (slots whose
/// version is unchanged are left alone), until `stop` turns true; then tells `changed`
/// (which applies what else servers.yml may have changed).
pub fn watch(
    reloader: Arc<Reloader>,
    servers: Arc<Vec<Server>>,
    dirs: Vec<PathBuf>,
    changed: mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use notify::Watcher;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if relevant(&event) {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch for plugin and pattern changes ({e}); reload through the API instead"
            );
            None
        }
    };
    if let Some(w) = &mut watcher {
        for dir in &dirs {
            if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {} for changes: {e}", dir.display());
            }
        }
        tracing::info!(
            folders = dirs.len(),
            "watching plugins, pattern files and the configuration for changes"
        );
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            }
            // Let the burst end, then reload once.
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            for server in servers.iter() {
                let done = reloader.reload_if_changed(server).await;
                for (slot, r) in [
                    (Slot::Parsers, done.parsers),
                    (Slot::Monitors, done.monitors),
                ] {
                    // Failures are logged, counted and shown by the reload itself.
                    if let Some(Ok(ReloadOutcome::Swapped {
                        from,
                        to,
                        build_ms,
                        swap_ms,
                        ..
                    })) = r
                    {
                        tracing::info!(
                            server = %server.tag, %slot, from = %from, to = %to, build_ms, swap_ms, "a changed file was reloaded"
                        );
                    }
                }
            }
            let _ = changed.try_send(());
        }
    })
}
