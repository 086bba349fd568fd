//! The bot end to end: the real binary against a fake Discord (REST and gateway on
//! loopback) and the fake Factorio server as its own process. Timeouts are hang guards.

mod common;

use common::fake_discord::{ADMIN_ROLE, FakeDiscord, GUILD, IMPOSTOR_ROLE, OPS_ROLE, OTHER_GUILD};
use common::*;

const EVENTS: u64 = 111_111_111_111_111_111;
const ALERTS: u64 = 222_222_222_222_222_222;
const BRIDGE: u64 = 333_333_333_333_333_333;

/// What the game showed its players through `game.print`.
fn printed(config: &std::path::Path) -> String {
    String::from_utf8_lossy(&SimProcess::rcon(config, "/sim printed").stdout).into_owned()
}

/// The answer to interaction `id`, which only its user may see.
fn private_answer(discord: &FakeDiscord, id: u64) -> String {
    let (text, private) = discord.answer(id);
    assert!(private, "shown to the whole channel: {text}");
    text
}

fn contents(r: &common::fake_discord::Recorded, channel: u64) -> String {
    r.messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, m)| m["content"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One server `prod` ("Production") on a fake Factorio server, the bot on a fake Discord,
/// the `ops` mention group, admin roles by name and danger roles by id in [`GUILD`].
struct Setup {
    log: std::path::PathBuf,
    config_path: std::path::PathBuf,
    discord: FakeDiscord,
    isr: Isr,
    _sim: SimProcess,
    _dir: tempfile::TempDir,
}

/// Starts [`Setup`] with `server_keys` (YAML lines under `prod:`) besides the usual ones;
/// `before` runs once the config is written and before the bot starts.
fn start(server_keys: &str, before: impl FnOnce(&FakeDiscord, &std::path::Path)) -> Setup {
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
         rcon_port: {port}\n    rcon_password: pw\n    enable_stats_collector: false\n    \
         event_channel_id: {EVENTS}\n    alert_channel_id: {ALERTS}\n{server_keys}\
         discord:\n  guild_id: {GUILD}\n  admin_roles: [\"Server Admin\"]\n  danger_roles: [{OPS_ROLE}]\n  cooldowns: {{query: 0, admin: 0, danger: 0}}\n",
        log = log.display(),
        port = sim.port,
    );
    let config_path = dir.path().join("servers.yml");
    std::fs::write(&config_path, &config).unwrap();
    before(&discord, &config_path);
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
    Setup {
        log,
        config_path,
        discord,
        isr,
        _sim: sim,
        _dir: dir,
    }
}

#[test]
fn events_alerts_and_commands_go_through_discord_safely() {
    let Setup {
        log,
        config_path,
        discord,
        isr,
        _sim,
        _dir,
    } = start(
        &format!(
            "    metrics_interval: 1\n    alert_check_interval: 1\n    alert_samples_required: 1\n    \
             chat_bridge_channel_id: {BRIDGE}\n    monitors:\n      - plugin: ups-alert\n        \
             config: {{judge: raw, mention: ops}}\n"
        ),
        |_, config| assert!(SimProcess::rcon(config, "/sim join Alice").status.success()),
    );
    wait_for("the bot to connect and register its commands", || {
        let r = discord.recorded();
        let done = r.identified() && !r.commands.is_empty();
        if !done && std::env::var("DEBUG_DISCORD").is_ok() && isr.log().lines().count() > 12 {
            panic!("{}", isr.log());
        }
        done
    });
    // Registered on the configured guild, within Discord's limits (the fake refuses more
    // than 25 subcommands, as Discord does).
    let r = discord.recorded();
    assert!(r.refused.is_empty(), "{:?}", r.refused);
    let (path, registered) = &r.commands[0];
    assert_eq!(path, &format!("guild {GUILD}"));
    let subs = |i: usize| -> Vec<String> {
        registered[i]["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(registered[0]["name"], "factorio");
    assert_eq!(registered[1]["name"], "factorio-admin");
    for wanted in ["servers", "connect", "status", "help", "plugins", "clock"] {
        assert!(
            subs(0).contains(&wanted.to_owned()),
            "{wanted}: {:?}",
            subs(0)
        );
    }
    for wanted in ["kick", "whitelist", "rcon", "reload", "clock"] {
        assert!(
            subs(1).contains(&wanted.to_owned()),
            "{wanted}: {:?}",
            subs(1)
        );
    }
    // The roles are looked up beside the commands' registration, not before it.
    wait_for("the admin role resolved", || {
        isr.log()
            .contains(&format!("discord role \"Server Admin\" is {ADMIN_ROLE}"))
    });

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
    let id = discord.command(1, &[], "factorio status", &[("server", "prod")]);
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
    let id = discord.command(3, &[ADMIN_ROLE], "factorio-admin reload", &[]);
    let (text, private) = discord.answer(id);
    assert!(
        private
            && text.contains(&format!(
                "`danger` commands need one of these roles: <@&{OPS_ROLE}>"
            )),
        "{text}"
    );
    let id = discord.command(4, &[OPS_ROLE], "factorio-admin reload", &[]);
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
    let id = discord.command(1, &[], "factorio version", &[]);
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
    let id = discord.command(2, &[], "factorio-admin kick", &[("player", "Alice")]);
    let text = private_answer(&discord, id);
    assert!(
        text.contains("`admin` commands need one of these roles"),
        "{text}"
    );
    let id = discord.command(
        3,
        &[ADMIN_ROLE],
        "factorio-admin kick",
        &[("player", "Alice; /c game.print(1)")],
    );
    let text = private_answer(&discord, id);
    assert!(
        text.contains("not a Factorio player name"),
        "{text}\n{}",
        isr.log()
    );
    let id = discord.command(
        3,
        &[ADMIN_ROLE],
        "factorio-admin kick",
        &[("player", "Alice"), ("reason", "testing")],
    );
    let (text, private) = discord.answer(id);
    assert!(
        !private && text.contains("On **Production** (`prod`): kicked **Alice** (reason: testing)"),
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
    discord.storm(6, 0.05);
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
    assert_eq!(
        r.rate_limited, 6,
        "a retry came before Discord's wait was over"
    );
    assert_eq!(r.early_retries, 0);
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

/// The rules Discord enforces and the bot must keep: registration retried until it is
/// taken (and visible in `/ready` until then), authority only in the configured guild and by
/// role id, waits as long as a 429 asks, refusals dropped without holding up the queue,
/// private answers kept private after a deferral, one presence loop however often the
/// gateway reconnects.
#[test]
fn the_bot_keeps_discords_rules() {
    let Setup {
        log,
        config_path,
        discord,
        isr,
        _sim,
        _dir,
    } = start("", |discord, _| discord.refuse_registrations(1));

    // Refused registration: `/ready` names the component and Discord's reason; it is
    // retried and then taken.
    wait_for("discord:commands degraded with Discord's reason", || {
        isr.get("/ready").is_some_and(|(_, b)| {
            b.contains("discord:commands") && b.contains("Missing Access") && b.contains("degraded")
        })
    });
    discord.wait_for("the registration, retried", |r| !r.commands.is_empty());
    wait_for("discord:commands ready", || {
        isr.get("/ready")
            .is_some_and(|(code, b)| code == 200 && !b.contains("Missing Access"))
    });

    // DMs, other guilds, and a role of another guild named like the admin role: refused.
    let id = discord.command_from(None, 5, &[], "factorio status", &[]);
    let text = private_answer(&discord, id);
    assert!(text.contains("not in direct messages"), "{text}");
    let id = discord.command_from(
        Some(OTHER_GUILD),
        5,
        &[IMPOSTOR_ROLE],
        "factorio-admin kick",
        &[("player", "Alice")],
    );
    let text = private_answer(&discord, id);
    assert!(
        text.contains("does not take commands in this Discord server"),
        "{text}"
    );
    let id = discord.command(
        5,
        &[IMPOSTOR_ROLE],
        "factorio-admin kick",
        &[("player", "Alice")],
    );
    let text = private_answer(&discord, id);
    assert!(
        text.contains(&format!("<@&{ADMIN_ROLE}>")),
        "the refusal names the roles that would allow it: {text}"
    );
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("[KICK]"),
        "nobody was kicked"
    );

    // A 429 asking for 1.5 s: the retry comes no earlier.
    discord.storm(1, 1.5);
    append(&log, "2026-01-01 10:00:00 [CHAT] Alice: after the limit\n");
    let r = discord.wait_for("the line after the 429", |r| {
        contents(r, EVENTS).contains("after the limit")
    });
    assert_eq!(r.early_retries, 0, "retried before Discord's wait was over");
    let times = &r.post_times;
    let gap = times[times.len() - 1] - times[times.len() - 2];
    assert!(
        gap >= std::time::Duration::from_millis(1500),
        "retried after {gap:?}"
    );

    // A refusal (403) drops that message at once (one try) and the next one goes through.
    discord.forbid(EVENTS);
    append(&log, "2026-01-01 10:00:01 [CHAT] Alice: into the void\n");
    let refused = |r: &common::fake_discord::Recorded| -> Vec<serde_json::Value> {
        r.refused
            .iter()
            .filter(|(what, _)| what == "message")
            .map(|(_, body)| body.clone())
            .collect()
    };
    let r = discord.wait_for("the refusal", |r| !refused(r).is_empty());
    discord.allow(EVENTS);
    append(&log, "2026-01-01 10:00:02 [CHAT] Alice: heard again\n");
    let r2 = discord.wait_for("the next line", |r| {
        contents(r, EVENTS).contains("heard again")
    });
    assert_eq!(refused(&r2).len(), 1, "the refused message was sent again");
    assert_eq!(refused(&r)[0]["code"], 50013);
    assert!(!contents(&r2, EVENTS).contains("into the void"));
    let (_, metrics) = isr.get("/metrics").unwrap();
    assert!(
        metrics
            .contains("factorio_isr_discord_messages_total{outcome=\"refused\",server=\"prod\"} 1"),
        "{metrics}"
    );

    // A chat line that pings, longer than a message: cut so that the ping still fits.
    let long = "x".repeat(2500);
    append(
        &log,
        &format!("2026-01-01 10:00:03 [CHAT] Alice: @ops {long}\n"),
    );
    let r = discord.wait_for("the long ping", |r| {
        contents(r, EVENTS).contains(&format!("<@&{OPS_ROLE}>"))
    });
    let (_, ping) = r
        .messages
        .iter()
        .find(|(_, m)| m["content"].as_str().unwrap_or_default().contains("<@&"))
        .unwrap();
    let content = ping["content"].as_str().unwrap();
    assert!(content.encode_utf16().count() <= 2000);
    assert!(content.ends_with(&format!("<@&{OPS_ROLE}>")), "{content}");

    // A slow server whose command then fails: deferred, and the error only the user sees.
    assert!(
        SimProcess::rcon(&config_path, "/sim lag 8000")
            .status
            .success()
    );
    let id = discord.command(1, &[], "factorio version", &[]);
    assert_eq!(discord.callback(id)["type"], 5, "not deferred");
    let (text, private) = discord.answer(id);
    assert!(private, "a deferred error was shown to the channel: {text}");
    assert!(text.contains("did not answer"), "{text}");
    assert!(
        SimProcess::rcon(&config_path, "/sim lag 0")
            .status
            .success()
    );

    // Three new gateway sessions: still one presence loop.
    let before = discord.recorded().presence_updates.len();
    let since = discord.now();
    for n in 2..=4 {
        discord.reconnect();
        discord.wait_for("a new session", |r| r.identifies >= n);
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let r = discord.recorded();
    let after: Vec<_> = r.presence_updates.iter().filter(|t| **t >= since).collect();
    assert!(before >= 1, "the presence was never set: {r:#?}");
    assert!(after.len() <= 1, "presence loops pile up: {after:?}");
    assert_eq!(r.commands.len(), 1, "registered again on a reconnect");
    assert!(
        !isr.log().contains("fake-token"),
        "the token leaked into the log"
    );
    assert!(isr.stop().success());
}
