//! `servers.yml`: the Python bot's file, loaded unchanged, plus the keys that choose plugins.
//!
//! Every error names the file, the line and what is wrong.

mod cluster;
mod diff;
mod discord;
mod events;
mod expand;
pub(crate) mod locate;
mod secret;
mod secret_source;
mod server;
mod warning;

pub use cluster::{
    ClusterSettings, ClusterSettingsError, DEFAULT_LEASE_TTL, TlsSettings, host_name,
};
pub use diff::{ConfigChanges, changes};
pub use discord::{Cooldowns, DiscordSettings, RoleRef};
pub use events::{EventRules, KindPolicy, Shown};
pub use secret::Secret;
pub use secret_source::SecretSource;
pub use server::{
    LogSource, OnLostCheckpoint, PluginEntry, RconStatusAlertMode, ServerConfig, Shadow, SinkConfig,
};
use server::{MAX_TAG, valid_tag};
pub use warning::ConfigWarning;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A loaded `servers.yml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The servers, in the order of the file.
    pub servers: Vec<ServerConfig>,
    /// Who may use which Discord commands (new, optional).
    pub discord: DiscordSettings,
    /// Cluster mode (new, optional): several instances, one owner per server.
    pub cluster: Option<ClusterSettings>,
    /// Keys that are not read (the Python bot ignored them too), each with its line.
    pub warnings: Vec<ConfigWarning>,
    /// The file as written (before `${VAR}` is expanded), to tell what a later reading
    /// changed ([`changes`]).
    raw: Raw,
}

/// servers.yml as written, parsed and as text (for the lines of problems found after
/// loading); never shown (it may hold passwords).
#[derive(Clone, Default)]
struct Raw {
    value: serde_norway::Value,
    text: std::sync::Arc<str>,
}

impl std::ops::Deref for Raw {
    type Target = serde_norway::Value;
    fn deref(&self) -> &serde_norway::Value {
        &self.value
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("…")
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read; `reason` names it (not a `source`, so that a chain of
    /// errors does not say it twice).
    #[error("cannot read the configuration: {reason}")]
    Read {
        path: String,
        reason: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Invalid {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Whole { path: String, problem: String },
}

/// servers.yml as parsed, before `${VAR}` is expanded in its values. Other top-level keys
/// are warnings, as the Python bot read only `servers`.
#[derive(Debug, Deserialize)]
struct File {
    servers: Option<serde_norway::Mapping>,
    #[serde(default)]
    discord: serde_norway::Value,
    #[serde(default)]
    cluster: serde_norway::Value,
}

impl Config {
    /// Reads and checks `path`, expanding `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::files::read_regular(path, 16 << 20)
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| {
                    std::io::Error::other(format!("{} is not UTF-8 text", path.display()))
                })
            })
            .map_err(|reason| ConfigError::Read {
                path: path.display().to_string(),
                reason,
            })?;
        let mut config = Self::from_text(path, &text, &|name| std::env::var(name).ok())?;
        config.fill_secrets(&SecretSource::default());
        Ok(config)
    }

    /// Fills in each RCON password that servers.yml leaves out from `secrets`.
    pub fn fill_secrets(&mut self, secrets: &SecretSource) {
        for server in &mut self.servers {
            if server.rcon_password.is_none() {
                server.rcon_password = secrets.rcon_password(&server.tag);
            }
        }
    }

    /// Parses `text` as if read from `path`, with `env` for `${VAR}`.
    pub fn from_text(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let invalid = |e: serde_norway::Error| {
            match e.location() {
            Some(loc) => ConfigError::Invalid {
                path: shown.clone(),
                line: loc.line(),
                problem: strip_location(&e.to_string()),
            },
            // serde_norway gives no place for aliases that expand to too much.
            None if e.to_string().contains("repetition limit") => ConfigError::Invalid {
                path: shown.clone(),
                line: locate::first_alias(text).unwrap_or(1),
                problem: "the aliases (`*name`) from this line on expand to too much (YAML's \"billion laughs\"): repetition limit exceeded".into(),
            },
            None => ConfigError::Whole {
                path: shown.clone(),
                problem: e.to_string(),
            },
        }
        };
        let mut warnings = Vec::new();
        let warn = |warnings: &mut Vec<ConfigWarning>, at: &[locate::Step], problem: String| {
            warnings.push(ConfigWarning {
                path: shown.clone(),
                line: locate::line_of(text, at).unwrap_or(1),
                problem,
            });
        };
        let mut top_ignored = Vec::new();
        let file: File =
            serde_ignored::deserialize(serde_norway::Deserializer::from_str(text), |p| {
                top_ignored.push(p.to_string())
            })
            .map_err(invalid)?;
        for key in &top_ignored {
            let problem = warning::unknown_key("servers.yml", key, warning::TOP_KEYS);
            warn(&mut warnings, &[locate::Step::Key(key.clone())], problem);
        }
        let Some(server_entries) = file.servers else {
            return Err(ConfigError::Whole {
                path: shown,
                problem: match warnings.first() {
                    Some(w) => format!("no `servers:` section ({})", w.problem),
                    None => "no `servers:` section: configure at least one server".into(),
                },
            });
        };
        // `${VAR}` is expanded in the parsed values, never in the text; no error shows a
        // variable's value.
        let mut used = Vec::new();
        let mut expand = |value: &mut serde_norway::Value| {
            expand::expand_value(value, env, &mut used).map_err(|e| ConfigError::Invalid {
                path: shown.clone(),
                line: expand::line_of(text, &e.reference).unwrap_or(1),
                problem: e.problem,
            })
        };
        let mut discord_value = file.discord;
        expand(&mut discord_value)?;
        let mut cluster_value = file.cluster;
        expand(&mut cluster_value)?;
        let mut entries = Vec::new();
        for (key, mut value) in server_entries {
            unset_password(&key, &mut value, text, env, &mut warnings, &shown);
            expand(&mut value)?;
            entries.push((key, value));
        }
        let redacted = |msg: &str| expand::redact(msg, &used);
        let discord: DiscordSettings = if discord_value.is_null() {
            DiscordSettings::default()
        } else {
            serde_path_to_error::deserialize(discord_value).map_err(|e| {
                let (at, problem) = field_of(&e, &["discord"]);
                ConfigError::Invalid {
                    path: shown.clone(),
                    line: locate::line_of(text, &at).unwrap_or(1),
                    problem: format!(
                        "{}: {}",
                        shown_for(&at, &problem),
                        redacted(&strip_location(&problem))
                    ),
                }
            })?
        };
        let mut servers = Vec::new();
        for (key, value) in entries {
            let tag = key.as_str().unwrap_or_default().to_owned();
            let line = locate::line_of(
                text,
                &[
                    locate::Step::Key("servers".into()),
                    locate::Step::Key(tag.clone()),
                ],
            );
            if !valid_tag(&tag) {
                return Err(ConfigError::Invalid {
                    path: shown,
                    line: line.unwrap_or(1),
                    problem: format!(
                        "servers: `{}` is not a valid server tag (letters, digits, `_` and `-`, \
                         as for the Python bot; at most {MAX_TAG})",
                        key.as_str().map_or_else(
                            || serde_norway::to_string(&key)
                                .map(|t| t.trim_end().to_owned())
                                .unwrap_or_default(),
                            str::to_owned
                        )
                    ),
                });
            }
            let mut ignored = Vec::new();
            let mut note = |p: serde_ignored::Path| ignored.push(p.to_string());
            let value = serde_ignored::Deserializer::new(value, &mut note);
            let mut server: ServerConfig =
                serde_path_to_error::deserialize(value).map_err(|e| {
                    let (at, problem) = field_of(&e, &["servers", &tag]);
                    ConfigError::Invalid {
                        path: shown.clone(),
                        line: locate::line_of(text, &at).or(line).unwrap_or(1),
                        problem: format!(
                            "{}: {}",
                            shown_for(&at, &problem),
                            redacted(&strip_location(&problem))
                        ),
                    }
                })?;
            if let Err((field, problem)) = server.settle_logs() {
                let mut at = vec![
                    locate::Step::Key("servers".into()),
                    locate::Step::Key(tag.clone()),
                ];
                at.extend(field.iter().map(|f| match f.parse::<usize>() {
                    Ok(i) => locate::Step::Index(i),
                    Err(_) => locate::Step::Key(f.clone()),
                }));
                return Err(ConfigError::Invalid {
                    path: shown,
                    line: locate::line_of(text, &at).or(line).unwrap_or(1),
                    problem: format!("{}: {problem}", shown_path(&at)),
                });
            }
            for key in ignored {
                let mut at = vec![
                    locate::Step::Key("servers".into()),
                    locate::Step::Key(tag.clone()),
                ];
                at.extend(key.split('.').map(|k| locate::Step::Key(k.to_owned())));
                let place = format!("servers.{tag}");
                let problem = warning::unknown_key(&place, &key, warning::SERVER_KEYS);
                warn(&mut warnings, &at, problem);
            }
            server.tag = tag;
            servers.push(server);
        }
        if servers.is_empty() {
            return Err(ConfigError::Whole {
                path: shown,
                problem: "`servers` is empty: configure at least one server".into(),
            });
        }
        let d = &discord;
        for (field, roles) in [
            ("admin_roles", &d.admin_roles),
            ("danger_roles", &d.danger_roles),
        ] {
            if !roles.is_empty() && d.guild_id.is_none() {
                return Err(ConfigError::Invalid {
                    path: shown,
                    line: locate::line_of(
                        text,
                        &[
                            locate::Step::Key("discord".into()),
                            locate::Step::Key((*field).into()),
                        ],
                    )
                    .unwrap_or(1),
                    problem: format!(
                        "discord.{field} needs discord.guild_id: roles are checked only in the \
                         one configured guild (the id of your Discord server)"
                    ),
                });
            }
        }
        let cluster_line =
            || locate::line_of(text, &[locate::Step::Key("cluster".into())]).unwrap_or(1);
        let section: cluster::ClusterSection = if cluster_value.is_null() {
            cluster::ClusterSection::default()
        } else {
            serde_path_to_error::deserialize(cluster_value).map_err(|e| {
                let (at, problem) = field_of(&e, &["cluster"]);
                ConfigError::Invalid {
                    path: shown.clone(),
                    line: locate::line_of(text, &at).unwrap_or_else(cluster_line),
                    problem: format!(
                        "{}: {}",
                        shown_for(&at, &problem),
                        redacted(&strip_location(&problem))
                    ),
                }
            })?
        };
        let cluster = section
            .settle(env)
            .map_err(|problem| ConfigError::Invalid {
                path: shown.clone(),
                line: cluster_line(),
                problem: problem.to_string(),
            })?;
        warnings.sort_by_key(|w| w.line);
        Ok(Self {
            path: path.to_owned(),
            servers,
            discord,
            cluster,
            warnings,
            raw: Raw {
                value: serde_norway::from_str(text).unwrap_or_default(),
                text: text.into(),
            },
        })
    }

    /// The server with `tag`.
    pub fn server(&self, tag: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.tag == tag)
    }

    /// The `servers:` section as written (before `${VAR}` is expanded): what cluster
    /// instances compare their files by.
    pub fn servers_as_written(&self) -> serde_norway::Mapping {
        self.raw
            .get("servers")
            .and_then(serde_norway::Value::as_mapping)
            .cloned()
            .unwrap_or_default()
    }

    /// The field of server `tag`'s log number `index` as people read it:
    /// `servers.prod.logs[1]`, or `servers.prod.log_path` for the Python bot's one log.
    pub fn log_field(&self, tag: &str, index: usize) -> String {
        match self.server(tag) {
            Some(s) if s.log_path.is_some() => format!("servers.{tag}.log_path"),
            _ => format!("servers.{tag}.logs[{index}]"),
        }
    }

    /// The line of that field in the file (1 when it cannot be found).
    pub fn log_line(&self, tag: &str, index: usize) -> usize {
        let mut at = vec![
            locate::Step::Key("servers".into()),
            locate::Step::Key(tag.to_owned()),
        ];
        match self.server(tag) {
            Some(s) if s.log_path.is_some() => at.push(locate::Step::Key("log_path".into())),
            _ => {
                at.push(locate::Step::Key("logs".into()));
                at.push(locate::Step::Index(index));
            }
        }
        locate::line_of(&self.raw.text, &at).unwrap_or(1)
    }
}

