//! Starting one server: its tailer, parser thread, monitor thread, sinks and checks, wired
//! to each other, with the versions kept from a previous run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{Config, ServerConfig, SinkConfig};
use crate::discord::WebhookSink;
use crate::discord::{Discord, DiscordSink};
use crate::monitor;
use crate::observe::Shared;
use crate::observe::health::State;
use crate::observe::metrics::Metrics;
use crate::pipeline::ParserHandle;
use crate::pipeline::{self, LogInput, ServerPipeline};
use crate::reload::Reloader;
use crate::servers::Server;
use crate::sink::{ConsoleSink, JsonlSink, Sink};
use crate::swap::pins::PinStore;
use crate::swap::slot::{AutoRollback, Slot, SlotVersions};
use crate::tail::TailOptions;
use crate::tail::checkpoint::CheckpointStore;
use crate::tail::lines::DEFAULT_MAX_LINE_BYTES;

use super::HostOptions;

/// What every server's start shares.
#[derive(Clone, Copy)]
pub(super) struct HostParts<'a> {
    pub(super) shared: &'a Shared,
    pub(super) checkpoints: &'a CheckpointStore,
    pub(super) stopped: &'a watch::Receiver<bool>,
    pub(super) discord: Option<&'a Discord>,
    /// Given a permit by each tailer once it knows where it starts.
    pub(super) positioned: &'a Arc<tokio::sync::Semaphore>,
}

/// Starts one server: its RCON link and checks, its monitors, and its pipeline.
pub(super) fn start_server(
    opts: &HostOptions,
    config: &Config,
    server: &ServerConfig,
    parts: &HostParts<'_>,
) -> anyhow::Result<(Server, Vec<tokio::task::JoinHandle<()>>)> {
    let HostParts {
        shared,
        checkpoints,
        stopped,
        discord,
        positioned,
    } = *parts;
    let in_config = |e: anyhow::Error| {
        anyhow::anyhow!("{}: server {}: {e:#}", config.path.display(), server.tag)
    };
    let mut tasks = Vec::new();
    let mut live = Server::start(server, Some(&shared.metrics), opts.mentions.clone());
    let (notice_tx, notice_rx) = mpsc::channel(monitor::QUEUE);

    let monitor_versions = Arc::new(std::sync::Mutex::new(SlotVersions::default()));
    let (monitors, previous_monitors) = {
        let configured = monitor::monitor_instances(&opts.runtime, server).map_err(in_config)?;
        let mut v = monitor_versions.lock().unwrap_or_else(|p| p.into_inner());
        v.config = monitor::version(&configured);
        match pinned_monitors(opts, &server.tag, &v.config) {
            Some((monitors, reason)) => {
                v.pinned = Some(reason);
                (monitors, Some(configured))
            }
            None => (configured, None),
        }
    };
    let listening = monitor::Listening::default();
    let feed = {
        let (feed_tx, feed_rx) = mpsc::channel(monitor::QUEUE);
        live.monitors = Some(monitor::MonitorHandle {
            feed: feed_tx.downgrade(),
            versions: monitor_versions.clone(),
        });
        shared.health.set(
            &Reloader::component(&server.tag, Slot::Monitors),
            State::Ready,
            None,
        );
        let stage = monitor::MonitorStage {
            tag: server.tag.clone(),
            live: monitors,
            previous: previous_monitors,
            auto_rollback: auto_rollback(server, &live, &notice_tx),
            pins: Some(PinStore::new(&opts.state_dir)),
            versions: monitor_versions,
            candidate: monitor::candidate_instances(&opts.runtime, server).map_err(in_config)?,
            report: live.monitor_compare.clone(),
            out: monitor::MonitorOutputs {
                alerts: live.alerts.clone(),
                notices: notice_tx.clone(),
                board: live.plugins.clone(),
                shared: shared.clone(),
                listening: listening.clone(),
            },
        };
        let thread = stage.spawn(feed_rx)?;
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
            };
            let settings = monitor::CheckSettings::of(server);
            tasks.push(monitor::spawn_checks(
                stats.clone(),
                settings,
                out,
                stopped.clone(),
            ));
        }
        None => {
            tracing::info!(server = %server.tag, "no RCON password: status and metrics of the game are off");
        }
    }

    let versions = Arc::new(std::sync::Mutex::new(SlotVersions::default()));
    let mut previous = None;
    let log = match server.log_path.clone() {
        Some(path) => Some(LogInput {
            inputs: {
                let (tx, rx) = pipeline::parse_queue();
                live.parsers = Some(ParserHandle {
                    inputs: tx.downgrade(),
                    versions: versions.clone(),
                });
                shared
                    .health
                    .set(&format!("reload:{}", server.tag), State::Ready, None);
                (tx, rx)
            },
            candidate: if server.shadow.parsers.is_empty() {
                None
            } else {
                Some(
                    pipeline::parser_chain(&opts.runtime, &server.tag, &server.shadow.parsers)
                        .map_err(|e| in_config(e.context("shadow parsers")))?,
                )
            },
            report: live.parser_compare.clone(),
            auto_rollback: auto_rollback(server, &live, &notice_tx),
            path,
            parsers: {
                let configured =
                    pipeline::parser_chain(&opts.runtime, &server.tag, &server.parsers)
                        .map_err(in_config)?;
                let mut v = versions.lock().unwrap_or_else(|p| p.into_inner());
                v.config = configured.version();
                match pinned_chain(opts, &server.tag, &v.config) {
                    Some((chain, reason)) => {
                        v.pinned = Some(reason);
                        previous = Some(configured);
                        chain
                    }
                    None => configured,
                }
            },
            pins: Some(PinStore::new(&opts.state_dir)),
            previous: previous.take(),
            checkpoints: checkpoints.clone(),
            on_lost_checkpoint: server.on_lost_checkpoint,
            links_within: server.log_links_within.clone(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            tail: TailOptions {
                poll_interval: opts.poll,
                ..TailOptions::default()
            },
            positioned: Some(positioned.clone()),
        }),
        None => {
            tracing::warn!(server = %server.tag, "no log_path: this server's log is not followed");
            None
        }
    };
    drop(notice_tx);
    let p = ServerPipeline {
        tag: server.tag.clone(),
        log,
        sinks: sinks(server, discord, &shared.metrics),
        notices: notice_rx,
        monitors: Some(feed),
        board: live.plugins.clone(),
        versions,
    };
    tasks.push(pipeline::spawn(p, shared.clone(), stopped.clone()));
    Ok((live, tasks))
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
    opts: &HostOptions,
    tag: &str,
    config_version: &str,
) -> Option<(crate::plugin::ParserChain, String)> {
    pinned(opts, tag, Slot::Parsers, config_version, |store, pin| {
        store.chain(&opts.runtime, tag, pin)
    })
}

/// The monitors chosen at run time and kept for `tag`, like [`pinned_chain`].
fn pinned_monitors(
    opts: &HostOptions,
    tag: &str,
    config_version: &str,
) -> Option<(Vec<crate::plugin::MonitorInstance>, String)> {
    pinned(opts, tag, Slot::Monitors, config_version, |store, pin| {
        store.monitors(&opts.runtime, tag, pin)
    })
}

fn pinned<T>(
    opts: &HostOptions,
    tag: &str,
    slot: Slot,
    config_version: &str,
    rebuild: impl FnOnce(&PinStore, &crate::swap::pins::Pin) -> anyhow::Result<T>,
) -> Option<(T, String)> {
    let store = PinStore::new(&opts.state_dir);
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
    discord: Option<&Discord>,
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
