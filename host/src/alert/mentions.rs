//! `mentions.yml`: the mention groups that alerts and players' `@word`s in game chat may
//! ping. Every form the Python bot's repository and guides use is read:
//!
//! ```yaml
//! mentions:
//!   enabled: true                       # false: no ping from game chat
//!   roles:                              # the Python bot's own file (`groups:` alike)
//!     operations: ["operations", "ops"] #   words that name it = Discord role names
//!   groups:                             # its installation guide
//!     admin: {discord_role_id: 1234, keywords: ["@admin", "@admins"]}
//!   users:
//!     JohnDoe: {discord_user_id: 5678, keywords: ["@john"]}
//!   alice:                              # its mentions guide
//!     {type: user, discord_id: 9012, aliases: [alice, alicesmith]}
//! ```
//!
//! Built in, as in the Python bot: `admins`, `mods`, `staff` (by role name). Unlike the
//! Python bot, `everyone` and `here` are never groups and a role named `@everyone` or
//! `@here` is never listed: no alert, plugin or chat line can ping everybody. What the
//! Python bot skipped without a word (a value of the wrong shape, a key it did not know) is
//! skipped here too, with a warning naming the line.

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_norway::Value;

use crate::config::locate::{self, Step};

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

/// Whom one mention group pings, and the words that name it in game chat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// Discord role names, looked up in the guild without regard to case.
    pub role_names: Vec<String>,
    /// Discord role ids.
    pub role_ids: Vec<u64>,
    /// Discord user ids.
    pub user_ids: Vec<u64>,
    /// The words (without `@`, lowercase) that name the group in game chat, besides its name.
    words: Vec<String>,
    /// Whether mentions.yml gave it (a built-in otherwise): the file's groups are looked
    /// at first for a chat word.
    from_file: bool,
}

/// The mention groups, each by its (lowercase) name.
#[derive(Debug)]
pub struct Mentions {
    groups: BTreeMap<String, Group>,
    /// Whether players' `@word`s in game chat may ping (`enabled:`).
    chat: bool,
    /// What the file said that is not read, each with its place.
    warnings: Vec<String>,
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
        .map(|(g, names)| {
            (
                g.to_owned(),
                by_names(names.iter().map(|n| (*n).to_owned())),
            )
        })
        .collect();
        Self {
            groups,
            chat: true,
            warnings: Vec::new(),
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

    /// Parses `text` as if read from `path`. Only text that is not YAML is an error.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, MentionError> {
        let root: Value = serde_norway::from_str(text).map_err(|e| MentionError::Invalid {
            path: path.display().to_string(),
            line: e.location().map_or(1, |l| l.line()),
            problem: e.to_string(),
        })?;
        let mut mentions = Self::builtin();
        let mut reader = Reader {
            path,
            text,
            warnings: Vec::new(),
        };
        match &root {
            Value::Mapping(top) => {
                for (key, value) in top {
                    match key.as_str() {
                        Some("mentions") => reader.section(value, &mut mentions),
                        _ => reader.skip(&[], key, "only `mentions` is read"),
                    }
                }
            }
            Value::Null => {}
            _ => reader.warn(
                &[],
                "expected a mapping with a `mentions` key; nothing is read",
            ),
        }
        mentions.warnings = reader.warnings;
        Ok(mentions)
    }

    /// What the file said that is not read, each with its file and line.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether players' `@word`s in game chat may ping (`enabled: false` turns it off).
    pub fn chat_pings(&self) -> bool {
        self.chat
    }

    /// `group` as it may be mentioned, or none (with a warning, once per group) when it is
    /// not defined or is `everyone`/`here`.
    pub fn allowed(&self, group: &str, source: &str) -> Option<String> {
        let name = group.trim().trim_start_matches('@').to_lowercase();
        if self.groups.contains_key(&name) {
            return Some(name);
        }
        let mut warned = self.warned.lock();
        if warned.len() < 100 && warned.insert(name.clone()) {
            tracing::warn!(
                source,
                "an alert asked to mention `{name}`, which is not a group of mentions.yml; it is posted without the mention"
            );
        }
        None
    }

