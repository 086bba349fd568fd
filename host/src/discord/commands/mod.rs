//! The command language: the slash commands the bot registers ([`definitions`]), who may
//! run each ([`tiers`]), and a call parsed into a request whose every value is checked
//! ([`parse`]). Pure: it knows nothing of the gateway, servers or RCON.

pub mod definitions;
pub mod parse;
pub mod tiers;
