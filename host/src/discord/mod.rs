//! The Discord bot: events and alerts to each server's channels ([`DiscordSink`]), and the
//! `/factorio` commands ([`handler`]), with serenity.
//!
//! ```text
//! pipeline delivery ──events, alerts──► DiscordSink ──REST──► channels
//! gateway ──interactions──► handler ──tiers, cooldowns──► answer ──RCON (safe commands)──► game
//! ```
//!
//! Serenity runs the gateway; every REST call goes through [`rest`] under one
//! [retry policy](retry), and everything sent is first cut to Discord's [`limits`].
//!
//! `DISCORD_API_URL` points the REST calls at another base URL (an HTTP proxy such as
//! twilight-http-proxy, or the fake Discord of the tests); the gateway URL is then whatever
//! that endpoint's `/gateway` says. Rate limits are obeyed the same way with or without it.

mod bot;
pub mod commands;
pub mod rest;
mod roles;
pub mod sinks;

pub use bot::handler::Handler;
pub use bot::selection::Selections;
pub use bot::{Bot, COMMANDS};
pub use commands::definitions::{Command, MOVED, definitions, definitions_json, help};
pub use commands::parse::{Request, parse};
pub use commands::tiers::{Gate, Refusal, Resolved, Tier};
pub use rest::{limits, payload, retry};
pub use roles::RoleDirectory;
pub use sinks::channels::DiscordSink;
pub use sinks::webhook::WebhookSink;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serenity::all::{GatewayIntents, HttpBuilder};

use crate::alert::Mentions;
use crate::config::{DiscordSettings, EventRules, Secret};
use crate::observe::health::{Health, Part};
use crate::servers::Server;

pub use factorio_isr_text::escape;

/// The bot, connecting: its REST client for the sinks, and the handle that gives the
/// command handler its servers once they run.
pub struct Discord {
    pub rest: Arc<rest::Rest>,
    pub roles: Arc<RoleDirectory>,
    pub health: Health,
    bot: Arc<Bot>,
    client: serenity::Client,
}

/// Each channel that belongs to exactly one server (its event, alert, status, chat-bridge
/// or per-kind channel), with that server's tag. A channel that several servers share
/// (one `#alerts` for all) belongs to none.
pub(crate) fn server_channels(servers: &[crate::config::ServerConfig]) -> Vec<(u64, String)> {
    let mut owners: std::collections::BTreeMap<u64, Vec<&str>> = Default::default();
    for s in servers {
        let rules = EventRules::new(&s.events);
        let kinds = s.events.keys().filter_map(|k| rules.of(k).channel_id);
        let mut mine: Vec<u64> = [
            s.event_channel_id,
            s.alert_channel_id,
            s.status_channel_id,
            s.chat_bridge_channel_id,
        ]
        .into_iter()
        .flatten()
        .chain(kinds)
        .collect();
        mine.sort_unstable();
        mine.dedup();
        for c in mine {
            owners.entry(c).or_default().push(&s.tag);
        }
    }
    owners
        .into_iter()
        .filter_map(|(c, tags)| match tags[..] {
            [only] => Some((c, only.to_owned())),
            _ => None,
        })
        .collect()
}

impl Discord {
    /// The users' chosen servers kept in `state_dir` (one instance).
    pub fn selections_in(state_dir: &Path, state: crate::store::StateReport) -> Selections {
        Selections::load(Arc::new(crate::store::FileStore::new(state_dir)), state)
    }

