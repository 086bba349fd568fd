//! `factorio-isr status`: the readings engine's reading of each server, in a terminal.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::Config;
use crate::readings::Reading;
use crate::servers::Server;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(
        long,
        env = "FACTORIO_ISR_CONFIG",
        default_value = "config/servers.yml"
    )]
    config: PathBuf,
    /// Only this server.
    #[arg(long)]
    server: Option<String>,
    /// Seconds between the two tick readings UPS is measured over.
    #[arg(long, default_value_t = 2.0)]
    window: f64,
    /// Print the readings as JSON, one object per server.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let selected: Vec<_> = match &args.server {
        Some(tag) => vec![super::rcon::find_server(&config, tag)?.clone()],
        None => config.servers.clone(),
    };
    let window = Duration::from_secs_f64(args.window.clamp(0.2, 60.0));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = false;
    tokio.block_on(async {
        let owners = match &config.cluster {
            Some(c) => Some(owners(c).await),
            None => None,
        };
        let servers: Vec<Server> = selected
            .iter()
            .map(|s| {
                let mut s = s.clone();
                // Every call reads the game: the two readings are `window` apart.
                s.metrics_interval = 0;
                Server::start(
                    &s,
                    None,
                    std::sync::Arc::new(crate::alert::Mentions::builtin()),
                    false,
                )
            })
            .collect();
        let first = futures_util::future::join_all(servers.iter().map(first_reading)).await;
        tokio::time::sleep(window).await;
        for (server, first) in servers.iter().zip(first) {
            let view = server.view().await;
            let Some(reading) = view.reading else {
                println!(
                    "{}\n  RCON       not configured (no password)\n",
                    server.tag
                );
                failed = true;
                continue;
            };
            failed |= !reading.rcon_up || reading.error.is_some();
            let stalled = matches!((first, reading.tick), (Some(a), Some(b)) if a == b);
            let owner = owners.as_ref().map(|o| match o {
                Ok(o) => o
                    .get(&server.tag)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "nobody".into()),
                Err(e) => format!("unknown ({e})"),
            });
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "server": server.tag, "owner": owner, "reading": reading })
                );
            } else {
                let mut r = (*reading).clone();
                r.paused |= stalled;
                let text = render(&server.tag, server.name.as_deref(), &r, Some(window));
                match (&owner, text.split_once('\n')) {
                    (Some(owner), Some((title, rest))) => {
                        print!("{title}\n  Owner      {owner}\n{rest}");
                    }
                    _ => print!("{text}"),
                }
            }
        }
    });
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Cluster mode: which instance owns each server, as etcd says now.
async fn owners(
    settings: &crate::config::ClusterSettings,
) -> Result<std::collections::BTreeMap<String, Option<String>>, String> {
    let metrics = std::sync::Arc::new(crate::observe::metrics::Metrics::new());
    let cluster = crate::cluster::Cluster::connect(settings, metrics)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let view = tokio::time::timeout(Duration::from_secs(5), cluster.view())
        .await
        .map_err(|_| "etcd did not answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(view
        .owners
        .into_iter()
        .map(|(tag, h)| (tag, Some(h.instance)))
        .collect())
}

async fn first_reading(server: &Server) -> Option<u64> {
    let stats = server.stats.as_ref()?;
    // The first connection may take a moment; wait for it rather than report it down.
    let mut link = stats.rcon().watch();
    let _ = tokio::time::timeout(
        Duration::from_secs(6),
        link.wait_for(|s| !matches!(s, crate::rcon::LinkState::Connecting)),
    )
    .await;
    stats.reading().await.tick
}

/// A reading as a block of text for people.
pub fn render(tag: &str, name: Option<&str>, r: &Reading, window: Option<Duration>) -> String {
    let mut out = String::new();
    let title = match name {
        Some(n) => format!("{tag} ({n})"),
        None => tag.to_owned(),
    };
    let _ = writeln!(out, "{title}");
    if !r.rcon_up {
        let why = r.error.as_deref().unwrap_or("unknown");
        let _ = writeln!(out, "  RCON       🔴 down: {why}\n");
        return out;
    }
    let _ = writeln!(out, "  RCON       🟢 connected");
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  Problem    {e}\n");
        return out;
    }
    let avg = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let ups = if let Some(why) = &r.ups_unavailable {
        format!("unavailable ({why})")
    } else if r.paused {
        match window {
            Some(w) => format!(
                "⏸️ paused (the tick did not advance in {:.1} s)",
                w.as_secs_f64()
            ),
            None => "⏸️ paused".to_owned(),
        }
    } else {
        format!(
            "{} (SMA {}, EMA {})",
            avg(r.ups),
            avg(r.ups_sma),
            avg(r.ups_ema)
        )
    };
    let _ = writeln!(out, "  UPS        {ups}");
    if let Some(s) = r.game_time_seconds {
        let _ = writeln!(out, "  Game time  {}h {:02}m", s / 3600, s / 60 % 60);
    }
    if !r.evolution.is_empty() {
        let evo: Vec<String> = r
            .evolution
            .iter()
            .map(|s| format!("{} {:.1}%", s.surface, s.factor * 100.0))
            .collect();
        let _ = writeln!(out, "  Evolution  {}", evo.join(", "));
    }
    let players = if r.players.is_empty() {
        "0".to_owned()
    } else {
        format!("{}: {}", r.players.len(), r.players.join(", "))
    };
    let _ = writeln!(out, "  Players    {players}\n");
    out
}
