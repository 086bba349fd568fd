//! `/factorio`: the Python bot's subcommands, with its names and arguments, plus `plugins`.
//! A command is parsed into a [`Request`] (every value people typed is validated here or by
//! the safe-command builder before anything reaches RCON), checked against its [`Tier`], and
//! run against the chosen server.

use serenity::all::{
    CommandDataOption, CommandDataOptionValue, CommandOptionType, CreateCommand,
    CreateCommandOption,
};

use super::tiers::Tier;
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
    /// A command that changes something: its answer (or "done") is shown.
    Action(&'static str, Tier, SafeCommand),
    /// Rebuild the server's parsers from the configuration and swap them in if they changed.
    Reload,
}

/// A parsed `/factorio` call: the request and the server it names, if it names one.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub request: Request,
    pub server: Option<String>,
}

impl Request {
    /// The tier a request needs.
    pub fn tier(&self) -> Tier {
        match self {
            Self::Action(_, tier, _) => *tier,
            Self::Reload => Tier::Danger,
            _ => Tier::Query,
        }
    }

    /// Whether it talks to a game server (and so needs one chosen).
    pub fn needs_server(&self) -> bool {
        !matches!(self, Self::Servers | Self::Health | Self::Help)
    }
}

/// Every subcommand: (name, description, tier, options).
struct Sub {
    name: &'static str,
    description: &'static str,
    tier: Tier,
    options: &'static [Opt],
}

struct Opt {
    name: &'static str,
    description: &'static str,
    kind: CommandOptionType,
    required: bool,
    choices: &'static [&'static str],
}

const fn text(name: &'static str, description: &'static str, required: bool) -> Opt {
    Opt {
        name,
        description,
        kind: CommandOptionType::String,
        required,
        choices: &[],
    }
}

const PLAYER: Opt = text("player", "Player name", true);
const REASON: Opt = text("reason", "Reason", false);

/// The subcommands, in the order `help` lists them.
const SUBCOMMANDS: &[Sub] = &[
    Sub {
        name: "servers",
        description: "List the configured servers",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "connect",
        description: "Choose the server your next commands go to",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "status",
        description: "UPS, game time, evolution, players and alerts",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "players",
        description: "Who is online",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "version",
        description: "The game's version",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "seed",
        description: "The map seed",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "evolution",
        description: "Enemy evolution",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "admins",
        description: "The game's admins",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "health",
        description: "The bot's own health",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "plugins",
        description: "Parser and monitor versions and their error counts",
        tier: Tier::Query,
        options: &[],
    },
    Sub {
        name: "clock",
        description: "Show the game time, or set the time of day (danger)",
        tier: Tier::Query,
        options: &[Opt {
            name: "value",
            description: "Time of day to set",
            kind: CommandOptionType::String,
            required: false,
            choices: &["day", "night", "eternal-day", "normal"],
        }],
    },
    Sub {
        name: "kick",
        description: "Kick a player",
        tier: Tier::Admin,
        options: &[PLAYER, REASON],
    },
    Sub {
        name: "ban",
        description: "Ban a player",
        tier: Tier::Admin,
        options: &[PLAYER, REASON],
    },
    Sub {
        name: "unban",
        description: "Unban a player",
        tier: Tier::Admin,
        options: &[PLAYER],
    },
    Sub {
        name: "mute",
        description: "Mute a player",
        tier: Tier::Admin,
        options: &[PLAYER],
    },
    Sub {
        name: "unmute",
        description: "Unmute a player",
        tier: Tier::Admin,
        options: &[PLAYER],
    },
    Sub {
        name: "promote",
        description: "Make a player an admin",
        tier: Tier::Admin,
        options: &[PLAYER],
    },
    Sub {
        name: "demote",
        description: "Take a player's admin rights",
        tier: Tier::Admin,
        options: &[PLAYER],
    },
    Sub {
        name: "save",
        description: "Save the game",
        tier: Tier::Admin,
        options: &[text("name", "Save name", false)],
    },
    Sub {
        name: "broadcast",
        description: "Send a message to every player",
        tier: Tier::Admin,
        options: &[text("message", "Message", true)],
    },
    Sub {
        name: "whisper",
        description: "Send a message to one player",
        tier: Tier::Admin,
        options: &[PLAYER, text("message", "Message", true)],
    },
    Sub {
        name: "whitelist",
        description: "Show or change the whitelist",
        tier: Tier::Admin,
        options: &[
            Opt {
                name: "action",
                description: "What to do",
                kind: CommandOptionType::String,
                required: true,
                choices: &["list", "add", "remove", "enable", "disable", "clear"],
            },
            text("player", "Player name (add, remove)", false),
        ],
    },
    Sub {
        name: "speed",
        description: "Set the game speed (1 is normal)",
        tier: Tier::Danger,
        options: &[Opt {
            name: "value",
            description: "0.01 to 100",
            kind: CommandOptionType::Number,
            required: true,
            choices: &[],
        }],
    },
    Sub {
        name: "research",
        description: "Start researching a technology",
        tier: Tier::Danger,
        options: &[text(
            "technology",
            "Technology name, e.g. automation-2",
            true,
        )],
    },
    Sub {
        name: "rcon",
        description: "Run a console command",
        tier: Tier::Danger,
        options: &[text("command", "The command", true)],
    },
    Sub {
        name: "reload",
        description: "Reload the server's parsers from the configuration",
        tier: Tier::Danger,
        options: &[],
    },
    Sub {
        name: "help",
        description: "What each command does and who may use it",
        tier: Tier::Query,
        options: &[],
    },
];

