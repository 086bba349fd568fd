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
//! Each message goes through the bot's [retry policy](crate::discord::rest::retry): a 429 waits what
//! Discord asks, an outage is backed off while the server's queue waits (the log is the
//! buffer: nothing is read past what was delivered) up to the policy's patience; a message
//! Discord refuses (403, 404, 400) is dropped at once, counted and logged once per channel
//! and reason, and the messages behind it go on.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::alert::{Notice, duration_text};
use crate::config::{EventRules, ServerConfig, Shown};
use crate::discord::rest::limits::{self, cut};
use crate::discord::rest::payload::{Message, Nonce};
use crate::discord::rest::retry::{self, Policy, Retry};
use crate::discord::rest::{Failure, Rest};
use crate::discord::roles::RoleDirectory;
use crate::observe::health::{Health, Part, State};
use crate::observe::metrics::Metrics;
use crate::sink::{Batch, Delivery, Sink};

mod alert;
mod outgoing;
mod pings;

use outgoing::{Outgoing, flush};

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
    /// What people are shown of each kind (servers.yml's `events:`).
    rules: EventRules,
    /// The message each coalesced kind is edited into, by (channel, kind).
    coalesced: Mutex<HashMap<(u64, String), Coalesced>>,
    /// Since when Discord has not taken a message (none: it takes them).
    outage: Mutex<Option<Instant>>,
    /// How long an outage must have held messages back for a note to say so.
    delay_note_after: Duration,
    /// Whether Discord refused a message in the batch under way (the sink stays degraded
    /// until a batch goes through whole).
    refused: std::sync::atomic::AtomicBool,
}

/// A delivery delayed at least this long by an outage is followed by a note saying so.
const DELAY_WORTH_SAYING: Duration = Duration::from_secs(30);

