//! `mentions.yml`: the groups an alert may mention, in the Python bot's format.
//!
//! ```yaml
//! mentions:
//!   roles:                 # `groups:` is read the same way
//!     operations: ["operations", "ops"]   # group name: Discord role names it pings
//! ```
//!
//! Built in, as in the Python bot: `admins`, `mods`, `staff`. Unlike the Python bot, the
//! groups `everyone` and `here` do not exist, and a role named `@everyone` or `@here` is
//! never listed: no alert, plugin or chat line can ping everybody.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use serde::Deserialize;

/// Why mentions.yml could not be loaded; names the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum MentionError {
    /// `reason` names the file (and is no `source`, so a chain does not say it twice).
    #[error("cannot read the mention groups: {reason}")]
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mentions: Option<Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

/// The mention groups alerts may use, each with the Discord role names it pings.
#[derive(Debug)]
pub struct Mentions {
    groups: BTreeMap<String, Vec<String>>,
    warned: Mutex<BTreeSet<String>>,
}

/// Never a group, never a role to ping.
const FORBIDDEN: &[&str] = &["everyone", "here", "@everyone", "@here"];

impl Mentions {
    /// The built-in groups only.
    pub fn builtin() -> Self {
        let groups = [
            (
                "admins",
                &["admin", "admins", "administrator", "administrators"][..],
            ),
            ("mods", &["mod", "mods", "moderator", "moderators"][..]),
            ("staff", &["staff"][..]),
        ]
        .into_iter()
        .map(|(g, roles)| {
            (
                g.to_owned(),
                roles.iter().map(|r| (*r).to_owned()).collect(),
            )
        })
        .collect();
        Self {
            groups,
            warned: Mutex::default(),
        }
    }

    /// The built-in groups plus those of `path`; a missing file gives the built-ins.
    pub fn load(path: &Path) -> Result<Self, MentionError> {
        let text = crate::files::read_regular(path, 16 << 20).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| std::io::Error::other(format!("{} is not UTF-8 text", path.display())))
        });
        match text {
            Ok(text) => Self::from_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::builtin()),
            Err(reason) => Err(MentionError::Read {
                path: path.display().to_string(),
                reason,
            }),
        }
    }

    /// Parses `text` as if read from `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, MentionError> {
        let file: File = serde_yaml::from_str(text).map_err(|e| MentionError::Invalid {
            path: path.display().to_string(),
            line: e.location().map_or(1, |l| l.line()),
            problem: e.to_string(),
        })?;
        let mut mentions = Self::builtin();
        let section = file.mentions.unwrap_or(Section {
            roles: BTreeMap::new(),
            groups: BTreeMap::new(),
        });
        for (group, roles) in section.roles.into_iter().chain(section.groups) {
            let group = group.trim().to_lowercase();
            if FORBIDDEN.contains(&group.as_str()) {
                tracing::warn!(
                    "{}: the mention group `{group}` is ignored: everyone and here are never pinged",
                    path.display()
                );
                continue;
            }
            let roles: Vec<String> = roles
                .into_iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty() && !FORBIDDEN.contains(&r.to_lowercase().as_str()))
                .collect();
            if roles.is_empty() {
                continue;
            }
            mentions.groups.insert(group, roles);
        }
        Ok(mentions)
    }

    /// `group` as it may be mentioned, or none (with a warning, once per group) when it is
    /// not defined or is `everyone`/`here`.
    pub fn allowed(&self, group: &str, source: &str) -> Option<String> {
        let name = group.trim().trim_start_matches('@').to_lowercase();
        if self.groups.contains_key(&name) {
            return Some(name);
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.len() < 100 && warned.insert(name.clone()) {
            tracing::warn!(
                source,
                "an alert asked to mention `{name}`, which is not a group of mentions.yml; it is posted without the mention"
            );
        }
        None
    }

    /// The group a player's `@word` in game chat names, as the Python bot read them: the
    /// word is a group's name or one of its role names (without regard to case).
    pub fn group_for_word(&self, word: &str) -> Option<&str> {
        let word = word.trim_start_matches('@');
        self.groups
            .iter()
            .find(|(g, roles)| {
                g.eq_ignore_ascii_case(word) || roles.iter().any(|r| r.eq_ignore_ascii_case(word))
            })
            .map(|(g, _)| g.as_str())
    }

    /// The Discord role names a group pings.
    pub fn roles(&self, group: &str) -> Option<&[String]> {
        self.groups.get(group).map(Vec::as_slice)
    }

    /// The group names, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_bots_file_loads_and_everyone_is_never_a_group() {
        let text = "mentions:\n  roles:\n    operations: [\"operations\", \"ops\"]\n    everyone: [\"everyone\"]\n    admins: [\"Server Admin\", \"@here\"]\n";
        let m = Mentions::from_text(Path::new("mentions.yml"), text).unwrap();
        assert_eq!(m.roles("operations").unwrap(), ["operations", "ops"]);
        assert_eq!(m.roles("admins").unwrap(), ["Server Admin"]);
        assert_eq!(
            m.allowed("Operations", "test").as_deref(),
            Some("operations")
        );
        assert_eq!(m.allowed("@admins", "test").as_deref(), Some("admins"));
        for bad in ["everyone", "@everyone", "here", "@here", "nobody"] {
            assert_eq!(m.allowed(bad, "test"), None, "{bad}");
        }
        assert_eq!(
            m.groups().collect::<Vec<_>>(),
            ["admins", "mods", "operations", "staff"]
        );
    }

    #[test]
    fn errors_name_the_file_and_line_and_a_missing_file_gives_the_builtins() {
        let err = Mentions::from_text(Path::new("m.yml"), "mentions:\n  roles:\n    ops: 7\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.yml:3:"), "{err}");
        let m = Mentions::load(Path::new("/nonexistent/mentions.yml")).unwrap();
        assert!(m.roles("mods").is_some());
    }
}
