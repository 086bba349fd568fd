//! Starting one run of a server's parts: its tailer, parser thread, monitor thread, sinks
//! and checks, wired to each other, with the versions kept from a previous run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::kept::Keeper;
use crate::cluster::Fence;
use crate::cluster::kept::EtcdStore;
use crate::config::{ServerConfig, SinkConfig};
use crate::discord::WebhookSink;
use crate::discord::{Discord, DiscordSink};
use crate::monitor;
use crate::observe::health::State;
use crate::observe::metrics::Metrics;
use crate::observe::{Telemetry, Watchdog};
use crate::pipeline::{self, LogFile, LogInput, ServerPipeline};
use crate::plugin::{MonitorInstance, ParserChain};
use crate::reload::Reloader;
use crate::servers::Server;
use crate::sink::{ConsoleSink, JsonlSink, Sink};
use crate::swap::pins::PinStore;
use crate::swap::slot::{AutoRollback, Slot};
use crate::tail::TailOptions;
use crate::tail::checkpoint::CheckpointStore;
use crate::tail::lines::DEFAULT_MAX_LINE_BYTES;

/// What every run of every server is built with.
pub(super) struct RunParts {
    pub(super) runtime: Arc<crate::plugin::Runtime>,
    pub(super) state_dir: PathBuf,
    /// servers.yml, to name it in errors.
    pub(super) config_path: PathBuf,
    pub(super) poll: Duration,
    pub(super) shared: Telemetry,
    pub(super) checkpoints: CheckpointStore,
    pub(super) discord: Option<DiscordOut>,
    /// Cluster mode: the claim this instance holds on each server it owns now.
    pub(super) fences: Option<Fences>,
}

/// The claims this instance holds, by server tag (cluster mode).
pub(super) type Fences = Arc<parking_lot::Mutex<std::collections::HashMap<String, Arc<Fence>>>>;

/// Where versions chosen at run time are kept: the state folder, or in cluster mode etcd
/// (through `fences`). Call it within the runtime.
pub(super) fn pin_store(state_dir: &std::path::Path, fences: Option<&Fences>) -> PinStore {
    use crate::store::{FileStore, Store, StoreError};
    match fences {
        None => PinStore::new(Arc::new(FileStore::new(state_dir))),
        Some(fences) => {
            let fences = fences.clone();
            let rt = tokio::runtime::Handle::current();
            PinStore::per_server(Arc::new(move |tag: &str| {
                let fence = fences.lock().get(tag).filter(|f| f.valid()).cloned();
                let fence = fence.ok_or_else(|| StoreError::NotOwner(format!("server {tag}")))?;
                let store: Arc<dyn Store> = Arc::new(EtcdStore::new(fence, rt.clone()));
                Ok(store)
            }))
        }
    }
}

impl RunParts {
    /// [`pin_store`] of this host.
    pub(super) fn pin_store(&self) -> PinStore {
        pin_store(&self.state_dir, self.fences.as_ref())
    }
}

/// What a server's Discord sink needs of the bot.
pub(super) struct DiscordOut {
    rest: Arc<crate::discord::rest::Rest>,
    roles: Arc<crate::discord::RoleDirectory>,
    health: crate::observe::health::Health,
}

impl DiscordOut {
    pub(super) fn of(d: &Discord) -> Self {
        Self {
            rest: d.rest.clone(),
            roles: d.roles.clone(),
            health: d.health.clone(),
        }
    }
}

