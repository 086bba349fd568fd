//! A message ready for a channel, and how plain lines are packed into as few of them as
//! Discord's limit allows.

use crate::discord::rest::payload::Message;
use crate::discord::sinks::pack::pack as pack_messages;

/// A message ready to send.
pub(super) struct Outgoing {
    pub(super) channel: u64,
    pub(super) message: Message,
    /// The message to edit instead of posting a new one.
    pub(super) edit: Option<u64>,
    /// The coalesced kind whose message this is.
    pub(super) coalesce: Option<String>,
    /// The events of the batch it carries (their indexes), done once it is sent.
    pub(super) events: Vec<usize>,
}

impl Outgoing {
    /// A new message to `channel` carrying the batch's `events`.
    pub(super) fn post(channel: u64, message: Message, events: Vec<usize>) -> Self {
        Self {
            channel,
            message,
            edit: None,
            coalesce: None,
            events,
        }
    }
}

/// Packs a run of plain lines (channel, line, event) into as few messages per channel as
/// fit, and empties it.
pub(super) fn flush(run: &mut Vec<(u64, String, usize)>, out: &mut Vec<Outgoing>) {
    let mut channels: Vec<u64> = run.iter().map(|(c, ..)| *c).collect();
    channels.sort_unstable();
    channels.dedup();
    for channel in channels {
        let (lines, mut indexes): (Vec<String>, Vec<usize>) = run
            .iter()
            .filter(|(c, ..)| *c == channel)
            .map(|(_, l, i)| (l.clone(), *i))
            .unzip();
        for (text, held) in pack_messages(lines) {
            let rest = indexes.split_off(held.min(indexes.len()));
            let carried = std::mem::replace(&mut indexes, rest);
            out.push(Outgoing::post(channel, Message::text(text), carried));
        }
    }
    run.clear();
}
