//! The bot end to end: the real binary against a fake Discord (REST and gateway on
//! loopback) and the fake Factorio server as its own process. Timeouts are hang guards.

mod common;

use common::fake_discord::{ADMIN_ROLE, FakeDiscord, OPS_ROLE};
use common::*;

const EVENTS: u64 = 111_111_111_111_111_111;
const ALERTS: u64 = 222_222_222_222_222_222;
const BRIDGE: u64 = 333_333_333_333_333_333;

/// What the game showed its players through `game.print`.
fn printed(config: &std::path::Path) -> String {
    String::from_utf8_lossy(&SimProcess::rcon(config, "/sim printed").stdout).into_owned()
}

fn contents(r: &common::fake_discord::Recorded, channel: u64) -> String {
    r.messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, m)| m["content"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn events_alerts_and_commands_go_through_discord_safely() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, "").unwrap();
    let sim = SimProcess::start(0, "pw", &log);
    let discord = FakeDiscord::start();
    std::fs::write(
        dir.path().join("mentions.yml"),
        "mentions:\n  roles:\n    ops: [\"ops\"]\n",
    )
    .unwrap();
    let config = format!(
        "servers:\n  prod:\n    name: Production\n    log_path: {log}\n    rcon_host: 127.0.0.1\n    \
         rcon_port: {port}\n    rcon_password: pw\n    metrics_interval: 1\n    alert_check_interval: 1\n    \
         alert_samples_required: 1\n    enable_stats_collector: false\n    event_channel_id: {EVENTS}\n    \
         alert_channel_id: {ALERTS}\n    chat_bridge_channel_id: {BRIDGE}\n    monitors:\n      - plugin: ups-alert\n        config: {{judge: raw, mention: ops}}\n\
         discord:\n  admin_roles: [\"Server Admin\"]\n  danger_roles: [{OPS_ROLE}]\n  cooldowns: {{query: 0, admin: 0, danger: 0}}\n",
        log = log.display(),
        port = sim.port,
    );
    let config_path = dir.path().join("servers.yml");
    std::fs::write(&config_path, &config).unwrap();
    assert!(
        SimProcess::rcon(&config_path, "/sim join Alice")
            .status
            .success()
    );
    let isr = Isr::start_with_env(
        dir.path(),
        &config,
        free_port(),
        &[
            ("DISCORD_BOT_TOKEN", "fake-token"),
            ("DISCORD_API_URL", &discord.api_url),
            (
                "LOG_LEVEL",
                &std::env::var("DEBUG_DISCORD").unwrap_or("info".into()),
            ),
        ],
    );
    isr.wait_started();
    wait_for("the bot to connect and register /factorio", || {
        let r = discord.recorded();
        let done = r.identified && !r.commands.is_empty();
        if !done && std::env::var("DEBUG_DISCORD").is_ok() && isr.log().lines().count() > 12 {
            panic!("{}", isr.log());
        }
        done
    });
    let registered = &discord.recorded().commands[0];
    let subs: Vec<&str> = registered[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "servers",
        "connect",
        "status",
        "kick",
        "whitelist",
        "rcon",
        "help",
        "plugins",
    ] {
        assert!(subs.contains(&wanted), "{wanted} not registered: {subs:?}");
    }

    // A game line reaches the event channel; an in-game @everyone pings nobody.
    append(
        &log,
        "2026-01-01 10:00:00 [CHAT] Alice: @everyone come look at the rocket\n",
    );
    let r = discord.wait_for("the chat line", |r| {
        contents(r, EVENTS).contains("come look at the rocket")
    });
    let (_, posted) = r.messages.iter().find(|(c, _)| *c == EVENTS).unwrap();
    assert_eq!(
        posted["allowed_mentions"]["parse"],
        serde_json::json!([]),
        "{posted}"
    );
    assert_eq!(
        posted["allowed_mentions"]["roles"],
        serde_json::json!([]),
        "{posted}"
    );

    // Anyone may ask for the status; it shows the game's UPS, evolution and players.
    wait_for("a reading with UPS", || {
        isr.get("/api/servers/prod")
            .is_some_and(|(_, b)| b.contains("\"ups\":6") || b.contains("\"ups\":5"))
    });
    let id = discord.command(1, &[], "status", &[("server", "prod")]);
    let (text, private) = discord.answer(id);
    assert!(!private, "{text}");
    for needle in [
        "Production",
        "UPS: ",
        "Evolution: nauvis",
        "Players (1): Alice",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }

    // A reload is a danger command: an admin may not, the ops role (configured by id) may.
    let id = discord.command(3, &[ADMIN_ROLE], "reload", &[]);
    let (text, private) = discord.answer(id);
    assert!(
        private && text.contains("`danger` commands need a role"),
        "{text}"
    );
    let id = discord.command(4, &[OPS_ROLE], "reload", &[]);
    let (text, private) = discord.answer(id);
    assert!(!private && text.contains("parsers: already at"), "{text}");

    // Server tags autocomplete.
    let id = discord.autocomplete("status", "pr");
    let body = discord.callback(id);
    assert_eq!(body["type"], 8, "{body}");
    assert_eq!(body["data"]["choices"][0]["value"], "prod", "{body}");
    assert_eq!(
        body["data"]["choices"][0]["name"], "prod (Production)",
        "{body}"
    );

    // A slow game server: the answer is deferred within Discord's window, then edited in.
    assert!(
        SimProcess::rcon(&config_path, "/sim lag 3000")
            .status
            .success()
    );
    let id = discord.command(1, &[], "version", &[]);
    assert_eq!(discord.callback(id)["type"], 5, "not deferred");
    let (text, _) = discord.answer(id);
    assert!(
        text.contains("**Production**") && text.contains("2.0"),
        "{text}"
    );
    assert!(
        SimProcess::rcon(&config_path, "/sim lag 0")
            .status
            .success()
    );

    // The chat bridge relays people's messages into the game, escaped, and never the bot's.
    discord.say(
        BRIDGE,
        42,
        false,
        "hello \"friends\"; /c game.print(666)\nsecond line",
    );
    wait_for("the relayed message", || {
        printed(&config_path)
            .contains("[Discord] user42: hello \"friends\"; /c game.print(666) second line")
    });
    discord.say(BRIDGE, 900_000_000_000_000_003, true, "an echo of the bot");
    discord.say(BRIDGE, 43, false, "after the echo");
    wait_for("the next relayed message", || {
        printed(&config_path).contains("user43: after the echo")
    });
    assert!(!printed(&config_path).contains("an echo of the bot"));

    // Moderation needs a configured role; a name that could inject a command is refused.
    let id = discord.command(2, &[], "kick", &[("player", "Alice")]);
    let (text, private) = discord.answer(id);
    assert!(
        private && text.contains("`admin` commands need a role"),
        "{text}"
    );
    let id = discord.command(
        3,
        &[ADMIN_ROLE],
        "kick",
        &[("player", "Alice; /c game.print(1)")],
    );
    let (text, private) = discord.answer(id);
    assert!(
        private && text.contains("not a Factorio player name"),
        "{text}\n{}",
        isr.log()
    );
    let id = discord.command(
        3,
        &[ADMIN_ROLE],
        "kick",
        &[("player", "Alice"), ("reason", "testing")],
    );
    let (text, private) = discord.answer(id);
    assert!(
        !private && text.contains("kick on **Production**"),
        "{text}\n{}",
        isr.log()
    );
    wait_for("the kick in the game's log", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("[KICK] Alice was kicked by <server>. Reason: testing.")
    });

    // A low-UPS alert goes to the alert channel and pings exactly the `ops` role.
    assert!(
        SimProcess::rcon(&config_path, "/sim ups 20")
            .status
            .success()
    );
    let r = discord.wait_for("the alert", |r| {
        r.messages.iter().any(|(c, _)| *c == ALERTS)
    });
    let (_, alert) = r.messages.iter().find(|(c, _)| *c == ALERTS).unwrap();
    assert_eq!(alert["content"], format!("<@&{OPS_ROLE}>"), "{alert}");
    assert_eq!(
        alert["allowed_mentions"]["roles"],
        serde_json::json!([OPS_ROLE.to_string()]),
        "{alert}"
    );
    assert_eq!(
        alert["allowed_mentions"]["parse"],
        serde_json::json!([]),
        "{alert}"
    );
    assert!(
        alert["embeds"][0]["title"]
            .as_str()
            .unwrap()
            .contains("Low UPS"),
        "{alert}"
    );

    // A storm of 429s delays the messages but loses none.
    discord.storm(6);
    let mut lines = String::new();
    for i in 0..40 {
        lines.push_str(&format!("2026-01-01 10:01:00 [CHAT] Alice: storm-{i:02}\n"));
        if i % 10 == 9 {
            append(&log, &lines);
            lines.clear();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let r = discord.wait_for("every storm line", |r| {
        (0..40).all(|i| contents(r, EVENTS).contains(&format!("storm-{i:02}")))
    });
    assert_eq!(r.rate_limited, 6);
    let all = contents(&r, EVENTS);
    for i in 0..40 {
        assert_eq!(
            all.matches(&format!("storm-{i:02}")).count(),
            1,
            "storm-{i:02} not exactly once"
        );
    }
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics.contains("factorio_isr_discord_messages_total{outcome=\"sent\",server=\"prod\"}"),
        "{metrics}"
    );
    assert!(
        !isr.log().contains("fake-token"),
        "the token leaked into the log"
    );
    assert!(isr.stop().success());
}