/// Starts one run of `server`'s parts — its monitors, its checks when it has RCON, and its
/// pipeline — under `watchdog`, until `stopped` turns true; `live` is the server's face,
/// whose handles are pointed at this run. Returns the run's tasks.
pub(super) fn start_run(
    parts: &RunParts,
    server: &ServerConfig,
    live: &Server,
    stopped: &watch::Receiver<bool>,
    watchdog: &Watchdog,
    positioned: Option<Arc<tokio::sync::Semaphore>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let (notice_tx, notice_rx) = mpsc::channel(monitor::QUEUE);
    let run = Run {
        parts,
        server,
        live,
        stopped,
        watchdog,
        fence: owned(parts, &server.tag)?,
        notices: notice_tx,
    };
    let mut tasks = Vec::new();
    let keeper = Keeper(run.store());
    tasks.push(keeper.keep_alerts(&server.tag, &live.alerts, stopped.clone()));
    let backlog = monitor::Backlog::default();
    let feed = run.start_monitors(&keeper, &mut tasks)?;
    tasks.extend(run.start_checks(&feed, &backlog));
    let log = run.log_input(positioned)?;
    let p = ServerPipeline {
        tag: server.tag.clone(),
        log,
        sinks: sinks(server, parts.discord.as_ref(), &parts.shared.metrics),
        notices: notice_rx,
        monitors: Some(feed),
        board: live.plugins.clone(),
        versions: live.parsers.clone().unwrap_or_default().versions.clone(),
        watchdog: watchdog.clone(),
        rules: Arc::new(crate::config::EventRules::new(&server.events)),
        fence: run.fence.clone(),
        backlog,
    };
    drop(run);
    tasks.push(pipeline::spawn(p, parts.shared.clone(), stopped.clone()));
    Ok(tasks)
}

/// Cluster mode: this instance's claim on `tag`, which a run needs (an error without it).
fn owned(parts: &RunParts, tag: &str) -> anyhow::Result<Option<Arc<Fence>>> {
    let Some(fences) = &parts.fences else {
        return Ok(None);
    };
    let held = fences.lock().get(tag).cloned();
    match held {
        Some(f) if f.valid() => Ok(Some(f)),
        _ => anyhow::bail!("server {tag}: this instance does not own it"),
    }
}

/// What the steps of one run share.
struct Run<'a> {
    parts: &'a RunParts,
    server: &'a ServerConfig,
    live: &'a Server,
    stopped: &'a watch::Receiver<bool>,
    watchdog: &'a Watchdog,
    fence: Option<Arc<Fence>>,
    /// Notices for the pipeline to deliver (alerts of the checks, rollbacks).
    notices: mpsc::Sender<Vec<crate::alert::Notice>>,
}

