//! One server's RCON link as its users see it: [`RconClient`], the cheap, cloneable handle
//! every consumer shares, in front of the link task ([`super::link`]).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::RconError;
use super::link::{Link, Request};
use super::reconnect::Backoff;
use crate::config::Secret;

pub use super::link::{LinkMetrics, LinkState, PROBE, RconTarget};

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
        tokio::spawn(
            Link {
                server: server.to_owned(),
                backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
                hold: settings.hold,
                target: target.subscribe(),
                rx,
                state: state_tx,
                metrics,
            }
            .run(),
        );
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
}