/// The `/factorio` command as it is registered with Discord.
pub fn definition() -> CreateCommand {
    let mut cmd = CreateCommand::new("factorio")
        .description("Factorio servers: status, players and moderation");
    for sub in SUBCOMMANDS {
        let mut option =
            CreateCommandOption::new(CommandOptionType::SubCommand, sub.name, sub.description);
        for o in sub.options {
            let mut built =
                CreateCommandOption::new(o.kind, o.name, o.description).required(o.required);
            for c in o.choices {
                built = built.add_string_choice(*c, *c);
            }
            option = option.add_sub_option(built);
        }
        if !matches!(sub.name, "servers" | "health" | "help") {
            option = option.add_sub_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "server",
                    "Server tag (default: your chosen server)",
                )
                .required(sub.name == "connect")
                .set_autocomplete(true),
            );
        }
        cmd = cmd.add_option(option);
    }
    cmd
}

/// The lines of `/factorio help`.
pub fn help() -> String {
    let mut out = String::from("**/factorio** commands (tier in brackets):\n");
    for sub in SUBCOMMANDS {
        out.push_str(&format!(
            "`{}` — {} [{}]\n",
            sub.name,
            sub.description,
            sub.tier.name()
        ));
    }
    out.push_str("Commands that take `server` use your chosen server (`/factorio connect`) when it is left out.");
    out
}

/// Why a call could not be parsed; shown to the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown subcommand `{0}`")]
    Unknown(String),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(#[from] crate::rcon::CommandError),
}

