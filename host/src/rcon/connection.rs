//! One authenticated RCON connection, with Factorio's behaviour: request ids from 1 (id 0
//! asks Factorio for its log), one response packet per command however large, no
//! empty-packet end marker, and the achievements warning that asks for a Lua command twice.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::RconError;
use super::packet::{Codec, FrameError, Kind, MAX_COMMAND_BYTES, Packet};
use crate::config::Secret;

/// The largest response accepted: Factorio answers in one packet, which for a big Lua print
/// can be megabytes; anything larger is a broken or hostile peer.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// An open, authenticated connection.
pub struct Connection {
    framed: Framed<TcpStream, Codec>,
    next_id: i32,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and authenticates, all within `timeout`.
    pub async fn connect(
        addr: &str,
        password: &Secret,
        timeout: Duration,
    ) -> Result<Self, RconError> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, password))
            .await
            .map_err(|_| RconError::Timeout(timeout))?
    }

    async fn connect_inner(addr: &str, password: &Secret) -> Result<Self, RconError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| RconError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Self {
            framed: Framed::new(stream, Codec::new(MAX_RESPONSE_BYTES)),
            next_id: 1,
        };
        let id = conn.take_id();
        conn.send(Packet {
            id,
            kind: Kind::Auth,
            body: password.expose().to_owned(),
        })
        .await?;
        // Source servers send an empty response value before the auth response; Factorio
        // does not. Either way the auth response decides.
        loop {
            let p = conn.receive().await?;
            match p.kind {
                Kind::AuthResponseOrExec if p.id == -1 => return Err(RconError::AuthFailed),
                Kind::AuthResponseOrExec if p.id == id => return Ok(conn),
                Kind::Response => continue,
                _ => {
                    return Err(RconError::Protocol(format!(
                        "unexpected packet during authentication (id {}, type {:?})",
                        p.id, p.kind
                    )));
                }
            }
        }
    }

    /// Sends `command` and returns its answer, within `timeout`. A Lua command that meets
    /// the achievements warning is sent once more, as Factorio asks.
    pub async fn exec(&mut self, command: &str, timeout: Duration) -> Result<String, RconError> {
        if command.len() > MAX_COMMAND_BYTES {
            return Err(RconError::CommandTooLong(command.len()));
        }
        tokio::time::timeout(timeout, async {
            let answer = self.exec_once(command).await?;
            if is_lua(command) && is_achievements_warning(&answer) {
                return self.exec_once(command).await;
            }
            Ok(answer)
        })
        .await
        .map_err(|_| RconError::Timeout(timeout))?
    }

    async fn exec_once(&mut self, command: &str) -> Result<String, RconError> {
        let id = self.take_id();
        self.send(Packet {
            id,
            kind: Kind::AuthResponseOrExec,
            body: command.to_owned(),
        })
        .await?;
        loop {
            let p = self.receive().await?;
            if p.id == id && p.kind == Kind::Response {
                return Ok(p.body);
            }
            if p.id == -1 {
                return Err(RconError::Protocol(
                    "the server says this connection is not authenticated".into(),
                ));
            }
            // An answer to an earlier command that timed out, or noise: each packet is
            // bounded and the caller's deadline bounds how many are read.
            tracing::debug!(expected = id, got = p.id, "skipping an RCON packet");
        }
    }

    fn take_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id = if id == i32::MAX { 1 } else { id + 1 };
        id
    }

    async fn send(&mut self, p: Packet) -> Result<(), RconError> {
        self.framed.send(p).await.map_err(RconError::from)
    }

    async fn receive(&mut self) -> Result<Packet, RconError> {
        match self.framed.next().await {
            Some(r) => r.map_err(RconError::from),
            None => Err(RconError::Closed),
        }
    }
}

impl From<FrameError> for RconError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Self::Closed,
            FrameError::Io(e) => Self::Io(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Whether `command` runs Lua (`/c`, `/command`, `/sc`, `/silent-command`).
pub(crate) fn is_lua(command: &str) -> bool {
    let word = command.split_whitespace().next().unwrap_or_default();
    matches!(word, "/c" | "/command" | "/sc" | "/silent-command")
}

/// Factorio's answer to the first Lua command of a game whose achievements are still on:
/// exactly that sentence (an answer that merely mentions achievements and repeating, a
/// mod's output say, must not make the command run twice).
fn is_achievements_warning(answer: &str) -> bool {
    answer.trim()
        == "Using Lua console commands will disable achievements, please repeat the command to proceed."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_commands_and_the_warning_are_recognised() {
        assert!(is_lua("/sc rcon.print(game.tick)"));
        assert!(is_lua("/silent-command x"));
        assert!(!is_lua("/players online"));
        assert!(!is_lua("/scx"));
        assert!(is_achievements_warning(
            "Using Lua console commands will disable achievements, please repeat the command to proceed."
        ));
        assert!(!is_achievements_warning("12345"));
        // A Lua answer that only talks about achievements and repeating is an answer.
        assert!(!is_achievements_warning(
            "achievements: 3 unlocked; repeat count 2"
        ));
        assert!(!is_achievements_warning(
            "Using Lua console commands will disable achievements, please repeat the command to proceed. Also: 5"
        ));
    }
}
