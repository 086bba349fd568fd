//! `factorio-isr run`: every configured server's pipeline, and the HTTP endpoints, until
//! SIGINT or SIGTERM; then in-flight events are delivered and checkpoints saved.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::RuntimeArgs;
use crate::alert::Mentions;
use crate::app::{DiscordAccess, Host, HostOptions, RestartPolicy};
use crate::config::Config;

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
    let shared = crate::tail::identity::shared_logs(&config);
    if !shared.within.is_empty() {
        let each: Vec<String> = shared.within.iter().map(|s| s.describe(&config)).collect();
        anyhow::bail!(
            "{}: {}: a server that follows one file twice would post each line twice; follow it once",
            config.path.display(),
            each.join("; ")
        );
    }
    for s in &shared.across {
        tracing::warn!(
            "{}: {}: each of its lines is posted once for each server (deliberate for one log shown in two places; otherwise give each server its own log)",
            config.path.display(),
            s.describe(&config)
        );
    }
    let mentions = super::mentions_path(&args.config, args.mentions.as_deref());
    let mentions = Arc::new(Mentions::load(&mentions)?);
    for w in &config.warnings {
        tracing::warn!("{}", w.to_string().replacen(": warning: ", ": ", 1));
    }
    for w in mentions.warnings() {
        tracing::warn!("{}", w.replacen(": warning: ", ": ", 1));
    }
    if crate::config::SecretSource::default()
        .discord_token()
        .is_some()
    {
        for note in config.discord.notes() {
            match note.strip_prefix("warning: ") {
                Some(w) => tracing::warn!("{w}"),
                None => tracing::info!("{note}"),
            }
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = tokio.block_on(async {
        let signalled = shutdown_signals();
        let host = Host::start(&args.options(mentions)?, &config).await?;
        signalled.await;
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
            discord: DiscordAccess::from_env(),
            api: crate::http::ApiAuth::from_env(),
            restarts: RestartPolicy::default(),
        })
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    shutdown_signals().await
}

/// Listens for SIGINT and SIGTERM from the call on (so a signal that comes while the host
/// is starting is not lost to the default action, which would end the process without
/// delivering or saving anything); the future resolves at the first. Call it within the
/// runtime.
pub fn shutdown_signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    let first = |s: Option<Signal>| async move {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    async move {
        tokio::select! {
            _ = first(interrupt) => {}
            _ = first(terminate) => {}
        }
    }
}
