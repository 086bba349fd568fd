//! Takes up a changed servers.yml while the host runs, beyond the plugins (which the
//! reloader swaps): a server whose entry changed runs its parts again with it (channels,
//! events, logs, thresholds; they stop after delivering what they read and resume from the
//! checkpoint, so nothing is lost or posted twice), a server's RCON link is pointed at its
//! new address, password or timeout, and the bot takes up new roles and cooldowns and the
//! channels of each server. What only a start can apply (servers added or removed, a
//! server's name, its readings engine, cluster mode) is said in the log and in `/ready`
//! (component `config`, degraded) until the next start.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::config::{Config, changes};
use crate::discord::Bot;
use crate::observe::health::{Health, Part, State};
use crate::servers::Server;

/// The component that says what waits for the next start.
const COMPONENT: &Part = &Part::Config;

/// What the applier works with.
pub(super) struct ConfigWatch {
    /// servers.yml as the host started with it.
    pub(super) started: Config,
    pub(super) servers: Arc<Vec<Server>>,
    /// The bot, when this instance runs it (not in cluster mode, where the gateway moves).
    pub(super) bot: Option<Arc<Bot>>,
    pub(super) health: Health,
    /// Cluster mode: where this instance tells the others what its servers.yml holds.
    pub(super) cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl ConfigWatch {
    /// Applies each change of servers.yml the watcher reports on `changed`, until `stop`.
    pub(super) fn spawn(
        self,
        mut changed: mpsc::Receiver<()>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = self.started.clone();
            loop {
                tokio::select! {
                    got = changed.recv() => if got.is_none() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                let path = last.path.clone();
                let read = tokio::task::spawn_blocking(move || Config::load(&path)).await;
                match read {
                    Ok(Ok(now)) => {
                        self.apply(&last, &now).await;
                        last = now;
                    }
                    // The reloader says why the file does not load (log, `/ready`).
                    Ok(Err(e)) => tracing::debug!(
                        "servers.yml does not load ({e}); nothing of it is taken up"
                    ),
                    Err(e) => tracing::warn!("reading servers.yml failed: {e}"),
                }
            }
        })
    }

    /// Applies what changed from `last` to `now`, and says what waits for the next start.
    async fn apply(&self, last: &Config, now: &Config) {
        let asked = changes(last, now);
        let cluster = self.started.cluster.is_some();
        if let Some(c) = &self.cluster {
            c.introduce(
                None,
                crate::cluster::config_digests(&now.servers_as_written()),
            );
        }
        for (tag, keys) in &asked.restart {
            let Some(server) = self.servers.iter().find(|s| &s.tag == tag) else {
                continue;
            };
            tracing::info!(server = %tag, changed = %keys.join(", "), "servers.yml changed: running the server's parts again with its new entry");
            server.control.restart().await;
        }
        for tag in &asked.rcon {
            let (Some(server), Some(entry)) =
                (self.servers.iter().find(|s| &s.tag == tag), now.server(tag))
            else {
                continue;
            };
            if let (Some(stats), Some(settings)) =
                (&server.stats, crate::servers::rcon_settings(entry))
            {
                tracing::info!(server = %tag, addr = %settings.addr, "servers.yml changed: the RCON link takes its new settings");
                stats.rcon().retarget(settings.target());
            }
        }
        if let Some(bot) = &self.bot {
            bot.take_config(now, asked.roles && !cluster).await;
        }
        let mut waiting = changes(&self.started, now).at_next_start;
        if cluster && changes(&self.started, now).roles {
            waiting.push("discord roles (cluster mode)".into());
        }
        let news: Vec<&String> = asked
            .at_next_start
            .iter()
            .filter(|w| waiting.contains(w))
            .collect();
        if !news.is_empty() {
            tracing::warn!(
                "servers.yml changed {}: this takes effect at the next start",
                news.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if waiting.is_empty() {
            self.health.set(COMPONENT, State::Ready, None);
        } else {
            self.health.set(
                COMPONENT,
                State::Degraded,
                Some(format!(
                    "servers.yml changed {}: takes effect at the next start",
                    waiting.join(", ")
                )),
            );
        }
    }
}
