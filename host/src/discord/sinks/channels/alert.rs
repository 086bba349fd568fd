//! An alert as Discord shows it: an embed whose title names the server, coloured by
//! severity, its fields in words with units, pinging its mention group's roles.

use super::DiscordSink;
use crate::alert::ServerLabel;
use crate::discord::rest::limits::{self, cut};
use crate::discord::rest::payload::{AllowedMentions, Embed, Field, Footer, Message};
use crate::event::{Event, Severity};

impl DiscordSink {
    /// An alert as an embed: its title names the server (two servers often share one
    /// alerts channel), its fields read as words with units.
    pub(super) async fn alert(&self, e: &Event) -> Message {
        let title = e.field("title").unwrap_or("Alert");
        let emoji = e.emoji.as_deref().unwrap_or("");
        let server = ServerLabel {
            tag: self.server.tag.clone(),
            name: self.server.name.clone(),
        }
        .plain();
        // The emoji and the server are kept and the title cut between them, never pushed
        // past 256.
        let room = limits::EMBED_TITLE
            .saturating_sub(limits::length(emoji) + limits::length(&server) + 4)
            .max(1);
        let title = format!("{emoji} {} · {server}", cut(title, room));
        let title = cut(title.trim(), limits::EMBED_TITLE).into_owned();
        let fields = e
            .fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "source" | "key" | "title"))
            .filter(|(_, v)| !v.is_empty())
            .take(10)
            .map(|(k, v)| {
                let (name, value) = crate::alert::present::field(k, v);
                Field {
                    name,
                    value,
                    inline: true,
                }
            })
            .collect();
        let embed = Embed {
            title,
            description: e.message.clone().unwrap_or_default(),
            color: colour(e),
            footer: Some(Footer {
                text: format!(
                    "{} · {}",
                    e.field("source").unwrap_or("?"),
                    e.field("key").unwrap_or("?")
                ),
            }),
            fields,
        };
        let mut message = Message {
            embeds: vec![embed],
            ..Message::default()
        };
        if let Some(group) = &e.mention {
            let (roles, users) = self.roles.targets(&self.rest, group).await;
            let pings = AllowedMentions { roles, users };
            if !pings.is_empty() {
                message.content = pings.tags();
                message.allowed_mentions = pings;
            }
        }
        message
    }
}

/// The embed's colour: green resolved, red critical, orange warning, gold notice, else blue.
fn colour(e: &Event) -> u32 {
    if e.kind == "alert-resolved" {
        return 0x1F8B4C;
    }
    match e.severity {
        Severity::Critical => 0xE74C3C,
        Severity::Warning => 0xE67E22,
        Severity::Notice => 0xF1C40F,
        _ => 0x3498DB,
    }
}
