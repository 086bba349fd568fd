//! Cluster mode's decisions. Every instance reads the same view of etcd every tick and
//! decides for itself, so they agree without talking to each other:
//!
//! - a server nobody owns is campaigned for by every instance, each after a wait that
//!   grows with its place in the server's rendezvous ranking, so the first-ranked live
//!   instance nearly always wins and servers spread evenly;
//! - the winner holds the server's fence: it opens the RCON link and starts the server's
//!   parts; it stops them the moment the fence is lost (the key is gone or another holds
//!   it, a write was refused, or the lease ran out by this instance's clock);
//! - an owner hands a server back to its first-ranked instance once that one has been a
//!   member for [`SETTLE`] (and the owner has owned it as long): stops it, then resigns,
//!   so the preferred instance takes it over from the saved checkpoint. Nothing moves
//!   while membership keeps changing.
//! - the Discord gateway has an election of its own; its owner also keeps an RCON link to
//!   every server, for the commands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::server::Fences;
use crate::cluster::{Cluster, Fence, Status, View, placement};
use crate::discord::Discord;
use crate::observe::Shared;
use crate::observe::health::State;
use crate::servers::Server;

/// How long an instance must have been a member before servers move back to it.
pub(super) const SETTLE: Duration = Duration::from_secs(10);
/// The wait per place in a server's ranking before campaigning for it.
const STEP: Duration = Duration::from_millis(750);
/// How often etcd is read.
const TICK: Duration = Duration::from_millis(250);

/// Builds a Discord client for one term as gateway owner.
/// Its users' chosen servers are written under the term's fence.
pub(super) type GatewayBuilder =
    Arc<dyn Fn(Arc<Fence>) -> BoxFuture<'static, anyhow::Result<Discord>> + Send + Sync>;

/// What the gateway owner needs to run the bot.
pub(super) struct GatewayParts {
    pub(super) build: GatewayBuilder,
    pub(super) reloader: Arc<crate::reload::Reloader>,
}

/// What one server's keeper is told to do.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Idle,
    Run,
    /// Stop, then give the server's key up (token), for its preferred instance.
    HandBack(i64),
}

/// The decisions of this instance.
pub(super) struct Manager {
    pub(super) cluster: Arc<Cluster>,
    pub(super) servers: Arc<Vec<Server>>,
    pub(super) fences: Fences,
    pub(super) shared: Shared,
    pub(super) gateway: Option<GatewayParts>,
    pub(super) status: watch::Sender<Status>,
}

