//! What a real Factorio server does to the host, end to end: the real binary against the
//! fake Factorio server (a console log, a `factorio-current.log` and RCON, as their own
//! process) and, where Discord matters, the fake Discord. Timeouts are hang guards.

mod common;

use std::path::PathBuf;

use common::fake_discord::{FakeDiscord, GUILD, OPS_ROLE};
use common::*;

const EVENTS: u64 = 111_111_111_111_111_111;
const BRIDGE: u64 = 333_333_333_333_333_333;

/// A fake server writing both logs, and the files of a host beside it.
struct Game {
    dir: tempfile::TempDir,
    console: PathBuf,
    current: PathBuf,
    sim: SimProcess,
}

impl Game {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let current = dir.path().join("factorio-current.log");
        std::fs::write(&console, "").unwrap();
        std::fs::write(&current, "").unwrap();
        let sim = SimProcess::start_with(0, "pw", &console, Some(&current));
        Self {
            dir,
            console,
            current,
            sim,
        }
    }

    /// servers.yml's `prod` entry for this game, with `more` (YAML lines under `prod:`).
    fn server(&self, more: &str) -> String {
        format!(
            "servers:\n  prod:\n    name: Production\n    logs:\n      - path: {}\n      - path: {}\n    \
             rcon_host: 127.0.0.1\n    rcon_port: {}\n    rcon_password: pw\n    metrics_interval: 1\n{more}",
            self.console.display(),
            self.current.display(),
            self.sim.port,
        )
    }

    /// The config file (written by [`Isr::start`]), for `factorio-isr rcon`.
    fn config(&self) -> PathBuf {
        self.dir.path().join("servers.yml")
    }

    fn sim(&self, command: &str) -> String {
        let out = SimProcess::rcon(&self.config(), command);
        assert!(out.status.success(), "{command}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn contents(r: &common::fake_discord::Recorded, channel: u64) -> Vec<String> {
    r.messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, m)| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn is_lua(command: &str) -> bool {
    let word = command.split_whitespace().next().unwrap_or_default();
    matches!(word, "/c" | "/command" | "/sc" | "/silent-command")
}

fn start_bot(game: &Game, discord: &FakeDiscord, more: &str) -> Isr {
    let config = format!(
        "{}discord:\n  guild_id: {GUILD}\n  danger_roles: [{OPS_ROLE}]\n  cooldowns: {{query: 0, admin: 0, danger: 0}}\n",
        game.server(more)
    );
    let isr = Isr::start_with_env(
        game.dir.path(),
        &config,
        free_port(),
        &[
            ("DISCORD_BOT_TOKEN", "fake-token"),
            ("DISCORD_API_URL", &discord.api_url),
        ],
    );
    isr.wait_started();
    wait_for("the bot to connect", || {
        let r = discord.recorded();
        r.identified() && !r.commands.is_empty()
    });
    isr
}

/// Achievement-safe mode: a run that reads the status, players and evolution, relays chat
/// both ways and posts stats reports sends not one Lua command; what needs Lua is refused
/// with a clear answer, and UPS says why it is missing.
#[test]
fn achievement_safe_mode_sends_no_lua_at_all() {
    let game = Game::start();
    let discord = FakeDiscord::start();
    let isr = start_bot(
        &game,
        &discord,
        &format!(
            "    achievements_safe: true\n    event_channel_id: {EVENTS}\n    chat_bridge_channel_id: {BRIDGE}\n    \
             stats_interval: 2\n    alert_check_interval: 1\n"
        ),
    );
    game.sim("/sim join Alice");
    wait_for("a reading with Alice", || {
        isr.get("/api/servers")
            .is_some_and(|(_, b)| b.contains("\"Alice\""))
    });

    let id = discord.command(1, &[], "factorio status", &[("server", "prod")]);
    let (status, _) = discord.answer(id);
    assert!(
        status.contains("unavailable in achievement-safe mode") && status.contains("Alice"),
        "{status}"
    );
    let id = discord.command(1, &[], "factorio players", &[("server", "prod")]);
    assert!(discord.answer(id).0.contains("Alice"));
    let id = discord.command(1, &[], "factorio evolution", &[("server", "prod")]);
    assert!(
        discord.answer(id).0.to_lowercase().contains("evolution"),
        "evolution answered"
    );

    // The chat bridge: the server's chat, which the log shows as `<server>` and which is
    // not relayed back.
    discord.say(BRIDGE, 42, false, "hi from discord /c game.speed = 100");
    wait_for("the relayed message in the game", || {
        game.sim("/sim printed")
            .contains("[Discord] user42: hi from discord /c game.speed = 100")
    });
    wait_for("the server's chat in the console log", || {
        std::fs::read_to_string(&game.console)
            .unwrap()
            .contains("[CHAT] <server>: [Discord] user42: hi from discord")
    });

    // A command that needs Lua is refused, and says why.
    let id = discord.command(
        2,
        &[OPS_ROLE],
        "factorio-admin clock",
        &[("value", "day"), ("server", "prod")],
    );
    let (refused, _) = discord.answer(id);
    assert!(refused.contains("achievement-safe mode"), "{refused}");

    wait_for("a stats report", || {
        contents(&discord.recorded(), EVENTS)
            .iter()
            .any(|m| m.contains("UPS unavailable (achievement-safe)"))
    });
    wait_for("ups_unavailable in /metrics", || {
        isr.get("/metrics").is_some_and(|(_, m)| {
            m.contains(
                r#"factorio_isr_ups_unavailable{reason="achievements_safe",server="prod"} 1"#,
            )
        })
    });
    let (_, api) = isr.get("/api/servers").unwrap();
    assert!(api.contains("ups_unavailable"), "{api}");
    assert!(
        !contents(&discord.recorded(), EVENTS)
            .iter()
            .any(|m| m.contains("hi from discord")),
        "the server's own chat is not relayed back"
    );

    let received = game.sim("/sim received");
    let lua: Vec<&str> = received.lines().filter(|c| is_lua(c)).collect();
    assert!(lua.is_empty(), "Lua sent in achievement-safe mode: {lua:?}");
    for used in ["/players online", "/time", "/evolution"] {
        assert!(received.lines().any(|c| c == used), "{used}: {received}");
    }
    assert!(isr.stop().success());
}

/// A player whom RCON no longer shows, who joined and never left in the log, gets one
/// inferred `leave`; one who left in the log gets none.
#[test]
fn a_leave_the_log_never_wrote_is_inferred_once() {
    let game = Game::start();
    let jsonl = game.dir.path().join("events.jsonl");
    let isr = Isr::start(
        game.dir.path(),
        &game.server(&format!("    sinks:\n      - jsonl: {}\n", jsonl.display())),
    );
    isr.wait_started();
    game.sim("/sim join Bob");
    game.sim("/sim join Carol");
    let events = |kind: &str, player: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == kind && e["player"] == player)
            .collect()
    };
    wait_for("the joins", || {
        !events("join", "Bob").is_empty() && !events("join", "Carol").is_empty()
    });
    game.sim("/sim leave Carol");
    // Bob's client drops without a [LEAVE] line.
    game.sim("/sim forget Bob");
    wait_for("Bob's inferred leave", || {
        !events("leave", "Bob").is_empty()
    });
    let bob = events("leave", "Bob");
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0]["fields"]["inferred"], "true");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(events("leave", "Bob").len(), 1, "once");
    let carol = events("leave", "Carol");
    assert_eq!(carol.len(), 1);
    assert!(carol[0]["fields"].get("inferred").is_none(), "{carol:?}");
    assert!(isr.stop().success());
}

