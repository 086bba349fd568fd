//! The steps of [`Host::start`](super::Host::start), in order: connect to the cluster,
//! build the Discord client, give each server its face, build the first runs off the async
//! threads and wait until every tailer knows where it starts, put each server under its
//! supervisor, connect the bot (one instance) or the cluster manager (cluster mode), then
//! serve HTTP and watch servers.yml and the plugins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::cluster;
use super::config_watch;
use super::server::RunParts;
use super::supervise::{self, Supervisor};
use super::{ClusterRun, DiscordAccess, HostOptions, START_TIMEOUT};
use crate::cluster::Cluster;
use crate::cluster::kept::EtcdStore;
use crate::config::Config;
use crate::discord::Discord;
use crate::http;
use crate::observe::Telemetry;
use crate::observe::health::{Part, State};
use crate::reload::Reloader;
use crate::servers::Server;

/// Cluster mode: the connection to etcd, this instance introduced and checked unique.
pub(super) async fn connect_cluster(
    opts: &HostOptions,
    config: &Config,
    shared: &Telemetry,
) -> anyhow::Result<Option<Arc<Cluster>>> {
    let Some(settings) = &config.cluster else {
        return Ok(None);
    };
    tracing::info!(instance = %settings.instance_id, endpoints = ?settings.endpoints, "cluster mode: servers are owned through etcd");
    let cluster = Cluster::connect(settings, shared.metrics.clone()).await?;
    let address = crate::config::host_name().map(|h| format!("{h}:{}", opts.http.port()));
    cluster.introduce(
        address,
        crate::cluster::config_digests(&config.servers_as_written()),
    );
    cluster.check_unique().await?;
    Ok(Some(cluster))
}

/// The Discord client (nothing connected yet), when there is a token.
pub(super) async fn build_discord(
    opts: &HostOptions,
    config: &Config,
    shared: &Telemetry,
) -> anyhow::Result<Option<Discord>> {
    let Some(access) = &opts.discord else {
        tracing::info!(
            "DISCORD_BOT_TOKEN is not set: running without Discord, on the configured sinks"
        );
        return Ok(None);
    };
    let state = crate::store::StateReport::of(shared);
    let selections = {
        let (dir, state) = (opts.state_dir.clone(), state.clone());
        tokio::task::spawn_blocking(move || Discord::selections_in(&dir, state)).await?
    };
    let discord = Discord::build(
        &access.token,
        access.api_url.as_deref(),
        &config.discord,
        &config.servers,
        opts.mentions.clone(),
        selections,
        state,
    )
    .await?;
    Ok(Some(discord))
}

/// Each server's face (its handles, run state and orders), before any of its parts run.
pub(super) fn faces(opts: &HostOptions, config: &Config, shared: &Telemetry) -> Arc<Vec<Server>> {
    let cluster_mode = config.cluster.is_some();
    Arc::new(
        config
            .servers
            .iter()
            .map(|s| {
                Server::start(
                    s,
                    Some(&shared.metrics),
                    opts.mentions.clone(),
                    cluster_mode,
                )
            })
            .collect(),
    )
}

/// Every server's first run, built here so that a server that cannot be built fails the
/// start (in cluster mode a server starts only once this instance owns it). Returns once
/// every tailer has opened its file (or found it missing), [`START_TIMEOUT`] at most:
/// "started" promises that every line written from then on is read.
pub(super) async fn first_runs(
    config: &Config,
    parts: &Arc<RunParts>,
    servers: &Arc<Vec<Server>>,
    cluster_mode: bool,
) -> Vec<supervise::First> {
    let positioned = Arc::new(tokio::sync::Semaphore::new(0));
    let mut first_runs = Vec::new();
    let mut logs = 0usize;
    for (i, server) in config.servers.iter().enumerate() {
        parts.shared.metrics.prime_server(&server.tag);
        if cluster_mode {
            first_runs.push(supervise::First::Wait);
            continue;
        }
        let first = first_run(parts, server, servers, i, &positioned).await;
        if matches!(first, supervise::First::Run(_)) {
            logs += server.logs.len();
        }
        first_runs.push(first);
    }
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
    first_runs
}

/// Puts each server under its supervisor, starting from its first run.
pub(super) fn supervise(
    opts: &HostOptions,
    config: &Config,
    parts: &Arc<RunParts>,
    servers: &Arc<Vec<Server>>,
    reloader: &Arc<Reloader>,
    first_runs: Vec<supervise::First>,
    stopped: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
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
    supervisors
}

/// What the later steps share.
pub(super) struct Started {
    pub(super) servers: Arc<Vec<Server>>,
    pub(super) reloader: Arc<Reloader>,
    pub(super) parts: Arc<RunParts>,
    pub(super) stopped: watch::Receiver<bool>,
}

