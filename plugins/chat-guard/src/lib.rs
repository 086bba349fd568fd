//! The stock `chat-guard` monitor: tells the admins when a player floods the chat or uses a
//! word from a list. It only alerts; it never kicks or bans.
//!
//! - Flood: more than `max_messages` chat (or shout, or `@admins` mention) messages from one
//!   player within
//!   `per_seconds` raises `flood:<player>`; it resolves once the player has been quiet for
//!   `per_seconds`.
//! - Words: a message containing a listed word (case-insensitive, whole words) raises
//!   `word:<player>` with the word and the message; it is withdrawn quietly after
//!   `quiet_secs` without another match, so one player repeating a word alerts once.
//!
//! Configuration (JSON): `{"max_messages": 8, "per_seconds": 10, "words": [],
//! "quiet_secs": 300, "mention": null, "kinds": ["chat", "shout", "mention"]}`. The stock
//! parser gives a chat line that names `@admins` the kind `mention`: without it, a flood of
//! such lines would never count.

use std::collections::{BTreeMap, VecDeque};

use factorio_isr_sdk::{Alert, Event, Monitor, Sample, Severity, export_monitor};
use serde::{Deserialize, Serialize};

/// Players tracked at once; the least recently heard is forgotten beyond this.
const MAX_PLAYERS: usize = 1000;

/// The monitor's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub max_messages: u32,
    pub per_seconds: u64,
    pub words: Vec<String>,
    pub quiet_secs: u64,
    pub mention: Option<String>,
    pub kinds: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_messages: 8,
            per_seconds: 10,
            words: Vec::new(),
            quiet_secs: 300,
            mention: None,
            kinds: vec!["chat".into(), "shout".into(), "mention".into()],
        }
    }
}

/// What it remembers of one player.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Player {
    /// When their recent messages were read (ms), oldest first, at most `max_messages + 1`.
    recent: VecDeque<u64>,
    flooding: bool,
    /// When a listed word was last seen while its alert is open.
    word_seen_ms: Option<u64>,
    last_heard_ms: u64,
}

/// The `chat-guard` monitor of one server.
pub struct ChatGuard {
    settings: Settings,
    words: Vec<String>,
    players: BTreeMap<String, Player>,
}

impl ChatGuard {
    fn listed_word(&self, message: &str) -> Option<&str> {
        let lower = message.to_lowercase();
        let tokens: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        self.words
            .iter()
            .find(|w| tokens.contains(&w.as_str()))
            .map(String::as_str)
    }

    fn with_mention(&self, alert: Alert) -> Alert {
        match &self.settings.mention {
            Some(group) => alert.mention(group.clone()),
            None => alert,
        }
    }

    /// Resolves floods and withdraws word alerts whose quiet period has passed.
    fn expire(&mut self, now: u64) -> Vec<Alert> {
        let window = self.settings.per_seconds.saturating_mul(1000);
        let quiet = self.settings.quiet_secs.saturating_mul(1000);
        let mut out = Vec::new();
        for (name, p) in &mut self.players {
            if p.flooding && now.saturating_sub(p.last_heard_ms) >= window {
                p.flooding = false;
                p.recent.clear();
                out.push(
                    Alert::new(
                        format!("flood:{name}"),
                        format!("{name} stopped flooding the chat"),
                        format!("quiet for {} s", window / 1000),
                    )
                    .severity(Severity::Info)
                    .field("player", name.clone())
                    .resolved(),
                );
            }
            if p.word_seen_ms
                .is_some_and(|t| now.saturating_sub(t) >= quiet)
            {
                p.word_seen_ms = None;
                out.push(
                    Alert::new(format!("word:{name}"), "", "")
                        .field("player", name.clone())
                        .withdrawn(),
                );
            }
        }
        self.players.retain(|_, p| {
            p.flooding || p.word_seen_ms.is_some() || now.saturating_sub(p.last_heard_ms) < window
        });
        out
    }
}