/// A message that events of one kind are coalesced into while they keep coming.
#[derive(Debug, Clone)]
struct Coalesced {
    /// None until Discord has said the message's id.
    message_id: Option<u64>,
    count: u64,
    last: Instant,
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
            roles,
            metrics,
            health,
            policy: Policy::DELIVERY,
            chat_pings: Default::default(),
            refusals_logged: Default::default(),
            rules: EventRules::new(&server.events),
            coalesced: Default::default(),
            outage: Mutex::new(None),
            delay_note_after: DELAY_WORTH_SAYING,
            refused: Default::default(),
            server,
        }
    }

    /// Gives up on a message after `patience` instead of the delivery policy's (for tests).
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.policy = self.policy.with_patience(patience);
        self
    }

    /// Notes a delay after an outage once it is `after` long instead of 30 s (for tests).
    pub fn with_delay_note_after(mut self, after: Duration) -> Self {
        self.delay_note_after = after;
        self
    }

    /// The messages of a batch, each with the events it carries; events that go nowhere
    /// (no channel, shown to nobody) are done at once.
    async fn messages(&self, batch: &Batch<'_>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        // Plain lines, per channel, in order; alerts break a run so order is kept.
        let mut run: Vec<(u64, String, usize)> = Vec::new();
        // Coalesced kinds: (channel, kind) → (their events in this batch, the last one's line).
        let mut coalesced: Vec<((u64, String), Vec<usize>, String)> = Vec::new();
        for (i, notice) in batch.events().iter().enumerate() {
            let policy = self.rules.of(notice.kind());
            let channel = policy
                .channel_id
                .or_else(|| self.server.channel_for(notice.channel()));
            let Some(channel) = channel else {
                self.count("no_channel", 1);
                batch.done([i]);
                continue;
            };
            if policy.shown == Shown::Off {
                batch.done([i]);
                continue;
            }
            let e = match notice {
                Notice::Event(e) => e,
                Notice::Alert(a) => {
                    flush(&mut run, &mut out);
                    out.push(Outgoing::post(channel, self.alert(a).await, vec![i]));
                    continue;
                }
            };
            if policy.shown == Shown::Coalesce {
                let key = (channel, e.kind.clone());
                match coalesced.iter_mut().find(|(k, ..)| *k == key) {
                    Some((_, of, last)) => {
                        of.push(i);
                        *last = e.line();
                    }
                    None => coalesced.push((key, vec![i], e.line())),
                }
            } else {
                let pings = self.chat_pings(e).await;
                if pings.is_empty() {
                    run.push((channel, e.line(), i));
                } else {
                    // A line that pings goes alone, so whom it may ping is its own; the
                    // line is cut so that the pings always fit.
                    flush(&mut run, &mut out);
                    let tags = pings.tags();
                    let room = limits::CONTENT.saturating_sub(limits::length(&tags) + 1);
                    out.push(Outgoing::post(
                        channel,
                        Message {
                            allowed_mentions: pings,
                            ..Message::text(format!("{} {tags}", cut(&e.line(), room)))
                        },
                        vec![i],
                    ));
                }
            }
        }
        flush(&mut run, &mut out);
        for ((channel, kind), of, last) in coalesced {
            out.push(self.coalesce(channel, kind, of, &last));
        }
        out
    }

    /// The message for `n` events of a coalesced `kind` (the last of them shown as `line`):
    /// an edit of the kind's message while events keep coming within its window, else a
    /// new message.
    fn coalesce(&self, channel: u64, kind: String, events: Vec<usize>, line: &str) -> Outgoing {
        let n = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let window = self.rules.of(&kind).window;
        let now = Instant::now();
        let mut all = self.coalesced.lock();
        let key = (channel, kind.clone());
        let entry = match all.get_mut(&key) {
            Some(c) if now.duration_since(c.last) <= window => {
                c.count += n;
                c.last = now;
                c.clone()
            }
            _ => {
                let fresh = Coalesced {
                    message_id: None,
                    count: n,
                    last: now,
                };
                all.insert(key, fresh.clone());
                fresh
            }
        };
        let text = if entry.count > 1 {
            let at = crate::event::unix_ms::millis(std::time::SystemTime::now()) / 1000;
            format!("{line} ×{}, last <t:{at}:t>", entry.count)
        } else {
            line.to_owned()
        };
        Outgoing {
            channel,
            message: Message::text(text),
            edit: entry.message_id,
            coalesce: Some(kind),
            events,
        }
    }

    /// Notes the id of the message a coalesced kind is now edited into (none: the next one
    /// is posted anew, with the count starting again).
    fn coalesced_into(&self, channel: u64, kind: &str, id: Option<u64>) {
        let mut all = self.coalesced.lock();
        match (all.get_mut(&(channel, kind.to_owned())), id) {
            (Some(c), Some(id)) => c.message_id = Some(id),
            (Some(_), None) => {
                all.remove(&(channel, kind.to_owned()));
            }
            (None, _) => {}
        }
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
    async fn send(&self, o: &mut Outgoing) {
        let mut sent = self.send_one(o).await;
        let Some(kind) = o.coalesce.take() else {
            return;
        };
        if let Sent::Gone = sent {
            // The message to edit was deleted: the count so far goes in a new one.
            o.edit = None;
            sent = self.send_one(o).await;
        }
        match sent {
            Sent::Took(answer) => self.coalesced_into(o.channel, &kind, message_id(&answer)),
            // The message is still there: the next edit brings its count up to date.
            Sent::Failed if o.edit.is_some() => {}
            _ => self.coalesced_into(o.channel, &kind, None),
        }
    }

    /// Posts (or edits) one message.
    async fn send_one(&self, o: &Outgoing) -> Sent {
        let body = match serde_json::to_value(o.message.clone().fit()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(server = %self.server.tag, "cannot encode a message: {e}");
                return Sent::Failed;
            }
        };
        let (method, path) = match o.edit {
            Some(id) => (
                Method::PATCH,
                format!("/channels/{}/messages/{id}", o.channel),
            ),
            None => (Method::POST, format!("/channels/{}/messages", o.channel)),
        };
        let attempt = || async {
            let t = Instant::now();
            let result = self.rest.api(method.clone(), &path, Some(&body)).await;
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
                self.failing(failure);
            }
        };
        match retry::run(self.policy, attempt, on_retry).await {
            Ok(answer) => {
                self.count(if o.edit.is_some() { "edited" } else { "sent" }, 1);
                self.took(o.channel).await;
                return Sent::Took(answer);
            }
            Err(Failure::Refused(r)) if o.edit.is_some() && r.status == 404 => {
                tracing::debug!(server = %self.server.tag, "the coalesced message is gone ({r}); posting a new one");
                return Sent::Gone;
            }
            Err(Failure::Refused(r)) => {
                self.count("refused", 1);
                self.refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let first = self
                    .refusals_logged
                    .lock()
                    .insert((o.channel, r.status, r.code));
                let text = format!("channel {}: a message was dropped: {r}", o.channel);
                if let Some(h) = &self.health {
                    h.error(&self.component(), text.clone());
                }
                if first {
                    tracing::warn!(server = %self.server.tag, "{text} (further ones like it are logged at debug level)");
                    if let Some(h) = &self.health {
                        h.error(&Part::Discord, format!("{}: {text}", self.server.tag));
                    }
                } else {
                    tracing::debug!(server = %self.server.tag, "{text}");
                }
            }
            Err(e) => {
                self.count("dropped", 1);
                let text = format!(
                    "Discord has not taken a message for {} s ({e}): messages are being dropped",
                    self.policy.patience.as_secs()
                );
                tracing::error!(server = %self.server.tag, channel = o.channel, "{text}");
                if let Some(h) = &self.health {
                    h.set(&self.component(), State::Down, Some(text));
                }
            }
        }
        Sent::Failed
    }

    /// This sink's component in health (`sink:<server>:discord`).
    fn component(&self) -> Part {
        Part::Sink {
            server: self.server.tag.clone(),
            sink: "discord".into(),
        }
    }

    /// Discord did not take a message (an outage, not a refusal): the sink is degraded from
    /// the first failure on, and knows since when.
    fn failing(&self, failure: &Failure) {
        let since = *self.outage.lock().get_or_insert_with(Instant::now);
        if let Some(h) = &self.health {
            h.error(
                &self.component(),
                format!(
                    "Discord has not taken a message for {} ({failure}); retrying, the log waits",
                    duration_text(since.elapsed().as_secs())
                ),
            );
        }
    }

    /// Discord took a message: an outage is over. When it held messages back long enough
    /// to matter, a note after them in `channel` says by how much they were delayed.
    async fn took(&self, channel: u64) {
        let Some(since) = self.outage.lock().take() else {
            return;
        };
        if let Some(h) = &self.health {
            h.set(&self.component(), State::Ready, None);
        }
        let delay = since.elapsed();
        tracing::info!(server = %self.server.tag, "Discord takes messages again after {}", duration_text(delay.as_secs()));
        if delay < self.delay_note_after {
            return;
        }
        let note = Message::text(format!(
            "-# ⏳ The messages above were delayed by {}: Discord could not be reached.",
            duration_text(delay.as_secs())
        ));
        let body = serde_json::to_value(note.fit()).unwrap_or_default();
        let path = format!("/channels/{channel}/messages");
        let sent = retry::run(
            Policy::ANSWER,
            || self.rest.api(Method::POST, &path, Some(&body)),
            |_, _, _| {},
        )
        .await;
        if let Err(e) = sent {
            tracing::debug!(server = %self.server.tag, "the note on the delay was not posted: {e}");
        }
    }
}