/// A server's `rcon_password: ${VAR}` whose variable is not set is taken out, with a
/// warning: the Python bot ran such a file (with the text `${VAR}` as the password, which
/// the game refused), so it must not be refused here; the password is then looked up in
/// the secrets as when it is left out, and without one the server runs without RCON.
fn unset_password(
    key: &serde_norway::Value,
    value: &mut serde_norway::Value,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<ConfigWarning>,
    shown: &str,
) {
    let (Some(tag), Some(entry)) = (key.as_str(), value.as_mapping_mut()) else {
        return;
    };
    let Some(name) = entry
        .get("rcon_password")
        .and_then(|v| expand::unset_whole_reference(v, env))
    else {
        return;
    };
    entry.remove("rcon_password");
    let at = [
        locate::Step::Key("servers".into()),
        locate::Step::Key(tag.to_owned()),
        locate::Step::Key("rcon_password".into()),
    ];
    warnings.push(ConfigWarning {
        path: shown.to_owned(),
        line: locate::line_of(text, &at).unwrap_or(1),
        problem: format!(
            "servers.{tag}.rcon_password: the environment variable `{name}` is not set; the \
             password is looked up as when it is left out (Docker secrets and the environment: \
             RCON_PASSWORD_<TAG>, RCON_PASSWORD), and without one this server runs without RCON"
        ),
    });
}

