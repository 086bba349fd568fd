//! Moving from the Python bot: every form of `servers.yml`, `mentions.yml` and pattern file
//! that its repository and its guides use (written for the tests in
//! `tests/fixtures/python-bot/`) passes `check` and starts with `run`; what is not read is a
//! warning naming its line, never a refusal.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/python-bot")
        .join(name)
}

/// The environment the fixtures' `${VAR}`s come from, as an operator would set it; the
/// guides' other variables are left unset, as they often were.
const ENV: &[(&str, &str)] = &[("RCON_PASSWORD", "pw"), ("RCON_PASSWORD_PROD", "pw")];

/// `check --config` on a copy of `servers` in a folder of its own, with `mentions` beside
/// it.
fn check(servers: &str, mentions: Option<&str>) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("servers.yml");
    std::fs::copy(fixture(servers), &config).unwrap();
    if let Some(m) = mentions {
        std::fs::copy(fixture(m), dir.path().join("mentions.yml")).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(&config)
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-plugin-cache"),
        )
        .env_remove("FACTORIO_ISR_MENTIONS")
        .envs(ENV.iter().copied())
        .env_remove("RCON_STAGING_PASSWORD")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, said)
}

#[test]
fn check_accepts_every_form_of_the_python_bots_files() {
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        (
            "servers-repository.yml",
            Some("mentions-repository.yml"),
            &[
                "config: ",
                "1 servers: ok",
                "mentions: ",
                "groups admins, board of directors, chairman, mods, operations, staff: ok",
            ],
        ),
        (
            "servers-installation-guide.yml",
            Some("mentions-installation-guide.yml"),
            &[
                "3 servers: ok",
                "servers.default: `collect_interval_seconds` is not read",
                "servers.default: `alert_cooldown_seconds` is not read",
                "`RCON_STAGING_PASSWORD` is not set",
                "groups admin, admins, johndoe, moderator, mods, staff: ok",
            ],
        ),
        (
            "servers-configuration-guide.yml",
            Some("mentions-guide.yml"),
            &["5 servers: ok", "groups admins, alice, mods, staff: ok"],
        ),
        (
            "servers-examples-guide.yml",
            None,
            &[
                "2 servers: ok",
                "servers.vanilla: `discord_channel_id` is not read",
                "`event_channel_id` is the setting for that",
                "not there; the built-in groups",
            ],
        ),
    ];
    for (servers, mentions, wanted) in cases {
        let (out, said) = check(servers, *mentions);
        assert!(out.status.success(), "{servers}: {said}");
        for w in *wanted {
            assert!(said.contains(w), "{servers}: {w:?} missing from:\n{said}");
        }
        assert!(
            said.contains("warning: discord: no `discord.admin_roles`"),
            "{servers}: admin commands are off, and check says so:\n{said}"
        );
        assert!(!said.contains("error"), "{servers}: {said}");
    }
}

#[test]
fn a_list_form_pattern_file_loads_with_a_warning_that_says_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--patterns"])
        .arg(fixture("patterns-guide"))
        .env(
            "FACTORIO_ISR_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-plugin-cache"),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("custom.yml:3: ") && said.contains("write the rules under `events:`"),
        "{said}"
    );
}

#[test]
fn run_starts_on_every_form_and_says_what_it_does_not_read() {
    for (servers, mentions, tags) in [
        (
            "servers-repository.yml",
            Some("mentions-repository.yml"),
            &["test"][..],
        ),
        (
            "servers-installation-guide.yml",
            Some("mentions-installation-guide.yml"),
            &["default", "prod", "staging"][..],
        ),
        (
            "servers-configuration-guide.yml",
            Some("mentions-guide.yml"),
            &[
                "production",
                "testing",
                "space_age",
                "los_hermanos",
                "space-age",
            ][..],
        ),
        (
            "servers-examples-guide.yml",
            None,
            &["vanilla", "space_age"][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        if let Some(m) = mentions {
            std::fs::copy(fixture(m), dir.path().join("mentions.yml")).unwrap();
        }
        let text = std::fs::read_to_string(fixture(servers)).unwrap();
        let isr = Isr::start_with_env(dir.path(), &text, free_port(), ENV);
        isr.wait_started();
        let (_, body) = isr.get("/api/servers").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let running: Vec<&str> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["tag"].as_str().unwrap())
            .collect();
        assert_eq!(running, tags, "{servers}");
        if servers == "servers-installation-guide.yml" {
            let log = isr.log();
            assert!(
                log.contains("servers.default: `collect_interval_seconds` is not read"),
                "{log}"
            );
        }
        assert!(isr.stop().success(), "{servers}");
    }
}
