//! What the bot's event handler and its answers share ([`Bot`]), and what it does once
//! per process: the connect notices, setting up roles and commands, the presence loop.

pub(super) mod answer;
pub(super) mod handler;
pub(super) mod selection;

use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serenity::all::{ActivityData, Context};

use crate::discord::bot::selection::Selections;
use crate::discord::commands::definitions;
use crate::discord::commands::tiers::{Gate, Resolved};
use crate::discord::rest::Rest;
use crate::discord::rest::limits::{self};
use crate::discord::rest::payload::Message;
use crate::discord::rest::retry::{self, Policy};
use crate::discord::roles::RoleDirectory;
use crate::observe::health::{Health, Part, State};
use crate::rcon::LinkState;
use crate::servers::Server;

/// How often the presence is refreshed.
const PRESENCE_EVERY: Duration = Duration::from_secs(30);
/// The health component of command registration.
pub const COMMANDS: &Part = &Part::DiscordCommands;

/// What the bot's event handler needs.
pub struct Bot {
    /// Discord's REST API, as the bot.
    pub rest: Arc<Rest>,
    /// The live servers, set once every server has started.
    pub servers: OnceLock<Arc<Vec<Server>>>,
    /// Reloads for `/factorio-admin reload`, set with the servers.
    pub reloader: OnceLock<Arc<crate::reload::Reloader>>,
    pub gate: Gate,
    /// The one guild whose members may use the commands (required for admin and danger).
    pub guild_id: Option<u64>,
    pub selections: Selections,
    pub roles: Arc<RoleDirectory>,
    pub health: Health,
    /// (channel, server tag) of each chat bridge: messages there are relayed into the game.
    pub bridges: Vec<(u64, String)>,
    /// (channel, server tag) of each channel that belongs to one server: a command given
    /// there goes to that server unless it names another.
    pub channels: parking_lot::RwLock<Vec<(u64, String)>>,
    /// (event channel, server name) for the connect and disconnect notices.
    pub notices: Vec<(u64, String)>,
    /// Whether the first READY was handled: notices, set-up and the presence loop happen
    /// once per process, not once per gateway session.
    pub started: AtomicBool,
    /// The newest gateway context, for the presence loop.
    pub context: Mutex<Option<Context>>,
    /// Whether connecting and stopping are announced in the event channels (not in
    /// cluster mode, where one instance's gateway term is not the system's start or stop).
    pub lifecycle_notices: AtomicBool,
    /// Set once the bot stopped: its loops end.
    pub ended: AtomicBool,
}

impl Bot {
    /// Takes up a changed servers.yml while it runs: the channels that belong to each
    /// server, and (when `roles` changed) the roles and cooldowns, looked up again in the
    /// guild.
    pub async fn take_config(&self, config: &crate::config::Config, roles: bool) {
        *self.channels.write() = crate::discord::server_channels(&config.servers);
        if roles {
            self.gate.reconfigure(config.discord.clone());
            tracing::info!("servers.yml changed: taking up the new discord roles and cooldowns");
            self.resolve_roles().await;
        }
    }

