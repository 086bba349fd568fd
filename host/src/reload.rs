//! Hot swap of a server's plugins while the host runs.
//!
//! Each server has two plugin slots (`slot::Slot`): its parser chain and its set of
//! monitors. A reload reads servers.yml again and builds each slot from it (compiling plugins,
//! reading pattern files, running `init`) **off the hot path**; if a slot's version differs
//! from the live one, it is handed to the thread that owns the slot (the parser thread, the
//! monitor thread), which makes it live between two calls: no line is lost or parsed twice,
//! and new monitors take up the state of those they replace. A slot that does not build is
//! rejected with its error (log, `/ready` component `reload:<tag>` or
//! `reload:<tag>:monitors`, metrics, API) and the live version keeps running. The version it
//! replaced is kept, so a rollback is instant.
//!
//! The candidates of compare mode (`shadow`) are rebuilt by the same reload: added, replaced
//! or stopped as servers.yml now says.
//!
//! Reloads come from the watcher (a changed servers.yml, pattern file or `.wasm`), the admin
//! API, `factorio-isr reload`, and `/factorio reload`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ServerConfig};
use crate::monitor::MonitorInput;
use crate::observe::health::{Health, State};
use crate::observe::metrics::Metrics;
use crate::pipeline::{self, ParseInput};
use crate::plugin::{MonitorInstance, ParserChain, Runtime};
use crate::servers::Server;
use crate::swap::slot::{Slot, Swapped};

/// What a reload did to one slot.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// A new version is live.
    Swapped {
        from: String,
        to: String,
        /// Building the new version (compile, read, init), off the hot path.
        build_ms: f64,
        /// From handing it to the slot's thread to its being live (includes the inputs
        /// queued before it).
        swap_ms: f64,
        /// Why the new version could not be kept for the next start, if it could not.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_kept: Option<String>,
    },
    /// The configuration gives the version that is live already.
    Unchanged { version: String },
}

/// Why a reload, promotion or rollback of a slot did nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("server `{0}` does not follow a log, so it has no parsers")]
    NoLog(String),
    #[error("server `{0}` has no monitor thread")]
    NoMonitors(String),
    #[error("rejected, the live version keeps running: {0}")]
    Rejected(String),
    #[error("there is no earlier version to roll back to")]
    NoPrevious,
    #[error("server `{0}` has no `shadow` candidate to promote")]
    NoCandidate(String),
    #[error("the server's pipeline has stopped")]
    Stopped,
    #[error("{0}")]
    NotKept(String),
}

/// What a reload or promotion did to each of a server's slots (none: the server lacks that
/// slot, or it was not asked).
#[derive(Debug, Default)]
pub struct ServerReload {
    pub parsers: Option<Result<ReloadOutcome, ReloadError>>,
    pub monitors: Option<Result<ReloadOutcome, ReloadError>>,
}

impl ServerReload {
    /// The first slot's error, if one failed.
    pub fn error(&self) -> Option<&ReloadError> {
        [&self.parsers, &self.monitors]
            .into_iter()
            .find_map(|r| r.as_ref().and_then(|r| r.as_ref().err()))
    }

    /// Why a slot's new version could not be kept for the next start, if one could not.
    pub fn not_kept(&self) -> Option<&str> {
        [&self.parsers, &self.monitors]
            .into_iter()
            .find_map(|r| match r {
                Some(Ok(ReloadOutcome::Swapped {
                    not_kept: Some(why),
                    ..
                })) => Some(why.as_str()),
                _ => None,
            })
    }

    /// One line per slot, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (slot, r) in [
            (Slot::Parsers, &self.parsers),
            (Slot::Monitors, &self.monitors),
        ] {
            match r {
                None => {}
                Some(Ok(ReloadOutcome::Swapped {
                    from, to, not_kept, ..
                })) => {
                    lines.push(format!("{slot}: `{from}` → `{to}`"));
                    lines.extend(not_kept.iter().map(|why| format!("{slot}: {why}")));
                }
                Some(Ok(ReloadOutcome::Unchanged { version })) => {
                    lines.push(format!("{slot}: already at `{version}`"))
                }
                Some(Err(e)) => lines.push(format!("{slot}: {e}")),
            }
        }
        lines
    }
}