impl Monitor for ChatGuard {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        let config = config.trim();
        let settings: Settings = if config.is_empty() || config == "null" {
            Settings::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("chat-guard config: {e}"))?
        };
        if settings.max_messages == 0 || settings.per_seconds == 0 {
            return Err(
                "chat-guard config: max_messages and per_seconds must be at least 1".into(),
            );
        }
        let words = settings
            .words
            .iter()
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        Ok(Self {
            settings,
            words,
            players: BTreeMap::new(),
        })
    }

    fn on_events(&mut self, at_ms: u64, events: Vec<Event>) -> Vec<Alert> {
        let mut out = self.expire(at_ms);
        let window = self.settings.per_seconds.saturating_mul(1000);
        let max = self.settings.max_messages as usize;
        for e in events {
            if !self.settings.kinds.contains(&e.kind) {
                continue;
            }
            let Some(name) = e.player.clone() else {
                continue;
            };
            let message = e.message.clone().unwrap_or_default();
            let word = self.listed_word(&message).map(str::to_owned);
            if !self.players.contains_key(&name) && self.players.len() >= MAX_PLAYERS {
                let oldest = self
                    .players
                    .iter()
                    .min_by_key(|(_, p)| p.last_heard_ms)
                    .map(|(n, _)| n.clone());
                if let Some(oldest) = oldest {
                    self.players.remove(&oldest);
                }
            }
            let p = self.players.entry(name.clone()).or_default();
            p.last_heard_ms = at_ms;
            p.recent.push_back(at_ms);
            while p
                .recent
                .front()
                .is_some_and(|t| at_ms.saturating_sub(*t) >= window)
            {
                p.recent.pop_front();
            }
            while p.recent.len() > max + 1 {
                p.recent.pop_front();
            }
            if !p.flooding && p.recent.len() > max {
                p.flooding = true;
                let alert = Alert::new(
                    format!("flood:{name}"),
                    format!("{name} is flooding the chat"),
                    format!(
                        "more than {max} messages within {} s",
                        self.settings.per_seconds
                    ),
                )
                .field("player", name.clone())
                .field("last_message", message.clone());
                out.push(self.with_mention(alert));
            }
            if let Some(word) = word {
                let p = self.players.entry(name.clone()).or_default();
                let first = p.word_seen_ms.is_none();
                p.word_seen_ms = Some(at_ms);
                if first {
                    let alert = Alert::new(
                        format!("word:{name}"),
                        format!("{name} used a listed word"),
                        format!("“{word}” in: {message}"),
                    )
                    .field("player", name.clone())
                    .field("word", word);
                    out.push(self.with_mention(alert));
                }
            }
        }
        out
    }

    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        self.expire(sample.at_ms)
    }

    fn save_state(&self) -> Vec<u8> {
        serde_json::to_vec(&self.players).unwrap_or_default()
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.players = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        Ok(())
    }
}

