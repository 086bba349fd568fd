//! What an instance says of itself under `members/<id>`: where it is (so a second instance
//! with the same id can name it) and a digest of each server's entry in its servers.yml
//! (so instances whose files differ do not own the servers they disagree on).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One member of the cluster, as it registered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// `host:port` of its HTTP server (empty when unknown).
    #[serde(default)]
    pub address: String,
    /// The digest of each server's entry in its servers.yml, by tag; none from an instance
    /// of a release that did not publish them.
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
}

impl Member {
    /// The member a value of `members/<id>` describes: JSON, or (an earlier release) the
    /// bare id.
    pub fn parse(id: &str, value: &[u8]) -> Self {
        serde_json::from_slice(value).unwrap_or_else(|_| Self {
            id: id.to_owned(),
            ..Self::default()
        })
    }

    /// The value to register.
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The digest of each server's entry of `raw` (servers.yml as written, `servers:` parsed),
/// by tag: SHA-256 of the entry as canonical JSON (keys sorted), without `rcon_password`
/// (a password's hash is not for etcd), first 16 hex digits.
pub fn config_digests(servers: &serde_norway::Mapping) -> BTreeMap<String, String> {
    use sha2::Digest;
    servers
        .iter()
        .filter_map(|(k, v)| {
            let tag = k.as_str()?.to_owned();
            let mut entry: serde_json::Value = serde_json::to_value(v).ok()?;
            if let Some(map) = entry.as_object_mut() {
                map.remove("rcon_password");
            }
            let text = serde_json::to_string(&entry).ok()?;
            let digest = sha2::Sha256::digest(text.as_bytes());
            Some((tag, hex::encode(&digest[..8])))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_reads_back_and_an_earlier_releases_bare_id_is_understood() {
        let m = Member {
            id: "isr-1".into(),
            address: "host-a:8080".into(),
            config: Some([("prod".to_owned(), "ab".to_owned())].into()),
        };
        assert_eq!(Member::parse("isr-1", m.to_value().as_bytes()), m);
        let old = Member::parse("isr-2", b"isr-2");
        assert_eq!((old.id.as_str(), old.config), ("isr-2", None));
    }

    #[test]
    fn digests_ignore_key_order_and_the_password_and_see_every_other_change() {
        let read = |t: &str| -> serde_norway::Mapping { serde_norway::from_str(t).unwrap() };
        let a = config_digests(&read(
            "prod: {log_path: /a, rcon_port: 1, rcon_password: x}\n",
        ));
        let b = config_digests(&read(
            "prod: {rcon_password: y, rcon_port: 1, log_path: /a}\n",
        ));
        let c = config_digests(&read("prod: {log_path: /b, rcon_port: 1}\n"));
        assert_eq!(a, b);
        assert_ne!(a["prod"], c["prod"]);
        assert_eq!(a["prod"].len(), 16);
    }
}
