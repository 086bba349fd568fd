//! One server's entry of servers.yml: the Python bot's keys, and the new ones that choose
//! plugins, sinks and compare mode.

use std::path::PathBuf;

use serde::Deserialize;

use super::secret::{Secret, any_scalar, any_scalar_opt};

/// One server's settings. Names, meanings and defaults are the Python bot's. A key it does
/// not know is not an error here (the Python bot ignored such keys): [`super::Config`]
/// collects it as a warning.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// The key under `servers:` (e.g. `prod`).
    #[serde(skip)]
    pub tag: String,
    #[serde(default, deserialize_with = "any_scalar_opt")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "any_scalar_opt")]
    pub description: Option<String>,
    /// The Python bot's one log; at load it becomes the only entry of [`Self::logs`], which
    /// is what the host reads.
    pub log_path: Option<PathBuf>,
    /// The server's logs (new), each followed with its own checkpoint and all feeding the
    /// server's parsers: the console log, `factorio-current.log`, a mod's output. After
    /// loading, it holds `log_path` too, and every entry has its id.
    #[serde(default)]
    pub logs: Vec<LogSource>,
    /// Folders a log that is a link may lead into (new; default: the log's own folder). A
    /// link anywhere else is refused, so whoever can write the log folder cannot make the
    /// host read any file.
    #[serde(default)]
    pub log_links_within: Vec<PathBuf>,
    /// Where reading starts when the checkpoint is damaged and the one before it too (new).
    #[serde(default)]
    pub on_lost_checkpoint: OnLostCheckpoint,
    #[serde(default = "defaults::rcon_host", deserialize_with = "any_scalar")]
    pub rcon_host: String,
    #[serde(default = "defaults::rcon_port")]
    pub rcon_port: u16,
    pub rcon_password: Option<Secret>,
    pub event_channel_id: Option<u64>,
    pub alert_channel_id: Option<u64>,
    pub status_channel_id: Option<u64>,
    #[serde(default = "defaults::stats_interval")]
    pub stats_interval: u64,
    #[serde(default = "defaults::yes")]
    pub enable_stats_collector: bool,
    #[serde(default = "defaults::yes")]
    pub enable_ups_stat: bool,
    #[serde(default = "defaults::yes")]
    pub enable_evolution_stat: bool,
    #[serde(default = "defaults::yes")]
    pub enable_alerts: bool,
    #[serde(default = "defaults::alert_check_interval")]
    pub alert_check_interval: u64,
    #[serde(default = "defaults::alert_samples_required")]
    pub alert_samples_required: u32,
    #[serde(default = "defaults::ups_warning_threshold")]
    pub ups_warning_threshold: f64,
    #[serde(default = "defaults::ups_recovery_threshold")]
    pub ups_recovery_threshold: f64,
    #[serde(default = "defaults::alert_cooldown")]
    pub alert_cooldown: u64,
    #[serde(default = "defaults::ups_ema_alpha")]
    pub ups_ema_alpha: f64,
    #[serde(default)]
    pub rcon_status_alert_mode: RconStatusAlertMode,
    #[serde(default = "defaults::rcon_status_alert_interval")]
    pub rcon_status_alert_interval: u64,
    /// Seconds an RCON state (up or down) must hold before it is announced (new; 0: at
    /// once). A link lost 3 times (`monitor::rcon_status::UNSTABLE_AFTER`) with no
    /// state holding in between is announced once as unstable.
    #[serde(default = "defaults::rcon_status_alert_hold")]
    pub rcon_status_alert_hold: u64,
    /// Achievement-safe mode (new): the host sends no Lua to this server, since the first
    /// Lua command disables the map's achievements for good. Players, game time and
    /// evolution are read with `/players online`, `/time` and `/evolution`; UPS is then
    /// unavailable; the chat bridge and broadcasts are sent as the server's chat; commands
    /// that need Lua are refused.
    #[serde(default)]
    pub achievements_safe: bool,
    /// Seconds to wait for the RCON connection and for each answer (new; 1 to 3600).
    #[serde(default = "defaults::rcon_timeout")]
    pub rcon_timeout: u64,
    /// How often the readings engine reads the server over RCON, in seconds; requests in
    /// between are answered from the last reading.
    #[serde(default = "defaults::metrics_interval")]
    pub metrics_interval: u64,
    /// Parser plugins, in order; none means the stock `patterns` parser.
    #[serde(default)]
    pub parsers: Vec<PluginEntry>,
    /// Monitor plugins; absent means the stock `ups-alert` when `enable_alerts` is on and
    /// RCON is configured, `[]` means none.
    #[serde(default)]
    pub monitors: Option<Vec<PluginEntry>>,
    /// Faults of newly swapped-in parsers that make the host roll them back by itself
    /// (new; 0 turns automatic rollback off)...
    #[serde(default = "defaults::auto_rollback_faults")]
    pub auto_rollback_faults: u32,
    /// ...within this many seconds of the swap.
    #[serde(default = "defaults::auto_rollback_window")]
    pub auto_rollback_window: u64,
    /// Candidate plugins run in compare mode.
    #[serde(default)]
    pub shadow: Shadow,
    /// A Discord channel whose messages are relayed into the game (new; off when unset).
    pub chat_bridge_channel_id: Option<u64>,
    /// Where this server's events go besides Discord (default: the console).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// What people are shown of each kind of event (new): `off`, `on` or `coalesce`, and
    /// the Discord channel it goes to; see [`super::EventRules`].
    #[serde(default)]
    pub events: std::collections::BTreeMap<String, super::events::KindSetting>,
}

