//! Mention groups to Discord role ids: the groups of mentions.yml name roles; the guild's
//! roles say which ids those are.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serenity::all::{GuildId, Http};

use crate::alert::Mentions;

/// How long reading the guild's roles may take.
const READ_WITHIN: Duration = Duration::from_secs(10);

/// How long the guild's roles are trusted before they are read again.
const FRESH: Duration = Duration::from_secs(600);

/// The guild's roles as (id, name), and when they were read.
type RoleCache = Option<(Instant, Vec<(u64, String)>)>;

/// Finds the role ids of a mention group in the bot's guild.
pub struct RoleDirectory {
    mentions: Arc<Mentions>,
    guild: Mutex<Option<u64>>,
    cache: tokio::sync::Mutex<RoleCache>,
}

impl RoleDirectory {
    /// A directory for `mentions`, in `guild` when it is known already.
    pub fn new(mentions: Arc<Mentions>, guild: Option<u64>) -> Self {
        Self {
            mentions,
            guild: Mutex::new(guild),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Sets the guild once the gateway says which it is (when not configured).
    pub fn learn_guild(&self, guild: u64) {
        let mut g = self.guild.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(guild);
    }

    /// The guild's roles (id, name), read at most every ten minutes.
    async fn all(&self, http: &Http) -> Vec<(u64, String)> {
        let guild = *self.guild.lock().unwrap_or_else(|p| p.into_inner());
        let Some(guild) = guild else {
            return Vec::new();
        };
        let mut cache = self.cache.lock().await;
        let stale = cache.as_ref().is_none_or(|(t, _)| t.elapsed() > FRESH);
        if stale {
            // A Discord that does not answer must not hold the sink or a command for long.
            let read = tokio::time::timeout(READ_WITHIN, http.get_guild_roles(GuildId::new(guild)));
            match read.await {
                Ok(Ok(roles)) => {
                    *cache = Some((
                        Instant::now(),
                        roles.into_iter().map(|r| (r.id.get(), r.name)).collect(),
                    ))
                }
                Ok(Err(e)) => tracing::warn!("cannot read the guild's roles: {e}"),
                Err(_) => tracing::warn!(
                    "cannot read the guild's roles: no answer within {} s",
                    READ_WITHIN.as_secs()
                ),
            }
        }
        cache.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
    }

    /// The names of the roles with `ids` (a role not found keeps no name).
    pub async fn names(&self, http: &Http, ids: &[u64]) -> Vec<super::tiers::MemberRole> {
        let all = self.all(http).await;
        ids.iter()
            .map(|id| super::tiers::MemberRole {
                id: *id,
                name: all.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()),
            })
            .collect()
    }

    /// The mention group a `@word` in game chat names, if any.
    pub fn group_for_word(&self, word: &str) -> Option<String> {
        self.mentions.group_for_word(word).map(str::to_owned)
    }

    /// The ids of the roles `group` pings (none when the group or the roles are unknown).
    pub async fn role_ids(&self, http: &Http, group: &str) -> Vec<u64> {
        let Some(wanted) = self.mentions.roles(group) else {
            return Vec::new();
        };
        let guild = self
            .guild
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(0);
        self.all(http)
            .await
            .into_iter()
            .filter(|(id, name)| {
                // The guild's @everyone role has the guild's id; never ping it.
                *id != guild
                    && !name.starts_with('@')
                    && wanted.iter().any(|w| w.eq_ignore_ascii_case(name))
            })
            .map(|(id, _)| id)
            .collect()
    }
}
