//! The state of every component (tailers, parsers, sinks, HTTP), for `/health`, `/ready`
//! and the `component_status` metric.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::slot::Slot;

use serde::Serialize;

/// How a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not working yet (a log file that does not exist yet, a plugin still loading).
    Starting,
    Ready,
    /// Working, but with recent errors.
    Degraded,
    /// Not working.
    Down,
}

/// What a component is: its name in `/ready` (`sink:prod:discord`) and in the
/// `component` label of the metrics is made from it, in one place ([`fmt::Display`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// servers.yml, read at start and watched (`config`).
    Config,
    /// The HTTP server (`http`).
    Http,
    /// The Discord gateway (`discord`).
    Discord,
    /// Discord's slash commands (`discord:commands`).
    DiscordCommands,
    /// The users' kept server selections (`discord:selections`).
    DiscordSelections,
    /// This instance in its cluster (`cluster`).
    Cluster,
    /// Whether this instance's servers.yml agrees with the cluster's (`cluster:config`).
    ClusterConfig,
    /// A server's start (`server:<tag>`).
    Server(String),
    /// A server's RCON link (`rcon:<tag>`).
    Rcon(String),
    /// Where a server's version choices are kept (`versions:<tag>`).
    Versions(String),
    /// A server's reloads of a slot (`reload:<tag>`, `reload:<tag>:monitors`).
    Reload { server: String, slot: Slot },
    /// The samples handed to a server's monitors (`monitor:<tag>`).
    MonitorFeed(String),
    /// One log of a server being read (`tailer:<tag>`, `tailer:<tag>:<log>`).
    Tailer(LogPart),
    /// Where a log's position is saved (`checkpoint:<tag>`, `checkpoint:<tag>:<log>`).
    Checkpoint(LogPart),
    /// A server's sink (`sink:<tag>:<sink>`).
    Sink { server: String, sink: String },
    /// A server's parser plugin (`parser:<tag>:<plugin>`).
    Parser { server: String, plugin: String },
    /// A server's monitor plugin (`monitor:<tag>:<plugin>`).
    Monitor { server: String, plugin: String },
    /// A server's thread or task that stopped on a panic (`task:<tag>:<task>`).
    Task { server: String, task: String },
}

/// One log of a server: the server's only log has no id of its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPart {
    pub server: String,
    pub log: Option<String>,
}

impl fmt::Display for LogPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.log {
            Some(log) => write!(f, "{}:{log}", self.server),
            None => f.write_str(&self.server),
        }
    }
}

impl Part {
    /// The server it belongs to, if it is one of a server's parts.
    pub fn server(&self) -> Option<&str> {
        match self {
            Part::Config
            | Part::Http
            | Part::Discord
            | Part::DiscordCommands
            | Part::DiscordSelections
            | Part::Cluster
            | Part::ClusterConfig => None,
            Part::Server(s) | Part::Rcon(s) | Part::Versions(s) | Part::MonitorFeed(s) => Some(s),
            Part::Tailer(l) | Part::Checkpoint(l) => Some(&l.server),
            Part::Reload { server, .. }
            | Part::Sink { server, .. }
            | Part::Parser { server, .. }
            | Part::Monitor { server, .. }
            | Part::Task { server, .. } => Some(server),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Config => f.write_str("config"),
            Part::Http => f.write_str("http"),
            Part::Discord => f.write_str("discord"),
            Part::DiscordCommands => f.write_str("discord:commands"),
            Part::DiscordSelections => f.write_str("discord:selections"),
            Part::Cluster => f.write_str("cluster"),
            Part::ClusterConfig => f.write_str("cluster:config"),
            Part::Server(s) => write!(f, "server:{s}"),
            Part::Rcon(s) => write!(f, "rcon:{s}"),
            Part::Versions(s) => write!(f, "versions:{s}"),
            Part::Reload { server, slot } => match slot {
                Slot::Parsers => write!(f, "reload:{server}"),
                Slot::Monitors => write!(f, "reload:{server}:monitors"),
            },
            Part::MonitorFeed(s) => write!(f, "monitor:{s}"),
            Part::Tailer(l) => write!(f, "tailer:{l}"),
            Part::Checkpoint(l) => write!(f, "checkpoint:{l}"),
            Part::Sink { server, sink } => write!(f, "sink:{server}:{sink}"),
            Part::Parser { server, plugin } => write!(f, "parser:{server}:{plugin}"),
            Part::Monitor { server, plugin } => write!(f, "monitor:{server}:{plugin}"),
            Part::Task { server, task } => write!(f, "task:{server}:{task}"),
        }
    }
}

