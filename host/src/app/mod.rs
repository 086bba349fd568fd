//! The composition root: [`Host`] starts every configured server under its supervisor
//! (tailer, parser thread, monitor thread, sinks, checks; see [`supervise`]), the Discord
//! bot, the reload watcher and the HTTP server, and stops them in order. `run` and `demo`
//! drive it; integration tests run it in-process too. One server's parts can be stopped and
//! started again while the others run ([`Host::stop_server`], [`Host::start_server`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::alert::Mentions;
use crate::cluster::kept::EtcdStore;
use crate::config::{Config, Secret};
use crate::discord::Discord;
use crate::http;
use crate::observe::Shared;
use crate::observe::health::{Health, State};
use crate::observe::metrics::Metrics;
use crate::reload::Reloader;
use crate::servers::{RunState, Server};
use crate::tail::checkpoint::CheckpointStore;

mod cluster;
mod config_watch;
mod kept;
mod server;
pub mod supervise;

use server::{DiscordOut, RunParts};
pub use supervise::RestartPolicy;
use supervise::Supervisor;

/// How long the start waits for every tailer to know where it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown may take before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the host is started with, besides servers.yml.
pub struct HostOptions {
    pub state_dir: PathBuf,
    pub http: SocketAddr,
    pub poll: Duration,
    pub runtime: Arc<crate::plugin::Runtime>,
    /// The mention groups of mentions.yml.
    pub mentions: Arc<Mentions>,
    /// The Discord bot's token and API (none: no bot; the configured sinks deliver).
    pub discord: Option<DiscordAccess>,
    /// Who may use the admin API.
    pub api: http::ApiAuth,
    /// When a server whose part panicked is started again, and when not any more.
    pub restarts: RestartPolicy,
}

/// How the host reaches Discord.
pub struct DiscordAccess {
    pub token: Secret,
    /// Another API base than Discord's (a local fake Discord in tests).
    pub api_url: Option<String>,
}

impl DiscordAccess {
    /// From `DISCORD_BOT_TOKEN` (or its Docker secret) and `DISCORD_API_URL`; none without
    /// a token.
    pub fn from_env() -> Option<Self> {
        Some(Self {
            token: crate::config::SecretSource::default().discord_token()?,
            api_url: std::env::var("DISCORD_API_URL").ok(),
        })
    }
}

/// Everything the host started, until [`Host::shutdown`].
pub struct Host {
    pub servers: Arc<Vec<Server>>,
    /// Where HTTP listens; none when the port could not be bound.
    pub http_addr: Option<SocketAddr>,
    /// Component health and metrics, as `/ready` and `/metrics` show them.
    pub shared: Shared,
    stop: watch::Sender<bool>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each server's log, to say at a late shutdown what was not delivered.
    logs: Vec<(crate::pipeline::LogName, PathBuf)>,
    checkpoints: CheckpointStore,
    /// Cluster mode: the lease's keeper, stopped after the servers (which save their
    /// checkpoints under it), and what this instance sees of the cluster.
    cluster: Option<ClusterRun>,
}

/// This instance's part in a cluster.
struct ClusterRun {
    lease_stop: watch::Sender<bool>,
    lease: tokio::task::JoinHandle<()>,
    status: watch::Receiver<crate::cluster::Status>,
}

