//! Hot swap of a server's parsers while the host runs.
//!
//! A reload reads servers.yml again, builds the server's parser chain from it (compiling
//! plugins, reading pattern files, running `init`) **off the hot path**, and, if the chain's
//! version differs from the live one, hands it to the server's parser thread, which makes it
//! live between two batches: no line is lost or parsed twice. A chain that does not build is
//! rejected with its error (log, `/ready` component `reload:<tag>`, metrics, API) and the live
//! one keeps running. The chain it replaced is kept, so a rollback is instant.
//!
//! Reloads come from the watcher (a changed servers.yml, pattern file or `.wasm`), the admin
//! API, `factorio-isr reload`, and `/factorio reload`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::health::{Health, State};
use crate::metrics::Metrics;
use crate::pipeline::{self, ParseInput, ParserVersions, Swapped};
use crate::plugin::Runtime;
use crate::servers::Server;

/// A server's parser thread, as reloads reach it. The sender is weak so that it does not
/// keep the thread's queue open when the pipeline stops.
#[derive(Clone)]
pub struct ParserHandle {
    pub inputs: mpsc::WeakSender<ParseInput>,
    pub versions: Arc<Mutex<ParserVersions>>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// A new version is live.
    Swapped {
        from: String,
        to: String,
        /// Building the new chain (compile, read, init), off the hot path.
        build_ms: f64,
        /// From handing it to the parser thread to its being live (includes the batches
        /// queued before it).
        swap_ms: f64,
    },
    /// The configuration gives the version that is live already.
    Unchanged { version: String },
}

/// Why a reload or rollback did nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("server `{0}` does not follow a log, so it has no parsers")]
    NoLog(String),
    #[error("rejected, the live version keeps running: {0}")]
    Rejected(String),
    #[error("there is no earlier version to roll back to")]
    NoPrevious,
    #[error("the server's pipeline has stopped")]
    Stopped,
}

