//! The catalogue of slash commands: `/factorio` holds what everyone may ask (status,
//! players, ...), `/factorio-admin` the moderation and danger commands. Discord allows at
//! most 25 subcommands per command, so the Python bot's 27 could not stay under one name;
//! every one of them still exists, and [`MOVED`] says where each went. From the catalogue
//! come the definitions registered with Discord and the text of `/factorio help`.

use serenity::all::{
    CommandOptionType, CreateCommand, CreateCommandOption, InteractionContext, Permissions,
};

use crate::discord::commands::tiers::Tier;

/// The two commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `/factorio`: queries, visible to everyone.
    Factorio,
    /// `/factorio-admin`: moderation and danger, hidden by Discord from members without
    /// Manage Server (server admins can show it to other roles); our tiers still decide.
    Admin,
}

impl Command {
    /// Its name in Discord.
    pub fn name(self) -> &'static str {
        match self {
            Self::Factorio => "factorio",
            Self::Admin => "factorio-admin",
        }
    }

    /// The command a registered name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Factorio, Self::Admin]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One subcommand: where it lives, what it is, who may use it, and its options.
pub(super) struct Sub {
    pub(super) command: Command,
    pub(super) name: &'static str,
    description: &'static str,
    pub(super) tier: Tier,
    pub(super) options: &'static [Opt],
}

pub(super) struct Opt {
    pub(super) name: &'static str,
    description: &'static str,
    kind: CommandOptionType,
    required: bool,
    pub(super) choices: &'static [&'static str],
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
const REASON: Opt = text("reason", "Reason, shown to the player", false);

const fn sub(
    command: Command,
    name: &'static str,
    description: &'static str,
    tier: Tier,
    options: &'static [Opt],
) -> Sub {
    Sub {
        command,
        name,
        description,
        tier,
        options,
    }
}

use Command::{Admin, Factorio};

/// The tier `command`'s subcommand `name` needs, if it has one by that name.
pub(super) fn tier_of(command: Command, name: &str) -> Option<Tier> {
    SUBCOMMANDS
        .iter()
        .find(|s| s.command == command && s.name == name)
        .map(|s| s.tier)
}

/// The subcommands, in the order `help` lists them.
pub(super) const SUBCOMMANDS: &[Sub] = &[
    sub(
        Factorio,
        "servers",
        "List the configured servers",
        Tier::Query,
        &[],
    ),
    sub(
        Factorio,
        "connect",
        "Choose the server your next commands go to",
        Tier::Query,
        &[],
    ),
    sub(
        Factorio,
        "status",
        "UPS, game time, evolution, players and alerts",
        Tier::Query,
        &[],
    ),
    sub(Factorio, "players", "Who is online", Tier::Query, &[]),
    sub(Factorio, "version", "The game's version", Tier::Query, &[]),
    sub(Factorio, "seed", "The map seed", Tier::Query, &[]),
    sub(Factorio, "evolution", "Enemy evolution", Tier::Query, &[]),
    sub(Factorio, "admins", "The game's admins", Tier::Query, &[]),
    sub(Factorio, "clock", "The game time", Tier::Query, &[]),
    sub(Factorio, "health", "The bot's own health", Tier::Query, &[]),
    sub(
        Factorio,
        "plugins",
        "Parser and monitor versions and their error counts",
        Tier::Query,
        &[],
    ),
    sub(
        Factorio,
        "help",
        "What each command does and who may use it",
        Tier::Query,
        &[],
    ),
    sub(
        Admin,
        "kick",
        "Kick a player",
        Tier::Admin,
        &[PLAYER, REASON],
    ),
    sub(Admin, "ban", "Ban a player", Tier::Admin, &[PLAYER, REASON]),
    sub(Admin, "unban", "Unban a player", Tier::Admin, &[PLAYER]),
    sub(Admin, "mute", "Mute a player", Tier::Admin, &[PLAYER]),
    sub(Admin, "unmute", "Unmute a player", Tier::Admin, &[PLAYER]),
    sub(
        Admin,
        "promote",
        "Make a player an admin",
        Tier::Admin,
        &[PLAYER],
    ),
    sub(
        Admin,
        "demote",
        "Take a player's admin rights",
        Tier::Admin,
        &[PLAYER],
    ),
    sub(
        Admin,
        "save",
        "Save the game",
        Tier::Admin,
        &[text("name", "Save name", false)],
    ),
    sub(
        Admin,
        "broadcast",
        "Send a message to every player",
        Tier::Admin,
        &[text("message", "Message", true)],
    ),
    sub(
        Admin,
        "whisper",
        "Send a message to one player",
        Tier::Admin,
        &[PLAYER, text("message", "Message", true)],
    ),
    sub(
        Admin,
        "whitelist",
        "Show or change the whitelist",
        Tier::Admin,
        &[
            Opt {
                name: "action",
                description: "What to do",
                kind: CommandOptionType::String,
                required: true,
                choices: &["list", "add", "remove", "enable", "disable", "clear"],
            },
            text("player", "Player name (add, remove)", false),
        ],
    ),
    sub(
        Admin,
        "clock",
        "Set the time of day",
        Tier::Danger,
        &[Opt {
            name: "value",
            description: "Time of day to set",
            kind: CommandOptionType::String,
            required: true,
            choices: &["day", "night", "eternal-day", "normal"],
        }],
    ),
    sub(
        Admin,
        "speed",
        "Set the game speed (1 is normal)",
        Tier::Danger,
        &[Opt {
            name: "value",
            description: "0.01 to 100",
            kind: CommandOptionType::Number,
            required: true,
            choices: &[],
        }],
    ),
    sub(
        Admin,
        "research",
        "Start researching a technology",
        Tier::Danger,
        &[text(
            "technology",
            "Technology name, e.g. automation-2",
            true,
        )],
    ),
    sub(
        Admin,
        "rcon",
        "Run a console command",
        Tier::Danger,
        &[text("command", "The command", true)],
    ),
    sub(
        Admin,
        "reload",
        "Reload the server's parsers and monitors from the configuration",
        Tier::Danger,
        &[],
    ),
];