/// Parses the options of a `/factorio` interaction.
pub fn parse(options: &[CommandDataOption]) -> Result<Parsed, ParseError> {
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
    let reason = || get("reason").unwrap_or_else(|| "by a Discord admin".into());
    let action = |verb: &'static str, tier: Tier, c: SafeCommand| Request::Action(verb, tier, c);
    let request = match sub.name.as_str() {
        "servers" => Request::Servers,
        "connect" => Request::Connect,
        "status" => Request::Status,
        "players" => Request::Players,
        "health" => Request::Health,
        "plugins" => Request::Plugins,
        "help" => Request::Help,
        "version" => Request::Console("version", command::simple(Simple::Version)),
        "seed" => Request::Console("seed", command::simple(Simple::Seed)),
        "admins" => Request::Console("admins", command::simple(Simple::Admins)),
        "evolution" => Request::Console("evolution", command::simple(Simple::Evolution)),
        "clock" => match get("value").as_deref() {
            None => Request::Console("clock", command::simple(Simple::Time)),
            Some(v) => {
                let d = match v {
                    "day" => Daytime::Day,
                    "night" => Daytime::Night,
                    "eternal-day" => Daytime::EternalDay,
                    "normal" => Daytime::Normal,
                    other => return Err(ParseError::Unknown(format!("clock {other}"))),
                };
                action("clock", Tier::Danger, command::daytime(d))
            }
        },
        "kick" => action("kick", Tier::Admin, command::kick(&player()?, &reason())?),
        "ban" => action("ban", Tier::Admin, command::ban(&player()?, &reason())?),
        "unban" => action(
            "unban",
            Tier::Admin,
            command::player_action(PlayerAction::Unban, &player()?),
        ),
        "mute" => action(
            "mute",
            Tier::Admin,
            command::player_action(PlayerAction::Mute, &player()?),
        ),
        "unmute" => action(
            "unmute",
            Tier::Admin,
            command::player_action(PlayerAction::Unmute, &player()?),
        ),
        "promote" => action(
            "promote",
            Tier::Admin,
            command::player_action(PlayerAction::Promote, &player()?),
        ),
        "demote" => action(
            "demote",
            Tier::Admin,
            command::player_action(PlayerAction::Demote, &player()?),
        ),
        "save" => action(
            "save",
            Tier::Admin,
            command::server_save(get("name").as_deref())?,
        ),
        "broadcast" => action(
            "broadcast",
            Tier::Admin,
            command::broadcast(&required("message")?)?,
        ),
        "whisper" => action(
            "whisper",
            Tier::Admin,
            command::whisper(&player()?, &required("message")?)?,
        ),
        "whitelist" => {
            let wl = match required("action")?.as_str() {
                "list" => Whitelist::Get,
                "add" => Whitelist::Add(player()?),
                "remove" => Whitelist::Remove(player()?),
                "enable" => Whitelist::Enable,
                "disable" => Whitelist::Disable,
                "clear" => Whitelist::Clear,
                other => return Err(ParseError::Unknown(format!("whitelist {other}"))),
            };
            action("whitelist", Tier::Admin, command::whitelist(&wl))
        }
        "speed" => {
            let v: f64 = required("value")?
                .parse()
                .map_err(|_| ParseError::Missing("value"))?;
            action("speed", Tier::Danger, command::game_speed(v)?)
        }
        "research" => action(
            "research",
            Tier::Danger,
            command::research(required("technology")?.trim())?,
        ),
        "rcon" => action("rcon", Tier::Danger, command::raw(&required("command")?)?),
        "reload" => Request::Reload,
        other => return Err(ParseError::Unknown(other.to_owned())),
    };
    Ok(Parsed {
        request,
        server: get("server")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options of `/factorio NAME` as Discord sends them.
    fn sub(name: &str, args: &[(&str, &str)]) -> Vec<CommandDataOption> {
        let args: Vec<_> = args
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "type": 3, "value": v}))
            .collect();
        let raw = serde_json::json!([{"name": name, "type": 1, "options": args}]);
        serde_json::from_value(raw).unwrap()
    }

    #[test]
    fn every_subcommand_is_defined_and_parses_with_its_tier() {
        let cases = [
            ("status", vec![("server", "prod")], Tier::Query),
            (
                "kick",
                vec![("player", "Bob"), ("reason", "afk")],
                Tier::Admin,
            ),
            (
                "whitelist",
                vec![("action", "add"), ("player", "Eve_42")],
                Tier::Admin,
            ),
            ("clock", vec![], Tier::Query),
            ("clock", vec![("value", "eternal-day")], Tier::Danger),
            ("rcon", vec![("command", "/time")], Tier::Danger),
            (
                "research",
                vec![("technology", "automation-2")],
                Tier::Danger,
            ),
        ];
        for (name, args, tier) in cases {
            let p = parse(&sub(name, &args)).unwrap();
            assert_eq!(p.request.tier(), tier, "{name}");
        }
        assert_eq!(
            parse(&sub("status", &[("server", "prod")]))
                .unwrap()
                .server
                .as_deref(),
            Some("prod")
        );
        assert_eq!(SUBCOMMANDS.len(), 27);
        assert_eq!(
            parse(&sub("reload", &[])).unwrap().request.tier(),
            Tier::Danger
        );
        assert!(help().contains("`rcon` — Run a console command [danger]"));
    }

    #[test]
    fn injection_attempts_are_refused_before_rcon() {
        for name in ["Bob; /c game.print(1)", "Bob\n/c x", "a b", ""] {
            let err = parse(&sub("kick", &[("player", name)])).unwrap_err();
            assert!(
                matches!(err, ParseError::Invalid(_) | ParseError::Missing(_)),
                "{name}: {err}"
            );
        }
        let Request::Action(_, _, c) = parse(&sub(
            "kick",
            &[("player", "Bob"), ("reason", "x\n/c evil()")],
        ))
        .unwrap()
        .request
        else {
            panic!()
        };
        assert_eq!(c.as_str(), "/kick Bob x /c evil()");
        let Request::Action(_, _, c) =
            parse(&sub("broadcast", &[("message", "\"); os.exit() --")]))
                .unwrap()
                .request
        else {
            panic!()
        };
        assert!(
            c.as_str()
                .starts_with("/sc game.print(\"\\\"); os.exit() --\")"),
            "{}",
            c.as_str()
        );
        assert!(parse(&sub("research", &[("technology", "x\"]; game")])).is_err());
        assert!(parse(&sub("speed", &[("value", "1e9")])).is_err());
    }
}
