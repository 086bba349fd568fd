//! Commands that are safe to send with values that came from people (Discord users, game
//! chat): a [`SafeCommand`] is only built here, and every value placed in one is validated
//! (player names) or escaped (text inside Lua strings) or cleaned (free text at the end of a
//! console command), so nobody can inject Lua or a second command.

use std::fmt::Write as _;

use super::packet::MAX_COMMAND_BYTES;

/// A command ready for [`super::RconClient::exec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeCommand(String);

impl SafeCommand {
    /// The command text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn checked(text: String) -> Result<Self, CommandError> {
        if text.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLong(text.len(), MAX_COMMAND_BYTES));
        }
        Ok(Self(text))
    }
}

/// Why a command was refused before it was sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("`{0}` is not a Factorio player name (1 to 60 of letters, digits, `-`, `_` and `.`)")]
    PlayerName(String),
    #[error("the command would be {0} bytes; Factorio takes at most {1}")]
    TooLong(usize, usize),
    #[error("the text is empty")]
    Empty,
    #[error(
        "`{0}` is not a save name (1 to 100 of letters, digits, `-`, `_` and `.`, not starting with `.`)"
    )]
    SaveName(String),
    #[error("{0} is not a game speed (0.01 to 100)")]
    Speed(f64),
    #[error("`{0}` is not a technology name (lowercase letters, digits and `-`)")]
    Technology(String),
}

/// A player name that Factorio could have given: letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlayerName(String);

impl PlayerName {
    /// Checks `name`; anything else (spaces, quotes, semicolons, newlines) is refused.
    pub fn parse(name: &str) -> Result<Self, CommandError> {
        if is_name(name, 60) {
            Ok(Self(name.to_owned()))
        } else {
            Err(CommandError::PlayerName(name.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PlayerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Letters (any script: logs show names like `Zoë`), digits, `-`, `_` and `.`.
fn is_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `text` as a Lua string literal: quoted, with `\`, `"` and every control byte escaped,
/// so it cannot end the string or the statement it is placed in.
pub fn lua_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                // Three digits, so a following digit cannot extend the escape.
                let _ = write!(out, "\\{:03}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Free text for the end of a console command (a kick reason, a whisper): control
/// characters become spaces, surrounding space is trimmed.
fn plain_text(text: &str) -> Result<String, CommandError> {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return Err(CommandError::Empty);
    }
    Ok(cleaned.to_owned())
}

/// Decodes a Lua string literal as [`lua_string`] writes them, at the start of `s`: returns
/// the text and what follows the closing quote (none if `s` is not such a literal).
pub fn parse_lua_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                d if d.is_ascii_digit() => {
                    let mut n = d.to_digit(10)?;
                    for _ in 0..2 {
                        n = n * 10 + chars.next()?.1.to_digit(10)?;
                    }
                    out.push(char::from_u32(n)?);
                }
                _ => return None,
            },
            '\n' | '\r' | '\0' => return None,
            c => out.push(c),
        }
    }
    None
}

/// A Discord message relayed into the game: printed to every player as
/// `[Discord] author: text` (not game chat, so it is not written back to the log as chat
/// and cannot echo back to Discord).
pub fn relay(author: &str, text: &str) -> Result<SafeCommand, CommandError> {
    let author = plain_text(author).unwrap_or_else(|_| "someone".into());
    let text: String = plain_text(text)?.chars().take(500).collect();
    SafeCommand::checked(format!(
        "/sc game.print({})",
        lua_string(&format!("[Discord] {author}: {text}"))
    ))
}

/// For a server where no Lua may run: the plain console text that shows the words of a
/// `game.print` of the host's own ([`relay`], [`broadcast`]), which the game shows as the
/// server's chat. None for any other command. The text never starts with `/`, so it cannot
/// become a command.
pub fn plain_print(command: &str) -> Option<String> {
    let rest = command.strip_prefix("/sc game.print(")?;
    let (text, after) = parse_lua_string(rest)?;
    if after != ")" {
        return None;
    }
    let text = plain_text(&text).ok()?;
    Some(if text.starts_with('/') {
        format!("› {text}")
    } else {
        text
    })
}

/// `/players` (or `/players online`).
pub fn players(online_only: bool) -> SafeCommand {
    SafeCommand(
        if online_only {
            "/players online"
        } else {
            "/players"
        }
        .into(),
    )
}

/// A command without arguments: `/time`, `/version`, `/seed`, `/admins`, `/evolution`.
pub fn simple(which: Simple) -> SafeCommand {
    SafeCommand(
        match which {
            Simple::Time => "/time",
            Simple::Version => "/version",
            Simple::Seed => "/seed",
            Simple::Admins => "/admins",
            Simple::Evolution => "/evolution",
        }
        .into(),
    )
}

/// The argument-less commands of [`simple`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simple {
    Time,
    Version,
    Seed,
    Admins,
    Evolution,
}

