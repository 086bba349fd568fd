//! A slash command call (of a command of [`crate::discord::commands::definitions`]) as the host runs it.
//!
//! A call is parsed into a [`Request`] (every value people typed is validated here or by
//! the safe-command builder before anything reaches RCON), checked against its [`Tier`], and
//! run against the chosen server.

use serenity::all::{CommandDataOption, CommandDataOptionValue};

use crate::discord::commands::definitions::Command::{self, Admin, Factorio};
use crate::discord::commands::definitions::{self, MOVED};
use crate::discord::commands::tiers::Tier;
use crate::discord::escape;
use crate::rcon::command::{self, Daytime, PlayerAction, Simple, Whitelist};
use crate::rcon::{PlayerName, SafeCommand};

/// What a user asked for, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Servers,
    Connect,
    Status,
    Players,
    Health,
    Plugins,
    Help,
    /// `version`, `seed`, `admins`, `evolution` and `clock` without a value: a read-only
    /// console command whose answer is shown as it is.
    Console(&'static str, SafeCommand),
    /// A command that changes something.
    Action(Action),
    /// Rebuild the server's parsers from the configuration and swap them in if they changed.
    Reload,
}

/// A command that changes the game: what it sends, and what it did in words
/// (`kicked **Alice** (reason: afk)`), for the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub verb: &'static str,
    pub command: SafeCommand,
    pub done: String,
    /// Whether the game's answer is the result (a raw command, the whitelist read) rather
    /// than a confirmation to judge: only a refusal then makes it a failure.
    pub shows_answer: bool,
}

/// A parsed call: the request, the tier its subcommand needs (from the one command table,
/// [`super::definitions`]), and the server it names, if it names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub request: Request,
    pub tier: Tier,
    pub server: Option<String>,
}

impl Request {
    /// Whether it talks to a game server (and so needs one chosen).
    pub fn needs_server(&self) -> bool {
        !matches!(self, Self::Servers | Self::Health | Self::Help)
    }
}

/// Why a call could not be parsed; shown to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command `{0}`")]
    Unknown(String),
    /// A Python bot's `/factorio` subcommand that is now under `/factorio-admin` (its old
    /// global commands may still be shown for a while): (old, new).
    #[error("`{0}` moved to `{1}`: use that instead")]
    Moved(&'static str, &'static str),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(#[from] crate::rcon::CommandError),
}

/// The error for the Python bot's `old` command.
fn moved(old: &str) -> ParseError {
    match MOVED.iter().find(|(o, _)| *o == old) {
        Some((o, new)) => ParseError::Moved(o, new),
        None => ParseError::Unknown(old.to_owned()),
    }
}