/// One log of a server, in servers.yml: `{path: ..., id: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSource {
    pub path: PathBuf,
    /// Its name: what plugins are told the lines came from (`host.log-source`), and what
    /// its health component and checkpoint are called. By default the file's name without
    /// its extension (`console`, `factorio-current`); 1 to 32 of a-z, 0-9, `-` and `_`.
    #[serde(default)]
    pub id: String,
}

/// The longest log id.
const MAX_LOG_ID: usize = 32;

impl LogSource {
    /// The id a log gets when servers.yml gives none: its file name without extension,
    /// lowercased, other characters as `-`.
    fn default_id(path: &std::path::Path) -> String {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let id: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_LOG_ID)
            .collect();
        if id.trim_matches('-').is_empty() {
            "log".into()
        } else {
            id
        }
    }

    fn valid_id(id: &str) -> bool {
        (1..=MAX_LOG_ID).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }
}

/// A destination for events, in servers.yml: `console` or `{jsonl: /path/events.jsonl}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SinkSpec")]
pub enum SinkConfig {
    /// Print events for people on stdout.
    Console,
    /// Append events as JSON lines to a file.
    Jsonl(PathBuf),
    /// Post events to a Discord webhook URL (a secret: it holds the webhook's token).
    Webhook(Secret),
}

/// How a sink is written in YAML: a bare name, or a one-key mapping of name to setting.
enum SinkSpec {
    Name(String),
    WithSetting(std::collections::BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_norway::Value;
        let wrong = || D::Error::custom("a sink is `console`, `jsonl: PATH` or `webhook: URL`");
        match Value::deserialize(d)? {
            Value::String(name) => Ok(Self::Name(name)),
            Value::Mapping(map) => {
                let mut settings = std::collections::BTreeMap::new();
                for (k, v) in map {
                    match (k, v) {
                        (Value::String(k), Value::String(v)) => {
                            settings.insert(k, v);
                        }
                        _ => return Err(wrong()),
                    }
                }
                Ok(Self::WithSetting(settings))
            }
            _ => Err(wrong()),
        }
    }
}

impl TryFrom<SinkSpec> for SinkConfig {
    type Error = String;

    fn try_from(spec: SinkSpec) -> Result<Self, String> {
        const KNOWN: &str = "`console`, `jsonl: PATH` or `webhook: URL`";
        match spec {
            SinkSpec::Name(n) if n == "console" => Ok(Self::Console),
            SinkSpec::Name(n) => Err(format!("unknown sink `{n}` (expected {KNOWN})")),
            SinkSpec::WithSetting(map) => {
                let mut entries = map.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((k, v)), None) if k == "jsonl" => Ok(Self::Jsonl(v.into())),
                    (Some((k, v)), None) if k == "webhook" => {
                        if v.starts_with("https://") || v.starts_with("http://") {
                            Ok(Self::Webhook(Secret::new(v)))
                        } else {
                            Err("a webhook sink needs an http(s) URL".into())
                        }
                    }
                    (Some((k, _)), None) => Err(format!("unknown sink `{k}` (expected {KNOWN})")),
                    _ => Err(format!("a sink is one of {KNOWN}")),
                }
            }
        }
    }
}

/// Where a server's log is read from when where it was read up to is lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLostCheckpoint {
    /// From the beginning of the file: lines may be posted again, but none is lost (a
    /// repeat is seen; a loss is not).
    #[default]
    Beginning,
    /// From its end: nothing is posted again, but lines written while the host was down
    /// are skipped.
    End,
}

/// How RCON up/down is reported (Python bot: `rcon_status_alert_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RconStatusAlertMode {
    /// A message on each change.
    #[default]
    Transition,
    /// A summary every `rcon_status_alert_interval` seconds.
    Interval,
}

/// The candidates of compare mode. In servers.yml either a list (parser candidates) or
/// `{parsers: [...], monitors: [...]}`.
#[derive(Debug, Clone, Default)]
pub struct Shadow {
    /// A candidate parser chain, run beside the live `parsers`.
    pub parsers: Vec<PluginEntry>,
    /// A candidate set of monitors, run beside the live `monitors`.
    pub monitors: Vec<PluginEntry>,
}

