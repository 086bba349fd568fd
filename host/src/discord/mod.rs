//! The Discord bot: events and alerts to each server's channels ([`DiscordSink`]), and the
//! `/factorio` commands ([`handler`]), with serenity.
//!
//! ```text
//! pipeline delivery ──events, alerts──► DiscordSink ──REST──► channels
//! gateway ──interactions──► handler ──tiers, cooldowns──► answer ──RCON (safe commands)──► game
//! ```
//!
//! `DISCORD_API_URL` points the REST calls at another base URL (an HTTP proxy such as
//! twilight-http-proxy, or the fake Discord of the tests); the gateway URL is then whatever
//! that endpoint's `/gateway` says, and serenity's own rate limiter is off (serenity uses
//! the proxy only then), so the sink waits out 429s itself.

mod answer;
mod commands;
mod handler;
mod roles;
mod selection;
mod sink;
mod tiers;

pub use commands::{Request, definition, help, parse};
pub use handler::{Bot, Handler};
pub use roles::RoleDirectory;
pub use selection::Selections;
pub use sink::DiscordSink;
pub use tiers::{Gate, MemberRole, Refusal, Tier};

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serenity::all::{GatewayIntents, HttpBuilder};

use crate::alert::Mentions;
use crate::config::{DiscordSettings, Secret};
use crate::health::Health;
use crate::servers::Server;

/// Player, server and surface names are the game's, not Markdown; mentions are defused too.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '_' | '~' | '`' | '|' | '>' | '\\' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
    }
    out
}

/// The bot, connecting: its REST client for the sinks, and the handle that gives the
/// command handler its servers once they run.
pub struct Discord {
    pub http: Arc<serenity::all::Http>,
    pub roles: Arc<RoleDirectory>,
    bot: Arc<Bot>,
    client: serenity::Client,
}

impl Discord {
    /// Builds the client (nothing is connected yet).
    pub async fn build(
        token: &Secret,
        api_url: Option<&str>,
        settings: &DiscordSettings,
        servers: &[crate::config::ServerConfig],
        mentions: Arc<Mentions>,
        state_dir: &Path,
        health: Health,
    ) -> anyhow::Result<Self> {
        let mut http = HttpBuilder::new(token.expose());
        if let Some(url) = api_url {
            // serenity applies the proxy only with its rate limiter off (the proxy is expected
            // to rate-limit); the Discord sink then waits out 429s itself.
            http = http.proxy(url).ratelimiter_disabled(true);
        }
        let roles = Arc::new(RoleDirectory::new(mentions, settings.guild_id));
        health.register("discord");
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
            servers: OnceLock::new(),
            reloader: OnceLock::new(),
            gate: Gate::new(settings.clone()),
            guild_id: settings.guild_id,
            selections: Selections::load(state_dir.join("discord-selections.json")),
            roles: roles.clone(),
            health,
            bridges,
            notices: servers
                .iter()
                .filter_map(|s| {
                    s.event_channel_id
                        .map(|c| (c, s.name.clone().unwrap_or_else(|| s.tag.clone())))
                })
                .collect(),
            announced: Default::default(),
        });
        let client = serenity::all::ClientBuilder::new_with_http(http.build(), intents)
            .event_handler(Handler(bot.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot set up the Discord client: {e}"))?;
        Ok(Self {
            http: client.http.clone(),
            roles,
            bot,
            client,
        })
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
        let (bot, http) = (self.bot.clone(), self.http.clone());
        tokio::spawn(async move {
            let run = self.client.start();
            let stopping = tokio::select! {
                ended = run => {
                    if let Err(e) = ended {
                        tracing::error!("the Discord connection ended: {e}");
                        health.error("discord", format!("the Discord connection ended: {e}"));
                        health.set("discord", crate::health::State::Down, None);
                    }
                    false
                }
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                let bye = bot.announce(&http, |name| {
                    format!("🔴 factorio-isr stopped watching **{}**.", escape(name))
                });
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), bye).await;
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
