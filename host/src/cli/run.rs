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
            discord: DiscordAccess::from_env(),
            api: crate::http::ApiAuth::from_env(),
            restarts: RestartPolicy::default(),
        })
    }
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