impl Serialize for ServerReload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        for (slot, r) in [
            (Slot::Parsers, &self.parsers),
            (Slot::Monitors, &self.monitors),
        ] {
            match r {
                None => map.serialize_entry(slot.name(), &None::<()>)?,
                Some(Ok(outcome)) => map.serialize_entry(slot.name(), outcome)?,
                Some(Err(e)) => map.serialize_entry(
                    slot.name(),
                    &serde_json::json!({
                        "result": if matches!(e, ReloadError::Rejected(_)) { "rejected" } else { "error" },
                        "error": e.to_string(),
                    }),
                )?,
            }
        }
        map.end()
    }
}

/// A slot's plugins, built and initialised, ready to be swapped in.
enum Built {
    Parsers(ParserChain),
    Monitors(Vec<MonitorInstance>),
}

impl Built {
    fn version(&self) -> String {
        match self {
            Self::Parsers(chain) => chain.version(),
            Self::Monitors(monitors) => crate::monitor::version(monitors),
        }
    }
}

/// Which entries of a server a slot is built from (and, for the configured ones, whether
/// an operator asked).
#[derive(Debug, Clone, Copy)]
enum Which {
    Config { explicit: bool },
    Candidate,
}

/// Reloads servers' plugins from the configuration file.
pub struct Reloader {
    runtime: Arc<Runtime>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    health: Health,
    /// One change at a time, so two triggers cannot race their swaps. A reload holds it
    /// from reading servers.yml until every slot and candidate is placed, so all of them
    /// come from one reading of the file.
    busy: tokio::sync::Mutex<()>,
    /// Where run-time choices of version are kept.
    pins: Option<crate::swap::pins::PinStore>,
}

impl Reloader {
    /// A reloader that reads `config_path` and builds with `runtime`.
    pub fn new(
        runtime: Arc<Runtime>,
        config_path: &Path,
        metrics: Arc<Metrics>,
        health: Health,
        pins: Option<crate::swap::pins::PinStore>,
    ) -> Self {
        Self {
            runtime,
            config_path: config_path.to_owned(),
            metrics,
            health,
            busy: tokio::sync::Mutex::new(()),
            pins,
        }
    }