/// `/server-save [NAME]`.
pub fn server_save(name: Option<&str>) -> Result<SafeCommand, CommandError> {
    match name {
        None => Ok(SafeCommand("/server-save".into())),
        Some(n) if is_name(n, 100) && !n.starts_with('.') => {
            SafeCommand::checked(format!("/server-save {n}"))
        }
        Some(n) => Err(CommandError::SaveName(n.chars().take(100).collect())),
    }
}

/// What a moderation command does to a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerAction {
    Unban,
    Mute,
    Unmute,
    Promote,
    Demote,
}

/// `/unban`, `/mute`, `/unmute`, `/promote` or `/demote` of `player`.
pub fn player_action(action: PlayerAction, player: &PlayerName) -> SafeCommand {
    let verb = match action {
        PlayerAction::Unban => "unban",
        PlayerAction::Mute => "mute",
        PlayerAction::Unmute => "unmute",
        PlayerAction::Promote => "promote",
        PlayerAction::Demote => "demote",
    };
    SafeCommand(format!("/{verb} {player}"))
}

/// `/kick PLAYER REASON`.
pub fn kick(player: &PlayerName, reason: &str) -> Result<SafeCommand, CommandError> {
    SafeCommand::checked(format!("/kick {player} {}", plain_text(reason)?))
}

/// `/ban PLAYER REASON`.
pub fn ban(player: &PlayerName, reason: &str) -> Result<SafeCommand, CommandError> {
    SafeCommand::checked(format!("/ban {player} {}", plain_text(reason)?))
}

/// `/whisper PLAYER MESSAGE`.
pub fn whisper(player: &PlayerName, message: &str) -> Result<SafeCommand, CommandError> {
    SafeCommand::checked(format!("/whisper {player} {}", plain_text(message)?))
}

/// A message to every player, printed by Lua so it shows however it is worded.
pub fn broadcast(message: &str) -> Result<SafeCommand, CommandError> {
    let message = plain_text(message)?;
    SafeCommand::checked(format!("/sc game.print({})", lua_string(&message)))
}

/// What `/whitelist` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whitelist {
    Add(PlayerName),
    Remove(PlayerName),
    Get,
    Clear,
    Enable,
    Disable,
}

/// `/whitelist ...`.
pub fn whitelist(action: &Whitelist) -> SafeCommand {
    SafeCommand(match action {
        Whitelist::Add(p) => format!("/whitelist add {p}"),
        Whitelist::Remove(p) => format!("/whitelist remove {p}"),
        Whitelist::Get => "/whitelist get".into(),
        Whitelist::Clear => "/whitelist clear".into(),
        Whitelist::Enable => "/whitelist enable".into(),
        Whitelist::Disable => "/whitelist disable".into(),
    })
}