/// Reloads servers' parsers from the configuration file.
pub struct Reloader {
    runtime: Arc<Runtime>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    health: Health,
    /// One reload at a time, so two triggers cannot race their swaps.
    busy: tokio::sync::Mutex<()>,
    /// Where run-time choices of version are kept.
    pins: Option<crate::pins::PinStore>,
    /// One monitor reload at a time.
    monitors_busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader that reads `config_path` and builds with `runtime`.
    pub fn new(
        runtime: Arc<Runtime>,
        config_path: &Path,
        metrics: Arc<Metrics>,
        health: Health,
        pins: Option<crate::pins::PinStore>,
    ) -> Self {
        Self {
            runtime,
            config_path: config_path.to_owned(),
            metrics,
            health,
            busy: tokio::sync::Mutex::new(()),
            pins,
            monitors_busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration file it reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    fn count(&self, tag: &str, result: &str) {
        self.metrics
            .plugin_reloads
            .with_label_values(&[tag, result])
            .inc();
    }

    /// Rebuilds `server`'s parsers (and monitors) from the configuration and swaps them in
    /// if they changed; a version chosen at run time (promoted, rolled back) gives way to the
    /// configuration.
    pub async fn reload(&self, server: &Server) -> Result<ReloadOutcome, ReloadError> {
        self.reload_monitors(server).await;
        self.reload_candidate(server).await;
        self.swap_in(server, Which::Parsers { explicit: true })
            .await
    }

    /// The watcher's reload: like [`Reloader::reload`], except that a version chosen at run
    /// time stays unless the configuration now gives another version than it did.
    pub async fn reload_if_changed(&self, server: &Server) -> Result<ReloadOutcome, ReloadError> {
        self.reload_monitors(server).await;
        self.reload_candidate(server).await;
        self.swap_in(server, Which::Parsers { explicit: false })
            .await
    }

    /// Rebuilds `server`'s compare-mode candidate from its `shadow` entries and, if it
    /// changed, hands it to the candidate's thread (the comparison starts afresh). Failures
    /// are logged and counted; the running candidate keeps running.
    async fn reload_candidate(&self, server: &Server) {
        let (Some(tx), Some(report)) = (
            server.shadow.as_ref().and_then(mpsc::WeakSender::upgrade),
            &server.compare,
        ) else {
            return;
        };
        let live = report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .candidate
            .clone();
        match self.build(&server.tag, Which::Shadow).await {
            Ok(chain) if chain.version() != live => {
                if tx
                    .send(crate::pipeline::ShadowInput::Replace(chain))
                    .await
                    .is_ok()
                {
                    self.count(&server.tag, "candidate_swapped");
                }
            }
            Ok(_) => {}
            Err(problem) => {
                tracing::error!(server = %server.tag, "the compare-mode candidate was not reloaded; the running one keeps running: {problem}");
                self.count(&server.tag, "candidate_rejected");
            }
        }
    }

    /// Rebuilds `server`'s monitors from the configuration and, if they changed, hands them
    /// to its monitor thread; each new monitor takes up the state of the one of the same
    /// plugin it replaces. A server that started without monitors needs a restart for them.
    /// Failures are logged and counted; the live monitors keep running.
    async fn reload_monitors(&self, server: &Server) {
        let Some(handle) = &server.monitors else {
            return;
        };
        let _one = self.monitors_busy.lock().await;
        let tag = server.tag.clone();
        let path = self.config_path.clone();
        let runtime = self.runtime.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            let server = config
                .server(&tag)
                .ok_or_else(|| format!("{} no longer has a server `{tag}`", path.display()))?;
            crate::monitor::monitor_instances(&runtime, server)
                .map_err(|e| format!("{}: server {tag}: {e:#}", path.display()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let monitors = match built {
            Ok(m) => m,
            Err(problem) => {
                tracing::error!(server = %server.tag, "monitor reload rejected; the live monitors keep running: {problem}");
                self.health
                    .error(&format!("reload:{}", server.tag), problem);
                self.count(&server.tag, "monitors_rejected");
                return;
            }
        };
        let version = crate::monitor::version(&monitors);
        if *handle.version.lock().unwrap_or_else(|p| p.into_inner()) == version {
            return;
        }
        let (done, swapped) = oneshot::channel();
        let swap = crate::monitor::MonitorInput::Swap { monitors, done };
        let Some(feed) = handle.feed.upgrade() else {
            return;
        };
        if feed.send(swap).await.is_ok()
            && let Ok(v) = swapped.await
        {
            *handle.version.lock().unwrap_or_else(|p| p.into_inner()) = v;
            self.count(&server.tag, "monitors_swapped");
        }
    }

    /// Makes the server's compare-mode candidate (its `shadow` entries, as configured now)
    /// live; the live chain becomes the rollback target. The comparison starts afresh.
    pub async fn promote(&self, server: &Server) -> Result<ReloadOutcome, ReloadError> {
        let outcome = self.swap_in(server, Which::Shadow).await?;
        if let Some(report) = &server.compare {
            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
            *r = crate::compare::CompareReport {
                candidate: r.candidate.clone(),
                ..Default::default()
            };
        }
        if matches!(outcome, ReloadOutcome::Swapped { .. }) {
            self.count(&server.tag, "promoted");
        }
        Ok(outcome)
    }

    async fn swap_in(&self, server: &Server, which: Which) -> Result<ReloadOutcome, ReloadError> {
        let _one = self.busy.lock().await;
        let tag = server.tag.clone();
        let Some(handle) = &server.parsers else {
            return Err(ReloadError::NoLog(tag));
        };
        let component = format!("reload:{tag}");
        let started = Instant::now();
        let built = self.build(&tag, which).await;
        let build_ms = ms(started.elapsed());
        let chain = match built {
            Ok(chain) => chain,
            Err(problem) => {
                tracing::error!(server = %tag, "reload rejected; the live parsers keep running: {problem}");
                handle
                    .versions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_error = Some(problem.clone());
                self.health.error(&component, problem.clone());
                self.count(&tag, "rejected");
                return Err(ReloadError::Rejected(problem));
            }
        };
        let version = chain.version();
        let (live, pinned, old_config) = {
            let mut v = handle.versions.lock().unwrap_or_else(|p| p.into_inner());
            v.last_error = None;
            let before = (v.live.clone(), v.pinned.clone(), v.config.clone());
            if matches!(which, Which::Parsers { .. }) {
                v.config = version.clone();
            }
            before
        };
        self.health.set(&component, State::Ready, None);
        if matches!(which, Which::Parsers { explicit: false })
            && pinned.is_some()
            && version == old_config
        {
            // The configuration has not changed since a version was chosen at run time.
            self.count(&tag, "unchanged");
            return Ok(ReloadOutcome::Unchanged { version: live });
        }
        if version == live {
            if matches!(which, Which::Parsers { explicit: true }) && pinned.is_some() {
                if let Some(pins) = &self.pins {
                    pins.clear(&tag);
                }
                handle
                    .versions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pinned = None;
            }
            self.count(&tag, "unchanged");
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let pin = match which {
            Which::Shadow => Some("promoted"),
            Which::Parsers { .. } => None,
        };
        let swap_started = Instant::now();
        let (done, swapped) = oneshot::channel();
        let Some(inputs) = handle.inputs.upgrade() else {
            return Err(ReloadError::Stopped);
        };
        if inputs
            .send(ParseInput::Swap { chain, pin, done })
            .await
            .is_err()
        {
            return Err(ReloadError::Stopped);
        }
        let Swapped { from, to } = swapped.await.map_err(|_| ReloadError::Stopped)?;
        let swap_ms = ms(swap_started.elapsed());
        self.count(&tag, "swapped");
        Ok(ReloadOutcome::Swapped {
            from,
            to,
            build_ms,
            swap_ms,
        })
    }

    /// Makes the version before the live one live again.
    pub async fn rollback(&self, server: &Server) -> Result<Swapped, ReloadError> {
        let _one = self.busy.lock().await;
        let Some(handle) = &server.parsers else {
            return Err(ReloadError::NoLog(server.tag.clone()));
        };
        let (done, swapped) = oneshot::channel();
        let Some(inputs) = handle.inputs.upgrade() else {
            return Err(ReloadError::Stopped);
        };
        if inputs.send(ParseInput::Rollback { done }).await.is_err() {
            return Err(ReloadError::Stopped);
        }
        match swapped.await.map_err(|_| ReloadError::Stopped)? {
            Some(s) => {
                self.count(&server.tag, "rolled_back");
                Ok(s)
            }
            None => Err(ReloadError::NoPrevious),
        }
    }

    async fn build(&self, tag: &str, which: Which) -> Result<crate::plugin::ParserChain, String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let server = config.server(tag).ok_or_else(|| {
            format!(
                "{} no longer has a server `{tag}`",
                self.config_path.display()
            )
        })?;
        let entries = match which {
            Which::Parsers { .. } => server.parsers.clone(),
            Which::Shadow if server.shadow.is_empty() => {
                return Err(format!(
                    "server `{tag}` has no `shadow` candidate to promote"
                ));
            }
            Which::Shadow => server.shadow.clone(),
        };
        let runtime = self.runtime.clone();
        let tag = tag.to_owned();
        let path = self.config_path.display().to_string();
        tokio::task::spawn_blocking(move || {
            pipeline::parser_chain(&runtime, &tag, &entries)
                .map_err(|e| format!("{path}: server {tag}: {e:#}"))
        })
        .await
        .map_err(|e| format!("the build failed: {e}"))?
    }
}

/// Which entries of a server a chain is built from (and, for the parsers, whether an
/// operator asked).
#[derive(Debug, Clone, Copy)]
enum Which {
    Parsers { explicit: bool },
    Shadow,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The folders whose changes may change a server's parsers: the configuration file's, each
/// `.wasm` plugin's, and each patterns folder (the stock parser's `dir`, else `./patterns`).
pub fn watched_dirs(config: &Config) -> Vec<PathBuf> {
    use crate::plugin::stock::PluginSource;
    let mut dirs = vec![parent(&config.path)];
    for server in config.servers.iter().filter(|s| s.log_path.is_some()) {
        if server.parsers.is_empty() {
            dirs.push(PathBuf::from("patterns"));
        }
        for entry in &server.parsers {
            match PluginSource::parse(&entry.plugin) {
                PluginSource::File(path) => dirs.push(parent(&path)),
                PluginSource::Stock(_) => match entry.config.get("dir").and_then(|d| d.as_str()) {
                    Some(dir) => dirs.push(PathBuf::from(dir)),
                    None => dirs.push(PathBuf::from("patterns")),
                },
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

/// How long the watcher waits for a burst of file events (an editor's save, a copy of
/// several files) to end before it reloads.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `dirs` and reloads every server with parsers when something in them changes
/// (servers whose chain is unchanged are left alone), until `stop` turns true.
pub fn watch(
    reloader: Arc<Reloader>,
    servers: Arc<Vec<Server>>,
    dirs: Vec<PathBuf>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use notify::Watcher;
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only configuration, pattern files and plugins: logs and event files written
        // beside them change all the time.
        let relevant = match &event {
            Ok(e) => {
                !matches!(e.kind, notify::EventKind::Access(_))
                    && e.paths.iter().any(|p| {
                        p.extension()
                            .is_some_and(|x| x == "yml" || x == "yaml" || x == "wasm")
                    })
            }
            Err(_) => true,
        };
        if relevant {
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
            for server in servers.iter().filter(|s| s.parsers.is_some()) {
                match reloader.reload_if_changed(server).await {
                    Ok(ReloadOutcome::Swapped {
                        from,
                        to,
                        build_ms,
                        swap_ms,
                    }) => tracing::info!(
                        server = %server.tag, from = %from, to = %to, build_ms, swap_ms, "a changed file was reloaded"
                    ),
                    Ok(ReloadOutcome::Unchanged { .. }) => {}
                    // Logged, counted and shown by the reload itself.
                    Err(_) => {}
                }
            }
        }
    })
}
