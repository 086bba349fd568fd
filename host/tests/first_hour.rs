//! What a new operator sees in the first hour, end to end: the real binary, the fake Discord
//! (REST and gateway on loopback) and the fake Factorio server as its own process. Each test
//! is one of the defects found trying it as a new user would; timeouts are hang guards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::bot::*;
use common::fake_discord::{ADMIN_ROLE, FakeDiscord, GUILD, OPS_ROLE, Recorded};
use common::*;
use serde_json::Value;

const JOHN: u64 = 1_111_111_111_111_111_111;

#[test]
fn game_chat_pings_the_groups_it_names_and_alerts_name_their_server() {
    // The Python bot's installation guide's mentions.yml: roles and users by id.
    let mentions = format!(
        "mentions:\n  enabled: true\n  groups:\n    admin:\n      discord_role_id: {ADMIN_ROLE}\n      \
         keywords: [\"@admin\", \"@admins\"]\n  users:\n    JohnDoe:\n      discord_user_id: {JOHN}\n      \
         keywords: [\"@john\"]\n  roles:\n    operations: [\"ops\"]\n"
    );
    let s = Setup::new(
        "    metrics_interval: 1\n    alert_check_interval: 1\n    monitors:\n      - plugin: ups-alert\n        \
         config: {judge: raw, samples_required: 1, cooldown_secs: 0, mention: operations}\n",
        &format!("  admin_roles: [{ADMIN_ROLE}]\n"),
        Some(&mentions),
    );
    let isr = s.start();

    // `@admins` makes the stock parser's `mention` event: it pings the admin role.
    append(
        &s.log,
        "2026-01-01 10:00:00 [CHAT] Bob: need help @admins\n\
         2026-01-01 10:00:01 [CHAT] Carol: @john look at this\n\
         2026-01-01 10:00:02 [CHAT] Mallory: @everyone @here wake up\n",
    );
    let r = s.discord.wait_for("the three lines", |r| {
        ["need help", "look at this", "wake up"]
            .iter()
            .all(|n| message_with(r, EVENTS, n).is_some())
    });
    let admins = message_with(&r, EVENTS, "need help").unwrap();
    assert_eq!(
        admins["allowed_mentions"]["roles"],
        serde_json::json!([ADMIN_ROLE.to_string()]),
        "{admins}"
    );
    assert!(
        admins["content"]
            .as_str()
            .unwrap()
            .ends_with(&format!("<@&{ADMIN_ROLE}>")),
        "{admins}"
    );
    let john = message_with(&r, EVENTS, "look at this").unwrap();
    assert_eq!(
        john["allowed_mentions"]["users"],
        serde_json::json!([JOHN.to_string()]),
        "{john}"
    );
    let everyone = message_with(&r, EVENTS, "wake up").unwrap();
    assert_eq!(everyone["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(everyone["allowed_mentions"]["roles"], serde_json::json!([]));
    assert_eq!(everyone["allowed_mentions"]["users"], serde_json::json!([]));

    // A low-UPS alert names its server in its title, its fields in words with units.
    s.game("/sim ups 20");
    let r = s
        .discord
        .wait_for("the alert", |r| !posted(r, ALERTS).is_empty());
    let alert = &posted(&r, ALERTS)[0];
    let embed = &alert["embeds"][0];
    let title = embed["title"].as_str().unwrap();
    assert!(
        title.contains("Low UPS") && title.contains("Production (prod)"),
        "{alert}"
    );
    let names: Vec<&str> = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for wanted in ["Judged by", "UPS", "Warning threshold", "Low for"] {
        assert!(names.contains(&wanted), "{wanted} in {names:?}");
    }
    for internal in ["judged", "low_for_secs", "warning_threshold"] {
        assert!(!names.contains(&internal), "{internal} in {names:?}");
    }
    let low_for = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Low for")
        .unwrap();
    assert!(
        low_for["value"].as_str().unwrap().ends_with(" s"),
        "a duration: {low_for}"
    );
    assert_eq!(alert["content"], format!("<@&{OPS_ROLE}>"), "{alert}");
    assert!(isr.stop().success());
}

#[test]
fn moderation_and_queries_answer_what_really_happened() {
    let s = Setup::new(
        "",
        "  admin_roles: [\"Server Admin\"]\n",
        Some("mentions: {}\n"),
    );
    // The Python bot's global commands are still registered on the application.
    s.discord
        .seed_commands("global", &["factorio", "stats", "players"]);
    let isr = s.start();
    let d = &s.discord;

    // Its stale global commands are gone; ours are on the guild.
    d.wait_for("the stale global commands removed", |_| {
        d.registered("global").is_empty()
    });
    assert_eq!(
        d.registered(&format!("guild {GUILD}")),
        ["factorio", "factorio-admin"]
    );
    wait_for("the removal logged", || {
        isr.log()
            .contains("removed /factorio, /stats, /players left by an earlier bot")
    });

    // A kick the game refuses is a failure, with the game's reason, to the user only.
    let id = moderate(d, EVENTS, &[ADMIN_ROLE], "kick", "NoSuchGuy");
    let text = private_answer(d, id);
    assert!(
        text.starts_with("❌ Not done on **Production** (`prod`)")
            && text.contains("Player \"NoSuchGuy\" doesn't exist."),
        "{text}"
    );
    assert!(!text.contains('✅'), "{text}");
    for (verb, player) in [
        ("mute", "NoSuchGuy"),
        ("unban", "Alice"),
        ("demote", "Nobody"),
    ] {
        let id = moderate(d, EVENTS, &[ADMIN_ROLE], verb, player);
        let text = private_answer(d, id);
        assert!(text.starts_with("❌ Not done"), "{verb}: {text}");
    }
    // One the game does is done.
    s.game("/sim join Alice");
    let id = moderate(d, EVENTS, &[ADMIN_ROLE], "kick", "Alice");
    let (text, private) = d.answer(id);
    assert!(
        !private && text.starts_with("✅ On **Production** (`prod`): kicked **Alice**"),
        "{text}"
    );

    // A command in a server's own channel goes to that server; elsewhere, with two
    // servers, it asks which.
    let id = d.command_in(EVENTS, 8, &[], "factorio status", &[]);
    let (text, _) = d.answer(id);
    assert!(text.starts_with("**Production** (`prod`)"), "{text}");
    let id = d.command_in(OTHER_EVENTS, 8, &[], "factorio status", &[]);
    let (text, _) = d.answer(id);
    assert!(text.contains("**Second** (`test-2`)"), "{text}");
    let id = d.command_in(ALERTS, 8, &[], "factorio status", &[]);
    let text = private_answer(d, id);
    assert!(
        text.contains("Which server?"),
        "a shared channel names no server: {text}"
    );
    // The server named wins over the channel's.
    let id = d.command_in(
        OTHER_EVENTS,
        8,
        &[],
        "factorio players",
        &[("server", "prod")],
    );
    let (text, _) = d.answer(id);
    assert!(text.starts_with("**Production** (`prod`)"), "{text}");

    // Evolution reads like status, not the game's raw text in a code block.
    let id = d.command_in(EVENTS, 8, &[], "factorio evolution", &[]);
    let (text, private) = d.answer(id);
    assert!(!private && !text.contains("```"), "{text}");
    assert!(
        text.starts_with("**Production** (`prod`) evolution\nNauvis: **") && text.contains(" %**"),
        "{text}"
    );

    // The Python bot's `/factorio kick` (its global command may still show for a while).
    let id = d.command_in(
        EVENTS,
        3,
        &[ADMIN_ROLE],
        "factorio kick",
        &[("player", "Alice")],
    );
    let text = private_answer(d, id);
    assert!(
        text.contains("`/factorio kick` moved to `/factorio-admin kick`"),
        "{text}"
    );
    assert!(isr.stop().success());
}

#[test]
fn a_role_given_as_a_string_of_digits_is_an_id_and_a_missing_one_is_named() {
    // As a `${VAR}` in a YAML list must be written: quoted.
    let s = Setup::new(
        "",
        "  admin_roles: [\"600000000000000001\", \"900000000000000010\"]\n",
        None,
    );
    let isr = s.start();
    let d = &s.discord;
    wait_for("the missing role named in /ready", || {
        isr.component("discord").is_some_and(|c| {
            c["detail"]
                .as_str()
                .is_some_and(|t| t.contains("role 600000000000000001 not found in the guild"))
        })
    });
    assert!(
        isr.log()
            .contains("discord role id 600000000000000001 is not a role of the guild")
    );
    // The id given as a string is an id: the member with it may kick.
    s.game("/sim join Alice");
    let id = moderate(d, EVENTS, &[ADMIN_ROLE], "kick", "Alice");
    let (text, _) = d.answer(id);
    assert!(text.starts_with("✅"), "{text}");
    // A member without it hears which configured role is not there, not "no role".
    let id = d.command_in(
        EVENTS,
        4,
        &[],
        "factorio-admin kick",
        &[("player", "Alice")],
    );
    let text = private_answer(d, id);
    assert!(
        text.contains(&format!("<@&{ADMIN_ROLE}>"))
            && text.contains("role id 600000000000000001 is not a role of this Discord server")
            && !text.contains("no role is configured"),
        "{text}"
    );
    assert!(isr.stop().success());
}

/// The alerts open in `/api/servers` of `isr` for `prod`.
fn open_alerts(isr: &Isr) -> Vec<Value> {
    let (_, body) = isr.get("/api/servers").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["servers"][0]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn titles(r: &Recorded) -> Vec<String> {
    posted(r, ALERTS)
        .iter()
        .map(|m| {
            m["embeds"][0]["title"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn an_alert_open_before_a_restart_is_resolved_once_after_it() {
    let s = Setup::new(
        "    metrics_interval: 1\n    alert_check_interval: 1\n    monitors:\n      - plugin: ups-alert\n        \
         config: {judge: raw, samples_required: 2, cooldown_secs: 0}\n",
        "  admin_roles: [\"Server Admin\"]\n",
        None,
    );
    let isr = s.start();
    s.game("/sim ups 20");
    let r = s
        .discord
        .wait_for("the warning", |r| !posted(r, ALERTS).is_empty());
    assert!(titles(&r)[0].contains("Low UPS"), "{:?}", titles(&r));
    wait_for("the kept book", || {
        s.dir.path().join("state/alerts/prod.json").exists()
            && s.dir.path().join("state/monitors/prod.json").exists()
    });
    assert!(isr.stop().success());

    // Restarted while still low: the warning is open, and not posted again.
    let isr = s.start();
    assert_eq!(open_alerts(&isr).len(), 1, "the open alert was kept");
    let calls = |isr: &Isr| -> u64 {
        let (_, m) = isr.get("/metrics").unwrap();
        m.lines()
            .find(|l| {
                l.starts_with(
                    "factorio_isr_plugin_calls_total{plugin=\"ups-alert\",server=\"prod\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    wait_for("five samples judged after the restart", || calls(&isr) >= 5);
    assert_eq!(
        posted(&s.discord.recorded(), ALERTS).len(),
        1,
        "posted again"
    );

    // Restarted again, and UPS is back: the recovery is told once.
    assert!(isr.stop().success());
    s.game("/sim ups 60");
    let isr = s.start();
    let r = s
        .discord
        .wait_for("the recovery", |r| posted(r, ALERTS).len() >= 2);
    assert!(titles(&r)[1].contains("UPS recovered"), "{:?}", titles(&r));
    wait_for("five more samples", || calls(&isr) >= 5);
    assert_eq!(
        posted(&s.discord.recorded(), ALERTS).len(),
        2,
        "{:?}",
        titles(&s.discord.recorded())
    );
    assert!(open_alerts(&isr).is_empty());
    assert!(isr.stop().success());
}

#[test]
fn a_discord_outage_shows_in_ready_and_metrics_and_loses_nothing() {
    let s = Setup::new("", "  admin_roles: [\"Server Admin\"]\n", None);
    let isr = s.start();
    append(&s.log, "2026-01-01 10:00:00 [CHAT] Alice: before\n");
    s.discord.wait_for("the first line", |r| {
        message_with(r, EVENTS, "before").is_some()
    });
    s.discord.outage_for(Duration::from_secs(15));
    let lines: String = (0..20)
        .map(|i| format!("2026-01-01 10:00:01 [CHAT] Alice: during-{i:02}\n"))
        .collect();
    append(&s.log, &lines);
    wait_for("the sink degraded in /ready", || {
        isr.component("sink:prod:discord").is_some_and(|c| {
            c["state"] == "degraded"
                && c["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Discord has not taken a message")
        })
    });
    wait_for("the lag in /metrics", || lag(&isr) > 0);
    let r = s.discord.wait_for("every line after the outage", |r| {
        (0..20).all(|i| message_with(r, EVENTS, &format!("during-{i:02}")).is_some())
    });
    let all: String = posted(&r, EVENTS)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    for i in 0..20 {
        assert_eq!(
            all.matches(&format!("during-{i:02}")).count(),
            1,
            "during-{i:02}"
        );
    }
    wait_for("the sink ready again", || {
        isr.component("sink:prod:discord")
            .is_some_and(|c| c["state"] == "ready")
    });
    wait_for("no lag", || lag(&isr) == 0);
    assert!(isr.stop().success());
}

#[test]
fn messages_held_back_by_an_outage_are_followed_by_a_note_on_the_delay() {
    use factorio_isr::config::Config;
    use factorio_isr::discord::rest::Rest;
    use factorio_isr::discord::{DiscordSink, RoleDirectory};
    use factorio_isr::observe::health::{Health, State};
    use factorio_isr::sink::Sink;

    let discord = FakeDiscord::start();
    let config = Config::from_text(
        Path::new("servers.yml"),
        &format!("servers:\n  prod:\n    event_channel_id: {EVENTS}\n"),
        &|_| None,
    )
    .unwrap();
    let health = Health::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt.block_on(async {
        let rest = std::sync::Arc::new(Rest::new(
            Some(&discord.api_url),
            Some(factorio_isr::config::Secret::new("fake-token")),
        ));
        let roles = std::sync::Arc::new(RoleDirectory::new(
            std::sync::Arc::new(factorio_isr::alert::Mentions::builtin()),
            Some(GUILD),
        ));
        DiscordSink::new(
            rest,
            config.servers[0].clone(),
            roles,
            None,
            Some(health.clone()),
        )
        .with_delay_note_after(Duration::from_secs(1))
    });
    let mut e = factorio_isr::event::Event::new("chat");
    e.text = Some("held back".into());
    discord.outage_for(Duration::from_secs(3));
    let degraded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (health, degraded) = (health.clone(), degraded.clone());
        std::thread::spawn(move || {
            for _ in 0..400 {
                let state = health
                    .snapshot()
                    .into_iter()
                    .find(|c| c.name == "sink:prod:discord")
                    .map(|c| c.state);
                if state == Some(State::Degraded) {
                    degraded.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let events = [factorio_isr::alert::Notice::Event(e)];
    rt.block_on(sink.deliver(&factorio_isr::sink::Batch::new("prod", &events)))
        .unwrap();
    watcher.join().unwrap();
    assert!(
        degraded.load(std::sync::atomic::Ordering::Relaxed),
        "never degraded"
    );
    let r = discord.recorded();
    let contents: Vec<&str> = posted_refs(&r, EVENTS);
    assert_eq!(contents.len(), 2, "{contents:?}");
    assert_eq!(contents[0], "held back");
    assert!(
        contents[1].starts_with("-# ⏳ The messages above were delayed by ")
            && contents[1].ends_with(": Discord could not be reached."),
        "{}",
        contents[1]
    );
    let state = health
        .snapshot()
        .into_iter()
        .find(|c| c.name == "sink:prod:discord")
        .map(|c| c.state);
    assert_eq!(state, Some(State::Ready));
}

fn posted_refs(r: &Recorded, channel: u64) -> Vec<&str> {
    r.messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, m)| m["content"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn edits_of_servers_yml_are_taken_up_while_it_runs() {
    // RCON at first on a port where nobody listens, no roles for admin commands.
    let s = Setup::new("", "", None);
    let closed = free_port();
    let port_line = format!("rcon_port: {}", s._sim.port);
    let config = s
        .config
        .replace(&port_line, &format!("rcon_port: {closed}"));
    std::fs::write(&s.config_path, &config).unwrap();
    let s = Setup { config, ..s };
    let isr = s.start();
    let d = &s.discord;
    append(
        &s.log,
        "2026-01-01 10:00:00 [CHAT] Alice: before the edit\n",
    );
    d.wait_for("the line before", |r| {
        message_with(r, EVENTS, "before the edit").is_some()
    });
    wait_for("RCON down", || {
        isr.component("rcon:prod")
            .is_some_and(|c| c["state"] == "down")
    });
    let id = moderate(d, EVENTS, &[ADMIN_ROLE], "kick", "Alice");
    assert!(private_answer(d, id).contains("no role is configured"));

    // The operator points RCON at the game, moves the events, allows the admin role,
    // renames the server and adds one.
    const MOVED: u64 = 555_555_555_555_555_555;
    let edited = s
        .config
        .replace(&format!("rcon_port: {closed}"), &port_line)
        .replace(&format!("event_channel_id: {EVENTS}\n    alert"), &format!("event_channel_id: {MOVED}\n    alert"))
        .replace("name: Production", "name: Prod Renamed")
        .replace("discord:\n", &format!("  eu-2:\n    log_path: /nowhere/console.log\ndiscord:\n  admin_roles: [{ADMIN_ROLE}]\n"));
    assert_ne!(edited, s.config);
    std::fs::write(&s.config_path, &edited).unwrap();

    wait_for("RCON up at its new port", || {
        isr.component("rcon:prod")
            .is_some_and(|c| c["state"] == "ready")
    });
    wait_for("what waits for the next start in /ready", || {
        isr.component("config").is_some_and(|c| {
            let detail = c["detail"].as_str().unwrap_or_default();
            c["state"] == "degraded"
                && detail.contains("servers.prod.name")
                && detail.contains("servers.eu-2 (added)")
                && detail.contains("takes effect at the next start")
        })
    });
    wait_for("the server's parts running again", || {
        isr.log()
            .contains("running the server's parts again with its new entry")
    });
    append(&s.log, "2026-01-01 10:00:01 [CHAT] Alice: after the edit\n");
    let r = d.wait_for("the line in the new channel", |r| {
        message_with(r, MOVED, "after the edit").is_some()
    });
    assert!(message_with(&r, EVENTS, "after the edit").is_none());
    let all: Vec<String> = r
        .messages
        .iter()
        .map(|(_, m)| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        all.iter().filter(|m| m.contains("before the edit")).count(),
        1,
        "{all:?}"
    );
    // A command in the new channel goes to prod; the admin role may kick now.
    s.game("/sim join Alice");
    let id = moderate(d, MOVED, &[ADMIN_ROLE], "kick", "Alice");
    let (text, _) = d.answer(id);
    assert!(
        text.starts_with("✅ On **Production** (`prod`): kicked"),
        "{text}"
    );
    assert!(isr.stop().success());
}

#[test]
fn a_leave_read_late_behind_an_outage_is_not_inferred_as_well() {
    let s = Setup::new(
        "    metrics_interval: 1\n",
        "  admin_roles: [\"Server Admin\"]\n",
        None,
    );
    let isr = s.start();
    s.game("/sim join Eve_42");
    s.discord.wait_for("the join", |r| {
        message_with(r, EVENTS, "Eve\\_42** joined").is_some()
    });
    // Discord goes away; lines pile up until the log is no longer read.
    s.discord.outage_for(Duration::from_secs(30));
    for i in 0..16 {
        append(
            &s.log,
            &format!("2026-01-01 10:00:00 [CHAT] Alice: piling-{i:02}\n"),
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    s.game("/sim leave Eve_42");
    // RCON shows her gone long past the roster's grace while her leave line waits.
    wait_for("the backlog in /metrics", || lag(&isr) > 0);
    std::thread::sleep(Duration::from_secs(18));
    let r = s.discord.wait_for("every line after the outage", |r| {
        message_with(r, EVENTS, "Eve\\_42** left").is_some()
            && (0..16).all(|i| message_with(r, EVENTS, &format!("piling-{i:02}")).is_some())
    });
    // Readings go on after the outage: still one leave, the log's.
    wait_for("no backlog", || lag(&isr) == 0);
    std::thread::sleep(Duration::from_secs(3));
    let leaves: Vec<String> = posted(&s.discord.recorded(), EVENTS)
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .flat_map(|c| c.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("Eve\\_42** left"))
        .collect();
    assert_eq!(leaves.len(), 1, "{leaves:?}");
    assert!(!leaves[0].contains("no leave line"), "{leaves:?}");
    drop(r);
    assert!(isr.stop().success());
}
