//! The `discord:` section of servers.yml: who may use which commands.

use serde::Deserialize;

/// The Discord bot's settings (`discord:` in servers.yml, new and optional). Deny by
/// default: without roles configured for a tier, nobody may use its commands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSettings {
    /// The Discord server (guild) the bot serves: its commands are registered there (they
    /// appear at once), commands from any other guild are refused, and roles are looked up
    /// there. Required for admin and danger roles; without it the commands are registered
    /// globally and only queries are possible.
    pub guild_id: Option<u64>,
    /// Roles, by id or by name, that may use the admin commands (kick, ban, ...).
    #[serde(default)]
    pub admin_roles: Vec<RoleRef>,
    /// Roles that may use the danger commands (rcon, speed, research, clock changes); they
    /// may use the admin commands too.
    #[serde(default)]
    pub danger_roles: Vec<RoleRef>,
    /// Seconds one user waits between two commands, per tier.
    #[serde(default)]
    pub cooldowns: Cooldowns,
}

impl DiscordSettings {
    /// What an operator should know of who may do what: that admin commands are off for
    /// everyone when no role allows them, and how each configured role was read (an id, or a
    /// name looked up in the guild at start).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.admin_roles.is_empty() && self.danger_roles.is_empty() {
            notes.push(
                "warning: discord: no `discord.admin_roles` (nor `danger_roles`): \
                 /factorio-admin answers nobody; set `guild_id` and the roles allowed \
                 (docs/discord.md#who-may-do-what)"
                    .to_owned(),
            );
        }
        for (tier, roles) in [("admin", &self.admin_roles), ("danger", &self.danger_roles)] {
            if !roles.is_empty() {
                let read: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
                notes.push(format!(
                    "discord: {tier} roles: {} (checked against the guild at start)",
                    read.join(", ")
                ));
            }
        }
        notes
    }
}

/// A Discord role, by id, or by name (found in the guild once at start: the role of exactly
/// that name, else the one role whose name matches without regard to case). A string of
/// digits is an id: that is how an id comes out of a `${VAR}` in a YAML list, or when
/// quoted as the docs advise (Discord's own ids are strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRef {
    Id(u64),
    Name(String),
}

impl<'de> Deserialize<'de> for RoleRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::Number(n) => n
                .as_u64()
                .map(Self::Id)
                .ok_or_else(|| D::Error::custom(format!("`{n}` is not a role id"))),
            serde_norway::Value::String(s) => Ok(Self::from_text(&s)),
            _ => Err(D::Error::custom("a role is its id or its name")),
        }
    }
}

impl RoleRef {
    /// A role as written: all digits is an id, anything else a name.
    pub fn from_text(text: &str) -> Self {
        let text = text.trim();
        match text.parse::<u64>() {
            Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => Self::Id(id),
            _ => Self::Name(text.to_owned()),
        }
    }
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "role id {id}"),
            Self::Name(n) => write!(f, "role \"{n}\""),
        }
    }
}

/// Seconds between two commands of one user, per tier.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cooldowns {
    pub query: f64,
    pub admin: f64,
    pub danger: f64,
}

impl Default for Cooldowns {
    fn default() -> Self {
        Self {
            query: 2.0,
            admin: 5.0,
            danger: 10.0,
        }
    }
}