    /// The server a command given in `channel` goes to when it names none.
    pub fn server_of_channel(&self, channel: u64) -> Option<String> {
        let channels = self.channels.read();
        channels
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, tag)| tag.clone())
    }

    /// Posts `text` about each server to its event channel, as the Python bot did on
    /// connecting and disconnecting.
    pub async fn announce(&self, text: impl Fn(&str) -> String) {
        for (channel, name) in &self.notices {
            let body = serde_json::to_value(Message::text(text(name)).fit()).unwrap_or_default();
            let path = format!("/channels/{channel}/messages");
            let sent = retry::run(
                Policy::ANSWER.with_patience(Duration::from_secs(5)),
                || self.rest.api(Method::POST, &path, Some(&body)),
                |_, _, _| {},
            )
            .await;
            if let Err(e) = sent {
                tracing::warn!(channel, "cannot post a notice to Discord: {e}");
            }
        }
    }

    /// Checks the configured roles against the guild's (names become ids), retrying until
    /// the guild's roles could be read; says in the log which id each name became and
    /// which configured role the guild does not have.
    pub(super) async fn resolve_roles(&self) {
        if !self.gate.has_roles() {
            return;
        }
        let read = retry::run(
            Policy::DELIVERY.with_patience(Duration::from_secs(3600)),
            || self.roles.read(&self.rest),
            |_, f, wait| {
                tracing::warn!("cannot read the guild's roles ({f}); trying again in {wait:?}")
            },
        )
        .await;
        let roles = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    "cannot read the guild's roles: {e}; roles given by name allow nothing"
                );
                self.health.error(
                    &Part::Discord,
                    format!("cannot read the guild's roles: {e}"),
                );
                return;
            }
        };
        for r in self.gate.resolve(&roles) {
            match r {
                Resolved::Role { name, id } => tracing::info!("discord role \"{name}\" is {id}"),
                Resolved::MissingId(id) => {
                    tracing::error!(
                        "discord role id {id} is not a role of the guild: it allows nothing"
                    );
                    self.health
                        .error(&Part::Discord, format!("role {id} not found in the guild"));
                }
                Resolved::Missing(name) => {
                    tracing::error!(
                        "discord role \"{name}\" is not a role of the guild: it allows nothing"
                    );
                    self.health.error(
                        &Part::Discord,
                        format!("role \"{name}\" not found in the guild"),
                    );
                }
                Resolved::Ambiguous(name) => {
                    tracing::error!(
                        "several roles of the guild are named \"{name}\": it allows nothing; give its id instead"
                    );
                    self.health.error(
                        &Part::Discord,
                        format!("role \"{name}\" is ambiguous; configure its id"),
                    );
                }
            }
        }
    }

    /// Registers the commands (on the configured guild, else globally), retrying with
    /// backoff until Discord takes them; `discord:commands` says how it went meanwhile.
    /// Then removes this application's commands from the other scope (`guilds` are those
    /// the bot is in): an earlier bot on the same application (the Python one registered
    /// globally) left them, and people would see two `/factorio`.
    pub(super) async fn register(&self, application: u64, guilds: &[u64]) {
        let body = definitions::definitions_json();
        let problems = limits::check_commands(&body);
        if !problems.is_empty() {
            // A bug of ours, caught by `check` and the tests; never sent to be refused.
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            self.health
                .set(COMMANDS, State::Down, Some(text.join("; ")));
            return;
        }
        let path = match self.guild_id {
            Some(g) => format!("/applications/{application}/guilds/{g}/commands"),
            None => format!("/applications/{application}/commands"),
        };
        // A refusal is retried too, slowly: missing access is fixed by inviting the bot
        // again with the `applications.commands` scope, with no restart.
        let mut wait = Duration::from_secs(5);
        loop {
            let attempt = retry::run(
                Policy::DELIVERY.with_patience(Duration::from_secs(120)),
                || self.rest.api(Method::PUT, &path, Some(&body)),
                |_, f, _| tracing::debug!("registering the commands: {f}; trying again"),
            )
            .await;
            match attempt {
                Ok(_) => {
                    tracing::info!("registered /factorio and /factorio-admin");
                    self.health.set(COMMANDS, State::Ready, None);
                    let stale: Vec<String> = match self.guild_id {
                        Some(_) => vec![format!("/applications/{application}/commands")],
                        None => guilds
                            .iter()
                            .map(|g| format!("/applications/{application}/guilds/{g}/commands"))
                            .collect(),
                    };
                    for path in stale {
                        self.remove_stale(&path).await;
                    }
                    return;
                }
                Err(e) => {
                    let text = format!("cannot register the commands: {e}");
                    tracing::error!("{text}; trying again in {} s", wait.as_secs());
                    self.health.register(COMMANDS);
                    self.health.error(COMMANDS, text);
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(600));
        }
    }

    /// Removes every command of this application at `path` (a scope it does not register
    /// in), saying which were there; a failure is logged and left.
    async fn remove_stale(&self, path: &str) {
        let policy = Policy::ANSWER;
        let listed = retry::run(
            policy,
            || self.rest.api(Method::GET, path, None),
            |_, _, _| {},
        )
        .await;
        let names: Vec<String> = match listed {
            Ok(v) => v
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|c| c["name"].as_str().map(|n| format!("/{n}")))
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!("cannot list this application's other commands: {e}");
                return;
            }
        };
        if names.is_empty() {
            return;
        }
        let none = serde_json::json!([]);
        match retry::run(
            policy,
            || self.rest.api(Method::PUT, path, Some(&none)),
            |_, _, _| {},
        )
        .await
        {
            Ok(_) => tracing::info!(
                "removed {} left by an earlier bot on this application ({}): only this bot's commands are shown now",
                names.join(", "),
                if self.guild_id.is_some() {
                    "registered globally"
                } else {
                    "registered on a guild"
                }
            ),
            Err(e) => tracing::warn!(
                "cannot remove {} left by an earlier bot on this application: {e}; people may see two of them",
                names.join(", ")
            ),
        }
    }

    /// Keeps the presence ("Watching 3/4 Factorio servers") up to date on the newest
    /// gateway session.
    pub(super) async fn presence_loop(self: Arc<Self>) {
        while !self.ended.load(std::sync::atomic::Ordering::Acquire) {
            let ctx = self.context.lock().clone();
            if let (Some(ctx), Some(servers)) = (ctx, self.servers.get()) {
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
            tokio::time::sleep(PRESENCE_EVERY).await;
        }
    }
}
