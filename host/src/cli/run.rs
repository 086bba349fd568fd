//! `factorio-isr run`: every configured server's pipeline, and the HTTP endpoints, until
//! SIGINT or SIGTERM; then in-flight events are delivered and checkpoints saved.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::{mpsc, watch};

use super::RuntimeArgs;
use crate::alert::Mentions;
use crate::checkpoint::CheckpointStore;
use crate::config::{Config, ServerConfig, SinkConfig};
use crate::discord::WebhookSink;
use crate::discord::{Discord, DiscordSink};
use crate::health::{Health, State};
use crate::http;
use crate::lines::DEFAULT_MAX_LINE_BYTES;
use crate::metrics::Metrics;
use crate::monitor;
use crate::pins::PinStore;
use crate::pipeline::{self, LogInput, ServerPipeline, Shared};
use crate::reload::{ParserHandle, Reloader};
use crate::servers::Server;
use crate::sink::{ConsoleSink, JsonlSink, Sink};
use crate::slot::{AutoRollback, Slot, SlotVersions};
use crate::tail::TailOptions;

/// How long the start waits for every tailer to know where it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown may take before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The servers.yml to run.
    #[arg(
        long,
        env = "FACTORIO_ISR_CONFIG",
        default_value = "config/servers.yml"
    )]
    config: PathBuf,
    /// Folder for checkpoints and other state.
    #[arg(long, env = "FACTORIO_ISR_STATE_DIR", default_value = "state")]
    state_dir: PathBuf,
    /// Address for /health, /ready and /metrics.
    #[arg(long, env = "HEALTH_CHECK_HOST", default_value = "0.0.0.0")]
    http_host: std::net::IpAddr,
    #[arg(long, env = "HEALTH_CHECK_PORT", default_value_t = 8080)]
    http_port: u16,
    /// The mention groups alerts may use (default: mentions.yml beside the config file).
    #[arg(long, env = "FACTORIO_ISR_MENTIONS")]
    mentions: Option<PathBuf>,
    /// How often to look at a log even without filesystem events, in milliseconds.
    #[arg(long, env = "FACTORIO_ISR_POLL_MS", default_value_t = 500)]
    poll_ms: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let mentions = args.mentions.clone().unwrap_or_else(|| {
        args.config
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("mentions.yml")
    });
    let mentions = Arc::new(Mentions::load(&mentions)?);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = tokio.block_on(async {
        let host = Host::start(&args.options(mentions)?, &config).await?;
        wait_for_signal().await;
        host.shutdown().await;
        Ok(ExitCode::SUCCESS)
    });
    // A read stuck in the kernel (a hung network mount) must not hold the exit.
    tokio.shutdown_timeout(Duration::from_secs(1));
    done
}

impl RunArgs {
    fn options(&self, mentions: Arc<Mentions>) -> anyhow::Result<HostOptions> {
        Ok(HostOptions {
            state_dir: self.state_dir.clone(),
            http: SocketAddr::new(self.http_host, self.http_port),
            poll: Duration::from_millis(self.poll_ms.max(10)),
            runtime: Arc::new(self.runtime.runtime()?),
            mentions,
        })
    }
}

/// What `run` (and `demo`) start the host with, besides servers.yml.
pub struct HostOptions {
    pub state_dir: PathBuf,
    pub http: SocketAddr,
    pub poll: Duration,
    pub runtime: Arc<crate::plugin::Runtime>,
    /// The mention groups of mentions.yml.
    pub mentions: Arc<Mentions>,
}

/// Everything `run` started, until [`Host::shutdown`].
pub struct Host {
    pub servers: Arc<Vec<Server>>,
    /// Where HTTP listens; none when the port could not be bound.
    pub http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each server's log, to say at a late shutdown what was not delivered.
    logs: Vec<(String, PathBuf)>,
    checkpoints: CheckpointStore,
}

