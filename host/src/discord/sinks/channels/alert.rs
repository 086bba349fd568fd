//! An alert as Discord shows it: an embed whose title names the server, coloured by
//! severity, its fields in words with units, pinging its mention group's roles.

use super::DiscordSink;
use crate::alert::{AlertNotice, ServerLabel, Told};
use crate::discord::rest::limits::{self, cut};
use crate::discord::rest::payload::{AllowedMentions, Embed, Field, Footer, Message};
use crate::event::Severity;

impl DiscordSink {
    /// An alert as an embed: its title names the server (two servers often share one
    /// alerts channel), its fields read as words with units.
    pub(super) async fn alert(&self, notice: &AlertNotice) -> Message {
        let a = &notice.alert;
        let emoji = notice.emoji();
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
        let title = format!("{emoji} {} · {server}", cut(&a.title, room));
        let title = cut(title.trim(), limits::EMBED_TITLE).into_owned();
        let open_secs = match notice.told {
            Told::Resolved { open_secs } => Some(("open_secs".to_owned(), open_secs.to_string())),
            Told::Raised | Told::Escalated => None,
        };
        let fields = (a.fields.iter().chain(&open_secs))
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
            description: a.text.clone(),
            color: colour(notice),
            footer: Some(Footer {
                text: format!("{} · {}", a.source, a.key),
            }),
            fields,
        };
        let mut message = Message {
            embeds: vec![embed],
            ..Message::default()
        };
        if let Some(group) = notice.mention() {
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
fn colour(notice: &AlertNotice) -> u32 {
    if let Told::Resolved { .. } = notice.told {
        return 0x1F8B4C;
    }
    match notice.alert.severity {
        Severity::Critical => 0xE74C3C,
        Severity::Warning => 0xE67E22,
        Severity::Notice => 0xF1C40F,
        _ => 0x3498DB,
    }
}
