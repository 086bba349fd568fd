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
use crate::config::{Config, Secret};
use crate::http;
use crate::observe::Telemetry;
use crate::observe::health::Health;
use crate::observe::metrics::Metrics;
use crate::reload::Reloader;
use crate::servers::{RunState, Server};
use crate::tail::checkpoint::CheckpointStore;

mod cluster;
mod config_watch;
mod kept;
mod server;
mod start;
pub mod supervise;

use server::{DiscordOut, RunParts};
pub use supervise::RestartPolicy;

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
    pub shared: Telemetry,
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
        let shared = Telemetry {
            health: Health::default(),
            metrics: Arc::new(Metrics::new()),
        };
        let cluster = start::connect_cluster(opts, config, &shared).await?;
        let discord = start::build_discord(opts, config, &shared).await?;
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
        let servers = start::faces(opts, config, &shared);
        let first_runs = start::first_runs(config, &parts, &servers, cluster.is_some()).await;
        let supervisors = start::supervise(
            opts, config, &parts, &servers, &reloader, first_runs, &stopped,
        );
        let started = start::Started {
            servers: servers.clone(),
            reloader: reloader.clone(),
            parts: parts.clone(),
            stopped: stopped.clone(),
        };
        let (mut tasks, cluster_run, bot) =
            started.connect(cluster.clone(), discord, opts, config, &shared);
        tracing::info!(servers = servers.len(), "started");
        let (http_addr, watchers) = started
            .serve(opts, config, &shared, bot, cluster, cluster_run.as_ref())
            .await;
        tasks.extend(watchers);
        Ok(Self {
            servers,
            http_addr,
            shared,
            stop,
            supervisors,
            tasks,
            logs: start::log_files(config),
            checkpoints,
            cluster: cluster_run,
        })
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
