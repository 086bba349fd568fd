//! `factorio-isr healthcheck`: asks a running instance's `/healthz` (or `/ready`) and exits 0
//! only on a 2xx answer, so a container's health check needs no shell and no curl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Ask `/ready` (every component ready) instead of `/healthz` (the process answers).
    #[arg(long)]
    ready: bool,
    /// The instance's HTTP address (default: http://127.0.0.1:$HEALTH_CHECK_PORT).
    #[arg(long)]
    url: Option<String>,
    /// The port when no --url is given.
    #[arg(long, env = "HEALTH_CHECK_PORT", default_value_t = 8080)]
    port: u16,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

pub fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", args.port));
    let path = if args.ready { "/ready" } else { "/healthz" };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 300.0));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = tokio.block_on(async {
        let response = reqwest::Client::new()
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("no answer from {url}"))?;
        anyhow::Ok(response.status())
    })?;
    if status.is_success() {
        println!("{url}: {status}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {url} answered {status}");
        Ok(ExitCode::FAILURE)
    }
}
