//! Whom a player's line in game chat pings: each `@word` naming a mention group, at most
//! three per line, each player and group at most once a minute; never `@everyone`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::DiscordSink;
use crate::discord::rest::payload::AllowedMentions;
use crate::event::Event;

/// How often one player may ping one group from game chat.
const CHAT_PING_EVERY: Duration = Duration::from_secs(60);

impl DiscordSink {
    /// Whom a player's line in game chat pings, as in the Python bot: each `@word` that
    /// names a mention group (at most three per line, each player and group at most once a
    /// minute). Lines of kind `chat`, `shout` and `mention` (what the stock and the Python
    /// bot's patterns make of a line with an `@word`) may ping. `@everyone` and `@here`
    /// name no group, so they never ping.
    pub(super) async fn chat_pings(&self, e: &Event) -> AllowedMentions {
        let mut pings = AllowedMentions::default();
        if !matches!(e.kind.as_str(), "chat" | "shout" | "mention") {
            return pings;
        }
        let (Some(player), Some(message)) = (&e.player, &e.message) else {
            return pings;
        };
        let mut groups: Vec<String> = message
            .split_whitespace()
            .filter(|w| w.starts_with('@'))
            .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()))
            .filter_map(|w| self.roles.group_for_word(w))
            .collect();
        let mut seen = HashSet::new();
        groups.retain(|g| seen.insert(g.clone()));
        groups.truncate(3);
        for group in groups {
            let now = Instant::now();
            {
                let mut last = self.chat_pings.lock();
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
            let (roles, users) = self.roles.targets(&self.rest, &group).await;
            pings.roles.extend(roles);
            pings.users.extend(users);
        }
        for ids in [&mut pings.roles, &mut pings.users] {
            ids.sort_unstable();
            ids.dedup();
        }
        pings
    }
}
