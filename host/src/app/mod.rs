//! The composition root: [`Host`] starts every configured server (tailer, parser thread,
//! monitor thread, sinks, RCON link, checks), the Discord bot, the reload watcher and the
//! HTTP server, and stops them in order. `run` and `demo` drive it; tests can too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::alert::Mentions;
use crate::config::Config;
use crate::discord::Discord;
use crate::http;
use crate::observe::Shared;
use crate::observe::health::{Health, State};
use crate::observe::metrics::Metrics;
use crate::reload::Reloader;
use crate::servers::Server;
use crate::swap::pins::PinStore;
use crate::tail::checkpoint::CheckpointStore;

mod server;
use server::{HostParts, start_server};

/// How long the start waits for every tailer to know where it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown may take before the process exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
                        crate::state::StateReport::of(&shared),
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
        let crate::tail::checkpoint::Loaded::Found(at) = checkpoints.open(tag).1 else {
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
