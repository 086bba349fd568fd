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

/// A Discord role, by id, or by name (found in the guild once at start: the role of exactly
/// that name, else the one role whose name matches without regard to case).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RoleRef {
    Id(u64),
    Name(String),
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
