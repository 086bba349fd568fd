//! Delivering a server's events and alerts to its Discord channels.
//!
//! Events are routed by their channel hint (`ServerConfig::channel_for`), and the lines
//! for one channel are packed into as few messages as Discord's 2,000-character limit
//! allows, so a busy server stays within the rate limits. Alerts are embeds of their own,
//! coloured by severity, and the only messages that may ping: the roles of their mention
//! group. Every message says who may be pinged (`allowed_mentions`), so a player typing
//! `@everyone` in the game pings nobody.
//!
//! A 429 is waited out (by serenity's rate limiter, or here behind a proxy); any other failure is retried with
//! backoff while the server's queue waits (the log is the buffer: nothing is read past
//! what was delivered), up to [`PATIENCE`]; a message still not delivered then is dropped,
//! counted and logged, and the rest goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serenity::all::{
    ChannelId, Colour, CreateAllowedMentions, CreateEmbed, CreateEmbedFooter, CreateMessage, Http,
};

use super::roles::RoleDirectory;
use crate::config::ServerConfig;
use crate::event::{Event, Severity};
use crate::metrics::Metrics;
use crate::sink::{Delivery, Sink, console, pack_messages};

/// How long one message may be retried before it is dropped.
pub const PATIENCE: Duration = Duration::from_secs(600);
/// The wait after a 429 that serenity did not wait out itself.
const RATE_LIMIT_WAIT: Duration = Duration::from_millis(1000);

/// One server's Discord channels.
pub struct DiscordSink {
    http: Arc<Http>,
    server: ServerConfig,
    roles: Arc<RoleDirectory>,
    metrics: Option<Arc<Metrics>>,
    patience: Duration,
    /// When each (player, group) last pinged from game chat.
    chat_pings: std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>,
}

/// How often one player may ping one group from game chat.
const CHAT_PING_EVERY: Duration = Duration::from_secs(60);

/// A message ready to send.
struct Outgoing {
    channel: u64,
    message: CreateMessage,
}

