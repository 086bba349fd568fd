//! What the game's answer to a command that changes something says of it. Factorio answers
//! such a command with nothing, or a line that confirms it, when it was done; it answers a
//! refusal in words (`Player "Bob" doesn't exist.`, `Player Bob is not banned.`), with no
//! status code, so a refusal is recognised by its wording.

/// The game's answer, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Done: no answer, or one that confirms it.
    Done,
    /// The game refused, and said why.
    Refused(&'a str),
    /// An answer that is neither: shown as it is, as neither success nor failure.
    Unclear(&'a str),
}

/// Wordings of a refusal (the game's, in English; compared without regard to case).
const REFUSALS: &[&str] = &[
    "doesn't exist",
    "does not exist",
    "is not banned",
    "is not online",
    "is not muted",
    "is already muted",
    "is already an admin",
    "is not an admin",
    "unknown command",
    "usage:",
    "cannot ",
    "can't ",
    "not allowed",
    "not found",
    "no player",
    "invalid",
    "you don't have permission",
    "only admins",
];

/// Wordings that confirm a change.
const CONFIRMATIONS: &[&str] = &[
    "was muted",
    "was unmuted",
    "was kicked",
    "was banned",
    "was unbanned",
    "was promoted",
    "was demoted",
    "added to the whitelist",
    "removed from the whitelist",
    "whitelist cleared",
    "whitelist enabled",
    "whitelist disabled",
    "saving map",
    "saving game",
];

/// Judges the game's `answer` to a command that changes something.
pub fn verdict(answer: &str) -> Verdict<'_> {
    let answer = answer.trim();
    if answer.is_empty() {
        return Verdict::Done;
    }
    let lower = answer.to_lowercase();
    if REFUSALS.iter().any(|r| lower.contains(r)) {
        Verdict::Refused(answer)
    } else if CONFIRMATIONS.iter().any(|c| lower.contains(c)) {
        Verdict::Done
    } else {
        Verdict::Unclear(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_games_refusals_are_failures() {
        for refusal in [
            "Player \"NoSuchGuy\" doesn't exist.",
            "Player Bob is not banned.",
            "Player Bob is not online.",
            "Player Alice is already an admin.",
            "Player Bob is not an admin.",
            "Unknown command \"kick2\".",
            "Usage: /whitelist add|remove <player>",
        ] {
            assert_eq!(verdict(refusal), Verdict::Refused(refusal), "{refusal}");
        }
    }

    #[test]
    fn silence_and_confirmations_are_done_and_the_rest_is_unclear() {
        assert_eq!(verdict(""), Verdict::Done);
        assert_eq!(verdict(" \n"), Verdict::Done);
        assert_eq!(verdict("Player Bob was muted."), Verdict::Done);
        assert_eq!(verdict("Player Bob added to the whitelist."), Verdict::Done);
        assert_eq!(verdict("Saving map..."), Verdict::Done);
        assert_eq!(verdict("42"), Verdict::Unclear("42"));
    }
}
