//! What the bot sends to Discord, as types that cannot break its rules: a message is cut to
//! Discord's limits by [`Message::fit`] before it leaves, and [`AllowedMentions`] has no way
//! to say "everyone" or "here".

use serde::Serialize;

use crate::discord::rest::limits::{self, cut, length};

/// A message's `flags` bit that shows it to the user who ran the command only.
pub const EPHEMERAL: u64 = 1 << 6;

/// A message to post, or the data of an interaction answer.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Message {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub embeds: Vec<Embed>,
    pub allowed_mentions: AllowedMentions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// Posts only: the identity Discord de-duplicates the post by.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
}

/// A post's `nonce`, with `enforce_nonce: true`: when the same bot posted a message with
/// this nonce within the past few minutes, Discord answers with that message instead of
/// posting another. Every post carries one: a retry after a timeout (Discord took the post
/// but its answer came too late) is not posted again, nor is a batch delivered again after
/// a restart or, in cluster mode, by a new owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Nonce(String);

impl Nonce {
    /// Discord's limit on a nonce's length.
    pub const MAX: usize = 25;

    /// The nonce of the `index`th message sent for `batch` (an identity the same batch has
    /// wherever it is delivered again): 25 hex digits of their SHA-256.
    pub fn of(batch: &str, index: usize) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{batch}#{index}").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self(hex[..Self::MAX].to_owned())
    }

    /// A nonce for a message that has no batch to be named after (an alert, a report): new
    /// for each message, the same for every retry of it.
    pub fn random() -> Self {
        let hex: String = (0..Self::MAX)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect();
        Self(hex)
    }

    /// The nonce as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Nonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("Nonce", 2)?;
        m.serialize_field("nonce", &self.0)?;
        m.serialize_field("enforce_nonce", &true)?;
        m.end()
    }
}

/// Whom a message may ping: never `@everyone` or `@here`; only the roles and users listed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowedMentions {
    pub roles: Vec<u64>,
    pub users: Vec<u64>,
}

impl AllowedMentions {
    /// The mentions themselves (`<@&role> <@user>`), to put in the message's text.
    pub fn tags(&self) -> String {
        let roles = self.roles.iter().map(|id| format!("<@&{id}>"));
        let users = self.users.iter().map(|id| format!("<@{id}>"));
        roles.chain(users).collect::<Vec<_>>().join(" ")
    }

    /// Whether nobody may be pinged.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.users.is_empty()
    }
}

impl Serialize for AllowedMentions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let ids = |list: &[u64]| -> Vec<String> {
            // Discord takes at most 100 of each.
            list.iter().take(100).map(u64::to_string).collect()
        };
        let mut m = s.serialize_struct("AllowedMentions", 3)?;
        m.serialize_field("parse", &[] as &[&str])?;
        m.serialize_field("roles", &ids(&self.roles))?;
        m.serialize_field("users", &ids(&self.users))?;
        m.end()
    }
}

/// An embed (alerts).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Embed {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub color: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<Footer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

/// An embed's footer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Footer {
    pub text: String,
}

/// One field of an embed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

impl Message {
    /// A message with `content` that pings nobody.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    /// Shown to the user who ran the command only.
    pub fn ephemeral(mut self) -> Self {
        self.flags = Some(EPHEMERAL);
        self
    }

    /// The message cut to Discord's limits: content, embed count, every embed text and the
    /// embeds' total (cut from the end: descriptions, then fields, go first).
    pub fn fit(mut self) -> Self {
        self.content = cut(&self.content, limits::CONTENT).into_owned();
        self.embeds.truncate(limits::EMBEDS);
        let mut budget = limits::EMBEDS_TOTAL;
        for e in &mut self.embeds {
            e.fit();
            e.shrink_to(budget);
            budget = budget.saturating_sub(e.text_length());
        }
        self
    }
}

impl Embed {
    /// Each text cut to its own limit, at most 25 fields, and no empty field (Discord
    /// refuses those).
    fn fit(&mut self) {
        self.title = cut(&self.title, limits::EMBED_TITLE).into_owned();
        self.description = cut(&self.description, limits::EMBED_DESCRIPTION).into_owned();
        if let Some(f) = &mut self.footer {
            f.text = cut(&f.text, limits::FOOTER).into_owned();
        }
        self.fields
            .retain(|f| !f.name.trim().is_empty() && !f.value.trim().is_empty());
        self.fields.truncate(limits::EMBED_FIELDS);
        for f in &mut self.fields {
            f.name = cut(&f.name, limits::FIELD_NAME).into_owned();
            f.value = cut(&f.value, limits::FIELD_VALUE).into_owned();
        }
    }

