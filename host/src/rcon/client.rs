//! One server's RCON link: a task that keeps a single authenticated connection open,
//! re-establishes it with exponential backoff and jitter, and runs commands one at a time.
//! [`RconClient`] is the cheap, cloneable handle every consumer shares.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::RconError;
use super::connection::Connection;
use super::reconnect::{Backoff, jitter};
use crate::config::Secret;

/// How to reach one server and how patient to be.
#[derive(Debug, Clone)]
pub struct RconSettings {
    /// `host:port`.
    pub addr: String,
    pub password: Secret,
    /// For TCP connect plus authentication.
    pub connect_timeout: Duration,
    /// For a command whose caller gives none.
    pub command_timeout: Duration,
    /// The first wait after a failure; doubled on each further failure, up to `backoff_max`,
    /// and back to this only after a connection stayed up for `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Whether commands that run Lua may be sent.
    pub lua: LuaPolicy,
    /// Cluster mode: the link is open only while this says true (this instance owns the
    /// server, or runs the Discord gateway); none: always.
    pub hold: Option<watch::Receiver<bool>>,
}

/// Whether a server's RCON link may send commands that run Lua (`/c`, `/sc`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LuaPolicy {
    #[default]
    Allowed,
    /// Achievement-safe mode (`achievements_safe: true`): the first Lua command disables
    /// the map's achievements for good, so none is ever sent. A `game.print` of the host's
    /// own is sent as plain console text instead (the game shows it as the server's chat);
    /// any other Lua command is refused ([`super::RconError::LuaRefused`]).
    Refused,
}

impl RconSettings {
    /// Where and how patiently it connects.
    pub fn target(&self) -> RconTarget {
        RconTarget {
            addr: self.addr.clone(),
            password: self.password.clone(),
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
        }
    }

    /// Defaults that suit a game server on the same network.
    pub fn new(addr: String, password: Secret) -> Self {
        Self {
            addr,
            password,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            lua: LuaPolicy::Allowed,
            hold: None,
        }
    }
}

/// The state of the link, published to every handle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum LinkState {
    /// The first attempt has not finished.
    Connecting,
    /// Cluster mode: not open on this instance, which neither owns the server nor runs the
    /// Discord gateway.
    Standby,
    /// Connected, authenticated and answering commands since `since`.
    Up {
        #[serde(with = "crate::event::unix_ms")]
        since: SystemTime,
    },
    /// Not working since `since`, for the reason `error`; retried in the background.
    Down {
        #[serde(with = "crate::event::unix_ms")]
        since: SystemTime,
        error: String,
        /// Attempts in a row that gave no lasting connection.
        failures: u32,
        /// The wait before the next attempt.
        retry_in_ms: u64,
    },
}

/// Prometheus handles the link reports to, already labelled with the server.
#[derive(Clone)]
pub struct LinkMetrics {
    pub latency: prometheus::Histogram,
    pub up: prometheus::IntGauge,
    pub reconnects: prometheus::IntCounter,
    pub failures: prometheus::IntCounter,
}

impl LinkMetrics {
    /// The RCON link's metrics for `server`, from the host's.
    pub fn of(metrics: &crate::observe::metrics::Metrics, server: &str) -> Self {
        Self {
            latency: metrics.rcon_latency.with_label_values(&[server]),
            up: metrics.rcon_up.with_label_values(&[server]),
            reconnects: metrics.rcon_reconnects.with_label_values(&[server]),
            failures: metrics.rcon_failures.with_label_values(&[server]),
        }
    }
}

struct Request {
    command: String,
    timeout: Duration,
    reply: oneshot::Sender<Result<String, RconError>>,
}

/// Where a link connects, and how patient it is: what [`RconClient::retarget`] changes
/// while the link runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RconTarget {
    /// `host:port`.
    pub addr: String,
    pub password: Secret,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// A handle to one server's RCON link. Dropping every handle stops the link.
#[derive(Clone)]
pub struct RconClient {
    /// The server's tag, for the spans of its commands.
    server: std::sync::Arc<str>,
    tx: mpsc::Sender<Request>,
    state: watch::Receiver<LinkState>,
    target: std::sync::Arc<watch::Sender<RconTarget>>,
    lua: LuaPolicy,
}

/// Commands waiting for the connection; more than this and callers wait to enqueue.
const QUEUE: usize = 64;

