//! The simulated server's RCON side: Source framing with Factorio's behaviour (a refused
//! password answers id -1; each answer is one packet, however large, written in several
//! pieces), and faults on demand for testing clients against a broken or hostile peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::{Encoder, FramedRead};

use super::Fault;
use super::game::Game;
use crate::rcon::packet::{Codec, Kind, Packet};

/// Counters a test can read.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub commands: AtomicU64,
}

/// What every connection shares.
pub struct Shared {
    pub game: Arc<Game>,
    pub password: String,
    pub fault: parking_lot::Mutex<Fault>,
    pub counters: Counters,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock()
    }
}

/// Binds `addr` (with SO_REUSEADDR, so a stopped server can be started again on its port).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(64)
}

/// Accepts connections until the task is aborted; aborting it closes every connection.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(connection(stream, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!("sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut packets = FramedRead::new(read, Codec::new(64 << 10));
    let mut authed = false;
    while let Some(Ok(p)) = packets.next().await {
        let answer = if !authed {
            let ok = p.kind == Kind::Auth && p.body == shared.password;
            authed = ok;
            Packet {
                id: if ok { p.id } else { -1 },
                kind: Kind::AuthResponseOrExec,
                body: String::new(),
            }
        } else if p.kind == Kind::AuthResponseOrExec {
            shared.counters.commands.fetch_add(1, Ordering::Relaxed);
            let body = shared.game.execute(&p.body);
            let lag = shared.game.lag();
            if !lag.is_zero() && !p.body.starts_with("/sim") {
                tokio::time::sleep(lag).await;
            }
            match shared.fault() {
                Fault::None => Packet {
                    id: p.id,
                    kind: Kind::Response,
                    body,
                },
                fault => {
                    if misbehave(fault, p.id, &mut write).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        } else {
            continue;
        };
        if write_in_pieces(&mut write, answer).await.is_err() {
            return;
        }
    }
}

/// Writes a packet as Factorio's answers often arrive: in several TCP segments.
async fn write_in_pieces(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    p: Packet,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    Codec::new(usize::MAX >> 1)
        .encode(p, &mut buf)
        .map_err(std::io::Error::other)?;
    let cuts = [3usize, 11, 4096];
    let mut at = 0;
    for cut in cuts {
        let end = (at + cut).min(buf.len());
        w.write_all(&buf[at..end]).await?;
        w.flush().await?;
        tokio::task::yield_now().await;
        at = end;
    }
    w.write_all(&buf[at..]).await?;
    w.flush().await
}

async fn misbehave(
    fault: Fault,
    id: i32,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    match fault {
        Fault::None => Ok(()),
        Fault::Garbage => {
            w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await
        }
        Fault::NegativeLength => {
            w.write_all(&(-5i32).to_le_bytes()).await?;
            w.write_all(&[0; 16]).await
        }
        Fault::HugeLength => {
            w.write_all(&(i32::MAX).to_le_bytes()).await?;
            w.write_all(&id.to_le_bytes()).await?;
            w.write_all(&[0; 64]).await
        }
        Fault::WrongId => {
            for n in 1..=3 {
                let mut buf = BytesMut::new();
                let p = Packet {
                    id: id.wrapping_add(1000 * n),
                    kind: Kind::Response,
                    body: "not yours".into(),
                };
                Codec::new(1 << 20)
                    .encode(p, &mut buf)
                    .map_err(std::io::Error::other)?;
                w.write_all(&buf).await?;
            }
            Ok(())
        }
        Fault::Slowloris => {
            let mut buf = BytesMut::new();
            let p = Packet {
                id,
                kind: Kind::Response,
                body: "slow".repeat(64),
            };
            Codec::new(1 << 20)
                .encode(p, &mut buf)
                .map_err(std::io::Error::other)?;
            for b in buf.iter() {
                w.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
        Fault::Silent => Ok(()),
        Fault::Close => Err(std::io::Error::other("closing as asked")),
    }
}
