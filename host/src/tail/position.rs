//! Where reading resumes: a byte offset in a file recognised by its first bytes, whose
//! fingerprint must never change between releases.

use sha2::{Digest, Sha256};

/// How many bytes at the start of a file identify it across restarts.
pub const FINGERPRINT_BYTES: usize = 256;

/// What identifies a file across restarts: a hash of its first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fingerprint {
    /// SHA-256 of the first `len` bytes: what is written now.
    Sha256 { len: u32, digest: [u8; 32] },
    /// SipHash-1-3 with zero keys (what `std`'s `DefaultHasher` was when checkpoints used it)
    /// of the first `len` bytes: only read, from checkpoints of earlier releases.
    Legacy { len: u32, sip13: u64 },
}

impl Fingerprint {
    /// The fingerprint of `head`, a file's first bytes.
    pub fn of(head: &[u8]) -> Self {
        Fingerprint::Sha256 {
            len: head.len() as u32,
            digest: Sha256::digest(head).into(),
        }
    }

    /// How many of the file's first bytes it covers.
    pub fn len(&self) -> usize {
        match *self {
            Fingerprint::Sha256 { len, .. } | Fingerprint::Legacy { len, .. } => len as usize,
        }
    }

    /// Whether it covers no bytes (then it matches every file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a file whose first bytes are `head` is the file it was taken of.
    pub fn matches(&self, head: &[u8]) -> bool {
        let Some(head) = head.get(..self.len()) else {
            return false;
        };
        match *self {
            Fingerprint::Sha256 { digest, .. } => Sha256::digest(head)[..] == digest[..],
            Fingerprint::Legacy { sip13, .. } => legacy_hash(head) == sip13,
        }
    }
}

/// The hash earlier releases fingerprinted files with (`DefaultHasher::new()` then).
pub fn legacy_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(bytes);
    h.finish()
}

/// Where reading resumes: a byte offset in a file recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Offset just past the last complete line handed out.
    pub offset: u64,
    pub fingerprint: Fingerprint,
}

impl Position {
    /// The beginning of whatever file is at the path.
    pub fn beginning() -> Self {
        Self {
            offset: 0,
            fingerprint: Fingerprint::of(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: a fingerprint must never change between releases, or every saved
    /// checkpoint stops matching its file and whole logs are posted again.
    #[test]
    fn fingerprints_are_stable_across_releases() {
        let line = b"2026-01-01 10:00:00 [JOIN] Alice joined the game\n";
        let Fingerprint::Sha256 { len, digest } = Fingerprint::of(line) else {
            panic!("new fingerprints are SHA-256");
        };
        assert_eq!(len as usize, line.len());
        assert_eq!(
            hex::encode(digest),
            "d690bdfa3cd0405578c6be4b333701b3dd7615f581f0265554ff5805ee2497d0"
        );
        // What `DefaultHasher::new()` gave for these bytes when checkpoints used it.
        assert_eq!(legacy_hash(line), 14_916_156_186_218_368_489);
        assert_eq!(legacy_hash(b""), 15_130_871_412_783_076_140);
    }

    #[test]
    fn the_legacy_hash_is_what_std_gave() {
        use std::hash::Hasher;
        for bytes in [&b""[..], b"a", b"2026-01-01 10:00:00 [CHAT] Bob: hi\n"] {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            h.write(bytes);
            assert_eq!(legacy_hash(bytes), h.finish());
        }
    }

    #[test]
    fn an_empty_fingerprint_matches_any_file_and_a_longer_one_needs_its_bytes() {
        assert!(Fingerprint::of(b"").matches(b"anything"));
        let f = Fingerprint::of(b"abc");
        assert!(f.matches(b"abcdef"));
        assert!(!f.matches(b"ab"), "a shorter file is another file");
        assert!(!f.matches(b"abd"));
        let legacy = Fingerprint::Legacy {
            len: 3,
            sip13: legacy_hash(b"abc"),
        };
        assert!(legacy.matches(b"abcdef") && !legacy.matches(b"abx"));
    }
}
