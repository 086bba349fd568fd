//! The task behind a server's RCON link: it keeps one authenticated connection open, runs
//! the queued commands one at a time, and re-establishes the connection with exponential
//! backoff and jitter, publishing each [`LinkState`] to the handles.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::RconError;
use super::connection::Connection;
use super::reconnect::{Backoff, jitter};
use crate::config::Secret;

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

/// The command that proves a new connection works: harmless, Lua-free (it cannot disable
/// achievements) and answered by every Factorio version.
pub const PROBE: &str = "/version";

/// A command waiting for the connection, and where its answer goes.
pub(super) struct Request {
    pub command: String,
    pub timeout: Duration,
    pub reply: oneshot::Sender<Result<String, RconError>>,
}

/// What the link task owns: the queue of commands, where it connects, and what it
/// publishes.
pub(super) struct Link {
    pub server: String,
    pub backoff: Backoff,
    /// Cluster mode: the link is open only while this says true.
    pub hold: Option<watch::Receiver<bool>>,
    pub target: watch::Receiver<RconTarget>,
    pub rx: mpsc::Receiver<Request>,
    pub state: watch::Sender<LinkState>,
    pub metrics: Option<LinkMetrics>,
}

/// Why an open connection ended.
enum Ended {
    /// It broke (the error).
    Lost(String),
    /// Cluster mode: another instance owns the server now.
    Released,
    /// The link was pointed elsewhere.
    Retargeted,
    /// Every handle is gone: the task stops.
    Dropped,
}

impl Link {
    /// Connects, serves, and reconnects until every handle is gone.
    pub async fn run(mut self) {
        let mut ever_up = false;
        loop {
            if let Some(h) = &mut self.hold
                && !standby(h, &mut self.rx, &self.state).await
            {
                return;
            }
            let target = self.target.borrow_and_update().clone();
            let (error, up_for) = match open(&target).await {
                Ok(conn) => {
                    if ever_up && let Some(m) = &self.metrics {
                        m.reconnects.inc();
                    }
                    ever_up = true;
                    let up_at = Instant::now();
                    match self.serve(conn, &target.addr).await {
                        Ended::Lost(error) => (error, Some(up_at.elapsed())),
                        Ended::Released | Ended::Retargeted => continue,
                        Ended::Dropped => return,
                    }
                }
                Err(e) => {
                    self.unavailable(&target.addr, &e);
                    (e.to_string(), None)
                }
            };
            if !self.wait_down(error, up_for).await {
                return;
            }
        }
    }

    /// Runs commands on `conn` until it breaks, the link is released or retargeted, or
    /// every handle is gone.
    async fn serve(&mut self, mut conn: Connection, addr: &str) -> Ended {
        let server = &self.server;
        tracing::info!(server, addr, "RCON connected");
        self.state.send_replace(LinkState::Up {
            since: SystemTime::now(),
        });
        self.set_up(1);
        let ended = loop {
            let req = tokio::select! {
                req = self.rx.recv() => req,
                () = released(&mut self.hold) => break Ended::Released,
                _ = self.target.changed() => break Ended::Retargeted,
            };
            let Some(req) = req else {
                return Ended::Dropped;
            };
            if let Some(error) = self.exec(&mut conn, req).await {
                break Ended::Lost(error);
            }
        };
        match &ended {
            Ended::Released => {
                tracing::info!(
                    server,
                    addr,
                    "RCON closed: another instance owns the server now"
                )
            }
            Ended::Retargeted => {
                tracing::info!(
                    server,
                    addr,
                    "RCON closed: servers.yml points the link elsewhere; connecting anew"
                )
            }
            Ended::Lost(error) => {
                tracing::warn!(server, addr, "RCON connection lost: {error}; reconnecting")
            }
            Ended::Dropped => {}
        }
        self.set_up(0);
        ended
    }

    /// Runs one command and answers it; the error if it broke the connection.
    async fn exec(&self, conn: &mut Connection, req: Request) -> Option<String> {
        if req.reply.is_closed() {
            // Its caller gave up while it waited (and was told it failed): a ban the user
            // saw fail must not run later.
            tracing::debug!(
                server = self.server,
                "dropping a command whose caller stopped waiting"
            );
            return None;
        }
        let started = Instant::now();
        let result = conn.exec(&req.command, req.timeout).await;
        if let Some(m) = &self.metrics {
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
        broken
    }

    fn unavailable(&self, addr: &str, e: &RconError) {
        let server = &self.server;
        if !matches!(*self.state.borrow(), LinkState::Down { .. }) {
            tracing::warn!(
                server,
                addr,
                "RCON unavailable: {e}; retrying in the background"
            );
        } else {
            tracing::debug!(server, addr, "RCON still unavailable: {e}");
        }
    }

    fn set_up(&self, up: i64) {
        if let Some(m) = &self.metrics {
            m.up.set(up);
        }
    }

    /// Says the link is down for `error` and waits the backoff (less if released or
    /// retargeted), answering commands meanwhile with [`RconError::Down`]. False when every
    /// handle is gone.
    async fn wait_down(&mut self, error: String, up_for: Option<Duration>) -> bool {
        self.set_up(0);
        let since = match &*self.state.borrow() {
            LinkState::Down { since, .. } => *since,
            _ => SystemTime::now(),
        };
        let wait = jitter(self.backoff.after(up_for));
        self.state.send_replace(LinkState::Down {
            since,
            error: error.clone(),
            failures: self.backoff.failures,
            retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let wait = tokio::time::sleep(wait);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => return true,
                () = released(&mut self.hold) => return true,
                _ = self.target.changed() => return true,
                req = self.rx.recv() => match req {
                    Some(req) => { let _ = req.reply.send(Err(RconError::Down(error.clone()))); }
                    None => return false,
                },
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on (bound, then let go).
    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        addr
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_that_cannot_connect_backs_off_doubling_and_answers_commands_at_once() {
        let target = RconTarget {
            addr: closed_port(),
            password: Secret::new("pw"),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        };
        let (_target_tx, target_rx) = watch::channel(target);
        let (tx, rx) = mpsc::channel(4);
        let (state_tx, mut state) = watch::channel(LinkState::Connecting);
        let link = Link {
            server: "prod".into(),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(8)),
            hold: None,
            target: target_rx,
            rx,
            state: state_tx,
            metrics: None,
        };
        let task = tokio::spawn(link.run());
        let mut seen = Vec::new();
        while seen.len() < 6 {
            state.changed().await.unwrap();
            if let LinkState::Down {
                failures,
                retry_in_ms,
                ..
            } = &*state.borrow_and_update()
            {
                seen.push((*failures, *retry_in_ms));
            }
        }
        for (i, (failures, retry_in_ms)) in seen.iter().enumerate() {
            assert_eq!(*failures as usize, i + 1, "{seen:?}");
            // 1 s, 2 s, 4 s, then 8 s at most; each with up to 20 % of jitter either way.
            let base = 1000u64 << i.min(3);
            assert!(
                (base * 8 / 10..=base * 12 / 10).contains(retry_in_ms),
                "{seen:?}"
            );
        }
        // While down, a command is answered at once, not after the wait.
        let (reply, answer) = oneshot::channel();
        let request = Request {
            command: "/version".into(),
            timeout: Duration::from_secs(5),
            reply,
        };
        tx.send(request).await.unwrap();
        assert!(matches!(answer.await.unwrap(), Err(RconError::Down(_))));
        drop(tx);
        task.await.unwrap();
    }
}