/// Sets the game speed (1.0 is normal).
pub fn game_speed(speed: f64) -> Result<SafeCommand, CommandError> {
    if !(0.01..=100.0).contains(&speed) {
        return Err(CommandError::Speed(speed));
    }
    Ok(SafeCommand(format!("/sc game.speed = {speed}")))
}

/// What `/factorio clock` sets on the first surface (nauvis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daytime {
    /// Noon, and the day/night cycle runs on.
    Day,
    /// Midnight, and the cycle runs on.
    Night,
    /// Always day.
    EternalDay,
    /// The normal cycle again.
    Normal,
}

/// Sets the time of day of the first surface.
pub fn daytime(d: Daytime) -> SafeCommand {
    let lua = match d {
        Daytime::Day => "s.always_day = false; s.daytime = 0",
        Daytime::Night => "s.always_day = false; s.daytime = 0.5",
        Daytime::EternalDay => "s.always_day = true",
        Daytime::Normal => "s.always_day = false",
    };
    SafeCommand(format!(
        "/sc local s = game.surfaces[1]; {lua}; rcon.print(string.format(\"daytime %.2f, always day: %s\", s.daytime, tostring(s.always_day)))"
    ))
}

/// Starts researching `technology` for the player force (2.0 API, 1.1 fallback).
pub fn research(technology: &str) -> Result<SafeCommand, CommandError> {
    let valid = (1..=100).contains(&technology.len())
        && technology
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(CommandError::Technology(
            technology.chars().take(100).collect(),
        ));
    }
    let t = lua_string(technology);
    SafeCommand::checked(format!(
        "/sc local f = game.forces.player; local t = f.technologies[{t}]; \
         if not t then rcon.print(\"unknown technology\") return end; \
         if f.add_research then f.add_research(t) else f.current_research = t end; \
         rcon.print(\"researching \" .. t.name)"
    ))
}

/// A command typed by an operator with the danger permission, sent as it is (length-checked;
/// NUL bytes, which would end the packet body early, refused).
pub fn raw(command: &str) -> Result<SafeCommand, CommandError> {
    let command = command.trim();
    if command.is_empty() || command.contains('\0') {
        return Err(CommandError::Empty);
    }
    SafeCommand::checked(command.to_owned())
}

