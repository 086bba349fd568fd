//! Who is online, kept from the log's joins and leaves and from the RCON readings. Factorio
//! sometimes writes no `[LEAVE]` line (a client that times out, a server that stops): a
//! player whom a reading no longer shows, who joined and never left, gets one `leave` event
//! marked as inferred, so "who is online" never drifts.
//!
//! A reading can be older than the lines it arrives after (it was taken before a leave and
//! handed over after it), so a reading never brings back a player whose leave the log
//! wrote: only their next join line does. An inferred leave is posted only for a player
//! whose leave line never came.

use std::collections::{BTreeMap, HashSet};

use crate::event::Event;
use factorio_isr_text::escape;

/// How long after a player was last seen joining a reading may say they are gone: a reading
/// taken just before the join can arrive just after it.
const GRACE_MS: u64 = 15_000;
/// Most players kept; a log that invents names without end cannot grow memory.
const MAX_PLAYERS: usize = 10_000;

/// The players a server has online, each with when they were last seen arriving, and those
/// whose last line in the log was a leave.
#[derive(Debug, Default)]
pub struct Roster {
    online: BTreeMap<String, u64>,
    /// Players who left by a leave line (and when), until they join again.
    left: BTreeMap<String, u64>,
}

impl Roster {
    /// Takes the joins and leaves of a batch of events read at `at_ms`.
    pub fn events(&mut self, at_ms: u64, events: &[Event]) {
        for e in events {
            let Some(player) = &e.player else { continue };
            match e.kind.as_str() {
                "join" => {
                    self.left.remove(player);
                    self.arrive(player, at_ms, true);
                }
                "leave" => {
                    self.online.remove(player);
                    self.note_left(player, at_ms);
                }
                _ => {}
            }
        }
    }

    /// Takes a reading at `at_ms` that shows `players` online; returns a `leave` event for
    /// each player it knew online whom the reading no longer shows.
    pub fn reading(&mut self, at_ms: u64, players: &[String]) -> Vec<Event> {
        for p in players {
            if !self.left.contains_key(p) {
                self.arrive(p, at_ms, false);
            }
        }
        let shown: HashSet<&str> = players.iter().map(String::as_str).collect();
        let gone: Vec<String> = self
            .online
            .iter()
            .filter(|(p, since)| {
                !shown.contains(p.as_str()) && at_ms >= since.saturating_add(GRACE_MS)
            })
            .map(|(p, _)| p.clone())
            .collect();
        gone.into_iter()
            .map(|p| {
                self.online.remove(&p);
                inferred_leave(p)
            })
            .collect()
    }

    /// The players online, as far as it knows.
    pub fn online(&self) -> impl Iterator<Item = &str> {
        self.online.keys().map(String::as_str)
    }

    /// `player` left by a leave line at `at_ms`; the oldest such record makes room when the
    /// roster is full.
    fn note_left(&mut self, player: &str, at_ms: u64) {
        if self.left.len() >= MAX_PLAYERS
            && let Some(oldest) = self
                .left
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(p, _)| p.clone())
        {
            self.left.remove(&oldest);
        }
        self.left.insert(player.to_owned(), at_ms);
    }

    /// `player` is online since `at_ms` (a join moves the time on; a reading only adds).
    fn arrive(&mut self, player: &str, at_ms: u64, joined: bool) {
        if let Some(since) = self.online.get_mut(player) {
            if joined {
                *since = at_ms;
            }
            return;
        }
        if self.online.len() >= MAX_PLAYERS {
            return;
        }
        self.online.insert(player.to_owned(), at_ms);
    }
}

/// The `leave` event of a player who left without a `[LEAVE]` line.
fn inferred_leave(player: String) -> Event {
    let mut e = Event::new("leave");
    e.emoji = Some("🚪".into());
    e.text = Some(format!(
        "**{}** left the server (no leave line in the log; RCON shows them gone)",
        escape(&player)
    ));
    e.fields = vec![("inferred".into(), "true".into())];
    e.player = Some(player);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, player: &str) -> Event {
        let mut e = Event::new(kind);
        e.player = Some(player.into());
        e
    }

    fn names(events: &[Event]) -> Vec<&str> {
        events.iter().filter_map(|e| e.player.as_deref()).collect()
    }

    #[test]
    fn a_player_gone_without_a_leave_line_leaves_once_and_only_after_the_grace() {
        let mut r = Roster::default();
        r.events(1_000, &[event("join", "Alice"), event("join", "Bob")]);
        // A reading taken before Bob's join arrived: too soon to say he left.
        assert!(r.reading(2_000, &["Alice".into()]).is_empty());
        let left = r.reading(20_000, &["Alice".into()]);
        assert_eq!(names(&left), ["Bob"]);
        assert_eq!(left[0].field("inferred"), Some("true"));
        assert!(left[0].text.as_deref().unwrap().starts_with("**Bob** left"));
        assert!(r.reading(40_000, &["Alice".into()]).is_empty(), "once");
        assert_eq!(r.online().collect::<Vec<_>>(), ["Alice"]);
    }

    #[test]
    fn a_real_leave_needs_no_inference_and_a_player_online_at_start_is_known() {
        let mut r = Roster::default();
        r.events(1_000, &[event("join", "Alice"), event("leave", "Alice")]);
        assert!(r.reading(30_000, &["Zoë".into()]).is_empty());
        // Zoë was online before the host started; she goes without a leave line.
        let left = r.reading(60_000, &[]);
        assert_eq!(names(&left), ["Zoë"]);
        assert_eq!(
            left[0].text.as_deref().unwrap().split(' ').next(),
            Some("**Zoë**")
        );
    }

    #[test]
    fn a_reading_taken_before_a_leave_does_not_bring_the_player_back() {
        let mut r = Roster::default();
        r.events(1_000, &[event("join", "Eve_42")]);
        // The reading was taken at 4 s, while Eve was still on...
        let stale = vec!["Eve_42".to_owned()];
        // ...the leave line is read at 5 s...
        r.events(5_000, &[event("leave", "Eve_42")]);
        // ...and the reading is handed over after it.
        assert!(r.reading(4_000, &stale).is_empty());
        assert!(r.reading(25_000, &[]).is_empty(), "her leave line came");
        assert!(r.reading(60_000, &[]).is_empty());
        // Her next join counts again, and a leave without a line after it is inferred.
        r.events(70_000, &[event("join", "Eve_42")]);
        assert_eq!(names(&r.reading(90_000, &[])), ["Eve_42"]);
    }

    #[test]
    fn markdown_in_a_name_is_escaped_and_the_roster_is_bounded() {
        let mut r = Roster::default();
        r.events(0, &[event("join", "a_b_")]);
        let left = r.reading(60_000, &[]);
        assert!(left[0].text.as_deref().unwrap().starts_with("**a\\_b\\_**"));
        let many: Vec<Event> = (0..MAX_PLAYERS + 50)
            .map(|i| event("join", &format!("p{i}")))
            .collect();
        r.events(0, &many);
        assert_eq!(r.online().count(), MAX_PLAYERS);
        let gone: Vec<Event> = (0..MAX_PLAYERS + 50)
            .map(|i| event("leave", &format!("p{i}")))
            .collect();
        r.events(0, &gone);
        assert_eq!(r.left.len(), MAX_PLAYERS);
    }
}