impl DiscordSink {
    /// The sink of `server`'s events.
    pub fn new(
        http: Arc<Http>,
        server: ServerConfig,
        roles: Arc<RoleDirectory>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            http,
            server,
            roles,
            metrics,
            patience: PATIENCE,
            chat_pings: Default::default(),
        }
    }

    /// Gives up on a message after `patience` instead of [`PATIENCE`] (for tests).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    async fn messages(&self, events: &[Event]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        // Plain lines, per channel, in order; alerts break a run so order is kept.
        let mut run: Vec<(u64, String)> = Vec::new();
        let flush = |run: &mut Vec<(u64, String)>, out: &mut Vec<Outgoing>| {
            let mut channels: Vec<u64> = run.iter().map(|(c, _)| *c).collect();
            channels.sort_unstable();
            channels.dedup();
            for channel in channels {
                let lines = run
                    .iter()
                    .filter(|(c, _)| *c == channel)
                    .map(|(_, l)| l.clone());
                for text in pack_messages(lines) {
                    out.push(Outgoing {
                        channel,
                        message: CreateMessage::new()
                            .content(text)
                            .allowed_mentions(CreateAllowedMentions::new()),
                    });
                }
            }
            run.clear();
        };
        for e in events {
            let Some(channel) = self.server.channel_for(e.channel.as_deref()) else {
                self.count("no_channel", 1);
                continue;
            };
            if e.kind == "alert" || e.kind == "alert-resolved" {
                flush(&mut run, &mut out);
                out.push(Outgoing {
                    channel,
                    message: self.alert(e).await,
                });
            } else {
                let pings = self.chat_pings(e).await;
                if pings.is_empty() {
                    run.push((channel, line(e)));
                } else {
                    // A line that pings goes alone, so the roles it may ping are its own.
                    flush(&mut run, &mut out);
                    let tags: Vec<String> = pings.iter().map(|id| format!("<@&{id}>")).collect();
                    out.push(Outgoing {
                        channel,
                        message: CreateMessage::new()
                            .content(format!("{} {}", line(e), tags.join(" ")))
                            .allowed_mentions(CreateAllowedMentions::new().roles(pings)),
                    });
                }
            }
        }
        flush(&mut run, &mut out);
        out
    }

    /// The roles a player's chat line pings, as in the Python bot: each `@word` that names
    /// a mention group (at most three per line, each player and group at most once a
    /// minute). `@everyone` and `@here` name no group, so they never ping.
    async fn chat_pings(&self, e: &Event) -> Vec<u64> {
        if !matches!(e.kind.as_str(), "chat" | "shout") {
            return Vec::new();
        }
        let (Some(player), Some(message)) = (&e.player, &e.message) else {
            return Vec::new();
        };
        let mut groups: Vec<String> = message
            .split_whitespace()
            .filter(|w| w.starts_with('@'))
            .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()))
            .filter_map(|w| self.roles.group_for_word(w))
            .collect();
        groups.dedup();
        groups.truncate(3);
        let mut ids = Vec::new();
        for group in groups {
            let now = Instant::now();
            {
                let mut last = self.chat_pings.lock().unwrap_or_else(|p| p.into_inner());
                let key = (player.clone(), group.clone());
                if last
                    .get(&key)
                    .is_some_and(|t| now.duration_since(*t) < CHAT_PING_EVERY)
                {
                    continue;
                }
                if last.len() > 10_000 {
                    last.retain(|_, t| now.duration_since(*t) < CHAT_PING_EVERY);
                }
                last.insert(key, now);
            }
            ids.extend(self.roles.role_ids(&self.http, &group).await);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    async fn alert(&self, e: &Event) -> CreateMessage {
        let title = e.field("title").unwrap_or("Alert");
        let mut embed = CreateEmbed::new()
            .title(
                format!("{} {}", e.emoji.as_deref().unwrap_or(""), title)
                    .trim()
                    .to_owned(),
            )
            .description(e.message.clone().unwrap_or_default())
            .colour(colour(e))
            .footer(CreateEmbedFooter::new(format!(
                "{} · {}",
                e.field("source").unwrap_or("?"),
                e.field("key").unwrap_or("?")
            )));
        for (k, v) in e
            .fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "source" | "key" | "title"))
            .take(10)
        {
            if !v.is_empty() {
                embed = embed.field(k, v, true);
            }
        }
        let mut allowed = CreateAllowedMentions::new();
        let mut message = CreateMessage::new().embed(embed);
        if let Some(group) = &e.mention {
            let ids = self.roles.role_ids(&self.http, group).await;
            if !ids.is_empty() {
                let pings: Vec<String> = ids.iter().map(|id| format!("<@&{id}>")).collect();
                message = message.content(pings.join(" "));
                allowed = allowed.roles(ids);
            }
        }
        message.allowed_mentions(allowed)
    }

    fn count(&self, outcome: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.discord_messages
                .with_label_values(&[&self.server.tag, outcome])
                .inc_by(n);
        }
    }

    /// Sends one message, retrying failures (not 429s: serenity waits those out) with
    /// backoff until it is sent or `patience` has passed.
    async fn send(&self, o: Outgoing) {
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            let t = Instant::now();
            let result = ChannelId::new(o.channel)
                .send_message(&self.http, o.message.clone())
                .await;
            if let Some(m) = &self.metrics {
                m.discord_latency.observe(t.elapsed().as_secs_f64());
            }
            match result {
                Ok(_) => {
                    self.count("sent", 1);
                    return;
                }
                Err(e) => {
                    // With the rate limiter on (talking to Discord itself), serenity waits
                    // out 429s before they get here; behind `DISCORD_API_URL` it is off, and
                    // a 429 is waited out here, a second at a time.
                    let limited = matches!(&e, serenity::Error::Http(serenity::all::HttpError::UnsuccessfulRequest(r)) if r.status_code.as_u16() == 429);
                    if limited && started.elapsed() < self.patience {
                        self.count("rate_limited", 1);
                        tracing::debug!(server = %self.server.tag, "Discord rate-limited a message; waiting");
                        tokio::time::sleep(RATE_LIMIT_WAIT).await;
                        continue;
                    }
                    if started.elapsed() + wait > self.patience {
                        self.count("dropped", 1);
                        tracing::error!(server = %self.server.tag, channel = o.channel, "a Discord message was dropped after {} s of failures: {e}", started.elapsed().as_secs());
                        return;
                    }
                    self.count("retried", 1);
                    tracing::warn!(server = %self.server.tag, channel = o.channel, "Discord refused a message ({e}); retrying in {} ms", wait.as_millis());
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// An event as one line of a message: its emoji and its text (Markdown as the parser made it).
fn line(e: &Event) -> String {
    let body = console::body(e);
    match &e.emoji {
        Some(emoji) => format!("{emoji} {body}"),
        None => body,
    }
}

fn colour(e: &Event) -> Colour {
    if e.kind == "alert-resolved" {
        return Colour::DARK_GREEN;
    }
    match e.severity {
        Severity::Critical => Colour::RED,
        Severity::Warning => Colour::ORANGE,
        Severity::Notice => Colour::GOLD,
        _ => Colour::BLUE,
    }
}

impl Sink for DiscordSink {
    fn name(&self) -> &str {
        "discord"
    }

    fn patience(&self) -> Duration {
        // Every message is retried inside `deliver`, which never fails a batch.
        self.patience + Duration::from_secs(60)
    }

    fn deliver<'a>(&'a self, _server: &'a str, events: &'a [Event]) -> Delivery<'a> {
        Box::pin(async move {
            for o in self.messages(events).await {
                self.send(o).await;
            }
            Ok(())
        })
    }
}