    /// Builds the client (nothing is connected yet).
    pub async fn build(
        token: &Secret,
        api_url: Option<&str>,
        settings: &DiscordSettings,
        servers: &[crate::config::ServerConfig],
        mentions: Arc<Mentions>,
        selections: Selections,
        state: crate::store::StateReport,
    ) -> anyhow::Result<Self> {
        let health = state.health().clone();
        let mut http = HttpBuilder::new(token.expose());
        if let Some(url) = api_url {
            // Serenity's own few calls (the gateway's address): it applies a proxy only with
            // its rate limiter off.
            http = http.proxy(url).ratelimiter_disabled(true);
        }
        let rest = Arc::new(rest::Rest::new(api_url, Some(token.clone())));
        let roles = Arc::new(RoleDirectory::new(mentions, settings.guild_id));
        health.register(&Part::Discord);
        health.register(COMMANDS);
        let bridges: Vec<(u64, String)> = servers
            .iter()
            .filter_map(|s| s.chat_bridge_channel_id.map(|c| (c, s.tag.clone())))
            .collect();
        // Reading messages needs the privileged message content intent: asked for only
        // when a chat bridge is configured.
        let intents = if bridges.is_empty() {
            GatewayIntents::GUILDS
        } else {
            GatewayIntents::GUILDS
                | GatewayIntents::GUILD_MESSAGES
                | GatewayIntents::MESSAGE_CONTENT
        };
        let bot = Arc::new(Bot {
            rest: rest.clone(),
            servers: OnceLock::new(),
            reloader: OnceLock::new(),
            gate: Gate::new(settings.clone()),
            guild_id: settings.guild_id,
            selections,
            roles: roles.clone(),
            health,
            bridges,
            channels: parking_lot::RwLock::new(server_channels(servers)),
            notices: servers
                .iter()
                .filter_map(|s| {
                    s.event_channel_id
                        .map(|c| (c, s.name.clone().unwrap_or_else(|| s.tag.clone())))
                })
                .collect(),
            started: Default::default(),
            context: Default::default(),
            lifecycle_notices: std::sync::atomic::AtomicBool::new(true),
            ended: Default::default(),
        });
        let client = serenity::all::ClientBuilder::new_with_http(http.build(), intents)
            .event_handler(Handler(bot.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot set up the Discord client: {e}"))?;
        Ok(Self {
            rest,
            roles,
            health: bot.health.clone(),
            bot,
            client,
        })
    }

    /// The bot, for what changes while it runs ([`Bot::take_config`]).
    pub fn bot(&self) -> Arc<Bot> {
        self.bot.clone()
    }

    /// Cluster mode: no "watching" and "stopped watching" notices, since one instance's
    /// gateway term starting or ending is not the system's.
    pub fn without_lifecycle_notices(self) -> Self {
        self.bot
            .lifecycle_notices
            .store(false, std::sync::atomic::Ordering::Release);
        self
    }

    /// Connects, with the live servers for the commands; reconnects by itself until `stop`
    /// turns true.
    pub fn start(
        mut self,
        servers: Arc<Vec<Server>>,
        reloader: Arc<crate::reload::Reloader>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.bot.servers.set(servers);
        let _ = self.bot.reloader.set(reloader);
        let health = self.bot.health.clone();
        let shards = self.client.shard_manager.clone();
        let bot = self.bot.clone();
        tokio::spawn(async move {
            let run = self.client.start();
            let stopping = tokio::select! {
                ended = run => {
                    if let Err(e) = ended {
                        tracing::error!("the Discord connection ended: {e}");
                        health.error(&Part::Discord, format!("the Discord connection ended: {e}"));
                        health.set(&Part::Discord, crate::observe::health::State::Down, None);
                    }
                    false
                }
                _ = stop.wait_for(|s| *s) => true,
            };
            bot.ended.store(true, std::sync::atomic::Ordering::Release);
            if stopping {
                if bot
                    .lifecycle_notices
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    let bye = bot.announce(|name| {
                        format!("🔴 factorio-isr stopped watching **{}**.", escape(name))
                    });
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), bye).await;
                }
                shards.shutdown_all().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_mentions_defused() {
        assert_eq!(escape("bob_the*builder"), r"bob\_the\*builder");
        assert_eq!(escape("@everyone"), "@\u{200b}everyone");
    }
}