/// A fixed Lua program of the host's own (no outside values in it).
pub(crate) fn host_lua(code: &str) -> SafeCommand {
    SafeCommand(format!("/sc {code}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlua(s: &str) -> (String, &str) {
        match parse_lua_string(s) {
            Some(decoded) => decoded,
            None => panic!("not a Lua string literal as lua_string writes them: {s:?}"),
        }
    }

    #[test]
    fn a_relayed_message_is_one_lua_string_whatever_it_contains() {
        let c = relay("Eve", "x\"); os.exit() --\n]] \\ \u{7}").unwrap();
        let rest = c.as_str().strip_prefix("/sc game.print(").unwrap();
        let (text, after) = unlua(rest);
        assert_eq!(text, "[Discord] Eve: x\"); os.exit() -- ]] \\");
        assert_eq!(after, ")");
        assert!(relay("Eve", " \n ").is_err());
        assert_eq!(
            unlua(
                relay("Eve", &"é".repeat(900))
                    .unwrap()
                    .as_str()
                    .strip_prefix("/sc game.print(")
                    .unwrap()
            )
            .0
            .chars()
            .count(),
            515
        );
    }

    #[test]
    fn player_names_follow_factorios_charset() {
        for ok in ["Alice", "bob_42", "x.y-z", "A", "Zoë"] {
            assert_eq!(PlayerName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Bob Smith",
            "Bob;/ban Alice",
            "Bob\n/sc game.print(1)",
            "Bob\"",
            "Bob\u{200b}",
            "Bob\u{0}",
            "<server>",
            &"a".repeat(61),
        ] {
            assert!(
                matches!(PlayerName::parse(bad), Err(CommandError::PlayerName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn injection_attempts_in_messages_stay_inside_one_lua_string() {
        let attempts = [
            "hello",
            "\"); game.print(\"pwned",
            "\\\"); game.speed = 100 --",
            "]] game.print(1) --[[",
            "line one\n/sc game.print(2)",
            "tab\tbell\u{7}del\u{7f}zero\u{0}1",
            "trailing backslash \\",
            "üñíçødé and 🚀",
        ];
        for text in attempts {
            let cmd = broadcast(text).unwrap();
            let rest = cmd.as_str().strip_prefix("/sc game.print(").unwrap();
            let (decoded, after) = unlua(rest);
            assert_eq!(after, ")", "{text:?} escaped into {}", cmd.as_str());
            let expected: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            assert_eq!(decoded, expected.trim());
        }
    }

    #[test]
    fn a_print_becomes_plain_chat_text_and_other_lua_none() {
        let bridged = relay("Zoë", "hi \"there\" /c game.player.die()").unwrap();
        assert_eq!(
            plain_print(bridged.as_str()).as_deref(),
            Some("[Discord] Zoë: hi \"there\" /c game.player.die()")
        );
        let told = broadcast("/c game.speed = 100").unwrap();
        assert_eq!(
            plain_print(told.as_str()).as_deref(),
            Some("› /c game.speed = 100"),
            "never a command"
        );
        assert_eq!(plain_print(game_speed(2.0).unwrap().as_str()), None);
        assert_eq!(plain_print("/sc game.print(\"a\") game.speed = 9"), None);
        assert_eq!(plain_print("/players online"), None);
    }

    #[test]
    fn lua_escapes_survive_a_following_digit() {
        let s = lua_string("\u{1}2");
        assert_eq!(s, "\"\\0012\"");
        assert_eq!(unlua(&s).0, "\u{1}2");
    }

    #[test]
    fn free_text_cannot_start_a_second_line_and_empty_text_is_refused() {
        let bob = PlayerName::parse("Bob").unwrap();
        let cmd = kick(&bob, "afk\n/promote Bob").unwrap();
        assert_eq!(cmd.as_str(), "/kick Bob afk /promote Bob");
        assert_eq!(ban(&bob, " \n\t"), Err(CommandError::Empty));
        assert_eq!(whisper(&bob, "hi").unwrap().as_str(), "/whisper Bob hi");
        assert!(matches!(
            whisper(&bob, &"x".repeat(5000)),
            Err(CommandError::TooLong(..))
        ));
    }

    #[test]
    fn other_commands_validate_their_arguments() {
        assert_eq!(
            server_save(Some("my-save_1")).unwrap().as_str(),
            "/server-save my-save_1"
        );
        assert_eq!(server_save(None).unwrap().as_str(), "/server-save");
        for bad in ["../x", "..", "../../etc/passwd", "a b"] {
            assert!(
                matches!(server_save(Some(bad)), Err(CommandError::SaveName(n)) if n == bad),
                "{bad}"
            );
        }
        assert_eq!(game_speed(2.0).unwrap().as_str(), "/sc game.speed = 2");
        assert!(game_speed(f64::NAN).is_err());
        assert!(game_speed(1000.0).is_err());
        let r = research("automation-2").unwrap();
        assert!(r.as_str().starts_with("/sc "), "{}", r.as_str());
        assert!(
            r.as_str().contains(r#"f.technologies["automation-2"]"#),
            "{}",
            r.as_str()
        );
        assert!(matches!(
            research("x\") game.print(1) --"),
            Err(CommandError::Technology(_))
        ));
        assert!(raw("/sc a\0b").is_err());
        assert_eq!(
            whitelist(&Whitelist::Add(PlayerName::parse("Eve").unwrap())).as_str(),
            "/whitelist add Eve"
        );
        assert_eq!(
            player_action(PlayerAction::Promote, &PlayerName::parse("Eve").unwrap()).as_str(),
            "/promote Eve"
        );
    }
}
