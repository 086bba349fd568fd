//! The live parts of each configured server that the HTTP API, the CLI and (later) Discord
//! commands reach: its RCON link, its readings engine, its open alerts and its plugins.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::alert::{ActiveAlert, Alerts, Mentions};
use crate::config::ServerConfig;
use crate::observe::metrics::Metrics;
use crate::plugin::{PluginBoard, PluginStatus};
use crate::rcon::{LinkState, RconClient, RconSettings};
use crate::readings::{Reading, Readings};
use crate::swap::compare::{MonitorReport, ParserReport};
use crate::swap::slot::SlotVersions;

/// One configured server.
pub struct Server {
    pub tag: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// None when the server has no RCON password.
    pub stats: Option<Arc<Readings>>,
    /// Its open alerts.
    pub alerts: Arc<Alerts>,
    /// Its parsers and monitors and how they are doing.
    pub plugins: Arc<PluginBoard>,
    /// Its parser thread, for reloads; none when it follows no log.
    pub parsers: Option<crate::pipeline::ParserHandle>,
    /// Its monitor thread, for reloads.
    pub monitors: Option<crate::monitor::MonitorHandle>,
    /// Whether its parts run, as its supervisor says.
    pub run: tokio::sync::watch::Sender<RunState>,
    /// Orders to its supervisor: stop or start its parts.
    pub control: RunControl,
    /// The comparison of its candidate parsers (`shadow`), while it has some.
    pub parser_compare: Arc<Mutex<Option<ParserReport>>>,
    /// The comparison of its candidate monitors (`shadow: {monitors}`), while it has some.
    pub monitor_compare: Arc<Mutex<Option<MonitorReport>>>,
    /// Cluster mode: whether this instance keeps the RCON link open (it owns the server or
    /// runs the Discord gateway); none outside cluster mode, where it always does.
    pub rcon_hold: Option<tokio::sync::watch::Sender<bool>>,
}

/// Whether a server's parts (tailer, parser and monitor threads, checks, delivery) run, as
/// its supervisor sees it. Its RCON link is the server's own and runs regardless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// Being started.
    Starting,
    /// Running; `restarts` counts the restarts after a panic since the host started.
    Running { restarts: u32 },
    /// A part stopped on a panic; the parts start again in `in_ms` from the last checkpoint.
    Restarting {
        restarts: u32,
        in_ms: u64,
        /// Which part panicked, and what it said.
        cause: String,
    },
    /// Too many panics within the window: stays stopped until started again (by the host's
    /// owner or a restart of the host).
    GaveUp { restarts: u32, cause: String },
    /// Stopped on request.
    Stopped,
}

/// An order to a server's supervisor, answered with the state reached.
pub struct RunOrder {
    pub what: Order,
    pub done: tokio::sync::oneshot::Sender<RunState>,
}

/// What a server's supervisor is asked to do with its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Run them (start them if they are stopped or gave up).
    Run,
    /// Stop them.
    Stop,
    /// Stop them and start them again from servers.yml as it is now, if they run (a
    /// changed entry); a stopped server stays stopped.
    Restart,
}

/// Where orders reach a server's supervisor (once it has one).
#[derive(Default)]
pub struct RunControl {
    to: std::sync::OnceLock<tokio::sync::mpsc::Sender<RunOrder>>,
}

impl RunControl {
    /// Orders go to `tx` (the supervisor's queue); only the first call counts.
    pub fn connect(&self, tx: tokio::sync::mpsc::Sender<RunOrder>) {
        let _ = self.to.set(tx);
    }

    /// Runs (true) or stops (false) the server's parts; returns the state reached, none
    /// when the server has no supervisor (any more).
    pub async fn order(&self, run: bool) -> Option<RunState> {
        self.send(if run { Order::Run } else { Order::Stop }).await
    }

    /// Runs the server's parts again with its entry of servers.yml as it is now (they
    /// stop, deliver what they read and save the checkpoint first); a stopped server stays
    /// stopped. Returns the state reached.
    pub async fn restart(&self) -> Option<RunState> {
        self.send(Order::Restart).await
    }