impl Run<'_> {
    /// An error of servers.yml's entry of this server.
    fn in_config(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: server {}: {e:#}",
            self.parts.config_path.display(),
            self.server.tag
        )
    }

    /// Where this run keeps what lasts: the state folder, or etcd under its fence.
    fn store(&self) -> Arc<dyn crate::store::Store> {
        match &self.fence {
            Some(f) => Arc::new(EtcdStore::new(f.clone(), tokio::runtime::Handle::current())),
            None => Arc::new(crate::store::FileStore::new(&self.parts.state_dir)),
        }
    }

    /// The monitors as configured, or the version pinned at run time (then with the
    /// configured one as the previous), their kept states restored.
    fn monitors(
        &self,
        keeper: &Keeper,
        versions: &Arc<parking_lot::Mutex<crate::swap::slot::SlotVersions>>,
    ) -> anyhow::Result<(Vec<MonitorInstance>, Option<Vec<MonitorInstance>>)> {
        let (parts, tag) = (self.parts, &self.server.tag);
        let configured = monitor::monitor_instances(&parts.runtime, self.server)
            .map_err(|e| self.in_config(e))?;
        let (mut monitors, previous) = {
            let mut v = versions.lock();
            v.config = monitor::version(&configured);
            match pinned_monitors(parts, tag, &v.config) {
                Some((monitors, reason)) => {
                    v.pinned = Some(reason);
                    (monitors, Some(configured))
                }
                None => (configured, None),
            }
        };
        keeper.restore_monitors(tag, &mut monitors);
        Ok((monitors, previous))
    }

    /// The monitor thread (and the task keeping its states); returns its feed.
    fn start_monitors(
        &self,
        keeper: &Keeper,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<(mpsc::Sender<monitor::MonitorInput>, monitor::Listening)> {
        let (parts, server, live) = (self.parts, self.server, self.live);
        let handle = live.monitors.clone().unwrap_or_default();
        let (monitors, previous) = self.monitors(keeper, &handle.versions)?;
        let (states, keeping) = keeper.keep_monitors(&server.tag, self.stopped.clone());
        tasks.push(keeping);
        let (feed_tx, feed_rx) = mpsc::channel(monitor::QUEUE);
        let listening = monitor::Listening::default();
        let component = Reloader::component(&server.tag, Slot::Monitors);
        parts.shared.health.set(&component, State::Ready, None);
        let out = monitor::MonitorOutputs {
            alerts: live.alerts.clone(),
            notices: self.notices.clone(),
            board: live.plugins.clone(),
            shared: parts.shared.clone(),
            listening: listening.clone(),
        };
        let candidate =
            monitor::candidate_instances(&parts.runtime, server).map_err(|e| self.in_config(e))?;
        let rollback = auto_rollback(server, live, &self.notices);
        let stage = monitor::MonitorStage::new(&server.tag, monitors, out)
            .with_slot(|slot| {
                slot.with_previous(previous)
                    .with_auto_rollback(rollback)
                    .with_pins(Some(parts.pin_store()))
                    .with_versions(handle.versions.clone())
            })
            .with_candidate(candidate, live.monitor_compare.clone())
            .with_watchdog(self.watchdog.clone())
            .with_roster(live.stats.is_some().then(monitor::Roster::default))
            .with_states(states);
        let thread = stage.spawn(feed_rx)?;
        handle.feed.connect(&feed_tx);
        tasks.push(tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        }));
        Ok((feed_tx, listening))
    }

    /// The host's own checks over RCON and the readings, when the server has RCON.
    fn start_checks(
        &self,
        feed: &(mpsc::Sender<monitor::MonitorInput>, monitor::Listening),
        backlog: &monitor::Backlog,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let server = self.server;
        let Some(stats) = &self.live.stats else {
            tracing::info!(server = %server.tag, "no RCON password: status and metrics of the game are off");
            return None;
        };
        let shared = &self.parts.shared;
        let out = monitor::CheckOutputs {
            tag: server.tag.clone(),
            alerts: self.live.alerts.clone(),
            monitors: Some(feed.clone()),
            notices: self.notices.clone(),
            health: shared.health.clone(),
            metrics: shared.metrics.clone(),
            backlog: backlog.clone(),
        };
        let settings = monitor::CheckSettings::of(server);
        Some(monitor::spawn_checks(
            stats.clone(),
            settings,
            out,
            self.stopped.clone(),
            self.watchdog.clone(),
        ))
    }

    /// The parsers as configured, or the chain pinned at run time (then with the
    /// configured one as the previous).
    fn parsers(&self) -> anyhow::Result<(ParserChain, Option<ParserChain>)> {
        let (parts, server) = (self.parts, self.server);
        let versions = self.live.parsers.clone().unwrap_or_default().versions;
        let configured = pipeline::parser_chain(&parts.runtime, &server.tag, &server.parsers)
            .map_err(|e| self.in_config(e))?;
        let mut v = versions.lock();
        v.config = configured.version();
        Ok(match pinned_chain(parts, &server.tag, &v.config) {
            Some((chain, reason)) => {
                v.pinned = Some(reason);
                (chain, Some(configured))
            }
            None => (configured, None),
        })
    }

    /// What the pipeline reads and parses: none when the server follows no log.
    fn log_input(
        &self,
        positioned: Option<Arc<tokio::sync::Semaphore>>,
    ) -> anyhow::Result<Option<LogInput>> {
        let (parts, server, live) = (self.parts, self.server, self.live);
        if server.logs.is_empty() {
            tracing::warn!(server = %server.tag, "no log_path or logs: this server's log is not followed");
            return Ok(None);
        }
        let candidate = match server.shadow.parsers.is_empty() {
            true => None,
            false => Some(
                pipeline::parser_chain(&parts.runtime, &server.tag, &server.shadow.parsers)
                    .map_err(|e| self.in_config(e.context("shadow parsers")))?,
            ),
        };
        let (parsers, previous) = self.parsers()?;
        let (tx, rx) = pipeline::parse_queue();
        live.parsers.clone().unwrap_or_default().inputs.connect(&tx);
        let reload = Reloader::component(&server.tag, Slot::Parsers);
        parts.shared.health.set(&reload, State::Ready, None);
        let files = server.logs.iter().map(|l| LogFile {
            id: l.id.clone(),
            path: l.path.clone(),
            links_within: server.log_links_within.clone(),
        });
        let checkpoints = match &self.fence {
            Some(_) => parts.checkpoints.fenced(self.store()),
            None => parts.checkpoints.clone(),
        };
        Ok(Some(LogInput {
            inputs: (tx, rx),
            candidate,
            report: live.parser_compare.clone(),
            auto_rollback: auto_rollback(server, live, &self.notices),
            files: files.collect(),
            parsers,
            pins: Some(parts.pin_store()),
            previous,
            checkpoints,
            on_lost_checkpoint: server.on_lost_checkpoint,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            tail: TailOptions {
                poll_interval: parts.poll,
                ..TailOptions::default()
            },
            positioned,
        }))
    }
}

