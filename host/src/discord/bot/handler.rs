//! The gateway side of the bot: setting up once connected (roles by name to ids, the
//! commands registered), answering `/factorio` and `/factorio-admin`, autocompleting server
//! tags, and the presence.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use serenity::all::{
    CommandInteraction, Context, EventHandler, Interaction, Message as GatewayMessage, Ready,
};
use serenity::async_trait;
use tracing::Instrument;

use crate::discord::bot::Bot;
use crate::discord::bot::answer::{Outcome, answer};
use crate::discord::commands::definitions::Command;
use crate::discord::commands::parse::{self as commands, Parsed, Request};
use crate::discord::commands::tiers::Tier;
use crate::discord::rest::Failure;
use crate::discord::rest::limits::{self, cut};
use crate::discord::rest::payload::Message;
use crate::discord::rest::retry::{self, Policy};
use crate::observe::health::{Part, State};
use crate::servers::Server;

/// How long a command may run before the answer is deferred (Discord allows 3 s).
const ANSWER_WITHIN: Duration = Duration::from_millis(2000);
/// The serenity event handler.
pub struct Handler(pub Arc<Bot>);

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let bot = &self.0;
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to Discord");
        if let Some(g) = ready.guilds.first() {
            bot.roles.learn_guild(g.id.get());
        }
        *bot.context.lock() = Some(ctx);
        bot.health.set(&Part::Discord, State::Ready, None);
        if bot.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let application = ready.application.id.get();
        let guilds: Vec<u64> = ready.guilds.iter().map(|g| g.id.get()).collect();
        let setup = bot.clone();
        tokio::spawn(async move {
            // Independent: a guild whose roles cannot be read yet must not hold up the
            // commands, nor the reverse.
            tokio::join!(setup.resolve_roles(), setup.register(application, &guilds));
        });
        tokio::spawn(bot.clone().presence_loop());
        if !bot.lifecycle_notices.load(Ordering::Acquire) {
            return;
        }
        bot.announce(|name| {
            format!(
                "🟢 factorio-isr is watching **{}**.",
                crate::discord::escape(name)
            )
        })
        .await;
    }

    async fn message(&self, _ctx: Context, msg: GatewayMessage) {
        // The bot's own messages (and other bots') are never relayed: no echo loops.
        if msg.author.bot || msg.webhook_id.is_some() || msg.content.trim().is_empty() {
            return;
        }
        let Some((_, tag)) = self
            .0
            .bridges
            .iter()
            .find(|(c, _)| *c == msg.channel_id.get())
        else {
            return;
        };
        let Some(server) = self
            .0
            .servers
            .get()
            .and_then(|s| s.iter().find(|s| &s.tag == tag))
        else {
            return;
        };
        let Some(stats) = &server.stats else { return };
        let author = msg
            .author
            .global_name
            .as_deref()
            .unwrap_or(&msg.author.name);
        match crate::rcon::command::relay(author, &msg.content) {
            Ok(command) => {
                if let Err(e) = stats.rcon().exec(command.as_str()).await {
                    tracing::warn!(server = %tag, "cannot relay a Discord message into the game: {e}");
                }
            }
            Err(e) => tracing::debug!(server = %tag, "a Discord message was not relayed: {e}"),
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(cmd) => {
                if let Some(command) = Command::from_name(&cmd.data.name) {
                    self.command(command, &cmd).await
                }
            }
            Interaction::Autocomplete(ac) if Command::from_name(&ac.data.name).is_some() => {
                let typed = ac
                    .data
                    .autocomplete()
                    .map(|a| a.value.to_lowercase())
                    .unwrap_or_default();
                let choices: Vec<Value> = self
                    .0
                    .servers
                    .get()
                    .map(|s| {
                        s.iter()
                            .filter(|s| s.tag.contains(&typed))
                            .take(limits::CHOICES)
                            .map(|s| {
                                let label = match &s.name {
                                    Some(n) => format!("{} ({n})", s.tag),
                                    None => s.tag.clone(),
                                };
                                json!({"name": cut(&label, limits::CHOICE_NAME), "value": s.tag})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let body = json!({"type": 8, "data": {"choices": choices}});
                if let Err(e) = self.callback(ac.id.get(), &ac.token, &body).await {
                    tracing::debug!("autocomplete answer failed: {e}");
                }
            }
            _ => {}
        }
    }
}

impl Handler {
    async fn command(&self, command: Command, cmd: &CommandInteraction) {
        let subcommand = cmd.data.options.first().map(|o| o.name.as_str());
        let span = tracing::info_span!(
            parent: None,
            "slash_command",
            otel.name = format!("/{} {}", command.name(), subcommand.unwrap_or_default()),
            command = command.name(),
            subcommand,
            user_id = cmd.user.id.get(),
            tier = tracing::field::Empty,
            server = tracing::field::Empty,
            deferred = tracing::field::Empty,
        );
        self.answer_command(command, cmd).instrument(span).await
    }

    async fn answer_command(&self, command: Command, cmd: &CommandInteraction) {
        let started = Instant::now();
        let work = self.outcome(command, cmd);
        tokio::pin!(work);
        let answered = match tokio::time::timeout(ANSWER_WITHIN, &mut work).await {
            Ok(outcome) => {
                let message = match outcome {
                    Outcome::Shown(t) => Message::text(t),
                    Outcome::Private(t) => Message::text(t).ephemeral(),
                };
                let body = json!({"type": 4, "data": message.fit()});
                self.callback(cmd.id.get(), &cmd.token, &body).await
            }
            Err(_) => {
                tracing::Span::current().record("deferred", true);
                self.deferred(cmd, work).await
            }
        };
        if let Err(e) = answered {
            tracing::warn!(user = %cmd.user.name, "cannot answer a /{} command: {e}", command.name());
        }
        tracing::debug!(user = %cmd.user.name, "answered in {:?}", started.elapsed());
    }

    /// The game server is slow: tell Discord the answer is coming, then give it. A public
    /// answer replaces the placeholder; a private one (an error, a refusal) replaces it with
    /// a message only the user sees, so nothing private is ever shown to the channel.
    async fn deferred(
        &self,
        cmd: &CommandInteraction,
        work: impl std::future::Future<Output = Outcome>,
    ) -> Result<(), Failure> {
        self.callback(cmd.id.get(), &cmd.token, &json!({"type": 5}))
            .await?;
        let original = format!(
            "/webhooks/{}/{}/messages/@original",
            cmd.application_id.get(),
            cmd.token
        );
        let rest = &self.0.rest;
        match work.await {
            Outcome::Shown(text) => {
                let body = serde_json::to_value(Message::text(text).fit()).unwrap_or_default();
                answer_call(|| rest.api(Method::PATCH, &original, Some(&body))).await
            }
            Outcome::Private(text) => {
                answer_call(|| rest.api(Method::DELETE, &original, None)).await?;
                let body =
                    serde_json::to_value(Message::text(text).ephemeral().fit()).unwrap_or_default();
                let followup = format!("/webhooks/{}/{}", cmd.application_id.get(), cmd.token);
                answer_call(|| rest.api(Method::POST, &followup, Some(&body))).await
            }
        }
    }

    /// Answers interaction `id` with `body`.
    async fn callback(&self, id: u64, token: &str, body: &Value) -> Result<(), Failure> {
        let path = format!("/interactions/{id}/{token}/callback");
        answer_call(|| self.0.rest.api(Method::POST, &path, Some(body))).await
    }

    async fn outcome(&self, command: Command, cmd: &CommandInteraction) -> Outcome {
        let bot = &self.0;
        // Only members of the configured guild; never in DMs.
        let Some(guild) = cmd.guild_id.map(|g| g.get()) else {
            return Outcome::Private(
                "⛔ These commands work in the server's Discord only, not in direct messages."
                    .into(),
            );
        };
        if bot.guild_id.is_some_and(|g| g != guild) {
            tracing::info!(user = %cmd.user.name, guild, "refused a command from another guild");
            return Outcome::Private(
                "⛔ This bot does not take commands in this Discord server.".into(),
            );
        }
        let parsed = match commands::parse(command, &cmd.data.options) {
            Ok(p) => p,
            Err(e) => return Outcome::Private(format!("❌ {e}")),
        };
        let tier = parsed.tier;
        tracing::Span::current().record("tier", tier.name());
        // Role ids count only in the configured guild (checked above); admin and danger
        // tiers need it configured.
        let roles: Option<Vec<u64>> = match (&cmd.member, bot.guild_id) {
            (Some(m), Some(_)) => Some(m.roles.iter().map(|r| r.get()).collect()),
            _ => None,
        };
        if let Err(refusal) =
            bot.gate
                .check(cmd.user.id.get(), tier, roles.as_deref(), Instant::now())
        {
            tracing::info!(user = %cmd.user.name, tier = tier.name(), "refused a command: {refusal:?}");
            return Outcome::Private(refusal.to_string());
        }
        let Some(servers) = bot.servers.get() else {
            return Outcome::Private("⏳ The bot is still starting; try again in a moment.".into());
        };
        let user = cmd.user.id.get();
        let server = if parsed.request.needs_server() {
            match self.choose(servers, &parsed, user, cmd.channel_id.get()) {
                Ok(s) => Some(s),
                Err(no) => return Outcome::Private(no.to_string()),
            }
        } else {
            None
        };
        if let Some(s) = server {
            tracing::Span::current().record("server", s.tag.as_str());
        }
        if tier != Tier::Query {
            tracing::info!(user = %cmd.user.name, user_id = user, server = server.map(|s| s.tag.as_str()), "{} command", tier.name());
        }
        answer(&parsed.request, server, servers, bot).await
    }

    /// The server a command goes to: the one it names, else the one whose channel it was
    /// given in, else the member's choice (`/factorio connect`), else the only one.
    fn choose<'a>(
        &self,
        servers: &'a [Server],
        parsed: &Parsed,
        user: u64,
        channel: u64,
    ) -> Result<&'a Server, NoServer> {
        let of_channel = || self.0.server_of_channel(channel);
        let wanted = parsed
            .server
            .clone()
            .or_else(of_channel)
            .or_else(|| self.0.selections.get(user));
        match wanted {
            Some(tag) => (servers.iter().find(|s| s.tag == tag))
                .ok_or_else(|| NoServer::Unknown(crate::discord::escape(&tag))),
            None if servers.len() == 1 => Ok(&servers[0]),
            None => Err(NoServer::Unchosen),
        }
        .inspect(|s| {
            if matches!(parsed.request, Request::Connect) {
                self.0.selections.set(user, &s.tag);
            }
        })
    }
}

/// One interaction call under the answer policy.
async fn answer_call<F, Fut>(call: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, Failure>>,
{
    retry::run(Policy::ANSWER, call, |_, f, wait| {
        tracing::debug!("an interaction answer: {f}; trying again in {wait:?}")
    })
    .await
    .map(|_| ())
}

/// Why a command has no server to go to; what the user is told.
#[derive(Debug, thiserror::Error)]
enum NoServer {
    /// The tag named (escaped for Markdown) is no server's.
    #[error("❌ There is no server `{0}`. Try `/factorio servers`.")]
    Unknown(String),
    /// None named, none chosen, and more than one configured.
    #[error("❓ Which server? Add `server:` or choose one with `/factorio connect`.")]
    Unchosen,
}
