//! The Discord sinks: a server's channels through the bot ([`channels`]) and a webhook
//! ([`webhook`]), both packing lines into as few messages as Discord's limits allow
//! ([`pack`]).

pub mod channels;
pub mod pack;
pub mod webhook;