    /// The configuration file it reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    fn count(&self, tag: &str, slot: Slot, result: &str) {
        self.metrics
            .plugin_reloads
            .with_label_values(&[tag, &slot.reload_result(result)])
            .inc();
    }

    /// The `/ready` component that shows a slot's last rejected reload.
    pub fn component(tag: &str, slot: Slot) -> String {
        match slot {
            Slot::Parsers => format!("reload:{tag}"),
            Slot::Monitors => format!("reload:{tag}:monitors"),
        }
    }

    /// Rebuilds `server`'s parsers, monitors and candidates from the configuration and swaps
    /// in those that changed; a version chosen at run time (promoted, rolled back) gives way
    /// to the configuration.
    pub async fn reload(&self, server: &Server) -> ServerReload {
        self.reload_as(server, true).await
    }

    /// The watcher's reload: like [`Reloader::reload`], except that a version chosen at run
    /// time stays unless the configuration now gives another version than it did.
    pub async fn reload_if_changed(&self, server: &Server) -> ServerReload {
        self.reload_as(server, false).await
    }

    async fn reload_as(&self, server: &Server, explicit: bool) -> ServerReload {
        let _one = self.busy.lock().await;
        let config = self.server_config(&server.tag).await;
        let which = Which::Config { explicit };
        let monitors = match &server.monitors {
            Some(_) => Some(self.swap_in(server, Slot::Monitors, which, &config).await),
            None => None,
        };
        let parsers = match &server.parsers {
            Some(_) => Some(self.swap_in(server, Slot::Parsers, which, &config).await),
            None => None,
        };
        self.reload_candidates(server, &config).await;
        ServerReload { parsers, monitors }
    }

    /// Rebuilds `server`'s compare-mode candidates from its `shadow` entries and hands each
    /// that changed (or appeared, or went) to its slot's thread; the comparison starts
    /// afresh. Failures are logged and counted; a running candidate keeps running.
    async fn reload_candidates(&self, server: &Server, config: &Result<ServerConfig, String>) {
        for slot in [Slot::Parsers, Slot::Monitors] {
            let running = match slot {
                Slot::Parsers => lock(&server.parser_compare)
                    .as_ref()
                    .map(|r| r.candidate.clone()),
                Slot::Monitors => lock(&server.monitor_compare)
                    .as_ref()
                    .map(|r| r.candidate.clone()),
            };
            let built = match self.build(config, slot, Which::Candidate).await {
                Ok(built) => built,
                Err(problem) => {
                    tracing::error!(server = %server.tag, "the {slot} candidate was not reloaded; a running one keeps running: {problem}");
                    self.count(&server.tag, slot, "candidate_rejected");
                    continue;
                }
            };
            if built.as_ref().map(Built::version) == running {
                continue;
            }
            let (done, placed) = oneshot::channel();
            let sent = match (slot, built) {
                (Slot::Parsers, built) => match &server.parsers {
                    Some(h) => {
                        let chain = match built {
                            Some(Built::Parsers(c)) => Some(c),
                            _ => None,
                        };
                        send(&h.inputs, ParseInput::Candidate { chain, done }).await
                    }
                    None => {
                        if built.is_some() {
                            tracing::warn!(server = %server.tag, "server `{}` follows no log: its candidate parsers have nothing to parse", server.tag);
                        }
                        false
                    }
                },
                (Slot::Monitors, built) => match &server.monitors {
                    Some(h) => {
                        let monitors = match built {
                            Some(Built::Monitors(m)) => Some(m),
                            _ => None,
                        };
                        send(&h.feed, MonitorInput::Candidate { monitors, done }).await
                    }
                    None => false,
                },
            };
            if sent && placed.await.is_ok() {
                self.count(&server.tag, slot, "candidate_swapped");
            }
        }
    }

    /// Makes the server's compare-mode candidates (its `shadow` entries, as configured now)
    /// live, each slot that has one; the live versions become the rollback targets. The
    /// comparisons start afresh.
    pub async fn promote(&self, server: &Server) -> Result<ServerReload, ReloadError> {
        let _one = self.busy.lock().await;
        let read = self.server_config(&server.tag).await;
        let config = read.clone().map_err(ReloadError::Rejected)?;
        let mut done = ServerReload::default();
        if !config.shadow.parsers.is_empty() {
            let outcome = self
                .swap_in(server, Slot::Parsers, Which::Candidate, &read)
                .await;
            if let Some(r) = lock(&server.parser_compare).as_mut() {
                *r = crate::swap::compare::ParserReport::new(r.candidate.clone());
            }
            done.parsers = Some(outcome);
        }
        if !config.shadow.monitors.is_empty() {
            let outcome = self
                .swap_in(server, Slot::Monitors, Which::Candidate, &read)
                .await;
            if let Some(r) = lock(&server.monitor_compare).as_mut() {
                *r = crate::swap::compare::MonitorReport::new(r.candidate.clone());
            }
            done.monitors = Some(outcome);
        }
        if done.parsers.is_none() && done.monitors.is_none() {
            return Err(ReloadError::NoCandidate(server.tag.clone()));
        }
        for (slot, r) in [
            (Slot::Parsers, &done.parsers),
            (Slot::Monitors, &done.monitors),
        ] {
            if let Some(Ok(ReloadOutcome::Swapped { .. })) = r {
                self.count(&server.tag, slot, "promoted");
            }
        }
        Ok(done)
    }

    /// Builds `slot` from `config` and swaps it in; the caller holds `busy`.
    async fn swap_in(
        &self,
        server: &Server,
        slot: Slot,
        which: Which,
        config: &Result<ServerConfig, String>,
    ) -> Result<ReloadOutcome, ReloadError> {
        let tag = server.tag.clone();
        let versions = match slot {
            Slot::Parsers => server.parsers.as_ref().map(|h| h.versions.clone()),
            Slot::Monitors => server.monitors.as_ref().map(|h| h.versions.clone()),
        };
        let Some(versions) = versions else {
            return Err(match slot {
                Slot::Parsers => ReloadError::NoLog(tag),
                Slot::Monitors => ReloadError::NoMonitors(tag),
            });
        };
        let component = Self::component(&tag, slot);
        let started = Instant::now();
        let built = match self.build(config, slot, which).await {
            Ok(Some(built)) => Ok(built),
            Ok(None) => Err(ReloadError::NoCandidate(tag.clone())),
            Err(problem) => Err(ReloadError::Rejected(problem)),
        };
        let build_ms = ms(started.elapsed());
        let built = match built {
            Ok(built) => built,
            Err(ReloadError::Rejected(problem)) => {
                tracing::error!(server = %tag, "{slot} reload rejected; the live version keeps running: {problem}");
                lock(&versions).last_error = Some(problem.clone());
                self.health.error(&component, problem.clone());
                self.count(&tag, slot, "rejected");
                return Err(ReloadError::Rejected(problem));
            }
            Err(e) => return Err(e),
        };
        let version = built.version();
        let (live, pinned, old_config) = {
            let mut v = lock(&versions);
            v.last_error = None;
            let before = (v.live.clone(), v.pinned.clone(), v.config.clone());
            if matches!(which, Which::Config { .. }) {
                v.config = version.clone();
            }
            before
        };
        self.health.set(&component, State::Ready, None);
        if matches!(which, Which::Config { explicit: false })
            && pinned.is_some()
            && version == old_config
        {
            // The configuration has not changed since a version was chosen at run time.
            self.count(&tag, slot, "unchanged");
            return Ok(ReloadOutcome::Unchanged { version: live });
        }
        if version == live {
            if matches!(which, Which::Config { explicit: true }) && pinned.is_some() {
                if let Some(pins) = &self.pins {
                    let state = crate::state::StateReport::new(
                        self.health.clone(),
                        Some(self.metrics.state_write_failures.clone()),
                    );
                    let component = format!("versions:{tag}");
                    let cleared = {
                        let (pins, tag) = (pins.clone(), tag.clone());
                        tokio::task::spawn_blocking(move || pins.clear(&tag, slot))
                            .await
                            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    };
                    if let Err(e) = state.record(crate::state::What::Versions, &component, cleared)
                    {
                        return Err(ReloadError::NotKept(format!(
                            "servers.yml's {slot} are live, but the version chosen before stays kept for the next start: {e}"
                        )));
                    }
                }
                lock(&versions).pinned = None;
            }
            self.count(&tag, slot, "unchanged");
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let pin = match which {
            Which::Candidate => Some("promoted"),
            Which::Config { .. } => None,
        };
        let swap_started = Instant::now();
        let (done, swapped) = oneshot::channel();
        let sent = match (built, &server.parsers, &server.monitors) {
            (Built::Parsers(chain), Some(h), _) => {
                send(&h.inputs, ParseInput::Swap { chain, pin, done }).await
            }
            (Built::Monitors(monitors), _, Some(h)) => {
                let swap = MonitorInput::Swap {
                    monitors,
                    pin,
                    done,
                };
                send(&h.feed, swap).await
            }
            _ => false,
        };
        if !sent {
            return Err(ReloadError::Stopped);
        }
        let Swapped { from, to, not_kept } = swapped.await.map_err(|_| ReloadError::Stopped)?;
        let swap_ms = ms(swap_started.elapsed());
        self.count(&tag, slot, "swapped");
        Ok(ReloadOutcome::Swapped {
            from,
            to,
            build_ms,
            swap_ms,
            not_kept,
        })
    }

    /// Makes the version before the live one of `slot` live again (default: the parsers,
    /// or the monitors of a server that follows no log).
    pub async fn rollback(
        &self,
        server: &Server,
        slot: Option<Slot>,
    ) -> Result<(Slot, Swapped), ReloadError> {
        let _one = self.busy.lock().await;
        let slot = slot.unwrap_or(if server.parsers.is_some() {
            Slot::Parsers
        } else {
            Slot::Monitors
        });
        let (done, swapped) = oneshot::channel();
        let sent = match slot {
            Slot::Parsers => {
                let Some(h) = &server.parsers else {
                    return Err(ReloadError::NoLog(server.tag.clone()));
                };
                send(&h.inputs, ParseInput::Rollback { done }).await
            }
            Slot::Monitors => {
                let Some(h) = &server.monitors else {
                    return Err(ReloadError::NoMonitors(server.tag.clone()));
                };
                send(&h.feed, MonitorInput::Rollback { done }).await
            }
        };
        if !sent {
            return Err(ReloadError::Stopped);
        }
        match swapped.await.map_err(|_| ReloadError::Stopped)? {
            Some(s) => {
                self.count(&server.tag, slot, "rolled_back");
                Ok((slot, s))
            }
            None => Err(ReloadError::NoPrevious),
        }
    }

    /// Server `tag` as servers.yml gives it now, read off the async threads.
    async fn server_config(&self, tag: &str) -> Result<ServerConfig, String> {
        let path = self.config_path.clone();
        let tag = tag.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            config
                .server(&tag)
                .cloned()
                .ok_or_else(|| format!("{} no longer has a server `{tag}`", path.display()))
        })
        .await
        .map_err(|e| format!("reading the configuration failed: {e}"))
        .and_then(|r| r);
        let result = if read.is_ok() { "ok" } else { "error" };
        self.metrics.config_reads.with_label_values(&[result]).inc();
        read
    }

    /// Builds `slot` of the server as `config` gives it, off the async threads; none for a
    /// candidate that it does not give.
    async fn build(
        &self,
        config: &Result<ServerConfig, String>,
        slot: Slot,
        which: Which,
    ) -> Result<Option<Built>, String> {
        let server = config.clone()?;
        let runtime = self.runtime.clone();
        let path = self.config_path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let built = match (slot, which) {
                (Slot::Parsers, Which::Config { .. }) => {
                    pipeline::parser_chain(&runtime, &server.tag, &server.parsers)
                        .map(|c| Some(Built::Parsers(c)))
                }
                (Slot::Parsers, Which::Candidate) if server.shadow.parsers.is_empty() => Ok(None),
                (Slot::Parsers, Which::Candidate) => {
                    pipeline::parser_chain(&runtime, &server.tag, &server.shadow.parsers)
                        .map(|c| Some(Built::Parsers(c)))
                }
                (Slot::Monitors, Which::Config { .. }) => {
                    crate::monitor::monitor_instances(&runtime, &server)
                        .map(|m| Some(Built::Monitors(m)))
                }
                (Slot::Monitors, Which::Candidate) => {
                    crate::monitor::candidate_instances(&runtime, &server)
                        .map(|m| m.map(Built::Monitors))
                }
            };
            built.map_err(|e| format!("{path}: server {}: {e:#}", server.tag))
        })
        .await
        .map_err(|e| format!("the build failed: {e}"))?
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `msg` to a slot's thread; false when the thread is gone.
async fn send<T>(to: &mpsc::WeakSender<T>, msg: T) -> bool {
    match to.upgrade() {
        Some(tx) => tx.send(msg).await.is_ok(),
        None => false,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

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

/// How long the watcher waits for a burst of file events (an editor's save, a copy of
/// several files) to end before it reloads.
const SETTLE: Duration = Duration::from_millis(300);

/// Watches `dirs` and reloads every server when something in them changes (slots whose
/// version is unchanged are left alone), until `stop` turns true.
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
        }
    })
}