impl Host {
    /// Starts every server's parts under its supervisor, the Discord bot, the reload
    /// watcher and the HTTP server. A server that cannot be built as configured is down
    /// (with the reason, in `/ready` and the log) and the others start.
    pub async fn start(opts: &HostOptions, config: &Config) -> anyhow::Result<Self> {
        let shared = Shared {
            health: Health::default(),
            metrics: Arc::new(Metrics::new()),
        };
        let cluster = match &config.cluster {
            Some(settings) => {
                tracing::info!(instance = %settings.instance_id, endpoints = ?settings.endpoints, "cluster mode: servers are owned through etcd");
                let cluster =
                    crate::cluster::Cluster::connect(settings, shared.metrics.clone()).await?;
                let address =
                    crate::config::host_name().map(|h| format!("{h}:{}", opts.http.port()));
                cluster.introduce(
                    address,
                    crate::cluster::config_digests(&config.servers_as_written()),
                );
                cluster.check_unique().await?;
                Some(cluster)
            }
            None => None,
        };
        let discord = match &opts.discord {
            Some(access) => Some(
                Discord::build(
                    &access.token,
                    access.api_url.as_deref(),
                    &config.discord,
                    &config.servers,
                    opts.mentions.clone(),
                    Discord::selections_in(&opts.state_dir, crate::store::StateReport::of(&shared)),
                    crate::store::StateReport::of(&shared),
                )
                .await?,
            ),
            None => {
                tracing::info!(
                    "DISCORD_BOT_TOKEN is not set: running without Discord, on the configured sinks"
                );
                None
            }
        };
        let (stop, stopped) = watch::channel(false);
        let checkpoints = CheckpointStore::new(&opts.state_dir);
        let fences = cluster.as_ref().map(|_| server::Fences::default());
        let reloader = Arc::new(Reloader::new(
            opts.runtime.clone(),
            &config.path,
            shared.metrics.clone(),
            shared.health.clone(),
            Some(server::pin_store(&opts.state_dir, fences.as_ref())),
        ));
        let parts = Arc::new(RunParts {
            runtime: opts.runtime.clone(),
            state_dir: opts.state_dir.clone(),
            config_path: config.path.clone(),
            poll: opts.poll,
            shared: shared.clone(),
            checkpoints: checkpoints.clone(),
            discord: discord.as_ref().map(DiscordOut::of),
            fences,
        });
        let servers: Arc<Vec<Server>> = Arc::new(
            config
                .servers
                .iter()
                .map(|s| {
                    Server::start(
                        s,
                        Some(&shared.metrics),
                        opts.mentions.clone(),
                        config.cluster.is_some(),
                    )
                })
                .collect(),
        );
        // Every first run starts here, so a server that cannot be built fails the start.
        // In cluster mode a server starts only once this instance owns it.
        let positioned = Arc::new(tokio::sync::Semaphore::new(0));
        let mut first_runs = Vec::new();
        let mut logs = 0usize;
        for (i, server) in config.servers.iter().enumerate() {
            shared.metrics.prime_server(&server.tag);
            first_runs.push(match cluster {
                Some(_) => supervise::First::Wait,
                None => {
                    let first = first_run(&parts, server, &servers, i, &positioned).await;
                    if matches!(first, supervise::First::Run(_)) {
                        logs += server.logs.len();
                    }
                    first
                }
            });
        }
        // "started" promises that every line written from now on is read: each tailer has
        // opened its file (or found it missing) by then.
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
        let mut supervisors = Vec::new();
        for (i, (server, run)) in config.servers.iter().zip(first_runs).enumerate() {
            let (order, orders_rx) = tokio::sync::mpsc::channel(4);
            servers[i].control.connect(order);
            let supervisor = Supervisor {
                parts: parts.clone(),
                config: server.clone(),
                servers: servers.clone(),
                index: i,
                reloader: reloader.clone(),
                policy: opts.restarts.clone(),
                orders: orders_rx,
                stopped: stopped.clone(),
            };
            supervisors.push(tokio::spawn(supervisor.run(run)));
        }
        let mut tasks = Vec::new();
        let mut cluster_run = None;
        let cluster_handle = cluster.clone();
        let bot = discord
            .as_ref()
            .filter(|_| cluster.is_none())
            .map(Discord::bot);
        match (cluster, discord) {
            (None, Some(d)) => {
                tasks.push(d.start(servers.clone(), reloader.clone(), stopped.clone()))
            }
            (None, None) => {}
            (Some(cluster), discord) => {
                // Every instance delivers through Discord's REST API; only the gateway's
                // owner connects to the gateway, with a client built for its term.
                let gateway = match (discord, &opts.discord) {
                    (Some(d), Some(access)) => {
                        d.health.forget(crate::discord::COMMANDS);
                        d.health.set(
                            "discord",
                            State::Ready,
                            Some("REST only: another instance runs the gateway".into()),
                        );
                        Some(cluster::GatewayParts {
                            build: gateway_builder(access, config, opts, &shared),
                            reloader: reloader.clone(),
                        })
                    }
                    _ => None,
                };
                let (lease_stop, lease_stopped) = watch::channel(false);
                let lease = cluster.keep_alive(lease_stopped);
                let (status_tx, status) = watch::channel(crate::cluster::Status::default());
                tasks.push(
                    cluster::Manager {
                        cluster,
                        servers: servers.clone(),
                        fences: parts.fences.clone().unwrap_or_default(),
                        shared: shared.clone(),
                        gateway,
                        status: status_tx,
                        state_dir: opts.state_dir.clone(),
                        logs: config
                            .servers
                            .iter()
                            .flat_map(|s| {
                                s.logs.iter().enumerate().map(|(i, l)| {
                                    crate::pipeline::LogName::new(&s.tag, i, &l.id).checkpoint
                                })
                            })
                            .collect(),
                        checkpoints: parts.checkpoints.clone(),
                    }
                    .spawn(stopped.clone()),
                );
                cluster_run = Some(ClusterRun {
                    lease_stop,
                    lease,
                    status,
                });
            }
        }
        tracing::info!(servers = servers.len(), "started");
        let bound = http::bind(opts.http).await;
        let http_addr = bound.as_ref().ok().and_then(|l| l.local_addr().ok());
        if let Some(a) = http_addr {
            tracing::info!("HTTP listening on http://{a}");
        }
        let (config_changed, config_changes) = tokio::sync::mpsc::channel(1);
        tasks.push(crate::reload::watch(
            reloader.clone(),
            servers.clone(),
            crate::reload::watched_dirs(config),
            config_changed,
            stopped.clone(),
        ));
        shared.health.set("config", State::Ready, None);
        tasks.push(
            config_watch::ConfigWatch {
                started: config.clone(),
                servers: servers.clone(),
                bot,
                health: shared.health.clone(),
                cluster: cluster_handle,
            }
            .spawn(config_changes, stopped.clone()),
        );
        tasks.push(spawn_http(
            bound,
            &shared,
            opts.api.clone(),
            servers.clone(),
            Some(reloader.clone()),
            cluster_run.as_ref().map(|c| c.status.clone()),
            stopped,
        ));
        let logs = config
            .servers
            .iter()
            .flat_map(|s| {
                s.logs.iter().enumerate().map(|(i, l)| {
                    (
                        crate::pipeline::LogName::new(&s.tag, i, &l.id),
                        l.path.clone(),
                    )
                })
            })
            .collect();
        Ok(Self {
            servers,
            http_addr,
            shared,
            stop,
            supervisors,
            tasks,
            logs,
            checkpoints,
            cluster: cluster_run,
        })
    }

