//! The Discord gateway's election: the owner's term (its own bot client, built for the
//! term), the pace of its sessions, and what ends a term.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{Manager, Memory};
use crate::cluster::{Fence, View};
use crate::discord::Discord;
use crate::observe::health::State;

/// Builds a Discord client for one term as gateway owner.
/// Its users' chosen servers are written under the term's fence.
pub(in crate::app) type GatewayBuilder =
    Arc<dyn Fn(Arc<Fence>) -> BoxFuture<'static, anyhow::Result<Discord>> + Send + Sync>;

/// What the gateway owner needs to run the bot.
pub(in crate::app) struct GatewayParts {
    pub(in crate::app) build: GatewayBuilder,
    pub(in crate::app) reloader: Arc<crate::reload::Reloader>,
}

/// This instance's term as gateway owner.
pub(super) struct Term {
    fence: Arc<Fence>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

/// The least time between two gateway sessions this instance starts: Discord allows one
/// identify per 5 s (`max_concurrency` 1) and 1,000 a day.
const GATEWAY_PACE: Duration = Duration::from_secs(5);

/// A term shorter than this makes the next wait twice as long as the last (up to
/// [`GATEWAY_PACE_MAX`]): a gateway that keeps changing hands must not use the day's
/// identifies up.
const SHORT_TERM: Duration = Duration::from_secs(60);

const GATEWAY_PACE_MAX: Duration = Duration::from_secs(600);

/// When this instance may start its next gateway session.
#[derive(Debug, Default)]
pub(super) struct Pace {
    next: Option<Instant>,
    wait: Duration,
}

impl Pace {
    /// Whether a session may start now.
    pub(super) fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// A term that started at `started` ended at `now`.
    pub(super) fn ended(&mut self, started: Instant, now: Instant) {
        self.wait = if now.duration_since(started) < SHORT_TERM {
            (self.wait * 2).clamp(GATEWAY_PACE, GATEWAY_PACE_MAX)
        } else {
            GATEWAY_PACE
        };
        self.next = Some(now + self.wait);
    }
}

/// The gateway's key among the servers' in the election memory.
const GATEWAY: &str = "\0gateway";

impl Manager {
    /// The gateway's election; true while this instance runs the gateway.
    pub(super) async fn gateway_tick(
        &self,
        view: &View,
        members: &[String],
        memory: &mut Memory,
        term: &mut Option<Term>,
    ) -> bool {
        let Some(parts) = &self.gateway else {
            return false;
        };
        if let Some(t) = term.take() {
            return self.keep_term(t, view, memory, term).await;
        }
        if let Some(h) = &view.gateway {
            memory.free_since.remove(GATEWAY);
            if h.instance == self.cluster.id {
                let _ = self
                    .cluster
                    .resign(&self.cluster.gateway_key(), h.token)
                    .await;
            }
            return false;
        }
        if !self.due(GATEWAY, members, memory) || !memory.pace.ready(Instant::now()) {
            return false;
        }
        memory.free_since.remove(GATEWAY);
        match self.start_term(parts).await {
            Some(t) => {
                *term = Some(t);
                true
            }
            None => false,
        }
    }

    /// Keeps running the gateway while this instance still holds it and it has not ended;
    /// else ends it and gives the key up.
    async fn keep_term(
        &self,
        t: Term,
        view: &View,
        memory: &mut Memory,
        term: &mut Option<Term>,
    ) -> bool {
        let still = view
            .gateway
            .as_ref()
            .is_some_and(|h| h.token == t.fence.token())
            && t.fence.valid();
        if still && !t.task.is_finished() {
            *term = Some(t);
            return true;
        }
        let token = t.fence.token();
        if still {
            tracing::warn!(
                "the Discord gateway ended; giving it up so another instance can run it"
            );
        } else {
            tracing::warn!("another instance runs the Discord gateway now; stopping it here");
        }
        memory.pace.ended(t.started, Instant::now());
        self.end_term(t).await;
        let _ = self
            .cluster
            .resign(&self.cluster.gateway_key(), token)
            .await;
        false
    }

    /// Campaigns for the gateway and, elected, starts it (every RCON link held open).
    async fn start_term(&self, parts: &GatewayParts) -> Option<Term> {
        let key = self.cluster.gateway_key();
        let Ok(Some(token)) = self.cluster.campaign(&key).await else {
            return None;
        };
        let fence = self
            .cluster
            .fence("the Discord gateway", key.clone(), token);
        match (parts.build)(fence.clone()).await {
            Ok(discord) => {
                tracing::info!(token, "this instance runs the Discord gateway now");
                for s in self.servers.iter() {
                    s.hold_rcon(true);
                }
                let (stop, stopping) = watch::channel(false);
                let task = discord.start(self.servers.clone(), parts.reloader.clone(), stopping);
                Some(Term {
                    fence,
                    stop,
                    task,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                tracing::error!("cannot run the Discord gateway: {e:#}");
                let _ = self.cluster.resign(&key, token).await;
                None
            }
        }
    }

    /// Stops a gateway term: the bot disconnects; this instance keeps Discord's REST API
    /// for its servers' messages.
    pub(super) async fn end_term(&self, t: Term) {
        t.fence.lose();
        let _ = t.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), t.task).await;
        let health = &self.shared.health;
        health.forget(crate::discord::COMMANDS);
        health.set(
            &crate::observe::health::Part::Discord,
            State::Ready,
            Some("REST only: another instance runs the gateway".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_sessions_keep_discords_pace_and_back_off_when_terms_are_short() {
        let t0 = Instant::now();
        let mut pace = Pace::default();
        assert!(pace.ready(t0));
        // Terms of a few seconds each: 5 s, 10 s, 20 s, … up to 10 min between sessions.
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            pace.ended(now, now + Duration::from_secs(2));
            now += Duration::from_secs(2);
            assert!(!pace.ready(now));
            waits.push(pace.wait.as_secs());
            now = pace.next.unwrap();
            assert!(pace.ready(now));
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        // A term that lasted: back to Discord's pace.
        pace.ended(now, now + Duration::from_secs(3600));
        assert_eq!(pace.wait, GATEWAY_PACE);
    }
}
