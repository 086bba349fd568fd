//! The live parts of each configured server that the HTTP API, the CLI and (later) Discord
//! commands reach: its RCON link and its metrics engine.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::health::{Health, State};
use crate::metrics::Metrics;
use crate::rcon::{LinkState, RconClient, RconSettings};
use crate::stats::{Reading, StatsEngine};

/// One configured server.
pub struct Server {
    pub tag: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// None when the server has no RCON password.
    pub stats: Option<Arc<StatsEngine>>,
}

/// A server as `GET /api/servers/{tag}` shows it.
#[derive(Debug, Serialize)]
pub struct ServerView {
    pub tag: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The RCON link; null when RCON is not configured.
    pub rcon: Option<LinkState>,
    /// The latest reading of the metrics engine; null when RCON is not configured.
    pub reading: Option<Arc<Reading>>,
}

impl Server {
    /// The server of `config`, with its RCON link started when it has a password.
    pub fn start(config: &ServerConfig, metrics: Option<&Metrics>) -> Self {
        let stats = config.rcon_password.clone().map(|password| {
            let addr = format!("{}:{}", config.rcon_host, config.rcon_port);
            let link = metrics.map(|m| m.link_metrics(&config.tag));
            let rcon = RconClient::spawn(&config.tag, RconSettings::new(addr, password), link);
            let gauges = metrics.map(|m| m.stats_gauges(&config.tag));
            Arc::new(StatsEngine::new(
                rcon,
                Duration::from_secs(config.metrics_interval),
                config.ups_ema_alpha,
                gauges,
            ))
        });
        Self {
            tag: config.tag.clone(),
            name: config.name.clone(),
            description: config.description.clone(),
            stats,
        }
    }

    /// The server as the API shows it, reading the game if the cached reading is stale.
    pub async fn view(&self) -> ServerView {
        let (rcon, reading) = match &self.stats {
            Some(s) => (Some(s.rcon().state()), Some(s.reading().await)),
            None => (None, None),
        };
        ServerView {
            tag: self.tag.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            rcon,
            reading,
        }
    }

    /// Keeps the component `rcon:<tag>` of `health` in step with the link, and reads the
    /// game every `interval` so gauges and pause detection stay current, until `stop`.
    pub fn watch(
        &self,
        health: &Health,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let stats = self.stats.clone()?;
        let name = format!("rcon:{}", self.tag);
        health.register(&name);
        let health = health.clone();
        Some(tokio::spawn(async move {
            let mut link = stats.rcon().watch();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => { stats.reading().await; }
                    changed = link.changed() => {
                        if changed.is_err() { return; }
                        let state = link.borrow_and_update().clone();
                        match state {
                            LinkState::Up { .. } => health.set(&name, State::Ready, None),
                            LinkState::Down { error, .. } => {
                                health.error(&name, error);
                                health.set(&name, State::Down, None);
                            }
                            LinkState::Connecting => {}
                        }
                    }
                    changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                }
            }
        }))
    }
}