impl Shadow {
    /// No candidate at all.
    pub fn is_empty(&self) -> bool {
        self.parsers.is_empty() && self.monitors.is_empty()
    }
}

impl<'de> Deserialize<'de> for Shadow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Both {
            #[serde(default)]
            parsers: Vec<PluginEntry>,
            #[serde(default)]
            monitors: Vec<PluginEntry>,
        }

        struct Form;
        impl<'de> serde::de::Visitor<'de> for Form {
            type Value = Shadow;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of parser candidates, or `{parsers: [...], monitors: [...]}`")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Shadow, E> {
                Ok(Shadow::default())
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Shadow, A::Error> {
                Ok(Shadow {
                    parsers: Vec::deserialize(SeqAccessDeserializer::new(seq))?,
                    monitors: Vec::new(),
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Shadow, A::Error> {
                let both = Both::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Shadow {
                    parsers: both.parsers,
                    monitors: both.monitors,
                })
            }
        }

        d.deserialize_any(Form)
    }
}

/// A plugin and its configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A stock name (`patterns`) or a path to a `.wasm` file.
    pub plugin: String,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: serde_json::Value,
}

mod defaults {
    pub fn rcon_host() -> String {
        "localhost".into()
    }
    pub fn rcon_port() -> u16 {
        27015
    }
    pub fn stats_interval() -> u64 {
        300
    }
    pub fn yes() -> bool {
        true
    }
    pub fn alert_check_interval() -> u64 {
        60
    }
    pub fn alert_samples_required() -> u32 {
        3
    }
    pub fn ups_warning_threshold() -> f64 {
        55.0
    }
    pub fn ups_recovery_threshold() -> f64 {
        58.0
    }
    pub fn alert_cooldown() -> u64 {
        300
    }
    pub fn ups_ema_alpha() -> f64 {
        0.2
    }
    pub fn rcon_status_alert_interval() -> u64 {
        300
    }
    pub fn rcon_status_alert_hold() -> u64 {
        30
    }
    pub fn rcon_timeout() -> u64 {
        5
    }
    pub fn metrics_interval() -> u64 {
        5
    }
    pub fn auto_rollback_faults() -> u32 {
        3
    }
    pub fn auto_rollback_window() -> u64 {
        300
    }
}

impl ServerConfig {
    /// Folds `log_path` into `logs` and gives every log its id. An error names the field
    /// (its path under the server) and what is wrong.
    pub(super) fn settle_logs(&mut self) -> Result<(), (Vec<String>, String)> {
        if let Some(path) = &self.log_path {
            if !self.logs.is_empty() {
                return Err((
                    vec!["log_path".into()],
                    "give either `log_path` or `logs`, not both (`log_path` is one entry of `logs`)"
                        .into(),
                ));
            }
            self.logs.push(LogSource {
                path: path.clone(),
                id: String::new(),
            });
        }
        for (i, log) in self.logs.iter_mut().enumerate() {
            if log.id.is_empty() {
                log.id = LogSource::default_id(&log.path);
            } else if !LogSource::valid_id(&log.id) {
                return Err((
                    vec!["logs".into(), i.to_string(), "id".into()],
                    format!(
                        "`{}` is not a valid log id (1 to {MAX_LOG_ID} of a-z, 0-9, - and _)",
                        log.id
                    ),
                ));
            }
        }
        for (i, log) in self.logs.iter().enumerate() {
            if let Some(first) = self.logs[..i].iter().position(|l| l.id == log.id) {
                return Err((
                    vec!["logs".into(), i.to_string()],
                    format!(
                        "logs[{first}] and logs[{i}] are both called `{}`: give one an `id`",
                        log.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The Discord channel for an event with routing hint `channel`: alerts go to
    /// `alert_channel_id`, stats reports to `status_channel_id`, each falling back to
    /// `event_channel_id`, which takes everything else.
    pub fn channel_for(&self, channel: Option<&str>) -> Option<u64> {
        match channel {
            Some("alerts") => self.alert_channel_id.or(self.event_channel_id),
            Some("stats") => self.status_channel_id.or(self.event_channel_id),
            _ => self.event_channel_id,
        }
    }
}

/// The longest server tag, in characters, and in bytes: a tag is a Discord choice's value
/// (at most 100 characters) and part of file names (at most 255 bytes with what follows).
pub(super) const MAX_TAG: usize = 64;
const MAX_TAG_BYTES: usize = 128;

/// The Python bot's rule for tags: letters and digits (any case, any script), `_` and `-`;
/// here also at most [`MAX_TAG`] characters (the Python bot set no limit, and no tag of its
/// documents comes near it).
pub(super) fn valid_tag(tag: &str) -> bool {
    (1..=MAX_TAG).contains(&tag.chars().count())
        && tag.len() <= MAX_TAG_BYTES
        && tag
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}
