//! Delivering a server's events and alerts to its Discord channels.
//!
//! Events are routed by their channel hint (`ServerConfig::channel_for`), and the lines
//! for one channel are packed into as few messages as Discord's 2,000-character limit
//! allows, so a busy server stays within the rate limits. Alerts are embeds of their own,
//! coloured by severity, and the only messages that may ping: the roles of their mention
//! group. Every message says who may be pinged (`allowed_mentions`), so a player typing
//! `@everyone` in the game pings nobody, and every message is cut to Discord's limits
//! before it is sent.
//!
//! Each message goes through the bot's [retry policy](super::retry): a 429 waits what
//! Discord asks, an outage is backed off while the server's queue waits (the log is the
//! buffer: nothing is read past what was delivered) up to the policy's patience; a message
//! Discord refuses (403, 404, 400) is dropped at once, counted and logged once per channel
//! and reason, and the messages behind it go on.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;

use super::limits::{self, cut};
use super::payload::{AllowedMentions, Embed, Field, Footer, Message};
use super::rest::{Failure, Rest};
use super::retry::{self, Policy, Retry};
use super::roles::RoleDirectory;
use crate::config::ServerConfig;
use crate::event::{Event, Severity};
use crate::observe::health::Health;
use crate::observe::metrics::Metrics;
use crate::sink::{Delivery, Sink, console, pack_messages};

/// One server's Discord channels.
pub struct DiscordSink {
    rest: Arc<Rest>,
    server: ServerConfig,
    roles: Arc<RoleDirectory>,
    metrics: Option<Arc<Metrics>>,
    health: Option<Health>,
    policy: Policy,
    /// When each (player, group) last pinged from game chat.
    chat_pings: Mutex<std::collections::HashMap<(String, String), Instant>>,
    /// (channel, status, code) of refusals already logged at warning level.
    refusals_logged: Mutex<HashSet<(u64, u16, Option<i64>)>>,
}

/// How often one player may ping one group from game chat.
const CHAT_PING_EVERY: Duration = Duration::from_secs(60);

/// A message ready to send.
struct Outgoing {
    channel: u64,
    message: Message,
}

impl DiscordSink {
    /// The sink of `server`'s events.
    pub fn new(
        rest: Arc<Rest>,
        server: ServerConfig,
        roles: Arc<RoleDirectory>,
        metrics: Option<Arc<Metrics>>,
        health: Option<Health>,
    ) -> Self {
        Self {
            rest,
            server,
            roles,
            metrics,
            health,
            policy: Policy::DELIVERY,
            chat_pings: Default::default(),
            refusals_logged: Default::default(),
        }
    }

    /// Gives up on a message after `patience` instead of the delivery policy's (for tests).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.policy = self.policy.with_patience(patience);
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
                        message: Message::text(text),
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
                    // A line that pings goes alone, so the roles it may ping are its own;
                    // the line is cut so that the pings always fit.
                    flush(&mut run, &mut out);
                    let tags: Vec<String> = pings.iter().map(|id| format!("<@&{id}>")).collect();
                    let tags = tags.join(" ");
                    let room = limits::CONTENT.saturating_sub(limits::length(&tags) + 1);
                    out.push(Outgoing {
                        channel,
                        message: Message {
                            allowed_mentions: AllowedMentions { roles: pings },
                            ..Message::text(format!("{} {tags}", cut(&line(e), room)))
                        },
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
            ids.extend(self.roles.role_ids(&self.rest, &group).await);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    async fn alert(&self, e: &Event) -> Message {
        let title = e.field("title").unwrap_or("Alert");
        let emoji = e.emoji.as_deref().unwrap_or("");
        // The emoji prefix is kept and the title cut after it, never pushed past 256.
        let title = format!(
            "{emoji} {}",
            cut(title, limits::EMBED_TITLE - limits::length(emoji) - 1)
        )
        .trim()
        .to_owned();
        let fields = e
            .fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "source" | "key" | "title"))
            .filter(|(_, v)| !v.is_empty())
            .take(10)
            .map(|(k, v)| Field {
                name: k.clone(),
                value: v.clone(),
                inline: true,
            })
            .collect();
        let embed = Embed {
            title,
            description: e.message.clone().unwrap_or_default(),
            color: colour(e),
            footer: Some(Footer {
                text: format!(
                    "{} · {}",
                    e.field("source").unwrap_or("?"),
                    e.field("key").unwrap_or("?")
                ),
            }),
            fields,
        };
        let mut message = Message {
            embeds: vec![embed],
            ..Message::default()
        };
        if let Some(group) = &e.mention {
            let ids = self.roles.role_ids(&self.rest, group).await;
            if !ids.is_empty() {
                let pings: Vec<String> = ids.iter().map(|id| format!("<@&{id}>")).collect();
                message.content = pings.join(" ");
                message.allowed_mentions.roles = ids;
            }
        }
        message
    }

