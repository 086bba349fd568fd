//! Source RCON framing: `length: i32 LE | id: i32 LE | type: i32 LE | body | 0 0`, where
//! `length` counts everything after itself.
//!
//! The decoder refuses lengths outside `10..=max` before reading a byte of the body, so a
//! hostile peer cannot make it allocate more than `max` bytes or panic on a negative length.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// A packet's type field. Factorio uses the Source values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SERVERDATA_AUTH` (3): the client sends the password.
    Auth,
    /// `SERVERDATA_AUTH_RESPONSE` (2) from a server; the same number is
    /// `SERVERDATA_EXECCOMMAND` from a client.
    AuthResponseOrExec,
    /// `SERVERDATA_RESPONSE_VALUE` (0): a command's answer.
    Response,
    /// Any other number (kept so a peer's nonsense can be reported, not trusted).
    Other(i32),
}

impl Kind {
    fn to_i32(self) -> i32 {
        match self {
            Self::Auth => 3,
            Self::AuthResponseOrExec => 2,
            Self::Response => 0,
            Self::Other(n) => n,
        }
    }

    fn from_i32(n: i32) -> Self {
        match n {
            3 => Self::Auth,
            2 => Self::AuthResponseOrExec,
            0 => Self::Response,
            n => Self::Other(n),
        }
    }
}

/// One RCON packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: i32,
    pub kind: Kind,
    /// The body; invalid UTF-8 from a peer is replaced, not refused.
    pub body: String,
}

/// Bytes of a packet besides its body: id, type and the two terminating NULs.
pub const OVERHEAD: usize = 10;

/// The largest command body Factorio takes: packets are kept under 4 KiB.
pub const MAX_COMMAND_BYTES: usize = 4096 - OVERHEAD - 4;

/// Why a byte stream is not RCON.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer announced a packet of {0} bytes (allowed: 10 to {1})")]
    BadLength(i64, usize),
    #[error("a packet body is not terminated by two NUL bytes")]
    BadTerminator,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes packets, refusing any announced length above `max`.
#[derive(Debug, Clone)]
pub struct Codec {
    max: usize,
}

impl Codec {
    /// A codec that accepts packets of up to `max` bytes (after the length field).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(OVERHEAD),
        }
    }
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let announced = i32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        let len = usize::try_from(announced)
            .ok()
            .filter(|l| (OVERHEAD..=self.max).contains(l))
            .ok_or(FrameError::BadLength(i64::from(announced), self.max))?;
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let id = src.get_i32_le();
        let kind = Kind::from_i32(src.get_i32_le());
        let body = src.split_to(len - OVERHEAD);
        if src.get_u16() != 0 {
            return Err(FrameError::BadTerminator);
        }
        Ok(Some(Packet {
            id,
            kind,
            body: String::from_utf8_lossy(&body).into_owned(),
        }))
    }
}

impl Encoder<Packet> for Codec {
    type Error = FrameError;

    fn encode(&mut self, p: Packet, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = p.body.len() + OVERHEAD;
        let announced = i32::try_from(len)
            .ok()
            .filter(|_| len <= self.max)
            .ok_or(FrameError::BadLength(len as i64, self.max))?;
        dst.reserve(4 + len);
        dst.put_i32_le(announced);
        dst.put_i32_le(p.id);
        dst.put_i32_le(p.kind.to_i32());
        dst.put_slice(p.body.as_bytes());
        dst.put_u16(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(p: Packet) -> BytesMut {
        let mut buf = BytesMut::new();
        Codec::new(1 << 20).encode(p, &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_packet_round_trips_even_when_it_arrives_a_byte_at_a_time() {
        let p = Packet {
            id: 7,
            kind: Kind::Response,
            body: "Alice (online)\n".repeat(400),
        };
        let wire = encode(p.clone());
        let mut codec = Codec::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in wire.iter() {
            assert!(got.is_none(), "decoded before the last byte");
            buf.put_u8(*b);
            got = codec.decode(&mut buf).unwrap();
        }
        assert_eq!(got, Some(p));
        assert!(buf.is_empty());
    }

    #[test]
    fn negative_huge_and_tiny_lengths_are_refused_before_any_allocation() {
        for announced in [-1i32, i32::MIN, 9, (1 << 20) + 1, i32::MAX] {
            let mut buf = BytesMut::from(&announced.to_le_bytes()[..]);
            let err = Codec::new(1 << 20).decode(&mut buf).unwrap_err();
            assert!(
                matches!(err, FrameError::BadLength(..)),
                "{announced}: {err}"
            );
            assert!(
                buf.capacity() < 1024,
                "{announced}: reserved {}",
                buf.capacity()
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_a_missing_terminator_is_an_error() {
        let mut wire = encode(Packet {
            id: 1,
            kind: Kind::Response,
            body: "ab".into(),
        });
        wire[12] = 0xff;
        let p = Codec::new(64).decode(&mut wire.clone()).unwrap().unwrap();
        assert_eq!(p.body, "\u{fffd}b");
        let last = wire.len() - 1;
        wire[last] = b'x';
        assert!(matches!(
            Codec::new(64).decode(&mut wire),
            Err(FrameError::BadTerminator)
        ));
    }

    #[test]
    fn the_encoder_refuses_what_the_peer_could_not_take() {
        let mut buf = BytesMut::new();
        let err = Codec::new(100)
            .encode(
                Packet {
                    id: 1,
                    kind: Kind::AuthResponseOrExec,
                    body: "x".repeat(91),
                },
                &mut buf,
            )
            .unwrap_err();
        assert!(matches!(err, FrameError::BadLength(101, 100)));
    }
}