    async fn send(&self, what: Order) -> Option<RunState> {
        let (done, reached) = tokio::sync::oneshot::channel();
        self.to.get()?.send(RunOrder { what, done }).await.ok()?;
        reached.await.ok()
    }
}

/// A server as `GET /api/servers/{tag}` shows it.
#[derive(Debug, Serialize)]
pub struct ServerView {
    pub tag: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Whether its parts run.
    pub run: RunState,
    /// The RCON link; null when RCON is not configured.
    pub rcon: Option<LinkState>,
    /// The latest reading of the readings engine; null when RCON is not configured.
    pub reading: Option<Arc<Reading>>,
    /// Alerts open now, oldest first.
    pub alerts: Vec<ActiveAlert>,
    /// Parsers, then monitors, in the order they run.
    pub plugins: Vec<PluginStatus>,
    /// The parser chain's versions (live, rollback target, last rejected reload); null
    /// when the server follows no log.
    pub parser_versions: Option<SlotVersions>,
    /// The monitors' versions, likewise.
    pub monitor_versions: Option<SlotVersions>,
}

/// How the RCON link of the server of `config` connects; none without a password.
pub fn rcon_settings(config: &ServerConfig) -> Option<RconSettings> {
    let password = config.rcon_password.clone()?;
    let addr = format!("{}:{}", config.rcon_host, config.rcon_port);
    let timeout = Duration::from_secs(config.rcon_timeout.clamp(1, 3600));
    Some(RconSettings {
        connect_timeout: timeout,
        command_timeout: timeout,
        lua: if config.achievements_safe {
            crate::rcon::LuaPolicy::Refused
        } else {
            crate::rcon::LuaPolicy::Allowed
        },
        ..RconSettings::new(addr, password)
    })
}

impl Server {
    /// The server of `config`, with its RCON link started when it has a password; in
    /// `cluster` mode the link stays closed until [`Self::hold_rcon`] says otherwise.
    pub fn start(
        config: &ServerConfig,
        metrics: Option<&Arc<Metrics>>,
        mentions: Arc<Mentions>,
        cluster: bool,
    ) -> Self {
        let rcon_hold = cluster.then(|| tokio::sync::watch::Sender::new(false));
        let stats = rcon_settings(config).map(|settings| {
            let link = metrics.map(|m| crate::rcon::LinkMetrics::of(m, &config.tag));
            let settings = RconSettings {
                hold: rcon_hold.as_ref().map(|h| h.subscribe()),
                ..settings
            };
            let rcon = RconClient::spawn(&config.tag, settings, link);
            let gauges = metrics.map(|m| crate::readings::ReadingGauges::of(m, &config.tag));
            Arc::new(Readings::new(
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
            alerts: Arc::new(Alerts::new(
                crate::alert::ServerLabel {
                    tag: config.tag.clone(),
                    name: config.name.clone(),
                },
                mentions,
                metrics.cloned(),
            )),
            plugins: Arc::default(),
            parsers: (!config.logs.is_empty()).then(crate::pipeline::ParserHandle::default),
            monitors: Some(crate::monitor::MonitorHandle::default()),
            run: tokio::sync::watch::Sender::new(RunState::Starting),
            control: RunControl::default(),
            parser_compare: Arc::default(),
            monitor_compare: Arc::default(),
            rcon_hold,
        }
    }

    /// Cluster mode: opens (true) or closes (false) this instance's RCON link to the server.
    pub fn hold_rcon(&self, held: bool) {
        if let Some(h) = &self.rcon_hold {
            h.send_if_modified(|now| std::mem::replace(now, held) != held);
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
            run: self.run.borrow().clone(),
            rcon,
            reading,
            alerts: self.alerts.active(),
            plugins: self.plugins.list(),
            monitor_versions: self.monitors.as_ref().map(|m| m.versions.lock().clone()),
            parser_versions: self.parsers.as_ref().map(|p| p.versions.lock().clone()),
        }
    }
}