    /// The group a player's `@word` in game chat names: the word is a group's name or one
    /// of its words (without regard to case), the file's groups before the built-ins; none
    /// when chat pings are off.
    pub fn group_for_word(&self, word: &str) -> Option<&str> {
        if !self.chat {
            return None;
        }
        let word = word.trim_start_matches('@').to_lowercase();
        if FORBIDDEN.contains(&word.as_str()) {
            return None;
        }
        let named = |(g, group): &(&String, &Group)| **g == word || group.words.contains(&word);
        let (file, builtin): (Vec<_>, Vec<_>) = self.groups.iter().partition(|(_, g)| g.from_file);
        file.into_iter()
            .find(named)
            .or_else(|| builtin.into_iter().find(named))
            .map(|(g, _)| g.as_str())
    }

    /// Whom a group pings.
    pub fn group(&self, group: &str) -> Option<&Group> {
        self.groups.get(group)
    }

    /// The group names, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

/// A group that pings the roles of these names, which are also the words that name it (the
/// Python bot's `roles:` form and the built-ins).
fn by_names(names: impl Iterator<Item = String>) -> Group {
    let names: Vec<String> = names
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty() && !FORBIDDEN.contains(&n.to_lowercase().as_str()))
        .collect();
    Group {
        words: names.iter().map(|n| word(n)).collect(),
        role_names: names,
        ..Group::default()
    }
}

/// A chat word as it is compared: without `@`, lowercase.
fn word(text: &str) -> String {
    text.trim().trim_start_matches('@').to_lowercase()
}

/// Reads the `mentions:` section, noting what it skips.
struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    warnings: Vec<String>,
}

/// Whom an entry pings.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Role,
    User,
}