impl Started {
    /// One instance: the bot connects. Cluster mode: the manager of this instance's part
    /// starts (every instance delivers through Discord's REST API; only the gateway's owner
    /// connects to the gateway, with a client built for its term). Returns the tasks, the
    /// cluster part, and the bot for what changes in servers.yml (one instance).
    pub(super) fn connect(
        &self,
        cluster: Option<Arc<Cluster>>,
        discord: Option<Discord>,
        opts: &HostOptions,
        config: &Config,
        shared: &Telemetry,
    ) -> (
        Vec<tokio::task::JoinHandle<()>>,
        Option<ClusterRun>,
        Option<Arc<crate::discord::Bot>>,
    ) {
        let Some(cluster) = cluster else {
            let bot = discord.as_ref().map(Discord::bot);
            let tasks = discord
                .map(|d| {
                    d.start(
                        self.servers.clone(),
                        self.reloader.clone(),
                        self.stopped.clone(),
                    )
                })
                .into_iter()
                .collect();
            return (tasks, None, bot);
        };
        let gateway = match (discord, &opts.discord) {
            (Some(d), Some(access)) => {
                d.health.forget(crate::discord::COMMANDS);
                d.health.set(
                    &Part::Discord,
                    State::Ready,
                    Some("REST only: another instance runs the gateway".into()),
                );
                Some(cluster::GatewayParts {
                    build: gateway_builder(access, config, opts, shared),
                    reloader: self.reloader.clone(),
                })
            }
            _ => None,
        };
        let (lease_stop, lease_stopped) = watch::channel(false);
        let lease = cluster.keep_alive(lease_stopped);
        let (status_tx, status) = watch::channel(crate::cluster::Status::default());
        let manager = cluster::Manager {
            cluster,
            servers: self.servers.clone(),
            fences: self.parts.fences.clone().unwrap_or_default(),
            shared: shared.clone(),
            gateway,
            status: status_tx,
            state_dir: opts.state_dir.clone(),
            logs: log_files(config)
                .into_iter()
                .map(|(n, _)| n.checkpoint)
                .collect(),
            checkpoints: self.parts.checkpoints.clone(),
        };
        let run = ClusterRun {
            lease_stop,
            lease,
            status,
        };
        (vec![manager.spawn(self.stopped.clone())], Some(run), None)
    }

    /// Serves HTTP and watches the plugins' files and servers.yml; returns where HTTP
    /// listens (none: the port could not be bound) and the tasks.
    pub(super) async fn serve(
        &self,
        opts: &HostOptions,
        config: &Config,
        shared: &Telemetry,
        bot: Option<Arc<crate::discord::Bot>>,
        cluster: Option<Arc<Cluster>>,
        cluster_run: Option<&ClusterRun>,
    ) -> (Option<SocketAddr>, Vec<tokio::task::JoinHandle<()>>) {
        let bound = http::bind(opts.http).await;
        let http_addr = bound.as_ref().ok().and_then(|l| l.local_addr().ok());
        if let Some(a) = http_addr {
            tracing::info!("HTTP listening on http://{a}");
        }
        let (config_changed, config_changes) = tokio::sync::mpsc::channel(1);
        let mut tasks = vec![crate::reload::watch(
            self.reloader.clone(),
            self.servers.clone(),
            crate::reload::watched_dirs(config),
            config_changed,
            self.stopped.clone(),
        )];
        shared.health.set(&Part::Config, State::Ready, None);
        let watch = config_watch::ConfigWatch {
            started: config.clone(),
            servers: self.servers.clone(),
            bot,
            health: shared.health.clone(),
            cluster,
        };
        tasks.push(watch.spawn(config_changes, self.stopped.clone()));
        tasks.push(spawn_http(
            bound,
            shared,
            opts.api.clone(),
            self.servers.clone(),
            Some(self.reloader.clone()),
            cluster_run.map(|c| c.status.clone()),
            self.stopped.clone(),
        ));
        (http_addr, tasks)
    }
}

/// Every server's logs, by name, with their paths.
pub(super) fn log_files(config: &Config) -> Vec<(crate::pipeline::LogName, PathBuf)> {
    config
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
        .collect()
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

/// Builds the Discord client of each term as gateway owner (cluster mode).
fn gateway_builder(
    access: &DiscordAccess,
    config: &Config,
    opts: &HostOptions,
    shared: &Telemetry,
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
    shared: &Telemetry,
    auth: http::ApiAuth,
    servers: Arc<Vec<Server>>,
    reloader: Option<Arc<Reloader>>,
    cluster: Option<watch::Receiver<crate::cluster::Status>>,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let health = shared.health.clone();
    health.register(&Part::Http);
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
                health.set(&Part::Http, State::Ready, None);
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = http::serve(listener, state, shutdown).await {
                    tracing::error!("HTTP server failed: {e}");
                    health.error(&Part::Http, e.to_string());
                }
            }
            Err(e) => {
                tracing::error!("{e:#}; the pipelines keep running");
                health.error(&Part::Http, format!("{e:#}"));
                health.set(&Part::Http, State::Down, None);
            }
        }
    })
}