/// What became of one message sent.
enum Sent {
    /// Discord took it, and answered with the message.
    Took(Value),
    /// It was an edit of a message that is no longer there (404 Unknown Message).
    Gone,
    /// Refused or dropped (counted and logged).
    Failed,
}

/// The id of the message Discord answered with.
fn message_id(answer: &Value) -> Option<u64> {
    answer.get("id")?.as_str()?.parse().ok()
}

/// An event as one line of a message: its emoji and its text (Markdown as the parser made it).
impl Sink for DiscordSink {
    fn name(&self) -> &str {
        "discord"
    }

    fn reports_health(&self) -> bool {
        self.health.is_some()
    }

    fn patience(&self) -> Duration {
        // Every message is retried inside `deliver`, which never fails a batch.
        self.policy.patience + Duration::from_secs(60)
    }

    /// Every new message carries a nonce: made of the batch's identity and the place of
    /// the message's first event in it, so the same batch delivered again (resumed after a
    /// deadline, after a restart, or by the next owner after a failover) is not posted
    /// twice; a message of no batch (an alert) gets one of its own, which its retries keep.
    fn deliver<'a>(&'a self, batch: &'a Batch<'a>) -> Delivery<'a> {
        Box::pin(async move {
            for mut o in self.messages(batch).await {
                if o.edit.is_none() {
                    let first = o.events.first().map_or(0, |i| batch.place(*i));
                    o.message.nonce = Some(match batch.id() {
                        Some(id) => Nonce::of(id, first),
                        None => Nonce::random(),
                    });
                }
                self.send(&mut o).await;
                batch.done(o.events.iter().copied());
            }
            let refused = self
                .refused
                .swap(false, std::sync::atomic::Ordering::Relaxed);
            let failing = self.outage.lock().is_some();
            if let (Some(h), false, false) = (&self.health, refused, failing) {
                h.set(&self.component(), State::Ready, None);
            }
            Ok(())
        })
    }
}
