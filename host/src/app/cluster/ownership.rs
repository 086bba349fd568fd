//! One server's ownership, each tick: campaign for it when it is free and this instance's
//! turn has come, hand it back to its preferred instance once that one has settled, and
//! stop it the moment another instance holds it.

use std::time::Instant;

use tokio::sync::watch;

use super::{Manager, Memory, SETTLE, Want};
use crate::cluster::{View, placement};
use crate::servers::Server;

impl Manager {
    /// One server's turn: keep it, hand it back to the instance it belongs to, let it go,
    /// or campaign for it when it is free.
    pub(super) async fn server_tick(
        &self,
        server: &Server,
        want: &watch::Sender<Want>,
        view: &View,
        members: &[String],
        memory: &mut Memory,
    ) {
        let tag = &server.tag;
        let me = &self.cluster.id;
        let mine = self.fences.lock().get(tag).cloned();
        let handing_back = matches!(*want.borrow(), Want::HandBack(_));
        match (mine, view.owners.get(tag)) {
            (Some(f), Some(h)) if h.token == f.token() && f.valid() => {
                memory.free_since.remove(tag);
                if !handing_back {
                    self.maybe_hand_back(tag, f.token(), want, members, memory);
                }
            }
            (Some(_), _) if handing_back => {}
            (Some(_), _) => {
                let why = "another instance owns it now, or its key expired";
                self.drop_server(server, want, memory, why);
            }
            (None, Some(h)) => {
                memory.free_since.remove(tag);
                if h.instance != *me {
                    self.checkpoints.forget_server(tag);
                }
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
                if self.due(tag, members, memory) {
                    self.campaign(server, want, memory).await;
                }
            }
        }
    }

    /// Hands `tag` back when the instance it belongs to has been live, and this one has
    /// owned it, long enough to settle.
    fn maybe_hand_back(
        &self,
        tag: &str,
        token: i64,
        want: &watch::Sender<Want>,
        members: &[String],
        memory: &Memory,
    ) {
        let ranked = placement::ranked(tag, members);
        let settled = |since: Option<&Instant>| since.is_some_and(|t| t.elapsed() >= SETTLE);
        if let Some(&preferred) = ranked.first()
            && preferred != self.cluster.id.as_str()
            && settled(memory.first_seen.get(preferred))
            && settled(memory.owned_since.get(tag))
        {
            tracing::info!(server = %tag, to = preferred, "handing the server back to the instance it belongs to");
            want.send_replace(Want::HandBack(token));
        }
    }

    /// Campaigns for a free server and, elected, starts it.
    async fn campaign(&self, server: &Server, want: &watch::Sender<Want>, memory: &mut Memory) {
        let tag = &server.tag;
        let key = self.cluster.owner_key(tag);
        match self.cluster.campaign(&key).await {
            Ok(Some(token)) => {
                let fence = self.cluster.fence(&format!("server {tag}"), key, token);
                tracing::info!(server = %tag, token, "this instance owns the server now; starting it");
                self.fences.lock().insert(tag.clone(), fence);
                memory.owned_since.insert(tag.clone(), Instant::now());
                memory.free_since.remove(tag);
                server.hold_rcon(true);
                want.send_replace(Want::Run);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(server = %tag, "campaign failed: {e}"),
        }
    }

    /// Stops server `tag` at once: its fence is lost.
    pub(super) fn drop_server(
        &self,
        server: &Server,
        want: &watch::Sender<Want>,
        memory: &mut Memory,
        why: &str,
    ) {
        let held = self.fences.lock().remove(&server.tag);
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
}