/// One component's report.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    /// The server it is a part of, if any.
    #[serde(skip)]
    pub server: Option<String>,
    pub state: State,
    pub errors: u64,
    /// The last problem, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Every component, by name. Cheap to clone; shared by the pipeline and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, Component>>>,
}

impl Health {
    /// Registers `name` as starting (or resets it).
    pub fn register(&self, name: &Part) {
        self.update(name, |c| {
            c.state = State::Starting;
        });
    }

    /// Sets the state of `name`, with an optional detail.
    pub fn set(&self, name: &Part, state: State, detail: Option<String>) {
        self.update(name, |c| {
            c.state = state;
            if detail.is_some() || state == State::Ready {
                c.detail = detail;
            }
        });
    }

    /// Counts an error of `name` and marks it degraded (or keeps it down).
    pub fn error(&self, name: &Part, detail: String) {
        self.update(name, |c| {
            c.errors += 1;
            if c.state != State::Down {
                c.state = State::Degraded;
            }
            c.detail = Some(detail);
        });
    }

    /// Takes `name` out of the report.
    pub fn forget(&self, name: &Part) {
        self.inner.lock().remove(&name.to_string());
    }

    /// Takes every part of server `tag` out of the report: its parts are stopped on purpose.
    pub fn forget_server(&self, tag: &str) {
        (self.inner.lock()).retain(|_, c| c.server.as_deref() != Some(tag));
    }

    fn update(&self, part: &Part, f: impl FnOnce(&mut Component)) {
        let name = part.to_string();
        let mut map = self.inner.lock();
        let c = map.entry(name.clone()).or_insert_with(|| Component {
            name,
            server: part.server().map(str::to_owned),
            state: State::Starting,
            errors: 0,
            detail: None,
        });
        f(c);
    }

    /// Every component, by name.
    pub fn snapshot(&self) -> Vec<Component> {
        self.inner.lock().values().cloned().collect()
    }

    /// Whether every component is ready (degraded counts: it works).
    pub fn is_ready(&self) -> bool {
        self.snapshot()
            .iter()
            .all(|c| matches!(c.state, State::Ready | State::Degraded))
    }

    /// Whether any component is down.
    pub fn any_down(&self) -> bool {
        self.snapshot().iter().any(|c| c.state == State::Down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(server: &str, log: Option<&str>) -> LogPart {
        LogPart {
            server: server.into(),
            log: log.map(str::to_owned),
        }
    }

    #[test]
    fn names_are_the_ones_ready_and_the_metrics_have_always_shown() {
        let names = [
            (Part::DiscordCommands, "discord:commands"),
            (Part::Tailer(log("prod", None)), "tailer:prod"),
            (
                Part::Checkpoint(log("prod", Some("chat"))),
                "checkpoint:prod:chat",
            ),
            (
                Part::Reload {
                    server: "prod".into(),
                    slot: Slot::Monitors,
                },
                "reload:prod:monitors",
            ),
            (
                Part::Sink {
                    server: "prod".into(),
                    sink: "discord".into(),
                },
                "sink:prod:discord",
            ),
            (Part::MonitorFeed("prod".into()), "monitor:prod"),
        ];
        for (part, name) in names {
            assert_eq!(part.to_string(), name);
        }
    }

    #[test]
    fn forgetting_a_server_takes_its_parts_only_even_when_tags_contain_colons() {
        let health = Health::default();
        // A tag that is a prefix of another, and a log id that looks like a tag.
        health.set(&Part::Rcon("prod".into()), State::Ready, None);
        health.set(&Part::Tailer(log("prod", Some("eu"))), State::Ready, None);
        health.set(&Part::Rcon("prod-eu".into()), State::Ready, None);
        health.set(&Part::Tailer(log("eu", None)), State::Ready, None);
        health.set(&Part::Discord, State::Ready, None);
        health.forget_server("prod");
        let left: Vec<String> = health.snapshot().into_iter().map(|c| c.name).collect();
        assert_eq!(left, ["discord", "rcon:prod-eu", "tailer:eu"]);
        // Names were once split on `:`: a server tagged `commands` took Discord's
        // `discord:commands` with it.
        health.set(&Part::DiscordCommands, State::Ready, None);
        health.set(&Part::Rcon("commands".into()), State::Ready, None);
        health.forget_server("commands");
        let left: Vec<String> = health.snapshot().into_iter().map(|c| c.name).collect();
        assert_eq!(
            left,
            ["discord", "discord:commands", "rcon:prod-eu", "tailer:eu"]
        );
    }
}