impl Reader<'_> {
    fn warn(&mut self, at: &[Step], problem: &str) {
        let line = locate::line_of(self.text, at).unwrap_or(1);
        let place: Vec<String> = at
            .iter()
            .map(|s| match s {
                Step::Key(k) => k.clone(),
                Step::Index(i) => format!("[{i}]"),
            })
            .collect();
        let place = if place.is_empty() {
            String::new()
        } else {
            format!("{}: ", place.join("."))
        };
        self.warnings.push(format!(
            "{}:{line}: warning: {place}{problem}",
            self.path.display()
        ));
    }

    fn skip(&mut self, under: &[Step], key: &Value, why: &str) {
        let name = key_text(key);
        let mut at = under.to_vec();
        at.push(Step::Key(name.clone()));
        self.warn(&at, &format!("`{name}` is not read ({why})"));
    }

    fn section(&mut self, value: &Value, into: &mut Mentions) {
        let here = [Step::Key("mentions".into())];
        let Value::Mapping(section) = value else {
            if !value.is_null() {
                self.warn(
                    &here,
                    "expected a mapping of mention groups; nothing is read",
                );
            }
            return;
        };
        for (key, value) in section {
            let name = key_text(key);
            let at = [here[0].clone(), Step::Key(name.clone())];
            match name.as_str() {
                "enabled" => match value {
                    Value::Bool(on) => into.chat = *on,
                    _ => self.warn(&at, "expected true or false; chat pings stay on"),
                },
                "roles" | "groups" => self.groups(&at, value, Kind::Role, into),
                "users" => self.groups(&at, value, Kind::User, into),
                _ => {
                    if let Some(group) = self.entry(&at, value, None) {
                        self.add(&at, &name, group, into);
                    }
                }
            }
        }
    }

    /// A mapping of group names to entries (`roles:`, `groups:`, `users:`).
    fn groups(&mut self, at: &[Step], value: &Value, kind: Kind, into: &mut Mentions) {
        let Value::Mapping(groups) = value else {
            if !value.is_null() {
                self.warn(
                    at,
                    "expected a mapping of group names; nothing in it is read",
                );
            }
            return;
        };
        for (key, value) in groups {
            let name = key_text(key);
            let mut here = at.to_vec();
            here.push(Step::Key(name.clone()));
            if let Some(group) = self.entry(&here, value, Some(kind)) {
                self.add(&here, &name, group, into);
            }
        }
    }

    /// One group: a list of role names, or `{discord_role_id | discord_user_id |
    /// type + discord_id, keywords | aliases}`.
    fn entry(&mut self, at: &[Step], value: &Value, kind: Option<Kind>) -> Option<Group> {
        let fields = match value {
            Value::Sequence(names) if kind != Some(Kind::User) => {
                return Some(by_names(names.iter().filter_map(scalar_text)));
            }
            Value::Mapping(m) => m,
            _ => {
                self.warn(at, "expected a list of role names or a mapping; skipped");
                return None;
            }
        };
        let mut kind = kind;
        let (mut id, mut words) = (None, Vec::new());
        for (k, v) in fields {
            let k_text = key_text(k);
            let mut here = at.to_vec();
            here.push(Step::Key(k_text.clone()));
            match k_text.as_str() {
                "type" => match scalar_text(v).as_deref() {
                    Some("role") => kind = Some(Kind::Role),
                    Some("user") => kind = Some(Kind::User),
                    _ => self.warn(&here, "expected `role` or `user`"),
                },
                "discord_role_id" => (kind, id) = (Some(Kind::Role), self.id(&here, v)),
                "discord_user_id" => (kind, id) = (Some(Kind::User), self.id(&here, v)),
                "discord_id" => id = self.id(&here, v),
                "keywords" | "aliases" => match v {
                    Value::Sequence(list) => {
                        words.extend(list.iter().filter_map(scalar_text).map(|w| word(&w)))
                    }
                    _ => self.warn(&here, "expected a list of words"),
                },
                _ => self.skip(at, k, "not a key of a mention group"),
            }
        }
        let (Some(kind), Some(id)) = (kind, id) else {
            self.warn(at, "no Discord id (`discord_role_id`, `discord_user_id`, or `type` and `discord_id`); skipped");
            return None;
        };
        words.retain(|w| !w.is_empty());
        let mut group = Group {
            words,
            ..Group::default()
        };
        match kind {
            Kind::Role => group.role_ids.push(id),
            Kind::User => group.user_ids.push(id),
        }
        Some(group)
    }

    fn id(&mut self, at: &[Step], value: &Value) -> Option<u64> {
        let id = scalar_text(value).and_then(|t| t.trim().parse::<u64>().ok());
        if id.is_none() {
            self.warn(at, "expected a Discord id (a number)");
        }
        id
    }

    fn add(&mut self, at: &[Step], name: &str, mut group: Group, into: &mut Mentions) {
        let name = word(name);
        if FORBIDDEN.contains(&name.as_str()) {
            self.warn(
                at,
                "everyone and here are never pinged; the group is skipped",
            );
            return;
        }
        if group.role_names.is_empty() && group.role_ids.is_empty() && group.user_ids.is_empty() {
            self.warn(at, "the group pings nobody; skipped");
            return;
        }
        group.words.retain(|w| !FORBIDDEN.contains(&w.as_str()));
        group.from_file = true;
        into.groups.insert(name, group);
    }
}