    /// Cluster mode: the cluster as this instance sees it now.
    pub fn cluster_status(&self) -> Option<crate::cluster::Status> {
        self.cluster.as_ref().map(|c| c.status.borrow().clone())
    }

    /// The server `tag`, if it is configured.
    pub fn server(&self, tag: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.tag == tag)
    }

    /// Stops server `tag`'s parts (what was read is delivered and its checkpoint saved)
    /// while the others run; returns once they are stopped. None for an unknown server.
    pub async fn stop_server(&self, tag: &str) -> Option<RunState> {
        self.order(tag, false).await
    }

    /// Starts server `tag`'s parts again from its checkpoint (also one that gave up after
    /// too many panics); returns the state they reached: running, unless they could not be
    /// built. None for an unknown server.
    pub async fn start_server(&self, tag: &str) -> Option<RunState> {
        self.order(tag, true).await
    }

    async fn order(&self, tag: &str, run: bool) -> Option<RunState> {
        self.server(tag)?.control.order(run).await
    }

    /// Stops everything: in-flight events are delivered and checkpoints saved.
    pub async fn shutdown(self) {
        tracing::info!("stopping: delivering what was read and saving checkpoints");
        let _ = self.stop.send(true);
        let drain = async {
            for t in self.supervisors.into_iter().chain(self.tasks) {
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
        if let Some(c) = self.cluster {
            // Last: giving the lease up moves every server this instance owned at once.
            let _ = c.lease_stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), c.lease).await;
        }
    }
}

