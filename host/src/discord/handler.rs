//! The gateway side of the bot: registering `/factorio`, answering it, autocompleting server
//! tags, and the presence.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serenity::all::{
    ActivityData, AutocompleteChoice, CommandInteraction, Context, CreateAutocompleteResponse,
    CreateInteractionResponse, CreateInteractionResponseMessage, EditInteractionResponse,
    EventHandler, GuildId, Interaction, Message, Ready,
};
use serenity::async_trait;

use super::answer::{Outcome, answer};
use super::commands::{self, Parsed, Request};
use super::roles::RoleDirectory;
use super::selection::Selections;
use super::tiers::{Gate, Tier};
use crate::health::{Health, State};
use crate::rcon::LinkState;
use crate::servers::Server;

/// Discord's limit for a message's content.
const MAX_CONTENT: usize = 2000;
/// How long a command may run before the answer is deferred (Discord allows 3 s).
const ANSWER_WITHIN: Duration = Duration::from_millis(2000);

/// What the bot's event handler needs.
pub struct Bot {
    /// The live servers, set once every server has started.
    pub servers: OnceLock<Arc<Vec<Server>>>,
    /// Reloads for `/factorio reload`, set with the servers.
    pub reloader: OnceLock<Arc<crate::reload::Reloader>>,
    pub gate: Gate,
    pub guild_id: Option<u64>,
    pub selections: Selections,
    pub roles: Arc<RoleDirectory>,
    pub health: Health,
    /// (channel, server tag) of each chat bridge: messages there are relayed into the game.
    pub bridges: Vec<(u64, String)>,
    /// (event channel, server name) for the connect and disconnect notices.
    pub notices: Vec<(u64, String)>,
    /// Whether the connect notices were posted (once per process, not per reconnect).
    pub announced: std::sync::atomic::AtomicBool,
}