/// serde_norway appends " at line L column C"; the line is reported separately.
/// Where in the file a deserialisation error is (`under` and then the error's path) and its
/// message. An unknown field is placed at its own line, and the path stops at the mapping
/// that holds it (`servers.prod: unknown field `rcon_prot``).
fn field_of(
    e: &serde_path_to_error::Error<serde_norway::Error>,
    under: &[&str],
) -> (Vec<locate::Step>, String) {
    use serde_path_to_error::Segment;
    let mut at: Vec<locate::Step> = under
        .iter()
        .map(|k| locate::Step::Key((*k).into()))
        .collect();
    for segment in e.path().iter() {
        match segment {
            Segment::Map { key } => at.push(locate::Step::Key(key.clone())),
            Segment::Seq { index } => at.push(locate::Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (at, e.inner().to_string())
}

/// The path to show for an error at `at`: for an unknown field, the mapping that holds it
/// (the message names the field).
fn shown_for(at: &[locate::Step], problem: &str) -> String {
    match at.split_last() {
        Some((_, holder)) if problem.starts_with("unknown field `") => shown_path(holder),
        _ => shown_path(at),
    }
}

/// A path as people read it: `servers.prod.sinks[1]`.
fn shown_path(at: &[locate::Step]) -> String {
    let mut out = String::new();
    for step in at {
        match step {
            locate::Step::Key(k) if out.is_empty() => out.push_str(k),
            locate::Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            locate::Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("servers.yml"), text, &|n| {
            (n == "PW").then(|| "hunter2".to_owned())
        })
    }

    fn load_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_text(Path::new("servers.yml"), text, &move |n| {
            vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn a_variable_is_the_whole_value_whatever_it_contains() {
        let text = "servers:\n  prod:\n    log_path: /x\n    rcon_password: ${RCON_PASSWORD}\n    \
                    description: \"${DESC}\"\n    rcon_port: ${PORT}\n    name: ${NAME}\n";
        for password in [
            "12345678",
            "0x1F",
            "1e3",
            "007",
            "true",
            "pass #word",
            "a: b",
            "[x",
            "*x",
            "x\n  test:\n    log_path: /y",
            "tab\\t and \\u0041 and \"quotes\"",
        ] {
            let c = load_with(
                text,
                &[
                    ("RCON_PASSWORD", password),
                    ("DESC", password),
                    ("PORT", "27020"),
                    ("NAME", "2024"),
                ],
            )
            .unwrap_or_else(|e| panic!("{password:?}: {e}"));
            assert_eq!(c.servers.len(), 1, "{password:?} added a server");
            let prod = &c.servers[0];
            assert_eq!(
                prod.rcon_password.as_ref().map(Secret::expose),
                Some(password)
            );
            assert_eq!(prod.description.as_deref(), Some(password));
            assert_eq!(
                prod.rcon_port, 27020,
                "a number field takes a number's text"
            );
            assert_eq!(prod.name.as_deref(), Some("2024"));
        }
    }

    #[test]
    fn no_error_shows_a_variables_value() {
        // A password put in a number field by mistake.
        let text = "servers:\n  prod:\n    log_path: /x\n    rcon_port: ${RCON_PASSWORD}\n";
        let err = load_with(text, &[("RCON_PASSWORD", "hunter2-very-secret")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("${RCON_PASSWORD}"), "{err}");
        let err = load_with(
            "servers:\n  prod:\n    log_path: /x\ndiscord:\n  guild_id: ${GUILD}\n",
            &[("GUILD", "not-a-number-secret")],
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("not-a-number-secret"), "{err}");
    }

    #[test]
    fn an_unset_variable_names_its_line_and_comments_are_not_read() {
        let text = "# rcon_password: ${UNSET_IN_COMMENT}\nservers:\n  prod:\n    log_path: /x # ${ALSO}\n    rcon_host: ${MISSING}\n";
        let err = load(text).unwrap_err().to_string();
        assert!(
            err.starts_with("servers.yml:5:") && err.contains("`MISSING` is not set"),
            "{err}"
        );
    }

    /// A file as the Python bot's users wrote it, every key of its format.
    const PYTHON_BOT_FILE: &str = r#"
servers:
  prod:
    name: "Production"
    description: "Main server"
    log_path: /factorio/prod/console.log
    rcon_host: factorio-prod
    rcon_port: 27015
    rcon_password: ${PW}
    event_channel_id: 1111111111111111111
    stats_interval: 600
    enable_stats_collector: true
    enable_ups_stat: false
    enable_evolution_stat: true
    enable_alerts: true
    alert_check_interval: 30
    alert_samples_required: 2
    ups_warning_threshold: 50.0
    ups_recovery_threshold: 57.5
    alert_cooldown: 120
    ups_ema_alpha: 0.3
    rcon_status_alert_mode: interval
    rcon_status_alert_interval: 900
  test-2:
    log_path: /factorio/test/console.log
"#;

    #[test]
    fn the_python_bots_file_loads_unchanged_with_its_defaults() {
        let c = load(PYTHON_BOT_FILE).unwrap();
        assert_eq!(c.servers.len(), 2);
        let prod = c.server("prod").unwrap();
        assert_eq!(
            prod.rcon_password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert_eq!(format!("{:?}", prod.rcon_password), "Some(***)");
        assert!(!prod.enable_ups_stat);
        assert_eq!(prod.rcon_status_alert_mode, RconStatusAlertMode::Interval);
        assert_eq!(
            (prod.ups_warning_threshold, prod.ups_ema_alpha),
            (50.0, 0.3)
        );
        let test = c.server("test-2").unwrap();
        assert_eq!(
            (test.rcon_host.as_str(), test.rcon_port, test.stats_interval),
            ("localhost", 27015, 300)
        );
        assert_eq!(
            (test.ups_warning_threshold, test.ups_recovery_threshold),
            (55.0, 58.0)
        );
        assert_eq!((test.alert_samples_required, test.alert_cooldown), (3, 300));
        assert_eq!(test.rcon_status_alert_mode, RconStatusAlertMode::Transition);
        assert!(test.parsers.is_empty());
    }

    /// Tags and keys as the Python bot's repository and guides write them.
    #[test]
    fn the_python_bots_tags_and_guide_keys_load() {
        let c = load(
            "servers:\n  space_age:\n    log_path: /a\n  los_hermanos:\n    log_path: /b\n  \
             Production:\n    log_path: /c\n  krastorio2:\n    log_path: /d\n    \
             collect_interval_seconds: 30\n    alert_cooldown_seconds: 300\n    \
             discord_channel_id: 123\n",
        )
        .unwrap();
        let tags: Vec<&str> = c.servers.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(
            tags,
            ["space_age", "los_hermanos", "Production", "krastorio2"]
        );
        let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "servers.yml:10: warning: servers.krastorio2: `collect_interval_seconds` is not read"
        ));
        assert!(warnings[0].ends_with("`metrics_interval` is the setting for that"));
        assert!(warnings[1].contains("`alert_cooldown`"), "{}", warnings[1]);
        assert!(
            warnings[2].contains("`event_channel_id`"),
            "{}",
            warnings[2]
        );
    }

    #[test]
    fn a_role_id_written_as_a_string_is_an_id() {
        let c = load_with(
            "servers:\n  a:\n    log_path: /x\ndiscord:\n  guild_id: 7\n  admin_roles: [\"600000000000000001\", \"${ROLE}\", Admins, 42]\n",
            &[("ROLE", "600000000000000002")],
        )
        .unwrap();
        assert_eq!(
            c.discord.admin_roles,
            [
                RoleRef::Id(600000000000000001),
                RoleRef::Id(600000000000000002),
                RoleRef::Name("Admins".into()),
                RoleRef::Id(42)
            ]
        );
    }

    #[test]
    fn admin_roles_need_the_guild_they_belong_to() {
        let err =
            load("servers:\n  prod:\n    log_path: /x\n\ndiscord:\n  admin_roles: [Admins]\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("servers.yml:6: discord.admin_roles needs discord.guild_id"),
            "{err}"
        );
        let ok = load(
            "servers:\n  prod:\n    log_path: /x\ndiscord:\n  guild_id: 7\n  danger_roles: [8]\n",
        )
        .unwrap();
        assert_eq!(ok.discord.guild_id, Some(7));
        assert!(
            load("servers:\n  prod:\n    log_path: /x\ndiscord:\n  cooldowns: {query: 1}\n")
                .is_ok()
        );
    }

    #[test]
    fn a_yaml_bomb_is_refused_at_its_first_alias_without_expanding_it() {
        let mut text =
            String::from("servers:\n  prod:\n    name: x\n    description: 'not *this'\n");
        text.push_str(
            "    log_links_within: &a [\"l\",\"l\",\"l\",\"l\",\"l\",\"l\",\"l\",\"l\",\"l\"]\n",
        );
        for (key, from, to) in [
            ("sinks", 'a', 'b'),
            ("parsers", 'b', 'c'),
            ("monitors", 'c', 'd'),
            ("shadow", 'd', 'e'),
            ("rcon_host", 'e', 'f'),
            ("name2", 'f', 'g'),
        ] {
            let refs = vec![format!("*{from}"); 9].join(",");
            text.push_str(&format!("    {key}: &{to} [{refs}]\n"));
        }
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "servers.yml:6: the aliases (`*name`) from this line on expand to too much"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_typo_names_the_file_line_server_and_key() {
        // A key the Python bot would have ignored is a warning, not an error.
        let c = load("servers:\n  prod:\n    log_path: /x\n    rcon_prot: 1\n").unwrap();
        assert_eq!(
            c.warnings[0].to_string(),
            "servers.yml:4: warning: servers.prod: `rcon_prot` is not a known key and is not \
             read (the Python bot ignored it too); did you mean `rcon_port`?"
        );
        let c = load("servers:\n  prod:\n    log_path: /x\nserver_count: 1\n").unwrap();
        assert!(
            c.warnings[0]
                .to_string()
                .starts_with("servers.yml:4: warning: servers.yml: `server_count`"),
            "{:?}",
            c.warnings
        );
        // The line and path of the field, down into lists.
        let err = load("servers:\n  prod:\n    log_path: /x\n    sinks:\n      - console\n      - jsonl: /a\n        flush: yes\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("servers.yml:6: servers.prod.sinks[1]: "),
            "{err}"
        );
        let err =
            load("servers:\n  prod:\n    parsers:\n    - plugin: patterns\n      confg: {}\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("servers.yml:5: servers.prod.parsers[0]: unknown field `confg`"),
            "{err}"
        );
        let err = load("servers:\n  prod:\n    log_path: /x\ndiscord:\n  guild_id: 1\n  cooldowns:\n    query: soon\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("servers.yml:7: discord.cooldowns.query: "),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_bad_tags_and_missing_variables_are_errors() {
        let err = load("servers:\n  prod:\n    rcon_port: lots\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("servers.yml:3: servers.prod.rcon_port: invalid type"),
            "{err}"
        );
        for bad in ["prod.1", "'my server'", "'server#1'", "''", &"x".repeat(65)] {
            let err = load(&format!("servers:\n  {bad}:\n    log_path: /x\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("servers.yml:2: servers: `")
                    && err.contains("is not a valid server tag"),
                "{bad}: {err}"
            );
        }
        let err = load("servers:\n  prod:\n    rcon_host: ${NOT_SET}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("servers.yml:3: environment variable `NOT_SET` is not set"),
            "{err}"
        );
        // The Python bot's one expanded field: an unset password is looked up elsewhere.
        let c = load("servers:\n  prod:\n    rcon_password: ${NOT_SET}\n").unwrap();
        assert_eq!(c.servers[0].rcon_password, None);
        assert!(
            c.warnings[0].to_string().starts_with(
                "servers.yml:3: warning: servers.prod.rcon_password: the environment variable `NOT_SET` is not set"
            ),
            "{:?}",
            c.warnings
        );
        let err = load("servers:\n  123:\n    log_path: /x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`123` is not a valid server tag"), "{err}");
        let err = load("servers:\n  prod:\n    sinks:\n      - [jsonl]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a sink is `console`, `jsonl: PATH` or `webhook: URL`")
                && !err.contains("untagged"),
            "{err}"
        );
        let err = Config::load(Path::new("/nonexistent/servers.yml")).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
        let err = load("servers: {}\n").unwrap_err().to_string();
        assert!(err.contains("`servers` is empty"), "{err}");
        let err = load("server:\n  prod: {}\n").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "servers.yml: no `servers:` section (servers.yml: `server` is not a known key"
            ) && err.ends_with("did you mean `servers`?)"),
            "{err}"
        );
    }

    #[test]
    fn shadow_is_a_list_of_parsers_or_names_both_slots() {
        let c = load("servers:\n  a:\n    shadow:\n      - plugin: ./p.wasm\n").unwrap();
        let a = c.server("a").unwrap();
        assert_eq!(a.shadow.parsers[0].plugin, "./p.wasm");
        assert!(a.shadow.monitors.is_empty());
        let c = load(
            "servers:\n  a:\n    shadow:\n      monitors:\n        - plugin: chat-guard\n          config: {words: [x]}\n",
        )
        .unwrap();
        let a = c.server("a").unwrap();
        assert!(a.shadow.parsers.is_empty());
        assert_eq!(a.shadow.monitors[0].plugin, "chat-guard");
        assert_eq!(a.shadow.monitors[0].config["words"][0], "x");
        assert!(
            load("servers:\n  a:\n    shadow:\n").unwrap().servers[0]
                .shadow
                .is_empty()
        );
        let err = load("servers:\n  a:\n    shadow:\n      monitor:\n        - plugin: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("servers.yml:"), "{err}");
        assert!(err.contains("unknown field `monitor`"), "{err}");
        let err = load("servers:\n  a:\n    shadow: chat-guard\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a list of parser candidates"), "{err}");
    }

    #[test]
    fn plugin_entries_carry_their_config() {
        let c = load("servers:\n  a:\n    parsers:\n      - plugin: patterns\n        config: {dir: /p}\n      - plugin: ./x.wasm\n").unwrap();
        let a = c.server("a").unwrap();
        assert_eq!(a.parsers.len(), 2);
        assert_eq!(a.parsers[0].config["dir"], "/p");
        assert!(a.parsers[1].config.is_null());
        let c = load("servers:\n  a:\n    sinks:\n      - console\n      - jsonl: /tmp/e.jsonl\n")
            .unwrap();
        assert_eq!(
            c.server("a").unwrap().sinks,
            [
                SinkConfig::Console,
                SinkConfig::Jsonl("/tmp/e.jsonl".into())
            ]
        );
        let err = load("servers:\n  a:\n    sinks: [carrier-pigeon]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn alerts_and_reports_go_to_their_channels_else_the_event_channel() {
        let c = load("servers:\n  a:\n    event_channel_id: 1\n    alert_channel_id: 2\n  b:\n    event_channel_id: 3\n    status_channel_id: 4\n").unwrap();
        let (a, b) = (c.server("a").unwrap(), c.server("b").unwrap());
        assert_eq!(a.channel_for(Some("alerts")), Some(2));
        assert_eq!(a.channel_for(Some("stats")), Some(1));
        assert_eq!(a.channel_for(None), Some(1));
        assert_eq!(b.channel_for(Some("alerts")), Some(3));
        assert_eq!(b.channel_for(Some("stats")), Some(4));
        assert_eq!(b.channel_for(Some("deaths")), Some(3));
    }

    #[test]
    fn the_example_file_in_the_repository_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/servers.yml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::from_text(path, &text, &|_| None).unwrap();
        assert_eq!(c.servers.len(), 2);
    }
}
