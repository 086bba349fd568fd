//! RCON: the framing ([`packet`]), one authenticated connection ([`connection`]), the
//! persistent per-server link (the task in [`link`], the handle every consumer shares in
//! [`client`]), and the builder of commands that are safe to send with values from Discord
//! users ([`command`]).
//!
//! The `rcon` crate is not used: it allocates whatever length a peer announces (a negative
//! one panics), has no timeouts, and in Factorio mode leaves the rest of a response in the
//! socket. The framing here is a `tokio_util` codec that checks the length first.

pub mod client;
pub mod command;
pub mod connection;
mod link;
pub mod packet;
mod reconnect;
pub mod verdict;

use std::time::Duration;

pub use client::{LinkMetrics, LinkState, LuaPolicy, RconClient, RconSettings};
pub use command::{CommandError, PlayerName, SafeCommand};
pub use connection::Connection;
pub use verdict::{Verdict, verdict};

/// Why a command got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RconError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("authentication failed: the server refused the RCON password")]
    AuthFailed,
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    #[error("the peer does not speak Factorio RCON: {0}")]
    Protocol(String),
    #[error("authenticated, but the first command ({probe}) failed: {0}", probe = client::PROBE)]
    Unresponsive(String),
    #[error("connection error: {0}")]
    Io(std::io::Error),
    #[error("RCON is down ({0}); reconnecting in the background")]
    Down(String),
    #[error("the command is {0} bytes; Factorio takes at most {max}", max = packet::MAX_COMMAND_BYTES)]
    CommandTooLong(usize),
    #[error("the RCON link has stopped")]
    Stopped,
    #[error("another instance of the cluster owns this server; this one keeps no RCON link to it")]
    Standby,
    #[error(
        "achievement-safe mode (achievements_safe: true): this command runs Lua, which would \
         disable the map's achievements for good, so it was not sent"
    )]
    LuaRefused,
}

impl RconError {
    /// Whether the connection is unusable after this error and must be re-established.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::Closed
                | Self::Protocol(_)
                | Self::Unresponsive(_)
                | Self::Io(_)
        )
    }

    /// A short, stable name for metrics (`error_type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::AuthFailed => "auth",
            Self::Timeout(_) => "timeout",
            Self::Closed => "closed",
            Self::Protocol(_) => "protocol",
            Self::Unresponsive(_) => "unresponsive",
            Self::Io(_) => "io",
            Self::Down(_) => "down",
            Self::CommandTooLong(_) => "too_long",
            Self::Stopped => "stopped",
            Self::Standby => "standby",
            Self::LuaRefused => "lua_refused",
        }
    }
}