impl Bot {
    /// Posts `text` about each server to its event channel, as the Python bot did on
    /// connecting and disconnecting.
    pub async fn announce(&self, http: &serenity::all::Http, text: impl Fn(&str) -> String) {
        for (channel, name) in &self.notices {
            let message = serenity::all::CreateMessage::new()
                .content(text(name))
                .allowed_mentions(serenity::all::CreateAllowedMentions::new());
            if let Err(e) = serenity::all::ChannelId::new(*channel)
                .send_message(http, message)
                .await
            {
                tracing::warn!(channel, "cannot post a notice to Discord: {e}");
            }
        }
    }
}

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
        let registered = match bot.guild_id {
            Some(g) => GuildId::new(g)
                .set_commands(&ctx.http, vec![commands::definition()])
                .await
                .map(|_| ()),
            None => {
                serenity::all::Command::set_global_commands(&ctx.http, vec![commands::definition()])
                    .await
                    .map(|_| ())
            }
        };
        match registered {
            Ok(()) => bot.health.set("discord", State::Ready, None),
            Err(e) => {
                tracing::error!("cannot register the /factorio command: {e}");
                bot.health.error(
                    "discord",
                    format!("cannot register the /factorio command: {e}"),
                );
            }
        }
        if !bot
            .announced
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            bot.announce(&ctx.http, |name| {
                format!("🟢 factorio-isr is watching **{}**.", super::escape(name))
            })
            .await;
        }
        let bot = bot.clone();
        tokio::spawn(async move {
            loop {
                if let Some(servers) = bot.servers.get() {
                    let up = servers
                        .iter()
                        .filter(|s| {
                            s.stats
                                .as_ref()
                                .is_some_and(|st| matches!(st.rcon().state(), LinkState::Up { .. }))
                        })
                        .count();
                    ctx.set_activity(Some(ActivityData::watching(format!(
                        "{up}/{} Factorio servers",
                        servers.len()
                    ))));
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
    }

    async fn message(&self, _ctx: Context, msg: Message) {
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

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(cmd) if cmd.data.name == "factorio" => {
                self.command(&ctx, &cmd).await
            }
            Interaction::Autocomplete(ac) if ac.data.name == "factorio" => {
                let typed = ac
                    .data
                    .autocomplete()
                    .map(|a| a.value.to_lowercase())
                    .unwrap_or_default();
                let choices: Vec<AutocompleteChoice> = self
                    .0
                    .servers
                    .get()
                    .map(|s| {
                        s.iter()
                            .filter(|s| s.tag.contains(&typed))
                            .take(25)
                            .map(|s| {
                                let label = match &s.name {
                                    Some(n) => format!("{} ({n})", s.tag),
                                    None => s.tag.clone(),
                                };
                                AutocompleteChoice::new(label, s.tag.clone())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let response = CreateInteractionResponse::Autocomplete(
                    CreateAutocompleteResponse::new().set_choices(choices),
                );
                if let Err(e) = ac.create_response(&ctx.http, response).await {
                    tracing::debug!("autocomplete answer failed: {e}");
                }
            }
            _ => {}
        }
    }
}

impl Handler {
    async fn command(&self, ctx: &Context, cmd: &CommandInteraction) {
        let started = Instant::now();
        let work = self.outcome(ctx, cmd);
        tokio::pin!(work);
        let answer = match tokio::time::timeout(ANSWER_WITHIN, &mut work).await {
            Ok(outcome) => {
                let (text, private) = match outcome {
                    Outcome::Shown(t) => (t, false),
                    Outcome::Private(t) => (t, true),
                };
                let message = CreateInteractionResponseMessage::new()
                    .content(fit(&text))
                    .ephemeral(private)
                    .allowed_mentions(serenity::all::CreateAllowedMentions::new());
                cmd.create_response(&ctx.http, CreateInteractionResponse::Message(message))
                    .await
            }
            Err(_) => {
                // RCON is slow: tell Discord the answer is coming, then edit it in.
                if let Err(e) = cmd.defer(&ctx.http).await {
                    tracing::warn!("cannot defer a command: {e}");
                }
                let text = match work.await {
                    Outcome::Shown(t) | Outcome::Private(t) => t,
                };
                let edit = EditInteractionResponse::new()
                    .content(fit(&text))
                    .allowed_mentions(serenity::all::CreateAllowedMentions::new());
                cmd.edit_response(&ctx.http, edit).await.map(|_| ())
            }
        };
        if let Err(e) = answer {
            tracing::warn!(user = %cmd.user.name, "cannot answer a /factorio command: {e}");
        }
        tracing::debug!(user = %cmd.user.name, "answered in {:?}", started.elapsed());
    }

    async fn outcome(&self, ctx: &Context, cmd: &CommandInteraction) -> Outcome {
        let bot = &self.0;
        let parsed = match commands::parse(&cmd.data.options) {
            Ok(p) => p,
            Err(e) => return Outcome::Private(format!("❌ {e}")),
        };
        let tier = parsed.request.tier();
        let roles = match &cmd.member {
            Some(m) if tier != Tier::Query => {
                let ids: Vec<u64> = m.roles.iter().map(|r| r.get()).collect();
                Some(bot.roles.names(&ctx.http, &ids).await)
            }
            Some(_) => Some(Vec::new()),
            None => None,
        };
        if let Err(refusal) =
            bot.gate
                .check(cmd.user.id.get(), tier, roles.as_deref(), Instant::now())
        {
            tracing::info!(user = %cmd.user.name, tier = tier.name(), "refused a /factorio command: {refusal:?}");
            return Outcome::Private(refusal.to_string());
        }
        let Some(servers) = bot.servers.get() else {
            return Outcome::Private("⏳ The bot is still starting; try again in a moment.".into());
        };
        let user = cmd.user.id.get();
        let server = if parsed.request.needs_server() {
            match self.choose(servers, &parsed, user) {
                Ok(s) => Some(s),
                Err(text) => return Outcome::Private(text),
            }
        } else {
            None
        };
        if parsed.request.tier() != Tier::Query {
            tracing::info!(user = %cmd.user.name, user_id = user, server = server.map(|s| s.tag.as_str()), "{} command", tier.name());
        }
        answer(&parsed.request, server, servers, bot).await
    }

    fn choose<'a>(
        &self,
        servers: &'a [Server],
        parsed: &Parsed,
        user: u64,
    ) -> Result<&'a Server, String> {
        let wanted = parsed
            .server
            .clone()
            .or_else(|| self.0.selections.get(user));
        match wanted {
            Some(tag) => servers.iter().find(|s| s.tag == tag).ok_or_else(|| {
                format!(
                    "❌ There is no server `{}`. Try `/factorio servers`.",
                    crate::discord::escape(&tag)
                )
            }),
            None if servers.len() == 1 => Ok(&servers[0]),
            None => {
                Err("❓ Which server? Add `server:` or choose one with `/factorio connect`.".into())
            }
        }
        .inspect(|s| {
            if matches!(parsed.request, Request::Connect) {
                self.0.selections.set(user, &s.tag);
            }
        })
    }
}

/// `text` cut to Discord's message limit.
fn fit(text: &str) -> String {
    if text.len() <= MAX_CONTENT {
        return text.to_owned();
    }
    let mut end = MAX_CONTENT - 4;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &text[..end])
}