impl RconClient {
    /// Starts the link task for `settings` on the current tokio runtime.
    pub fn spawn(server: &str, settings: RconSettings, metrics: Option<LinkMetrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let target = std::sync::Arc::new(watch::Sender::new(settings.target()));
        let lua = settings.lua;
        tokio::spawn(link(
            server.to_owned(),
            settings,
            target.subscribe(),
            rx,
            state_tx,
            metrics,
        ));
        Self {
            server: server.into(),
            tx,
            state,
            target,
            lua,
        }
    }

    /// Points the link at `target` from now on (servers.yml changed): an open connection
    /// to the old one is closed and the new one is tried at once. Nothing changes when the
    /// target is the same.
    pub fn retarget(&self, target: RconTarget) {
        self.target.send_if_modified(|now| {
            let changed = *now != target;
            *now = target;
            changed
        });
    }

    /// Whether commands that run Lua may be sent (not in achievement-safe mode).
    pub fn lua_allowed(&self) -> bool {
        self.lua == LuaPolicy::Allowed
    }

    /// Runs `command` with the default timeout.
    pub async fn exec(&self, command: &str) -> Result<String, RconError> {
        let timeout = self.target.borrow().command_timeout;
        self.exec_with_timeout(command, timeout).await
    }

    /// Runs `command`; fails at once while the link is down, and after `timeout` at most.
    pub async fn exec_with_timeout(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<String, RconError> {
        // The command's first word only: its arguments may be long (Lua) or a player's text.
        let verb = command.split_whitespace().next().unwrap_or_default();
        let span = tracing::info_span!(
            "rcon.command",
            server = &*self.server,
            command = verb,
            otel.kind = "client",
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = match self.without_lua(command) {
            Ok(command) => {
                self.exchange(&command, timeout)
                    .instrument(span.clone())
                    .await
            }
            Err(refused) => Err(refused),
        };
        if let Err(e) = &result {
            span.record("error.type", e.kind());
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    /// `command` as it may be sent under the link's [`LuaPolicy`].
    fn without_lua<'a>(&self, command: &'a str) -> Result<std::borrow::Cow<'a, str>, RconError> {
        if self.lua == LuaPolicy::Allowed || !super::connection::is_lua(command) {
            return Ok(command.into());
        }
        super::command::plain_print(command)
            .map(Into::into)
            .ok_or(RconError::LuaRefused)
    }

    async fn exchange(&self, command: &str, timeout: Duration) -> Result<String, RconError> {
        match &*self.state.borrow() {
            LinkState::Down { error, .. } => return Err(RconError::Down(error.clone())),
            LinkState::Standby => return Err(RconError::Standby),
            _ => {}
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            command: command.to_owned(),
            timeout,
            reply,
        };
        // The link applies `timeout` to the exchange itself; this bounds the wait in the
        // queue and for the connection, with room for the link's own deadline to fire first.
        let outer = timeout + timeout / 2 + Duration::from_millis(100);
        tokio::time::timeout(outer, async {
            self.tx
                .send(request)
                .await
                .map_err(|_| RconError::Stopped)?;
            answer.await.map_err(|_| RconError::Stopped)?
        })
        .await
        .map_err(|_| RconError::Timeout(timeout))?
    }

    /// The link's state now.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of state (for up/down alerts and health).
    pub fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        matches!(*self.state.borrow(), LinkState::Up { .. })
    }
}

/// The command that proves a new connection works: harmless, Lua-free (it cannot disable
/// achievements) and answered by every Factorio version.
pub const PROBE: &str = "/version";

/// Connects, authenticates and runs [`PROBE`]: a link is up only once a command has made
/// the round trip.
async fn open(s: &RconTarget) -> Result<Connection, RconError> {
    let mut conn = Connection::connect(&s.addr, &s.password, s.connect_timeout).await?;
    match conn.exec(PROBE, s.command_timeout).await {
        Ok(_) => Ok(conn),
        Err(e) => Err(RconError::Unresponsive(e.to_string())),
    }
}

/// Until the link may be open: commands meanwhile are answered [`RconError::Standby`].
/// False when every handle is gone.
async fn standby(
    hold: &mut watch::Receiver<bool>,
    rx: &mut mpsc::Receiver<Request>,
    state: &watch::Sender<LinkState>,
) -> bool {
    if *hold.borrow_and_update() {
        return true;
    }
    state.send_replace(LinkState::Standby);
    loop {
        tokio::select! {
            changed = hold.changed() => match changed {
                Ok(()) if *hold.borrow_and_update() => return true,
                Ok(()) => {}
                // Nobody decides any more (the host is stopping): stay closed.
                Err(_) => std::future::pending::<()>().await,
            },
            req = rx.recv() => match req {
                Some(req) => { let _ = req.reply.send(Err(RconError::Standby)); }
                None => return false,
            },
        }
    }
}

/// Resolves when the link must close (cluster mode: held no more); never without `hold`.
async fn released(hold: &mut Option<watch::Receiver<bool>>) {
    match hold {
        Some(h) => {
            let _ = h.wait_for(|held| !held).await;
        }
        None => std::future::pending().await,
    }
}

/// Why an open connection ended.
enum Ended {
    /// It broke (the error).
    Lost(String),
    /// Cluster mode: another instance owns the server now.
    Released,
    /// The link was pointed elsewhere.
    Retargeted,
}

async fn link(
    server: String,
    settings: RconSettings,
    mut target: watch::Receiver<RconTarget>,
    mut rx: mpsc::Receiver<Request>,
    state: watch::Sender<LinkState>,
    metrics: Option<LinkMetrics>,
) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut ever_up = false;
    let mut hold = settings.hold.clone();
    loop {
        if let Some(h) = &mut hold
            && !standby(h, &mut rx, &state).await
        {
            return;
        }
        let s = target.borrow_and_update().clone();
        let (error, up_for) = match open(&s).await {
            Ok(mut conn) => {
                tracing::info!(server, addr = %s.addr, "RCON connected");
                if ever_up && let Some(m) = &metrics {
                    m.reconnects.inc();
                }
                ever_up = true;
                let up_at = Instant::now();
                state.send_replace(LinkState::Up {
                    since: SystemTime::now(),
                });
                if let Some(m) = &metrics {
                    m.up.set(1);
                }
                let ended = loop {
                    let req = tokio::select! {
                        req = rx.recv() => req,
                        () = released(&mut hold) => break Ended::Released,
                        _ = target.changed() => break Ended::Retargeted,
                    };
                    let Some(req) = req else {
                        return;
                    };
                    if req.reply.is_closed() {
                        // Its caller gave up while it waited (and was told it failed): a
                        // ban the user saw fail must not run later.
                        tracing::debug!(server, "dropping a command whose caller stopped waiting");
                        continue;
                    }
                    let started = Instant::now();
                    let result = conn.exec(&req.command, req.timeout).await;
                    if let Some(m) = &metrics {
                        m.latency.observe(started.elapsed().as_secs_f64());
                        if result.is_err() {
                            m.failures.inc();
                        }
                    }
                    let broken = match &result {
                        Err(e) if e.breaks_connection() => Some(e.to_string()),
                        _ => None,
                    };
                    let _ = req.reply.send(result);
                    if let Some(e) = broken {
                        break Ended::Lost(e);
                    }
                };
                let error = match ended {
                    Ended::Lost(error) => error,
                    Ended::Released | Ended::Retargeted => {
                        match ended {
                            Ended::Released => {
                                tracing::info!(server, addr = %s.addr, "RCON closed: another instance owns the server now")
                            }
                            _ => {
                                tracing::info!(server, addr = %s.addr, "RCON closed: servers.yml points the link elsewhere; connecting anew")
                            }
                        }
                        if let Some(m) = &metrics {
                            m.up.set(0);
                        }
                        continue;
                    }
                };
                tracing::warn!(server, addr = %s.addr, "RCON connection lost: {error}; reconnecting");
                (error, Some(up_at.elapsed()))
            }
            Err(e) => {
                let was = state.borrow().clone();
                if !matches!(was, LinkState::Down { .. }) {
                    tracing::warn!(server, addr = %s.addr, "RCON unavailable: {e}; retrying in the background");
                } else {
                    tracing::debug!(server, addr = %s.addr, "RCON still unavailable: {e}");
                }
                (e.to_string(), None)
            }
        };
        if let Some(m) = &metrics {
            m.up.set(0);
        }
        let since = match &*state.borrow() {
            LinkState::Down { since, .. } => *since,
            _ => SystemTime::now(),
        };
        let wait = jitter(backoff.after(up_for));
        state.send_replace(LinkState::Down {
            since,
            error: error.clone(),
            failures: backoff.failures,
            retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let wait = tokio::time::sleep(wait);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                () = released(&mut hold) => break,
                _ = target.changed() => break,
                req = rx.recv() => match req {
                    Some(req) => { let _ = req.reply.send(Err(RconError::Down(error.clone()))); }
                    None => return,
                },
            }
        }
    }
}
