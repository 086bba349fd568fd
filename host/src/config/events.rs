//! What people are shown of each kind of event (a server's `events:` in servers.yml): off,
//! on, or coalesced into one Discord message that is edited while more come (autosaves
//! every few minutes should not fill a channel), and the channel each kind goes to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How a kind of event is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shown {
    /// Not shown to people (Discord, the console); a JSON-lines sink still records it.
    Off,
    /// Each event is shown.
    On,
    /// Events of the kind that come within `window` of the last one edit one Discord
    /// message ("💾 Game saved ×4, last 12:40") instead of posting new ones.
    Coalesce,
}

/// One kind's setting as written: `saved: coalesce`, or `saved: {mode: coalesce, window:
/// 1800, channel_id: 123}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSetting {
    Mode(Shown),
    Full(KindSettingFull),
}

impl<'de> Deserialize<'de> for KindSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(s) => match s.as_str() {
                "off" => Ok(Self::Mode(Shown::Off)),
                "on" => Ok(Self::Mode(Shown::On)),
                "coalesce" => Ok(Self::Mode(Shown::Coalesce)),
                other => Err(D::Error::custom(format!(
                    "`{other}` is not a mode (off, on or coalesce)"
                ))),
            },
            // YAML 1.1 readers take a bare `off`/`on` as false/true.
            serde_norway::Value::Bool(on) => {
                Ok(Self::Mode(if on { Shown::On } else { Shown::Off }))
            }
            v @ serde_norway::Value::Mapping(_) => KindSettingFull::deserialize(v)
                .map(Self::Full)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "a kind's setting is off, on, coalesce, or {mode, window, channel_id}",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettingFull {
    #[serde(default)]
    mode: Option<Shown>,
    /// Seconds; for `coalesce`.
    #[serde(default)]
    window: Option<u64>,
    /// The Discord channel this kind goes to, instead of the one its routing gives.
    #[serde(default)]
    channel_id: Option<u64>,
}

/// A kind's policy, settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindPolicy {
    pub shown: Shown,
    pub window: Duration,
    pub channel_id: Option<u64>,
}

impl KindPolicy {
    const ON: Self = Self {
        shown: Shown::On,
        window: DEFAULT_WINDOW,
        channel_id: None,
    };
}

/// The window of `coalesce` when none is given.
const DEFAULT_WINDOW: Duration = Duration::from_secs(1800);

/// What the host does when servers.yml says nothing of a kind: the lifecycle steps that
/// come with every start or save are quiet, and saves and desyncs are coalesced.
const DEFAULTS: &[(&str, Shown, u64)] = &[
    ("saving", Shown::Off, 0),
    ("server-hosting", Shown::Off, 0),
    ("rcon-ready", Shown::Off, 0),
    ("saved", Shown::Coalesce, 1800),
    ("desync", Shown::Coalesce, 600),
];

/// Every kind's policy for one server: the defaults, then servers.yml's `events:`.
#[derive(Debug, Clone, Default)]
pub struct EventRules {
    set: BTreeMap<String, KindPolicy>,
}

impl EventRules {
    /// The rules of a server whose `events:` is `configured`.
    pub fn new(configured: &BTreeMap<String, KindSetting>) -> Self {
        let mut set: BTreeMap<String, KindPolicy> = DEFAULTS
            .iter()
            .map(|(kind, shown, window)| {
                let policy = KindPolicy {
                    shown: *shown,
                    window: Duration::from_secs(*window),
                    ..KindPolicy::ON
                };
                ((*kind).to_owned(), policy)
            })
            .collect();
        for (kind, setting) in configured {
            let base = set.get(kind).copied().unwrap_or(KindPolicy::ON);
            let policy = match setting {
                KindSetting::Mode(shown) => KindPolicy {
                    shown: *shown,
                    window: if base.window.is_zero() {
                        DEFAULT_WINDOW
                    } else {
                        base.window
                    },
                    ..base
                },
                KindSetting::Full(f) => KindPolicy {
                    shown: f.mode.unwrap_or(if f.window.is_some() {
                        Shown::Coalesce
                    } else {
                        base.shown
                    }),
                    window: f.window.map_or(
                        if base.window.is_zero() {
                            DEFAULT_WINDOW
                        } else {
                            base.window
                        },
                        Duration::from_secs,
                    ),
                    channel_id: f.channel_id.or(base.channel_id),
                },
            };
            set.insert(kind.clone(), policy);
        }
        Self { set }
    }

    /// The policy of `kind`.
    pub fn of(&self, kind: &str) -> KindPolicy {
        self.set.get(kind).copied().unwrap_or(KindPolicy::ON)
    }

    /// Whether people are shown events of `kind`.
    pub fn shown(&self, kind: &str) -> bool {
        self.of(kind).shown != Shown::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> EventRules {
        let configured: BTreeMap<String, KindSetting> = serde_norway::from_str(yaml).unwrap();
        EventRules::new(&configured)
    }

    #[test]
    fn defaults_quiet_the_lifecycle_and_servers_yml_overrides_them() {
        let r = rules("{}");
        assert!(!r.shown("saving"));
        assert_eq!(r.of("saved").shown, Shown::Coalesce);
        assert_eq!(r.of("saved").window, Duration::from_secs(1800));
        assert_eq!(r.of("chat"), KindPolicy::ON);

        let r = rules(
            "saved: on\nsaving: coalesce\nchat: {channel_id: 42}\ndesync: {window: 60}\njoin: off\n",
        );
        assert_eq!(r.of("saved").shown, Shown::On);
        assert_eq!(r.of("saving").shown, Shown::Coalesce);
        assert_eq!(
            r.of("saving").window,
            DEFAULT_WINDOW,
            "a window when none was set"
        );
        assert_eq!(r.of("chat").channel_id, Some(42));
        assert_eq!(r.of("chat").shown, Shown::On);
        assert_eq!(r.of("desync").window, Duration::from_secs(60));
        assert!(!r.shown("join"));
    }

    #[test]
    fn a_mode_that_is_not_one_is_refused() {
        assert!(
            serde_norway::from_str::<BTreeMap<String, KindSetting>>("saved: sometimes").is_err()
        );
        assert!(
            serde_norway::from_str::<BTreeMap<String, KindSetting>>(
                "saved: {mode: on, colour: red}"
            )
            .is_err()
        );
    }
}