/// When a slot's newly swapped-in version is rolled back by itself (none: never).
fn auto_rollback(
    server: &ServerConfig,
    live: &Server,
    notices: &mpsc::Sender<Vec<crate::alert::Notice>>,
) -> Option<AutoRollback> {
    (server.auto_rollback_faults > 0).then(|| AutoRollback {
        faults: server.auto_rollback_faults,
        window: Duration::from_secs(server.auto_rollback_window),
        alerts: live.alerts.clone(),
        notices: notices.clone(),
    })
}

/// The parser chain chosen at run time and kept for `tag` (see `pins`), rebuilt, with why
/// it was chosen; none when there is none, it is servers.yml's version anyway, or it cannot
/// be rebuilt (then servers.yml's runs, and the log says why).
fn pinned_chain(
    opts: &RunParts,
    tag: &str,
    config_version: &str,
) -> Option<(crate::plugin::ParserChain, crate::swap::pins::PinReason)> {
    pinned(opts, tag, Slot::Parsers, config_version, |store, pin| {
        store.chain(&opts.runtime, tag, pin)
    })
}

/// The monitors chosen at run time and kept for `tag`, like [`pinned_chain`].
fn pinned_monitors(
    opts: &RunParts,
    tag: &str,
    config_version: &str,
) -> Option<(
    Vec<crate::plugin::MonitorInstance>,
    crate::swap::pins::PinReason,
)> {
    pinned(opts, tag, Slot::Monitors, config_version, |store, pin| {
        store.monitors(&opts.runtime, tag, pin)
    })
}

fn pinned<T>(
    opts: &RunParts,
    tag: &str,
    slot: Slot,
    config_version: &str,
    rebuild: impl FnOnce(&PinStore, &crate::swap::pins::Pin) -> anyhow::Result<T>,
) -> Option<(T, crate::swap::pins::PinReason)> {
    let store = opts.pin_store();
    let pin = store.load(tag, slot)?;
    if pin.version == config_version {
        return None;
    }
    match rebuild(&store, &pin) {
        Ok(chain) => {
            tracing::info!(
                server = tag,
                version = %pin.version,
                reason = %pin.reason,
                config_version,
                "keeping the version chosen at run time; `factorio-isr reload --server {tag}` applies servers.yml"
            );
            Some((chain, pin.reason))
        }
        Err(e) => {
            tracing::warn!(
                server = tag,
                "cannot rebuild the version kept from the last run ({e:#}); servers.yml's runs"
            );
            None
        }
    }
}

/// The server's sinks: those configured, and Discord when the bot runs and the server has a
/// channel; with neither, the console.
fn sinks(
    server: &ServerConfig,
    discord: Option<&DiscordOut>,
    metrics: &Arc<Metrics>,
) -> Vec<Arc<dyn Sink>> {
    let has_channel = server.event_channel_id.is_some()
        || server.alert_channel_id.is_some()
        || server.status_channel_id.is_some();
    let discord: Option<Arc<dyn Sink>> = discord.filter(|_| has_channel).map(|d| {
        Arc::new(DiscordSink::new(
            d.rest.clone(),
            server.clone(),
            d.roles.clone(),
            Some(metrics.clone()),
            Some(d.health.clone()),
        )) as Arc<dyn Sink>
    });
    if server.sinks.is_empty() {
        return vec![discord.unwrap_or_else(|| Arc::new(ConsoleSink))];
    }
    let mut all: Vec<Arc<dyn Sink>> = server
        .sinks
        .iter()
        .map(|s| -> Arc<dyn Sink> {
            match s {
                SinkConfig::Console => Arc::new(ConsoleSink),
                SinkConfig::Jsonl(path) => Arc::new(JsonlSink::new(path)),
                SinkConfig::Webhook(url) => Arc::new(WebhookSink::new(url.clone())),
            }
        })
        .collect();
    all.extend(discord);
    all
}