export_monitor!(ChatGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use factorio_isr_sdk::AlertState;

    fn chat(player: &str, message: &str) -> Event {
        Event::new("chat").player(player).message(message)
    }

    fn keys(alerts: &[Alert]) -> Vec<(String, AlertState)> {
        alerts.iter().map(|a| (a.key.clone(), a.state)).collect()
    }

    #[test]
    fn a_flood_alerts_once_and_resolves_after_a_quiet_window() {
        let mut g = ChatGuard::new("prod", r#"{"max_messages": 3, "per_seconds": 10}"#).unwrap();
        // Three messages are allowed; the fourth within 10 s is a flood, the fifth says nothing new.
        let burst: Vec<_> = (0..5).map(|i| chat("Bob", &format!("spam {i}"))).collect();
        let alerts = g.on_events(1_000, burst);
        assert_eq!(keys(&alerts), [("flood:Bob".into(), AlertState::Firing)]);
        // Alice talks at a normal pace: no flood of hers; Bob's ends once he has been quiet
        // for 10 s.
        let mut seen = Vec::new();
        for t in 0..6 {
            seen.extend(keys(
                &g.on_events(2_000 + t * 4_000, vec![chat("Alice", "hi")]),
            ));
        }
        assert_eq!(seen, [("flood:Bob".into(), AlertState::Resolved)]);
        assert!(g.on_events(30_000, vec![chat("Bob", "sorry")]).is_empty());
    }

    #[test]
    fn a_flood_of_admin_mentions_is_a_flood_too() {
        let mut g = ChatGuard::new("prod", r#"{"max_messages": 3, "per_seconds": 10}"#).unwrap();
        let burst: Vec<_> = (0..5)
            .map(|i| {
                Event::new("mention")
                    .player("Bob")
                    .message(format!("**Bob** mentioned the admins: @admins {i}"))
            })
            .collect();
        let alerts = g.on_events(1_000, burst);
        assert_eq!(keys(&alerts), [("flood:Bob".into(), AlertState::Firing)]);
    }

    #[test]
    fn messages_spread_out_are_not_a_flood() {
        let mut g = ChatGuard::new("prod", r#"{"max_messages": 2, "per_seconds": 10}"#).unwrap();
        for t in 0..20 {
            assert!(
                g.on_events(t * 6_000, vec![chat("Carol", "ok")]).is_empty(),
                "at {t}"
            );
        }
    }

    #[test]
    fn a_listed_word_alerts_once_per_quiet_period_as_a_whole_word() {
        let mut g = ChatGuard::new(
            "prod",
            r#"{"words": ["Griefer"], "quiet_secs": 60, "mention": "admins"}"#,
        )
        .unwrap();
        assert!(
            g.on_events(0, vec![chat("Dan", "griefers are bad? no: grief")])
                .is_empty()
        );
        let a = g.on_events(1_000, vec![chat("Dan", "you GRIEFER!")]);
        assert_eq!(keys(&a), [("word:Dan".into(), AlertState::Firing)]);
        assert_eq!(a[0].mention.as_deref(), Some("admins"));
        assert!(g.on_events(30_000, vec![chat("Dan", "griefer")]).is_empty());
        // 60 s after the last match the alert is withdrawn; a new match alerts again.
        let quiet = g.on_events(90_000, vec![]);
        assert_eq!(keys(&quiet), [("word:Dan".into(), AlertState::Withdrawn)]);
        let again = g.on_events(91_000, vec![chat("Dan", "griefer")]);
        assert_eq!(keys(&again), [("word:Dan".into(), AlertState::Firing)]);
    }

    #[test]
    fn only_chat_kinds_with_a_player_count_and_state_carries_over() {
        let mut g = ChatGuard::new("prod", r#"{"max_messages": 1, "per_seconds": 10}"#).unwrap();
        let joins: Vec<_> = (0..5).map(|_| Event::new("join").player("Eve")).collect();
        assert!(g.on_events(0, joins).is_empty());
        assert!(g.on_events(0, vec![chat("Eve", "a")]).is_empty());
        let saved = g.save_state();
        let mut fresh =
            ChatGuard::new("prod", r#"{"max_messages": 1, "per_seconds": 10}"#).unwrap();
        fresh.load_state(&saved).unwrap();
        assert_eq!(keys(&fresh.on_events(500, vec![chat("Eve", "b")])).len(), 1);
        assert!(ChatGuard::new("prod", r#"{"max_messages": 0}"#).is_err());
        assert!(ChatGuard::new("prod", r#"{"rate": 1}"#).is_err());
        let mut huge = ChatGuard::new(
            "prod",
            r#"{"per_seconds": 18446744073709551615, "quiet_secs": 18446744073709551615}"#,
        )
        .unwrap();
        assert!(huge.on_events(0, vec![chat("Eve", "a")]).is_empty());
    }
}