impl Host {
    /// Starts every server's pipeline, RCON link and metrics engine, and the HTTP server.
    pub async fn start(opts: &HostOptions, config: &Config) -> anyhow::Result<Self> {
        let shared = Shared {
            health: Health::default(),
            metrics: Arc::new(Metrics::new()),
        };
        let discord = match crate::config::SecretSource::default().discord_token() {
            Some(token) => {
                let api = std::env::var("DISCORD_API_URL").ok();
                Some(
                    Discord::build(
                        &token,
                        api.as_deref(),
                        &config.discord,
                        &config.servers,
                        opts.mentions.clone(),
                        &opts.state_dir,
                        shared.state(),
                    )
                    .await?,
                )
            }
            None => {
                tracing::info!(
                    "DISCORD_BOT_TOKEN is not set: running without Discord, on the configured sinks"
                );
                None
            }
        };
        let (stop, stopped) = watch::channel(false);
        let checkpoints = CheckpointStore::new(opts.state_dir.join("checkpoints"));
        let positioned = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        let mut servers = Vec::new();
        for server in &config.servers {
            let parts = HostParts {
                shared: &shared,
                checkpoints: &checkpoints,
                stopped: &stopped,
                discord: discord.as_ref(),
                positioned: &positioned,
            };
            let (live, server_tasks) = start_server(opts, config, server, &parts)?;
            tasks.extend(server_tasks);
            servers.push(live);
        }
        let servers = Arc::new(servers);
        // "started" promises that every line written from now on is read: each tailer has
        // opened its file (or found it missing) by then.
        let logs = config
            .servers
            .iter()
            .filter(|s| s.log_path.is_some())
            .count();
        let logs = u32::try_from(logs).unwrap_or(u32::MAX);
        if tokio::time::timeout(START_TIMEOUT, positioned.acquire_many(logs))
            .await
            .is_err()
        {
            tracing::warn!(
                "some logs could not be opened within {} s; they are followed when they can be",
                START_TIMEOUT.as_secs()
            );
        }
        let reloader = Arc::new(Reloader::new(
            opts.runtime.clone(),
            &config.path,
            shared.metrics.clone(),
            shared.health.clone(),
            Some(PinStore::new(&opts.state_dir)),
        ));
        if let Some(d) = discord {
            tasks.push(d.start(servers.clone(), reloader.clone(), stopped.clone()));
        }
        tracing::info!(servers = servers.len(), "started");
        let bound = http::bind(opts.http).await;
        let http_addr = bound.as_ref().ok().and_then(|l| l.local_addr().ok());
        if let Some(a) = http_addr {
            tracing::info!("HTTP listening on http://{a}");
        }
        tasks.push(crate::reload::watch(
            reloader.clone(),
            servers.clone(),
            crate::reload::watched_dirs(config),
            stopped.clone(),
        ));
        tasks.push(spawn_http(
            bound,
            &shared,
            servers.clone(),
            Some(reloader.clone()),
            stopped,
        ));
        let logs = config
            .servers
            .iter()
            .filter_map(|s| Some((s.tag.clone(), s.log_path.clone()?)))
            .collect();
        Ok(Self {
            servers,
            http_addr,
            stop,
            tasks,
            logs,
            checkpoints,
        })
    }

    /// Stops everything: in-flight events are delivered and checkpoints saved.
    pub async fn shutdown(self) {
        tracing::info!("stopping: delivering what was read and saving checkpoints");
        let _ = self.stop.send(true);
        let drain = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!(
                "some pipelines did not stop within {} s",
                DRAIN_TIMEOUT.as_secs()
            );
            let (logs, checkpoints) = (self.logs, self.checkpoints);
            let _ = tokio::task::spawn_blocking(move || undelivered(&logs, &checkpoints)).await;
        }
    }
}

/// Says, for each server whose log is not delivered to its end, how much is left: it is
/// read again at the next start, from the last saved checkpoint.
fn undelivered(logs: &[(String, PathBuf)], checkpoints: &CheckpointStore) {
    for (tag, path) in logs {
        let crate::checkpoint::Loaded::Found(at) = checkpoints.open(tag).1 else {
            continue;
        };
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > at.offset {
            tracing::warn!(
                server = %tag,
                "{} bytes of {} are not delivered yet (the checkpoint is at byte {}); the next start reads them again",
                len - at.offset,
                path.display(),
                at.offset
            );
        }
    }
}

/// What every server's start shares.
#[derive(Clone, Copy)]
struct HostParts<'a> {
    shared: &'a Shared,
    checkpoints: &'a CheckpointStore,
    stopped: &'a watch::Receiver<bool>,
    discord: Option<&'a Discord>,
    /// Given a permit by each tailer once it knows where it starts.
    positioned: &'a Arc<tokio::sync::Semaphore>,
}

/// Starts one server: its RCON link and checks, its monitors, and its pipeline.
fn start_server(
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
    rebuild: impl FnOnce(&PinStore, &crate::pins::Pin) -> anyhow::Result<T>,
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

fn spawn_http(
    bound: anyhow::Result<tokio::net::TcpListener>,
    shared: &Shared,
    servers: Arc<Vec<Server>>,
    reloader: Option<Arc<Reloader>>,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let health = shared.health.clone();
    health.register("http");
    let auth = http::ApiAuth::from_env();
    if auth.token.is_none() {
        tracing::info!(
            "FACTORIO_ISR_API_TOKEN is not set: the admin API's writes (reload, rollback) are off"
        );
    }
    let state = http::AppState {
        health: health.clone(),
        metrics: shared.metrics.clone(),
        servers,
        reloader,
        auth,
    };
    tokio::spawn(async move {
        match bound {
            Ok(listener) => {
                health.set("http", State::Ready, None);
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = http::serve(listener, state, shutdown).await {
                    tracing::error!("HTTP server failed: {e}");
                    health.error("http", e.to_string());
                }
            }
            Err(e) => {
                tracing::error!("{e:#}; the pipelines keep running");
                health.error("http", format!("{e:#}"));
                health.set("http", State::Down, None);
            }
        }
    })
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
