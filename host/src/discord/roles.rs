//! Mention groups to Discord role ids: the groups of mentions.yml name roles; the guild's
//! roles say which ids those are.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::alert::Mentions;
use crate::discord::rest::{Failure, Rest};

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
    /// Role ids of mention groups found missing from the guild (each is logged once).
    missing: Mutex<std::collections::BTreeSet<u64>>,
}

impl RoleDirectory {
    /// A directory for `mentions`, in `guild` when it is known already.
    pub fn new(mentions: Arc<Mentions>, guild: Option<u64>) -> Self {
        Self {
            mentions,
            guild: Mutex::new(guild),
            cache: tokio::sync::Mutex::new(None),
            missing: Mutex::default(),
        }
    }

    /// Sets the guild once the gateway says which it is (when not configured). Only
    /// mention pings use a guild learnt this way; command authority needs `guild_id`.
    pub fn learn_guild(&self, guild: u64) {
        let mut g = self.guild.lock();
        g.get_or_insert(guild);
    }

    /// The guild's roles (id, name), read from Discord now.
    pub async fn read(&self, rest: &Rest) -> Result<Vec<(u64, String)>, Failure> {
        let guild = *self.guild.lock();
        let Some(guild) = guild else {
            return Ok(Vec::new());
        };
        let path = format!("/guilds/{guild}/roles");
        let read = rest.api(Method::GET, &path, None);
        let roles = tokio::time::timeout(READ_WITHIN, read)
            .await
            .map_err(|_| {
                Failure::Unavailable(format!("no answer within {} s", READ_WITHIN.as_secs()))
            })??;
        Ok(roles
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|r| {
                        let id = r["id"].as_str()?.parse().ok()?;
                        Some((id, r["name"].as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The guild's roles (id, name), read at most every ten minutes.
    async fn all(&self, rest: &Rest) -> Vec<(u64, String)> {
        let mut cache = self.cache.lock().await;
        let stale = cache.as_ref().is_none_or(|(t, _)| t.elapsed() > FRESH);
        if stale {
            // A Discord that does not answer must not hold the sink for long.
            match self.read(rest).await {
                Ok(roles) => *cache = Some((Instant::now(), roles)),
                Err(e) => tracing::warn!("cannot read the guild's roles: {e}"),
            }
        }
        cache.as_ref().map(|(_, r)| r.clone()).unwrap_or_default()
    }

    /// The mention group a `@word` in game chat names, if any.
    pub fn group_for_word(&self, word: &str) -> Option<String> {
        self.mentions.group_for_word(word).map(str::to_owned)
    }

    /// Whom `group` pings: (role ids, user ids); none when the group is unknown. Roles
    /// given by name are those of the guild with that name; roles given by id count when
    /// the guild has them (or its roles cannot be read). The guild's `@everyone` role
    /// (whose id is the guild's) is never among them.
    pub async fn targets(&self, rest: &Rest, group: &str) -> (Vec<u64>, Vec<u64>) {
        let Some(wanted) = self.mentions.group(group) else {
            return (Vec::new(), Vec::new());
        };
        let guild = self.guild.lock().unwrap_or(0);
        let roles = self.all(rest).await;
        let mut ids: Vec<u64> = roles
            .iter()
            .filter(|(id, name)| {
                *id != guild
                    && !name.starts_with('@')
                    && (wanted.role_ids.contains(id)
                        || wanted
                            .role_names
                            .iter()
                            .any(|w| w.eq_ignore_ascii_case(name)))
            })
            .map(|(id, _)| *id)
            .collect();
        if roles.is_empty() {
            ids.extend(wanted.role_ids.iter().filter(|id| **id != guild));
        } else {
            let mut missing = self.missing.lock();
            for id in wanted.role_ids.iter().filter(|id| !ids.contains(id)) {
                if missing.insert(*id) {
                    tracing::warn!(
                        "mentions.yml: role {id} of the group `{group}` is not a role of the guild; it is not pinged"
                    );
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        (ids, wanted.user_ids.clone())
    }
}