/// Builds and starts the first run of server `index`, off the async threads (building
/// compiles and initialises plugins, whose output goes through WASI's blocking bridge). A
/// server that cannot be built is down with the reason, and the others start.
async fn first_run(
    parts: &Arc<RunParts>,
    server: &crate::config::ServerConfig,
    servers: &Arc<Vec<Server>>,
    index: usize,
    positioned: &Arc<tokio::sync::Semaphore>,
) -> supervise::First {
    let (parts, config, servers, positioned) = (
        parts.clone(),
        server.clone(),
        servers.clone(),
        positioned.clone(),
    );
    let built = tokio::task::spawn_blocking(move || {
        supervise::first_run(&parts, &config, &servers[index], Some(positioned))
    })
    .await;
    match built {
        Ok(Ok(run)) => supervise::First::Run(run),
        Ok(Err(e)) => supervise::First::Failed(format!("{e:#}")),
        Err(e) => supervise::First::Failed(format!("its start panicked: {e}")),
    }
}

/// Says, for each server whose log is not delivered to its end, how much is left: it is
/// read again at the next start, from the last saved checkpoint.
fn undelivered(logs: &[(crate::pipeline::LogName, PathBuf)], checkpoints: &CheckpointStore) {
    for (name, path) in logs {
        let crate::tail::checkpoint::Loaded::Found(at) = checkpoints.open(&name.checkpoint).1
        else {
            continue;
        };
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > at.offset {
            tracing::warn!(
                log = %name.label,
                "{} bytes of {} are not delivered yet (the checkpoint is at byte {}); the next start reads them again",
                len - at.offset,
                path.display(),
                at.offset
            );
        }
    }
}

/// Builds the Discord client of each term as gateway owner (cluster mode).
fn gateway_builder(
    access: &DiscordAccess,
    config: &Config,
    opts: &HostOptions,
    shared: &Shared,
) -> cluster::GatewayBuilder {
    let token = access.token.clone();
    let api_url = access.api_url.clone();
    let settings = config.discord.clone();
    let servers = config.servers.clone();
    let mentions = opts.mentions.clone();
    let state = crate::store::StateReport::of(shared);
    Arc::new(move |fence| {
        let (token, api_url, settings, servers, mentions, state) = (
            token.clone(),
            api_url.clone(),
            settings.clone(),
            servers.clone(),
            mentions.clone(),
            state.clone(),
        );
        Box::pin(async move {
            // The users' choices live in etcd, so each gateway owner has them.
            let store = EtcdStore::here(fence)?;
            let kept = state.clone();
            let selections = tokio::task::spawn_blocking(move || {
                crate::discord::Selections::load(Arc::new(store), kept)
            })
            .await?;
            let d = Discord::build(
                &token,
                api_url.as_deref(),
                &settings,
                &servers,
                mentions,
                selections,
                state,
            )
            .await?;
            Ok(d.without_lifecycle_notices())
        })
    })
}

fn spawn_http(
    bound: anyhow::Result<tokio::net::TcpListener>,
    shared: &Shared,
    auth: http::ApiAuth,
    servers: Arc<Vec<Server>>,
    reloader: Option<Arc<Reloader>>,
    cluster: Option<watch::Receiver<crate::cluster::Status>>,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let health = shared.health.clone();
    health.register("http");
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
        cluster,
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