/// Parses the options of a call of `command`.
pub fn parse(command: Command, options: &[CommandDataOption]) -> Result<Parsed, ParseError> {
    let Some(sub) = options.first() else {
        return Err(ParseError::Unknown(String::new()));
    };
    let args: &[CommandDataOption] = match &sub.value {
        CommandDataOptionValue::SubCommand(args) => args,
        _ => &[],
    };
    let get = |name: &str| {
        args.iter()
            .find(|o| o.name == name)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.clone()),
                CommandDataOptionValue::Autocomplete { value, .. } => Some(value.clone()),
                CommandDataOptionValue::Number(n) => Some(n.to_string()),
                CommandDataOptionValue::Integer(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let required = |name: &'static str| get(name).ok_or(ParseError::Missing(name));
    let player =
        || -> Result<PlayerName, ParseError> { Ok(PlayerName::parse(required("player")?.trim())?) };
    let given_reason = get("reason")
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let reason = given_reason
        .clone()
        .unwrap_or_else(|| "by a Discord admin".into());
    let because = match &given_reason {
        Some(r) => format!(" (reason: {})", escape(r)),
        None => " (no reason given)".to_owned(),
    };
    let act = |verb: &'static str, command: SafeCommand, done: String| {
        Request::Action(Action {
            verb,
            command,
            done,
            shows_answer: false,
        })
    };
    let showing = |mut request: Request| {
        if let Request::Action(a) = &mut request {
            a.shows_answer = true;
        }
        request
    };
    let on_player = |verb: &'static str, action: PlayerAction, past: &str| {
        let p = player()?;
        let done = format!("{past} **{}**", escape(p.as_str()));
        Ok::<_, ParseError>(act(verb, command::player_action(action, &p), done))
    };
    let name = sub.name.as_str();
    let request = match (command, name) {
        (Factorio, "servers") => Request::Servers,
        (Factorio, "connect") => Request::Connect,
        (Factorio, "status") => Request::Status,
        (Factorio, "players") => Request::Players,
        (Factorio, "health") => Request::Health,
        (Factorio, "plugins") => Request::Plugins,
        (Factorio, "help") => Request::Help,
        (Factorio, "version") => Request::Console("version", command::simple(Simple::Version)),
        (Factorio, "seed") => Request::Console("seed", command::simple(Simple::Seed)),
        (Factorio, "admins") => Request::Console("admins", command::simple(Simple::Admins)),
        (Factorio, "evolution") => {
            Request::Console("evolution", command::simple(Simple::Evolution))
        }
        (Factorio, "clock") if get("value").is_some() => {
            return Err(moved("/factorio clock value:…"));
        }
        (Factorio, "clock") => Request::Console("clock", command::simple(Simple::Time)),
        (Admin, "clock") => {
            let v = required("value")?;
            let d = match v.as_str() {
                "day" => Daytime::Day,
                "night" => Daytime::Night,
                "eternal-day" => Daytime::EternalDay,
                "normal" => Daytime::Normal,
                other => return Err(ParseError::Unknown(format!("clock {other}"))),
            };
            act(
                "clock",
                command::daytime(d),
                format!("set the time of day to {v}"),
            )
        }
        (Admin, "kick") => {
            let p = player()?;
            let done = format!("kicked **{}**{because}", escape(p.as_str()));
            act("kick", command::kick(&p, &reason)?, done)
        }
        (Admin, "ban") => {
            let p = player()?;
            let done = format!("banned **{}**{because}", escape(p.as_str()));
            act("ban", command::ban(&p, &reason)?, done)
        }
        (Admin, "unban") => on_player("unban", PlayerAction::Unban, "unbanned")?,
        (Admin, "mute") => on_player("mute", PlayerAction::Mute, "muted")?,
        (Admin, "unmute") => on_player("unmute", PlayerAction::Unmute, "unmuted")?,
        (Admin, "promote") => on_player("promote", PlayerAction::Promote, "promoted")?,
        (Admin, "demote") => on_player("demote", PlayerAction::Demote, "demoted")?,
        (Admin, "save") => {
            let save = get("name")
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty());
            let done = match &save {
                Some(n) => format!("saved the game as `{}`", escape(n)),
                None => "saved the game".to_owned(),
            };
            act("save", command::server_save(save.as_deref())?, done)
        }
        (Admin, "broadcast") => {
            let m = required("message")?;
            let done = format!("told every player: {}", escape(m.trim()));
            act("broadcast", command::broadcast(&m)?, done)
        }
        (Admin, "whisper") => {
            let (p, m) = (player()?, required("message")?);
            let done = format!("told **{}**: {}", escape(p.as_str()), escape(m.trim()));
            act("whisper", command::whisper(&p, &m)?, done)
        }
        (Admin, "whitelist") => {
            let (wl, done) = match required("action")?.as_str() {
                "list" => (Whitelist::Get, "read the whitelist".to_owned()),
                "add" => {
                    let p = player()?;
                    let done = format!("added **{}** to the whitelist", escape(p.as_str()));
                    (Whitelist::Add(p), done)
                }
                "remove" => {
                    let p = player()?;
                    let done = format!("removed **{}** from the whitelist", escape(p.as_str()));
                    (Whitelist::Remove(p), done)
                }
                "enable" => (Whitelist::Enable, "turned the whitelist on".to_owned()),
                "disable" => (Whitelist::Disable, "turned the whitelist off".to_owned()),
                "clear" => (Whitelist::Clear, "cleared the whitelist".to_owned()),
                other => return Err(ParseError::Unknown(format!("whitelist {other}"))),
            };
            let request = act("whitelist", command::whitelist(&wl), done);
            if wl == Whitelist::Get {
                showing(request)
            } else {
                request
            }
        }
        (Admin, "speed") => {
            let v: f64 = required("value")?
                .parse()
                .map_err(|_| ParseError::Missing("value"))?;
            act(
                "speed",
                command::game_speed(v)?,
                format!("set the game speed to {v}"),
            )
        }
        (Admin, "research") => {
            let t = required("technology")?;
            let t = t.trim();
            let done = format!("started researching `{}`", escape(t));
            act("research", command::research(t)?, done)
        }
        (Admin, "rcon") => {
            let c = required("command")?;
            showing(act("rcon", command::raw(&c)?, "ran the command".to_owned()))
        }
        (Admin, "reload") => Request::Reload,
        (Factorio, other)
            if MOVED
                .iter()
                .any(|(old, _)| *old == format!("/factorio {other}")) =>
        {
            return Err(moved(&format!("/factorio {other}")));
        }
        (command, other) => {
            return Err(ParseError::Unknown(format!("{} {other}", command.name())));
        }
    };
    Ok(Parsed {
        request,
        // Deny by default: a subcommand the table does not have needs the strictest tier.
        tier: definitions::tier_of(command, name).unwrap_or(Tier::Danger),
        server: get("server")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::commands::definitions::{MOVED, SUBCOMMANDS, definitions_json, help};

    /// The options of `/COMMAND NAME` as Discord sends them.
    fn sub(name: &str, args: &[(&str, &str)]) -> Vec<CommandDataOption> {
        let args: Vec<_> = args
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "type": 3, "value": v}))
            .collect();
        let raw = serde_json::json!([{"name": name, "type": 1, "options": args}]);
        serde_json::from_value(raw).unwrap()
    }

    #[test]
    fn every_subcommand_of_the_table_parses_and_needs_the_tier_the_table_gives_it() {
        let sample = |name: &str| match name {
            "value" => "1.5",
            "technology" => "automation-2",
            "command" => "/time",
            "player" => "Bob",
            _ => "something",
        };
        for s in definitions::SUBCOMMANDS {
            let args: Vec<(&str, &str)> = (s.options.iter())
                .map(|o| (o.name, o.choices.first().copied().unwrap_or(sample(o.name))))
                .collect();
            let p = parse(s.command, &sub(s.name, &args))
                .unwrap_or_else(|e| panic!("{} {}: {e}", s.command.name(), s.name));
            assert_eq!(p.tier, s.tier, "{}", s.name);
        }
    }

    #[test]
    fn the_definitions_keep_within_discords_limits() {
        let body = definitions_json();
        let problems = crate::discord::limits::check_commands(&body);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["factorio", "factorio-admin"]);
        assert_eq!(body[1]["default_member_permissions"], "32", "Manage Server");
        assert_eq!(body[0]["contexts"], serde_json::json!([0]), "guilds only");
    }

    #[test]
    fn every_python_bot_subcommand_still_exists() {
        let python = [
            "servers",
            "connect",
            "status",
            "players",
            "version",
            "seed",
            "evolution",
            "admins",
            "health",
            "plugins",
            "clock",
            "kick",
            "ban",
            "unban",
            "mute",
            "unmute",
            "promote",
            "demote",
            "save",
            "broadcast",
            "whisper",
            "whitelist",
            "speed",
            "research",
            "rcon",
            "reload",
            "help",
        ];
        for name in python {
            assert!(SUBCOMMANDS.iter().any(|s| s.name == name), "{name}");
        }
        for (old, new) in MOVED {
            let name = new.split(' ').nth(1).unwrap();
            assert!(
                SUBCOMMANDS
                    .iter()
                    .any(|s| s.command == Admin && s.name == name),
                "{old} -> {new}"
            );
            assert!(help().contains(name), "{name} missing from help");
        }
    }

    #[test]
    fn the_python_bots_old_subcommands_say_where_they_went() {
        let err = parse(Factorio, &sub("kick", &[("player", "Bob")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`/factorio kick` moved to `/factorio-admin kick`: use that instead"
        );
        let err = parse(Factorio, &sub("clock", &[("value", "day")])).unwrap_err();
        assert!(
            err.to_string().contains("`/factorio-admin clock value:…`"),
            "{err}"
        );
        assert!(parse(Factorio, &sub("clock", &[])).is_ok());
        let err = parse(Factorio, &sub("teleport", &[])).unwrap_err();
        assert_eq!(err, ParseError::Unknown("factorio teleport".into()));
    }

    #[test]
    fn every_subcommand_parses_with_its_tier() {
        let cases = [
            (Factorio, "status", vec![("server", "prod")], Tier::Query),
            (
                Admin,
                "kick",
                vec![("player", "Bob"), ("reason", "afk")],
                Tier::Admin,
            ),
            (
                Admin,
                "whitelist",
                vec![("action", "add"), ("player", "Eve_42")],
                Tier::Admin,
            ),
            (Factorio, "clock", vec![], Tier::Query),
            (Admin, "clock", vec![("value", "eternal-day")], Tier::Danger),
            (Admin, "rcon", vec![("command", "/time")], Tier::Danger),
            (
                Admin,
                "research",
                vec![("technology", "automation-2")],
                Tier::Danger,
            ),
            (Admin, "reload", vec![], Tier::Danger),
        ];
        for (command, name, args, tier) in cases {
            let p = parse(command, &sub(name, &args)).unwrap();
            assert_eq!(p.tier, tier, "{name}");
        }
        assert_eq!(
            parse(Factorio, &sub("status", &[("server", "prod")]))
                .unwrap()
                .server
                .as_deref(),
            Some("prod")
        );
        // An admin command is not reachable under the everyone command, nor the reverse.
        assert!(parse(Factorio, &sub("kick", &[("player", "Bob")])).is_err());
        assert!(parse(Admin, &sub("status", &[])).is_err());
        assert!(help().contains("`rcon` — Run a console command [danger]"));
        let help = help();
        assert!(
            crate::discord::limits::length(&help) <= crate::discord::limits::CONTENT,
            "help is cut: {} characters",
            crate::discord::limits::length(&help)
        );
    }

    #[test]
    fn moderation_answers_say_who_and_why() {
        let done = |name: &str, args: &[(&str, &str)]| match parse(Admin, &sub(name, args))
            .unwrap()
            .request
        {
            Request::Action(a) => a.done,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            done("kick", &[("player", "Bob_1"), ("reason", "afk *again*")]),
            "kicked **Bob\\_1** (reason: afk \\*again\\*)"
        );
        assert_eq!(
            done("ban", &[("player", "Eve")]),
            "banned **Eve** (no reason given)"
        );
        assert_eq!(done("promote", &[("player", "Eve")]), "promoted **Eve**");
    }

    #[test]
    fn injection_attempts_are_refused_before_rcon() {
        for name in ["Bob; /c game.print(1)", "Bob\n/c x", "a b", ""] {
            let err = parse(Admin, &sub("kick", &[("player", name)])).unwrap_err();
            assert!(
                matches!(err, ParseError::Invalid(_) | ParseError::Missing(_)),
                "{name}: {err}"
            );
        }
        let command = |name: &str, args: &[(&str, &str)]| match parse(Admin, &sub(name, args))
            .unwrap()
            .request
        {
            Request::Action(a) => a.command,
            other => panic!("{other:?}"),
        };
        let c = command("kick", &[("player", "Bob"), ("reason", "x\n/c evil()")]);
        assert_eq!(c.as_str(), "/kick Bob x /c evil()");
        let c = command("broadcast", &[("message", "\"); os.exit() --")]);
        assert!(
            c.as_str()
                .starts_with("/sc game.print(\"\\\"); os.exit() --\")"),
            "{}",
            c.as_str()
        );
        assert!(parse(Admin, &sub("research", &[("technology", "x\"]; game")])).is_err());
        assert!(parse(Admin, &sub("speed", &[("value", "1e9")])).is_err());
    }
}