    /// What counts toward the 6,000-character total.
    fn text_length(&self) -> usize {
        length(&self.title)
            + length(&self.description)
            + self.footer.as_ref().map_or(0, |f| length(&f.text))
            + self
                .fields
                .iter()
                .map(|f| length(&f.name) + length(&f.value))
                .sum::<usize>()
    }

    /// Drops fields from the end, then cuts the description, until the text fits `budget`.
    fn shrink_to(&mut self, budget: usize) {
        while self.text_length() > budget && !self.fields.is_empty() {
            self.fields.pop();
        }
        let over = self.text_length().saturating_sub(budget);
        if over > 0 {
            let keep = length(&self.description).saturating_sub(over);
            self.description = cut(&self.description, keep).into_owned();
        }
        let over = self.text_length().saturating_sub(budget);
        if over > 0 {
            self.footer = None;
            let keep = budget.min(length(&self.title));
            self.title = cut(&self.title, keep).into_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nonce_is_deterministic_short_and_enforced() {
        let a = Nonce::of("prod/console.log@1024", 0);
        assert_eq!(a, Nonce::of("prod/console.log@1024", 0));
        assert_ne!(a, Nonce::of("prod/console.log@1024", 1));
        assert_ne!(a, Nonce::of("prod/console.log@2048", 0));
        assert_eq!(a.as_str().len(), Nonce::MAX);
        let m = Message {
            nonce: Some(a.clone()),
            ..Message::text("hi")
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["nonce"], json!(a.as_str()));
        assert_eq!(v["enforce_nonce"], json!(true));
        let plain = serde_json::to_value(Message::text("hi")).unwrap();
        assert!(plain.get("nonce").is_none() && plain.get("enforce_nonce").is_none());
    }

    #[test]
    fn allowed_mentions_never_parse_everyone() {
        let m = Message {
            allowed_mentions: AllowedMentions {
                roles: vec![7],
                users: vec![8],
            },
            ..Message::text("@everyone")
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["allowed_mentions"],
            json!({"parse": [], "roles": ["7"], "users": ["8"]}),
            "{v}"
        );
    }

    #[test]
    fn an_oversized_message_is_cut_to_every_limit() {
        let field = |i: usize| Field {
            name: format!("{i}{}", "n".repeat(300)),
            value: "v".repeat(2000),
            inline: true,
        };
        let embed = Embed {
            title: format!("🚨 {}", "t".repeat(300)),
            description: "d".repeat(5000),
            color: 0,
            footer: Some(Footer {
                text: "f".repeat(3000),
            }),
            fields: (0..30).map(field).collect(),
        };
        let m = Message {
            content: "c".repeat(2500),
            embeds: vec![embed; 12],
            ..Message::default()
        }
        .fit();
        assert_eq!(length(&m.content), limits::CONTENT);
        assert_eq!(m.embeds.len(), limits::EMBEDS);
        let total: usize = m.embeds.iter().map(Embed::text_length).sum();
        assert!(total <= limits::EMBEDS_TOTAL, "{total}");
        let e = &m.embeds[0];
        assert!(length(&e.title) <= limits::EMBED_TITLE);
        assert!(e.title.starts_with("🚨 "));
        assert!(length(&e.description) <= limits::EMBED_DESCRIPTION);
        assert!(e.fields.len() <= limits::EMBED_FIELDS);
        assert!(
            e.fields
                .iter()
                .all(|f| length(&f.name) <= limits::FIELD_NAME
                    && length(&f.value) <= limits::FIELD_VALUE)
        );
    }

    #[test]
    fn empty_fields_are_dropped() {
        let m = Message {
            embeds: vec![Embed {
                title: "t".into(),
                fields: vec![Field {
                    name: "k".into(),
                    value: " ".into(),
                    inline: true,
                }],
                ..Embed::default()
            }],
            ..Message::default()
        }
        .fit();
        assert!(m.embeds[0].fields.is_empty());
    }
}
