//! `factorio-isr demo`: two simulated Factorio servers, the whole host with the stock
//! plugins, and the HTTP endpoints, on a fresh machine with nothing configured. Events are
//! printed as they happen and each server's status every half minute; the second server's
//! UPS dips now and then, which the stock `ups-alert` monitor warns about (and a pause
//! withdraws quietly).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::RuntimeArgs;
use crate::app::{Host, HostOptions};
use crate::config::Config;
use crate::sim::{Api, Sim, SimOptions};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of /health, /ready, /metrics and /api (a taken port falls back to a free one).
    #[arg(long, env = "HEALTH_CHECK_HOST", default_value = "127.0.0.1")]
    http_host: IpAddr,
    #[arg(long, env = "HEALTH_CHECK_PORT", default_value_t = 8080)]
    http_port: u16,
    /// Seconds between status reports.
    #[arg(long, default_value_t = 30)]
    status_every: u64,
    /// Mean milliseconds between player actions on the simulated servers.
    #[arg(long, default_value_t = 2500)]
    activity_ms: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

const PASSWORD: &str = "demo-password";

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("factorio-isr-demo-")
        .tempdir()
        .context("cannot create the demo's folder")?;
    let activity = Duration::from_millis(args.activity_ms.max(100));
    let mut sims = Vec::new();
    for (tag, api, seed) in [("nauvis", Api::V2_0, 7), ("legacy", Api::V1_1, 11)] {
        let log = dir.path().join(format!("{tag}-console.log"));
        let current = dir.path().join(format!("{tag}-factorio-current.log"));
        std::fs::write(&log, "")?;
        std::fs::write(&current, "")?;
        let sim = Sim::start(SimOptions {
            log: Some(log),
            password: PASSWORD.into(),
            api,
            seed,
            activity: Some(activity),
            ..SimOptions::default()
        })
        .await
        .context("cannot start a simulated server")?;
        sims.push((tag, sim));
    }
    let config_path = dir.path().join("servers.yml");
    std::fs::write(&config_path, servers_yml(dir.path(), &sims))?;
    let config = Config::load(&config_path)?;

    let http = free_or_any(SocketAddr::new(args.http_host, args.http_port));
    let signalled = super::run::shutdown_signals();
    let host = Host::start(
        &HostOptions {
            state_dir: dir.path().join("state"),
            http,
            poll: Duration::from_millis(500),
            runtime: std::sync::Arc::new(args.runtime.runtime()?),
            mentions: std::sync::Arc::new(crate::alert::Mentions::builtin()),
            discord: crate::app::DiscordAccess::from_env(),
            api: crate::http::ApiAuth::from_env(),
            restarts: crate::app::RestartPolicy::default(),
        },
        &config,
    )
    .await?;
    // The servers "start" once the host follows their logs, so their start shows too.
    for (tag, sim) in sims.iter() {
        let current = dir.path().join(format!("{tag}-factorio-current.log"));
        if let Err(e) = sim.game().open_current_log(&current, sim.rcon_addr()) {
            tracing::warn!("cannot write {}: {e}", current.display());
        }
    }
    let base = format!("http://{}", host.http_addr.unwrap_or(http));
    println!(
        "factorio-isr demo: two simulated Factorio servers ({}).\n\
         \n  {base}/health   {base}/ready   {base}/metrics   {base}/api/servers\n\
         \n  config and logs: {}\n  Ctrl-C stops.\n",
        sims.iter()
            .map(|(t, s)| format!("{t} on RCON {}", s.rcon_addr()))
            .collect::<Vec<_>>()
            .join(", "),
        dir.path().display()
    );

    let sims = Arc::new(sims);
    let dipper = tokio::spawn(dip_ups(sims.clone()));
    let reporter = tokio::spawn(report(
        host.servers.clone(),
        Duration::from_secs(args.status_every.max(1)),
    ));
    signalled.await;
    dipper.abort();
    reporter.abort();
    host.shutdown().await;
    drop(sims);
    Ok(ExitCode::SUCCESS)
}

fn servers_yml(dir: &Path, sims: &[(&str, Sim)]) -> String {
    let mut out = String::from("# Written by `factorio-isr demo`.\nservers:\n");
    for (tag, sim) in sims {
        let log = dir.join(format!("{tag}-console.log"));
        let current = dir.join(format!("{tag}-factorio-current.log"));
        out.push_str(&format!(
            "  {tag}:\n    name: Demo {tag}\n    logs:\n      - path: {log:?}\n        id: console\n      \
             - path: {current:?}\n        id: factorio-current\n    rcon_host: 127.0.0.1\n    \
             rcon_port: {port}\n    rcon_password: {PASSWORD}\n    metrics_interval: 5\n    \
             alert_check_interval: 5\n    alert_samples_required: 3\n    alert_cooldown: 60\n    \
             stats_interval: 120\n    monitors:\n      - plugin: ups-alert\n      - plugin: chat-guard\n",
            log = log.display().to_string(),
            current = current.display().to_string(),
            port = sim.rcon_addr().port()
        ));
    }
    out
}

/// `addr` if it can be bound now, else the same host on any free port.
fn free_or_any(addr: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => SocketAddr::new(addr.ip(), 0),
    }
}

/// The second server's UPS sags below the alert threshold for half a minute every two
/// minutes, and once in a while the game pauses.
async fn dip_ups(sims: Arc<Vec<(&'static str, Sim)>>) {
    let Some((_, sim)) = sims.get(1) else {
        return;
    };
    let mut round = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(90)).await;
        round += 1;
        if round.is_multiple_of(3) {
            sim.game().set_paused(true);
            tokio::time::sleep(Duration::from_secs(20)).await;
            sim.game().set_paused(false);
        } else {
            sim.game().set_ups(38.0 + f64::from(round % 2) * 8.0);
            tokio::time::sleep(Duration::from_secs(30)).await;
            sim.game().set_ups(60.0);
        }
    }
}

async fn report(servers: Arc<Vec<crate::servers::Server>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut block = String::from("── status ──────────────────────────────\n");
        for s in servers.iter() {
            let Some(stats) = &s.stats else { continue };
            let r = stats.reading().await;
            block.push_str(&super::status::render(&s.tag, s.name.as_deref(), &r, None));
        }
        print!("{block}");
    }
}