/// A scalar as text (a number's digits, too).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A key as written.
fn key_text(key: &Value) -> String {
    scalar_text(key).unwrap_or_else(|| {
        serde_norway::to_string(key)
            .map(|t| t.trim_end().to_owned())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Mentions {
        Mentions::from_text(Path::new("mentions.yml"), text).unwrap()
    }

    #[test]
    fn the_python_bots_file_loads_and_everyone_is_never_a_group() {
        let text = "mentions:\n  roles:\n    operations: [\"operations\", \"ops\"]\n    everyone: [\"everyone\"]\n    admins: [\"Server Admin\", \"@here\"]\n";
        let m = load(text);
        assert_eq!(
            m.group("operations").unwrap().role_names,
            ["operations", "ops"]
        );
        assert_eq!(m.group("admins").unwrap().role_names, ["Server Admin"]);
        assert_eq!(
            m.allowed("Operations", "test").as_deref(),
            Some("operations")
        );
        assert_eq!(m.allowed("@admins", "test").as_deref(), Some("admins"));
        for bad in ["everyone", "@everyone", "here", "@here", "nobody"] {
            assert_eq!(m.allowed(bad, "test"), None, "{bad}");
            assert_eq!(m.group_for_word(bad), None, "{bad}");
        }
        assert_eq!(
            m.groups().collect::<Vec<_>>(),
            ["admins", "mods", "operations", "staff"]
        );
        assert_eq!(m.group_for_word("@OPS"), Some("operations"));
        assert_eq!(
            m.group_for_word("@moderator"),
            Some("mods"),
            "a built-in's word"
        );
        assert_eq!(
            m.group_for_word("@admin"),
            None,
            "the file's `admins` replaced the built-in"
        );
        assert!(m.warnings()[0].starts_with("mentions.yml:4: warning: mentions.roles.everyone"));
    }

    #[test]
    fn the_installation_guides_file_pings_by_id_and_keyword() {
        let text = "mentions:\n  enabled: true\n  groups:\n    admin:\n      discord_role_id: 1234567890123456789\n      keywords: [\"@admin\", \"@admins\"]\n    \n    moderator:\n      discord_role_id: 9876543210987654321\n      keywords: [\"@mod\", \"@mods\"]\n  \n  users:\n    JohnDoe:\n      discord_user_id: 1111111111111111111\n      keywords: [\"@john\", \"@johndoe\"]\n";
        let m = load(text);
        assert!(m.warnings().is_empty(), "{:?}", m.warnings());
        assert_eq!(m.group_for_word("@admins"), Some("admin"));
        assert_eq!(m.group("admin").unwrap().role_ids, [1234567890123456789]);
        assert_eq!(m.group_for_word("@mods"), Some("moderator"));
        assert_eq!(m.group_for_word("@John"), Some("johndoe"));
        // A word of the file's group wins over a built-in's name.
        assert_eq!(m.group("johndoe").unwrap().user_ids, [1111111111111111111]);
        let z =
            load("mentions:\n  groups:\n    zeta: {discord_role_id: 1, keywords: [\"@admins\"]}\n");
        assert_eq!(z.group_for_word("@admins"), Some("zeta"));
        assert_eq!(z.group_for_word("@administrator"), Some("admins"));
        let off = load("mentions:\n  enabled: false\n  groups:\n    admin: {discord_role_id: 1}\n");
        assert_eq!(off.group_for_word("@admin"), None, "chat pings are off");
        assert!(off.allowed("admin", "test").is_some(), "alerts may still");
    }

    #[test]
    fn the_mentions_guides_typed_entries_load() {
        let text = "mentions:\n  alice:\n    type: user\n    discord_id: 123456789012345678\n    aliases:\n      - alice\n      - Alice\n  admins:\n    type: role\n    discord_id: 987654321098765432\n    aliases: [\"admins\", \"mods\"]\n";
        let m = load(text);
        assert!(m.warnings().is_empty(), "{:?}", m.warnings());
        assert_eq!(m.group("alice").unwrap().user_ids, [123456789012345678]);
        let admins = m.group("admins").unwrap();
        assert_eq!(admins.role_ids, [987654321098765432]);
        assert!(admins.role_names.is_empty(), "replaces the built-in");
        assert_eq!(m.group_for_word("@mods"), Some("admins"));
    }

    #[test]
    fn what_the_python_bot_skipped_is_a_warning_with_its_line_and_bad_yaml_an_error() {
        let m = load("mentions:\n  roles:\n    ops: 7\n  colour: blue\n");
        let w = m.warnings();
        assert!(
            w[0].starts_with("mentions.yml:3: warning: mentions.roles.ops:"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("mentions.yml:4: warning: mentions.colour:"),
            "{w:?}"
        );
        assert!(m.group("ops").is_none());
        let err = Mentions::from_text(Path::new("m.yml"), "mentions:\n  roles: [a\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.yml:"), "{err}");
        let m = Mentions::load(Path::new("/nonexistent/mentions.yml")).unwrap();
        assert!(m.group("mods").is_some());
    }
}