    fn count(&self, outcome: &str, n: u64) {
        if let Some(m) = &self.metrics {
            m.discord_messages
                .with_label_values(&[&self.server.tag, outcome])
                .inc_by(n);
        }
    }

    /// Sends one message under the delivery policy: sent, or dropped (refused at once, or
    /// given up after the policy's patience), never left blocking the queue for ever.
    async fn send(&self, o: Outgoing) {
        let body = match serde_json::to_value(o.message.fit()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(server = %self.server.tag, "cannot encode a message: {e}");
                return;
            }
        };
        let path = format!("/channels/{}/messages", o.channel);
        let attempt = || async {
            let t = Instant::now();
            let result = self.rest.api(Method::POST, &path, Some(&body)).await;
            if let Some(m) = &self.metrics {
                m.discord_latency.observe(t.elapsed().as_secs_f64());
            }
            result
        };
        let on_retry = |kind: Retry, failure: &Failure, wait: Duration| match kind {
            Retry::RateLimited => {
                self.count("rate_limited", 1);
                tracing::debug!(server = %self.server.tag, "Discord rate-limited a message: waiting {wait:?}");
            }
            Retry::Backoff => {
                self.count("retried", 1);
                tracing::warn!(server = %self.server.tag, channel = o.channel, "Discord did not take a message ({failure}); retrying in {} ms", wait.as_millis());
            }
        };
        match retry::run(self.policy, attempt, on_retry).await {
            Ok(_) => self.count("sent", 1),
            Err(Failure::Refused(r)) => {
                self.count("refused", 1);
                let first = self
                    .refusals_logged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((o.channel, r.status, r.code));
                let text = format!("channel {}: a message was dropped: {r}", o.channel);
                if first {
                    tracing::warn!(server = %self.server.tag, "{text} (further ones like it are logged at debug level)");
                    if let Some(h) = &self.health {
                        h.error("discord", format!("{}: {text}", self.server.tag));
                    }
                } else {
                    tracing::debug!(server = %self.server.tag, "{text}");
                }
            }
            Err(e) => {
                self.count("dropped", 1);
                tracing::error!(server = %self.server.tag, channel = o.channel, "a Discord message was dropped after {} s: {e}", self.policy.patience.as_secs());
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

/// The embed's colour: green resolved, red critical, orange warning, gold notice, else blue.
fn colour(e: &Event) -> u32 {
    if e.kind == "alert-resolved" {
        return 0x1F8B4C;
    }
    match e.severity {
        Severity::Critical => 0xE74C3C,
        Severity::Warning => 0xE67E22,
        Severity::Notice => 0xF1C40F,
        _ => 0x3498DB,
    }
}

impl Sink for DiscordSink {
    fn name(&self) -> &str {
        "discord"
    }

    fn patience(&self) -> Duration {
        // Every message is retried inside `deliver`, which never fails a batch.
        self.policy.patience + Duration::from_secs(60)
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
