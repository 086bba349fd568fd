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

use tokio::sync::watch;

use super::server::Fences;

mod gateway;
mod identity;
mod ownership;

use crate::cluster::{Cluster, Status, View, placement};
use crate::observe::Telemetry;
use crate::observe::health::{Part, State};
use crate::servers::Server;
pub(in crate::app) use gateway::{GatewayBuilder, GatewayParts};
use gateway::{Pace, Term};

/// How long an instance must have been a member before servers move back to it.
pub(super) const SETTLE: Duration = Duration::from_secs(10);
/// The wait per place in a server's ranking before campaigning for it.
const STEP: Duration = Duration::from_millis(750);
/// How often etcd is read.
const TICK: Duration = Duration::from_millis(250);

/// Which members may own server `tag`, and whether this instance (`me`, with its own
/// digests `mine`) is one: those whose entry of it is the one most members have (a tie goes
/// to the smallest digest), and those of an earlier release that publish no digests. A
/// member whose servers.yml lacks the server may not own it.
fn eligible(
    tag: &str,
    view: &View,
    members: &[String],
    me: &str,
    mine: Option<&std::collections::BTreeMap<String, String>>,
) -> (Vec<String>, bool) {
    // A member's say: none (no digests, or not in the view yet), else its digest of the
    // server (none: its file lacks it). This instance's own comes from its file.
    let say = |m: &String| -> Option<Option<&String>> {
        if m == me {
            return mine.map(|c| c.get(tag));
        }
        view.configs.get(m)?.as_ref().map(|c| c.get(tag))
    };
    let mut counts: std::collections::BTreeMap<&String, usize> = Default::default();
    for d in members.iter().filter_map(|m| say(m).flatten()) {
        *counts.entry(d).or_default() += 1;
    }
    let most = counts.values().copied().max();
    let cluster = counts
        .into_iter()
        .find(|(_, n)| Some(*n) == most)
        .map(|(d, _)| d);
    let may = |m: &String| match say(m) {
        None => true,
        Some(d) => d.is_some() && d == cluster,
    };
    let all = members.iter().filter(|m| may(m)).cloned().collect();
    (all, may(&me.to_owned()))
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
    pub(super) shared: Telemetry,
    pub(super) gateway: Option<GatewayParts>,
    pub(super) status: watch::Sender<Status>,
    /// Where this instance remembers the cluster's identity (`cluster-id`).
    pub(super) state_dir: std::path::PathBuf,
    /// The checkpoint name of every configured log.
    pub(super) logs: Vec<String>,
    /// The checkpoints, for what this instance knows of them when etcd lost them.
    pub(super) checkpoints: crate::tail::checkpoint::CheckpointStore,
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
    /// When the next gateway session may start.
    pace: Pace,
    /// The servers whose entry differs here from the cluster's, as last said.
    differs: Vec<String>,
    /// When this instance found etcd without the cluster's state it had seen.
    state_lost: Option<Instant>,
    /// Whether this instance gave etcd back what it knew since the state was last lost.
    gave_back: bool,
    /// The cluster's identity, as this instance knows it (from etcd, or its state folder).
    identity: Option<String>,
    /// When the logs' checkpoints were last looked at while the state is marked lost.
    marker_checked: Option<Instant>,
}