/// This instance's term as gateway owner.
struct Term {
    fence: Arc<Fence>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What the manager remembers between ticks.
#[derive(Default)]
struct Memory {
    /// When each member was first seen (in a row).
    first_seen: HashMap<String, Instant>,
    /// When each server (or the gateway) was first seen without owner.
    free_since: HashMap<String, Instant>,
    /// When this instance took each server it owns.
    owned_since: HashMap<String, Instant>,
    /// The last problem reading etcd, logged once.
    problem: Option<String>,
}

impl Manager {
    /// Decides every tick until `stopped`; then stops the gateway term (the servers stop
    /// with the host; the lease is given up after them).
    pub(super) fn spawn(self, stopped: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(stopped))
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let wants: Vec<watch::Sender<Want>> = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let (tx, rx) = watch::channel(Want::Idle);
                tokio::spawn(keeper(
                    i,
                    self.servers.clone(),
                    rx,
                    self.cluster.clone(),
                    self.fences.clone(),
                    stopped.clone(),
                ));
                tx
            })
            .collect();
        self.shared.health.register("cluster");
        let mut memory = Memory::default();
        let mut term: Option<Term> = None;
        loop {
            self.tick(&wants, &mut memory, &mut term).await;
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        if let Some(t) = term.take() {
            self.end_term(t).await;
        }
    }

    async fn tick(
        &self,
        wants: &[watch::Sender<Want>],
        memory: &mut Memory,
        term: &mut Option<Term>,
    ) {
        let me = self.cluster.id.clone();
        let health = &self.shared.health;
        if !self.cluster.lease.valid() {
            health.set(
                "cluster",
                State::Down,
                Some("no valid lease: etcd is unreachable, or this instance is joining".into()),
            );
            for (i, server) in self.servers.iter().enumerate() {
                self.drop_server(
                    server,
                    &wants[i],
                    memory,
                    "this instance has no valid lease",
                );
            }
            if let Some(t) = term.take() {
                tracing::warn!("giving the Discord gateway up: this instance has no valid lease");
                self.end_term(t).await;
            }
            self.publish(None);
            return;
        }
        let view = match tokio::time::timeout(TICK * 4, self.cluster.view()).await {
            Ok(Ok(v)) => {
                if memory.problem.take().is_some() {
                    tracing::info!("etcd answers again");
                }
                v
            }
            failed => {
                let problem = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "etcd did not answer in time".to_owned(),
                };
                if memory.problem.as_ref() != Some(&problem) {
                    tracing::warn!("cannot read the cluster's state: {problem}");
                }
                memory.problem = Some(problem);
                return;
            }
        };
        health.set("cluster", State::Ready, None);
        let mut members = view.members.clone();
        if !members.contains(&me) {
            members.push(me.clone());
        }
        let now = Instant::now();
        memory.first_seen.retain(|m, _| members.contains(m));
        for m in &members {
            memory.first_seen.entry(m.clone()).or_insert(now);
        }
        let gateway_mine = self.gateway_tick(&view, &members, memory, term).await;
        for (i, server) in self.servers.iter().enumerate() {
            self.server_tick(server, &wants[i], &view, &members, memory)
                .await;
            let owned = self.owns(&server.tag);
            server.hold_rcon(owned || gateway_mine);
            self.shared
                .metrics
                .cluster_owner
                .with_label_values(&[&server.tag, &me])
                .set(i64::from(owned));
        }
        self.publish(Some(&view));
    }

    fn owns(&self, tag: &str) -> bool {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(tag)
    }

    async fn server_tick(
        &self,
        server: &Server,
        want: &watch::Sender<Want>,
        view: &View,
        members: &[String],
        memory: &mut Memory,
    ) {
        let tag = &server.tag;
        let me = &self.cluster.id;
        let mine = self
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tag)
            .cloned();
        let handing_back = matches!(*want.borrow(), Want::HandBack(_));
        match (mine, view.owners.get(tag)) {
            (Some(f), Some(h)) if h.token == f.token() && f.valid() => {
                memory.free_since.remove(tag);
                if handing_back {
                    return;
                }
                let ranked = placement::ranked(tag, members);
                let settled =
                    |since: Option<&Instant>| since.is_some_and(|t| t.elapsed() >= SETTLE);
                if let Some(&preferred) = ranked.first()
                    && preferred != me.as_str()
                    && settled(memory.first_seen.get(preferred))
                    && settled(memory.owned_since.get(tag))
                {
                    tracing::info!(server = %tag, to = preferred, "handing the server back to the instance it belongs to");
                    want.send_replace(Want::HandBack(f.token()));
                }
            }
            (Some(_), _) if handing_back => {}
            (Some(_), _) => {
                self.drop_server(
                    server,
                    want,
                    memory,
                    "another instance owns it now, or its key expired",
                );
            }
            (None, Some(h)) => {
                memory.free_since.remove(tag);
                if handing_back && h.instance != *me {
                    want.send_replace(Want::Idle);
                } else if h.instance == *me && !handing_back {
                    // A key of this instance's lease that it does not act on (a start that
                    // lost its fence): give it up so another instance can take the server.
                    let _ = self
                        .cluster
                        .resign(&self.cluster.owner_key(tag), h.token)
                        .await;
                }
            }
            (None, None) => {
                if handing_back {
                    // The hand-back is done (or its resign was): free to campaign again.
                    want.send_replace(Want::Idle);
                }
                if !self.due(tag, members, memory) {
                    return;
                }
                match self.cluster.campaign(&self.cluster.owner_key(tag)).await {
                    Ok(Some(token)) => {
                        let fence = self.cluster.fence(
                            &format!("server {tag}"),
                            self.cluster.owner_key(tag),
                            token,
                        );
                        tracing::info!(server = %tag, token, "this instance owns the server now; starting it");
                        self.fences
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(tag.clone(), fence);
                        memory.owned_since.insert(tag.clone(), Instant::now());
                        memory.free_since.remove(tag);
                        server.hold_rcon(true);
                        want.send_replace(Want::Run);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(server = %tag, "campaign failed: {e}"),
                }
            }
        }
    }

    /// Whether this instance's turn to campaign for `what` has come: at once when it
    /// ranks first among the members, one step later per place after that.
    fn due(&self, what: &str, members: &[String], memory: &mut Memory) -> bool {
        let since = *memory
            .free_since
            .entry(what.to_owned())
            .or_insert_with(Instant::now);
        let rank = placement::rank(what, &self.cluster.id, members).unwrap_or(members.len());
        since.elapsed() >= STEP * u32::try_from(rank).unwrap_or(u32::MAX)
    }

    /// Stops server `tag` at once: its fence is lost.
    fn drop_server(
        &self,
        server: &Server,
        want: &watch::Sender<Want>,
        memory: &mut Memory,
        why: &str,
    ) {
        let held = self
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&server.tag);
        if let Some(f) = held {
            f.lose();
            tracing::warn!(server = %server.tag, "stopping the server here: {why}");
        }
        memory.owned_since.remove(&server.tag);
        want.send_if_modified(|w| match w {
            Want::Idle => false,
            _ => {
                *w = Want::Idle;
                true
            }
        });
    }

    /// The gateway's election; true while this instance runs the gateway.
    async fn gateway_tick(
        &self,
        view: &View,
        members: &[String],
        memory: &mut Memory,
        term: &mut Option<Term>,
    ) -> bool {
        let Some(parts) = &self.gateway else {
            return false;
        };
        const KEY: &str = "\0gateway";
        if let Some(t) = term.take() {
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
            self.end_term(t).await;
            let _ = self
                .cluster
                .resign(&self.cluster.gateway_key(), token)
                .await;
            return false;
        }
        match &view.gateway {
            Some(h) => {
                memory.free_since.remove(KEY);
                if h.instance == self.cluster.id {
                    let _ = self
                        .cluster
                        .resign(&self.cluster.gateway_key(), h.token)
                        .await;
                }
                false
            }
            None => {
                if !self.due(KEY, members, memory) {
                    return false;
                }
                memory.free_since.remove(KEY);
                let key = self.cluster.gateway_key();
                let Ok(Some(token)) = self.cluster.campaign(&key).await else {
                    return false;
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
                        let task =
                            discord.start(self.servers.clone(), parts.reloader.clone(), stopping);
                        *term = Some(Term { fence, stop, task });
                        true
                    }
                    Err(e) => {
                        tracing::error!("cannot run the Discord gateway: {e:#}");
                        let _ = self.cluster.resign(&key, token).await;
                        false
                    }
                }
            }
        }
    }

    /// Stops a gateway term: the bot disconnects; this instance keeps Discord's REST API
    /// for its servers' messages.
    async fn end_term(&self, t: Term) {
        t.fence.lose();
        let _ = t.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), t.task).await;
        let health = &self.shared.health;
        health.forget(crate::discord::COMMANDS);
        health.set(
            "discord",
            State::Ready,
            Some("REST only: another instance runs the gateway".into()),
        );
    }

    fn publish(&self, view: Option<&View>) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let status = match view {
            None => Status {
                instance: self.cluster.id.clone(),
                lease_valid: false,
                seen_at_ms: now_ms,
                ..self.status.borrow().clone()
            },
            Some(v) => Status {
                instance: self.cluster.id.clone(),
                lease_valid: true,
                instances: v.members.clone(),
                owners: self
                    .servers
                    .iter()
                    .map(|s| {
                        (
                            s.tag.clone(),
                            v.owners.get(&s.tag).map(|h| h.instance.clone()),
                        )
                    })
                    .collect(),
                gateway: v.gateway.as_ref().map(|h| h.instance.clone()),
                seen_at_ms: now_ms,
            },
        };
        self.status.send_replace(status);
    }
}

/// Carries out what the manager wants of one server, one order at a time (the newest
/// want wins).
async fn keeper(
    index: usize,
    servers: Arc<Vec<Server>>,
    mut want: watch::Receiver<Want>,
    cluster: Arc<Cluster>,
    fences: Fences,
    mut stopped: watch::Receiver<bool>,
) {
    let server = &servers[index];
    loop {
        tokio::select! {
            changed = want.changed() => if changed.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = want.borrow_and_update().clone();
        match now {
            Want::Idle => {
                server.control.order(false).await;
            }
            Want::Run => {
                server.control.order(true).await;
            }
            Want::HandBack(token) => {
                // Stopped first, so what was read is delivered and the checkpoint saved
                // under this instance's fence; then the key goes.
                server.control.order(false).await;
                let key = cluster.owner_key(&server.tag);
                if let Err(e) = cluster.resign(&key, token).await {
                    tracing::warn!(server = %server.tag, "cannot give the server's key up: {e}; it moves when this lease ends");
                }
                let mut all = fences.lock().unwrap_or_else(|p| p.into_inner());
                if all.get(&server.tag).is_some_and(|f| f.token() == token)
                    && let Some(f) = all.remove(&server.tag)
                {
                    f.lose();
                }
            }
        }
    }
}