/// Where the Python bot's `/factorio` subcommands that moved went: (old, new).
pub const MOVED: &[(&str, &str)] = &[
    ("/factorio kick", "/factorio-admin kick"),
    ("/factorio ban", "/factorio-admin ban"),
    ("/factorio unban", "/factorio-admin unban"),
    ("/factorio mute", "/factorio-admin mute"),
    ("/factorio unmute", "/factorio-admin unmute"),
    ("/factorio promote", "/factorio-admin promote"),
    ("/factorio demote", "/factorio-admin demote"),
    ("/factorio save", "/factorio-admin save"),
    ("/factorio broadcast", "/factorio-admin broadcast"),
    ("/factorio whisper", "/factorio-admin whisper"),
    ("/factorio whitelist", "/factorio-admin whitelist"),
    ("/factorio clock value:…", "/factorio-admin clock value:…"),
    ("/factorio speed", "/factorio-admin speed"),
    ("/factorio research", "/factorio-admin research"),
    ("/factorio rcon", "/factorio-admin rcon"),
    ("/factorio reload", "/factorio-admin reload"),
];

/// Subcommands that choose no server.
fn takes_server(name: &str) -> bool {
    !matches!(name, "servers" | "health" | "help")
}

/// The commands as they are registered with Discord (one bulk overwrite).
pub fn definitions() -> Vec<CreateCommand> {
    [Factorio, Admin]
        .into_iter()
        .map(|command| {
            let mut cmd =
                CreateCommand::new(command.name()).contexts(vec![InteractionContext::Guild]);
            cmd = match command {
                Factorio => cmd.description("Factorio servers: status, players, evolution"),
                Admin => cmd
                    .description("Factorio servers: moderation and game changes")
                    .default_member_permissions(Permissions::MANAGE_GUILD),
            };
            for sub in SUBCOMMANDS.iter().filter(|s| s.command == command) {
                cmd = cmd.add_option(subcommand(sub));
            }
            cmd
        })
        .collect()
}

fn subcommand(sub: &Sub) -> CreateCommandOption {
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
    if takes_server(sub.name) {
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
    option
}

/// The definitions as the JSON body Discord receives (what `check` validates offline).
pub fn definitions_json() -> serde_json::Value {
    serde_json::to_value(definitions()).unwrap_or_default()
}

/// The text of `/factorio help`.
pub fn help() -> String {
    let mut out = String::new();
    for command in [Factorio, Admin] {
        out.push_str(&format!("**/{}** (tier in brackets):\n", command.name()));
        for sub in SUBCOMMANDS.iter().filter(|s| s.command == command) {
            out.push_str(&format!(
                "`{}` — {} [{}]\n",
                sub.name,
                sub.description,
                sub.tier.name()
            ));
        }
    }
    out.push_str("Commands that take `server` use your chosen server (`/factorio connect`) when it is left out.\n");
    let moved: Vec<&str> = MOVED
        .iter()
        .filter(|(old, _)| !old.ends_with('…'))
        .map(|(old, _)| old.trim_start_matches("/factorio "))
        .collect();
    out.push_str(&format!(
        "Moved from `/factorio` to `/factorio-admin`: {} (and `clock` with a value).",
        moved.join(", ")
    ));
    out
}
