//! `factorio-isr run`: every configured server's pipeline, and the HTTP endpoints, until
//! SIGINT or SIGTERM; then in-flight events are delivered and checkpoints saved.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use super::RuntimeArgs;
use crate::checkpoint::CheckpointStore;
use crate::config::{Config, SinkConfig};
use crate::health::{Health, State};
use crate::http;
use crate::lines::DEFAULT_MAX_LINE_BYTES;
use crate::metrics::Metrics;
use crate::pipeline::{self, ServerPipeline, Shared};
use crate::sink::{ConsoleSink, JsonlSink, Sink, WebhookSink};
use crate::tail::TailOptions;

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
    /// How often to look at a log even without filesystem events, in milliseconds.
    #[arg(long, env = "FACTORIO_ISR_POLL_MS", default_value_t = 500)]
    poll_ms: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(serve(args, config))
}

async fn serve(args: RunArgs, config: Config) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let shared = Shared {
        health: Health::default(),
        metrics: Arc::new(Metrics::new()),
    };
    if crate::config::SecretSource::default()
        .discord_token()
        .is_none()
    {
        tracing::info!(
            "DISCORD_BOT_TOKEN is not set: running without Discord, on the configured sinks"
        );
    }
    let (stop, stopped) = watch::channel(false);
    let checkpoints = CheckpointStore::new(args.state_dir.join("checkpoints"));
    let mut tasks = Vec::new();
    for server in &config.servers {
        let Some(log_path) = server.log_path.clone() else {
            tracing::warn!(server = %server.tag, "no log_path: this server's log is not followed");
            continue;
        };
        let parsers =
            pipeline::parser_chain(&runtime, &server.tag, &server.parsers).map_err(|e| {
                anyhow::anyhow!("{}: server {}: {e:#}", args.config.display(), server.tag)
            })?;
        let sinks: Vec<Arc<dyn Sink>> = if server.sinks.is_empty() {
            vec![Arc::new(ConsoleSink)]
        } else {
            server
                .sinks
                .iter()
                .map(|s| -> Arc<dyn Sink> {
                    match s {
                        SinkConfig::Console => Arc::new(ConsoleSink),
                        SinkConfig::Jsonl(path) => Arc::new(JsonlSink::new(path)),
                        SinkConfig::Webhook(url) => Arc::new(WebhookSink::new(url.clone())),
                    }
                })
                .collect()
        };
        let p = ServerPipeline {
            tag: server.tag.clone(),
            log_path,
            parsers,
            sinks,
            checkpoints: checkpoints.clone(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            tail: TailOptions {
                poll_interval: Duration::from_millis(args.poll_ms.max(10)),
                ..TailOptions::default()
            },
        };
        tasks.push(pipeline::spawn(p, shared.clone(), stopped.clone()));
    }
    tracing::info!(servers = tasks.len(), "started");

    let addr = SocketAddr::new(args.http_host, args.http_port);
    shared.health.register("http");
    let state = http::AppState {
        health: shared.health.clone(),
        metrics: shared.metrics.clone(),
    };
    let mut http_stopped = stopped.clone();
    let http_task = tokio::spawn({
        let health = shared.health.clone();
        async move {
            match http::bind(addr).await {
                Ok(listener) => {
                    let local = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    tracing::info!("HTTP listening on http://{local}");
                    health.set("http", State::Ready, None);
                    let shutdown = async move {
                        let _ = http_stopped.wait_for(|s| *s).await;
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
        }
    });

    wait_for_signal().await;
    tracing::info!("stopping: delivering what was read and saving checkpoints");
    let _ = stop.send(true);
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
        let _ = http_task.await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(
            "some pipelines did not stop within {} s",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
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