/// Autosaves from `factorio-current.log` edit one Discord message while they come; the
/// start of each save is not shown; a deleted message is posted anew with the count, and
/// the count goes on in that one.
#[test]
fn consecutive_saves_are_coalesced_into_one_edited_message() {
    let game = Game::start();
    let discord = FakeDiscord::start();
    let _isr = start_bot(
        &game,
        &discord,
        &format!("    event_channel_id: {EVENTS}\n"),
    );
    let saved = |r: &common::fake_discord::Recorded| -> Vec<(u64, String)> {
        r.channel_edits
            .iter()
            .map(|(_, id, b)| (*id, b["content"].as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    for n in 1..=4 {
        game.sim("/sim autosave");
        wait_for("the save to show", || {
            let r = discord.recorded();
            let posts = contents(&r, EVENTS);
            let first = posts.iter().any(|m| m.contains("Game saved"));
            first && (n == 1 || saved(&r).iter().any(|(_, t)| t.contains(&format!("×{n}"))))
        });
    }
    let r = discord.recorded();
    let posts: Vec<String> = contents(&r, EVENTS)
        .into_iter()
        .filter(|m| m.contains("Game saved"))
        .collect();
    assert_eq!(posts.len(), 1, "one message for four saves: {posts:?}");
    assert!(
        !contents(&r, EVENTS).iter().any(|m| m.contains("Saving")),
        "the start of a save is not shown"
    );
    let edits = saved(&r);
    let id = edits.last().unwrap().0;
    assert!(edits.iter().all(|(i, _)| *i == id), "{edits:?}");
    assert!(
        edits.last().unwrap().1.contains("×4, last <t:"),
        "{edits:?}"
    );

    // Someone deletes the message: the next save posts the count anew.
    discord.delete_message(id);
    game.sim("/sim autosave");
    wait_for("a new message with the count", || {
        contents(&discord.recorded(), EVENTS)
            .iter()
            .any(|m| m.contains("Game saved ×5"))
    });
    game.sim("/sim autosave");
    wait_for("the new message edited with the count going on", || {
        saved(&discord.recorded())
            .iter()
            .any(|(i, t)| *i != id && t.contains("×6"))
    });
    let r = discord.recorded();
    assert_eq!(
        (contents(&r, EVENTS).into_iter())
            .filter(|m| m.contains("Game saved"))
            .count(),
        2,
        "the first message and the one after its deletion"
    );
}
