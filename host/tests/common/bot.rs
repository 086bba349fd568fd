//! A host with a bot on the fake Discord and a fake Factorio server, for the end-to-end
//! tests of what people see in Discord (`first_hour.rs`, `every_line_once.rs`).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

use super::fake_discord::{FakeDiscord, GUILD, Recorded};
use super::{Isr, SimProcess, free_port};

pub const EVENTS: u64 = 111_111_111_111_111_111;
pub const ALERTS: u64 = 222_222_222_222_222_222;
pub const OTHER_EVENTS: u64 = 444_444_444_444_444_444;

/// The messages posted in `channel`.
pub fn posted(r: &Recorded, channel: u64) -> Vec<Value> {
    r.messages
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, m)| m.clone())
        .collect()
}

/// The first message in `channel` whose content contains `needle`.
pub fn message_with(r: &Recorded, channel: u64, needle: &str) -> Option<Value> {
    posted(r, channel)
        .into_iter()
        .find(|m| m["content"].as_str().unwrap_or_default().contains(needle))
}

/// The answer to interaction `id`, which only its user may see.
pub fn private_answer(discord: &FakeDiscord, id: u64) -> String {
    let (text, private) = discord.answer(id);
    assert!(private, "shown to the whole channel: {text}");
    text
}

/// An admin command `verb` on `player`, given in `channel` by user 3 (who has `roles`).
pub fn moderate(d: &FakeDiscord, channel: u64, roles: &[u64], verb: &str, player: &str) -> u64 {
    d.command_in(
        channel,
        3,
        roles,
        &format!("factorio-admin {verb}"),
        &[("player", player)],
    )
}

/// A host with server `prod` ("Production") on a fake Factorio server and a second server
/// `test-2` (no RCON), the bot on a fake Discord.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub config_path: PathBuf,
    pub config: String,
    pub discord: FakeDiscord,
    pub _sim: SimProcess,
}

impl Setup {
    /// Writes the files: `prod_keys` are extra lines under `prod:`, `discord` the section's
    /// lines, `mentions` the mentions.yml (none: no file).
    pub fn new(prod_keys: &str, discord: &str, mentions: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, "").unwrap();
        let sim = SimProcess::start(0, "pw", &log);
        if let Some(m) = mentions {
            std::fs::write(dir.path().join("mentions.yml"), m).unwrap();
        }
        let config = format!(
            "servers:\n  prod:\n    name: Production\n    log_path: {log}\n    rcon_host: 127.0.0.1\n    \
             rcon_port: {port}\n    rcon_password: pw\n    enable_stats_collector: false\n    \
             event_channel_id: {EVENTS}\n    alert_channel_id: {ALERTS}\n{prod_keys}  test-2:\n    \
             name: Second\n    event_channel_id: {OTHER_EVENTS}\n    alert_channel_id: {ALERTS}\n\
             discord:\n  guild_id: {GUILD}\n{discord}  cooldowns: {{query: 0, admin: 0, danger: 0}}\n",
            log = log.display(),
            port = sim.port,
        );
        let config_path = dir.path().join("servers.yml");
        std::fs::write(&config_path, &config).unwrap();
        Self {
            dir,
            log,
            config_path,
            config,
            discord: FakeDiscord::start(),
            _sim: sim,
        }
    }

    /// Starts the host on the files, the bot on the fake Discord; waits until it has
    /// connected and registered its commands.
    pub fn start(&self) -> Isr {
        let before = self.discord.recorded().commands.len();
        let isr = Isr::start_with_env(
            self.dir.path(),
            &self.config,
            free_port(),
            &[
                ("DISCORD_BOT_TOKEN", "fake-token"),
                ("DISCORD_API_URL", &self.discord.api_url),
            ],
        );
        isr.wait_started();
        self.discord.wait_for("the commands registered", |r| {
            r.identified() && r.commands.len() > before
        });
        isr
    }

    pub fn game(&self, command: &str) {
        assert!(
            SimProcess::rcon(&self.config_path, command)
                .status
                .success()
        );
    }
}

/// `checkpoint_lag_bytes` of `prod` now.
pub fn lag(isr: &Isr) -> i64 {
    let (_, m) = isr.get("/metrics").unwrap();
    m.lines()
        .find(|l| l.starts_with("factorio_isr_checkpoint_lag_bytes{server=\"prod\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1)
}