/// How long `/ready` shows that etcd lost the cluster's state, after it was found.
const LOST_SHOWN: Duration = Duration::from_secs(600);

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
        self.shared.health.register(&Part::Cluster);
        let mut memory = Memory {
            identity: self.remembered_identity().await,
            ..Memory::default()
        };
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
        if !self.cluster.lease.valid() {
            self.no_lease(wants, memory, term).await;
            return;
        }
        let Some(view) = self.read_view(memory).await else {
            return;
        };
        self.identity_tick(&view, memory).await;
        self.state_lost_health(&view, memory);
        let members = self.members(&view, memory);
        let gateway_mine = self.gateway_tick(&view, &members, memory, term).await;
        let mine = self.cluster.me().config;
        let mut differs = Vec::new();
        for (server, want) in self.servers.iter().zip(wants) {
            let (may_own, agrees) = eligible(
                &server.tag,
                &view,
                &members,
                &self.cluster.id,
                mine.as_ref(),
            );
            self.shared
                .metrics
                .cluster
                .config_differs
                .with_label_values(&[&server.tag])
                .set(i64::from(!agrees));
            if agrees {
                self.server_tick(server, want, &view, &may_own, memory)
                    .await;
                self.held(server, gateway_mine);
            } else {
                differs.push(server.tag.clone());
                let why = "its entry in this instance's servers.yml differs from the cluster's";
                self.drop_server(server, want, memory, why);
            }
        }
        if let Some(mine) = &mine {
            differs.extend(self.not_in_my_file(&view, mine));
        }
        self.config_health(&differs, memory);
        self.publish(Some(&view), memory);
    }

    /// Without a valid lease this instance owns nothing: every server and the gateway go.
    async fn no_lease(
        &self,
        wants: &[watch::Sender<Want>],
        memory: &mut Memory,
        term: &mut Option<Term>,
    ) {
        let why = match self.cluster.duplicate() {
            Some(other) => format!(
                "another instance with this instance's id `{}` is live ({other}): this one stays out of the cluster",
                self.cluster.id
            ),
            None => "no valid lease: etcd is unreachable, or this instance is joining".into(),
        };
        self.shared
            .health
            .set(&Part::Cluster, State::Down, Some(why));
        for (server, want) in self.servers.iter().zip(wants) {
            self.drop_server(server, want, memory, "this instance has no valid lease");
        }
        if let Some(t) = term.take() {
            tracing::warn!("giving the Discord gateway up: this instance has no valid lease");
            self.end_term(t).await;
        }
        self.publish(None, memory);
    }

    /// The cluster's state as etcd has it now; none (logged once per problem) if etcd does
    /// not answer in time.
    async fn read_view(&self, memory: &mut Memory) -> Option<View> {
        let problem = match tokio::time::timeout(TICK * 4, self.cluster.view()).await {
            Ok(Ok(view)) => {
                if memory.problem.take().is_some() {
                    tracing::info!("etcd answers again");
                }
                return Some(view);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "etcd did not answer in time".to_owned(),
        };
        if memory.problem.as_ref() != Some(&problem) {
            tracing::warn!("cannot read the cluster's state: {problem}");
        }
        memory.problem = Some(problem);
        None
    }

    /// `cluster` in health: degraded while (and shortly after) etcd lost the state.
    fn state_lost_health(&self, view: &View, memory: &Memory) {
        let lost_for = memory.state_lost.map(|at| at.elapsed());
        if !view.state_lost && lost_for.is_none_or(|d| d >= LOST_SHOWN) {
            self.shared.health.set(&Part::Cluster, State::Ready, None);
            return;
        }
        let ago = lost_for.map_or(String::new(), |d| format!(" {} s ago", d.as_secs()));
        let until = if view.state_lost {
            ", until every log has one again"
        } else {
            "; every log has one again"
        };
        self.shared.health.set(
            &Part::Cluster,
            State::Degraded,
            Some(format!(
                "etcd lost the cluster's state{ago} (wiped or replaced): checkpoints missing there are taken as lost (on_lost_checkpoint){until}"
            )),
        );
    }

    /// The live instances (this one included), each remembered from when it was first seen.
    fn members(&self, view: &View, memory: &mut Memory) -> Vec<String> {
        let mut members = view.members.clone();
        if !members.contains(&self.cluster.id) {
            members.push(self.cluster.id.clone());
        }
        let now = Instant::now();
        memory.first_seen.retain(|m, _| members.contains(m));
        for m in &members {
            memory.first_seen.entry(m.clone()).or_insert(now);
        }
        members
    }

    /// Holds `server`'s RCON link open while this instance owns it or runs the gateway.
    fn held(&self, server: &Server, gateway_mine: bool) {
        let owned = self.owns(&server.tag);
        server.hold_rcon(owned || gateway_mine);
        self.shared
            .metrics
            .cluster
            .owner
            .with_label_values(&[&server.tag, &self.cluster.id])
            .set(i64::from(owned));
    }

    /// Servers the other instances have that this instance's file lacks: it cannot own them.
    fn not_in_my_file(
        &self,
        view: &View,
        mine: &std::collections::BTreeMap<String, String>,
    ) -> Vec<String> {
        let theirs: std::collections::BTreeSet<&String> = view
            .configs
            .iter()
            .filter(|(m, _)| **m != self.cluster.id)
            .filter_map(|(_, c)| c.as_ref())
            .flat_map(|c| c.keys())
            .collect();
        theirs
            .into_iter()
            .filter(|t| !mine.contains_key(*t))
            .cloned()
            .collect()
    }

    /// Says in `/ready` (`cluster:config`) which servers this instance does not own because
    /// its servers.yml differs from the cluster's there; logged when that changes.
    fn config_health(&self, differs: &[String], memory: &mut Memory) {
        if memory.differs.as_slice() != differs {
            if differs.is_empty() {
                tracing::info!("this instance's servers.yml agrees with the cluster's again");
            } else {
                tracing::error!(
                    servers = %differs.join(", "),
                    "this instance's servers.yml differs from the cluster's for these servers: it does not own them until it agrees"
                );
            }
            memory.differs = differs.to_vec();
        }
        let health = &self.shared.health;
        if differs.is_empty() {
            health.set(&Part::ClusterConfig, State::Ready, None);
        } else {
            health.set(
                &Part::ClusterConfig,
                State::Degraded,
                Some(format!(
                    "servers.yml here differs from the cluster's for {}: this instance does not own them",
                    differs.join(", ")
                )),
            );
        }
    }

    fn owns(&self, tag: &str) -> bool {
        self.fences.lock().contains_key(tag)
    }

    fn publish(&self, view: Option<&View>, memory: &Memory) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let status = match view {
            None => Status {
                instance: self.cluster.id.clone(),
                lease_valid: false,
                seen_at_ms: now_ms,
                duplicate: self.cluster.duplicate(),
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
                config_differs: memory.differs.clone(),
                duplicate: None,
                state_lost: memory.state_lost.is_some(),
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
                let mut all = fences.lock();
                if all.get(&server.tag).is_some_and(|f| f.token() == token)
                    && let Some(f) = all.remove(&server.tag)
                {
                    f.lose();
                }
            }
        }
    }
}

