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
use crate::observe::{Shared, Watchdog};
use crate::pipeline::{self, LogFile, LogInput, ServerPipeline};
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
    pub(super) shared: Shared,
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
    let shared = &parts.shared;
    let fence = match &parts.fences {
        None => None,
        Some(fences) => {
            let held = fences.lock().get(&server.tag).cloned();
            match held {
                Some(f) if f.valid() => Some(f),
                _ => anyhow::bail!("server {}: this instance does not own it", server.tag),
            }
        }
    };
    let in_config = |e: anyhow::Error| {
        anyhow::anyhow!(
            "{}: server {}: {e:#}",
            parts.config_path.display(),
            server.tag
        )
    };
    let mut tasks = Vec::new();
    let keeper = Keeper(match &fence {
        Some(f) => Arc::new(EtcdStore::new(f.clone(), tokio::runtime::Handle::current())),
        None => Arc::new(crate::store::FileStore::new(&parts.state_dir)),
    });
    tasks.push(keeper.keep_alerts(&server.tag, &live.alerts, stopped.clone()));
    let (notice_tx, notice_rx) = mpsc::channel(monitor::QUEUE);

    let monitor_handle = live.monitors.clone().unwrap_or_default();
    let monitor_versions = monitor_handle.versions.clone();
    let (mut monitors, previous_monitors) = {
        let configured = monitor::monitor_instances(&parts.runtime, server).map_err(in_config)?;
        let mut v = monitor_versions.lock();
        v.config = monitor::version(&configured);
        match pinned_monitors(parts, &server.tag, &v.config) {
            Some((monitors, reason)) => {
                v.pinned = Some(reason);
                (monitors, Some(configured))
            }
            None => (configured, None),
        }
    };
    keeper.restore_monitors(&server.tag, &mut monitors);
    let (states, keeping) = keeper.keep_monitors(&server.tag, stopped.clone());
    tasks.push(keeping);
    let listening = monitor::Listening::default();
    let backlog = monitor::Backlog::default();
    let feed = {
        let (feed_tx, feed_rx) = mpsc::channel(monitor::QUEUE);
        shared.health.set(
            &Reloader::component(&server.tag, Slot::Monitors),
            State::Ready,
            None,
        );
        let out = monitor::MonitorOutputs {
            alerts: live.alerts.clone(),
            notices: notice_tx.clone(),
            board: live.plugins.clone(),
            shared: shared.clone(),
            listening: listening.clone(),
        };
        let mut stage = monitor::MonitorStage::new(&server.tag, monitors, out);
        stage.slot.previous = previous_monitors;
        stage.slot.auto_rollback = auto_rollback(server, live, &notice_tx);
        stage.slot.pins = Some(parts.pin_store());
        stage.slot.versions = monitor_versions;
        stage.candidate =
            monitor::candidate_instances(&parts.runtime, server).map_err(in_config)?;
        stage.report = live.monitor_compare.clone();
        stage.watchdog = watchdog.clone();
        stage.roster = live.stats.is_some().then(monitor::Roster::default);
        stage.states = Some(states);
        let thread = stage.spawn(feed_rx)?;
        monitor_handle.feed.connect(&feed_tx);
        tasks.push(tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        }));
        (feed_tx, listening)
    };

    match &live.stats {
        Some(stats) => {
            let out = monitor::CheckOutputs {
                tag: server.tag.clone(),
                alerts: live.alerts.clone(),
                monitors: Some(feed.clone()),
                notices: notice_tx.clone(),
                health: shared.health.clone(),
                metrics: shared.metrics.clone(),
                backlog: backlog.clone(),
            };
            let settings = monitor::CheckSettings::of(server);
            tasks.push(monitor::spawn_checks(
                stats.clone(),
                settings,
                out,
                stopped.clone(),
                watchdog.clone(),
            ));
        }
        None => {
            tracing::info!(server = %server.tag, "no RCON password: status and metrics of the game are off");
        }
    }

    let parser_handle = live.parsers.clone().unwrap_or_default();
    let versions = parser_handle.versions.clone();
    let mut previous = None;
    let log = match server.logs.is_empty() {
        false => Some(LogInput {
            inputs: {
                let (tx, rx) = pipeline::parse_queue();
                parser_handle.inputs.connect(&tx);
                shared
                    .health
                    .set(&format!("reload:{}", server.tag), State::Ready, None);
                (tx, rx)
            },
            candidate: if server.shadow.parsers.is_empty() {
                None
            } else {
                Some(
                    pipeline::parser_chain(&parts.runtime, &server.tag, &server.shadow.parsers)
                        .map_err(|e| in_config(e.context("shadow parsers")))?,
                )
            },
            report: live.parser_compare.clone(),
            auto_rollback: auto_rollback(server, live, &notice_tx),
            files: server
                .logs
                .iter()
                .map(|l| LogFile {
                    id: l.id.clone(),
                    path: l.path.clone(),
                    links_within: server.log_links_within.clone(),
                })
                .collect(),
            parsers: {
                let configured =
                    pipeline::parser_chain(&parts.runtime, &server.tag, &server.parsers)
                        .map_err(in_config)?;
                let mut v = versions.lock();
                v.config = configured.version();
                match pinned_chain(parts, &server.tag, &v.config) {
                    Some((chain, reason)) => {
                        v.pinned = Some(reason);
                        previous = Some(configured);
                        chain
                    }
                    None => configured,
                }
            },
            pins: Some(parts.pin_store()),
            previous: previous.take(),
            checkpoints: match &fence {
                Some(f) => parts.checkpoints.fenced(Arc::new(EtcdStore::new(
                    f.clone(),
                    tokio::runtime::Handle::current(),
                ))),
                None => parts.checkpoints.clone(),
            },
            on_lost_checkpoint: server.on_lost_checkpoint,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            tail: TailOptions {
                poll_interval: parts.poll,
                ..TailOptions::default()
            },
            positioned,
        }),
        true => {
            tracing::warn!(server = %server.tag, "no log_path or logs: this server's log is not followed");
            None
        }
    };
    drop(notice_tx);
    let p = ServerPipeline {
        tag: server.tag.clone(),
        log,
        sinks: sinks(server, parts.discord.as_ref(), &shared.metrics),
        notices: notice_rx,
        monitors: Some(feed),
        board: live.plugins.clone(),
        versions,
        watchdog: watchdog.clone(),
        rules: Arc::new(crate::config::EventRules::new(&server.events)),
        fence: fence.clone(),
        backlog,
    };
    tasks.push(pipeline::spawn(p, shared.clone(), stopped.clone()));
    Ok(tasks)
}

/// When a slot's newly swapped-in version is rolled back by itself (none: never).
fn auto_rollback(
    server: &ServerConfig,
    live: &Server,
    notices: &mpsc::Sender<Vec<crate::event::Event>>,
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
) -> Option<(crate::plugin::ParserChain, String)> {
    pinned(opts, tag, Slot::Parsers, config_version, |store, pin| {
        store.chain(&opts.runtime, tag, pin)
    })
}

/// The monitors chosen at run time and kept for `tag`, like [`pinned_chain`].
fn pinned_monitors(
    opts: &RunParts,
    tag: &str,
    config_version: &str,
) -> Option<(Vec<crate::plugin::MonitorInstance>, String)> {
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
) -> Option<(T, String)> {
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