impl Manager {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_members_that_agree_on_a_server_may_own_it() {
        let config = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(t, d)| ((*t).to_owned(), (*d).to_owned()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        };
        let mut view = View::default();
        let members: Vec<String> = ["a", "b", "c", "old"].map(String::from).to_vec();
        view.configs
            .insert("b".into(), config(&[("prod", "x"), ("beta", "y")]));
        view.configs.insert("c".into(), config(&[("prod", "z")]));
        view.configs.insert("old".into(), None);
        let mine = config(&[("prod", "x"), ("beta", "y")]);
        // prod: a and b say x, c says z: c may not own it; the earlier release may.
        let (may, agrees) = eligible("prod", &view, &members, "a", mine.as_ref());
        assert_eq!(may, ["a", "b", "old"]);
        assert!(agrees);
        // beta: c's file lacks it.
        let (may, _) = eligible("beta", &view, &members, "a", mine.as_ref());
        assert_eq!(may, ["a", "b", "old"]);
        // From c's side: it differs on prod, and does not have beta at all.
        let (_, agrees) = eligible(
            "prod",
            &view,
            &members,
            "c",
            config(&[("prod", "z")]).as_ref(),
        );
        assert!(!agrees);
        // A tie goes to the smallest digest.
        let two: Vec<String> = ["b", "c"].map(String::from).to_vec();
        let (may, _) = eligible("prod", &view, &two, "b", config(&[("prod", "x")]).as_ref());
        assert_eq!(may, ["b"]);
    }
}
