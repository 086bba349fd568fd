//! The monitors' states, as the host keeps them across restarts and failovers: after each
//! call the monitor thread notes them, and what changed goes on to a keeper (the app's),
//! which writes it to the state folder or etcd. At the next start each monitor gets back
//! the state of the same plugin at the same place.

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::plugin::MonitorInstance;

/// One monitor's state as kept: the plugin it belongs to (a state is given back only to
/// the same plugin at the same place) and its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeptState {
    plugin: String,
    #[serde(with = "hex_bytes")]
    state: Vec<u8>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// Where the monitor thread sends its monitors' states after each call (only when they
/// changed), as bytes to keep.
pub struct MonitorStates {
    tx: watch::Sender<Vec<u8>>,
    last: Vec<KeptState>,
}

impl MonitorStates {
    /// States go to `tx`.
    pub fn new(tx: watch::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            last: Vec::new(),
        }
    }

    /// Notes the states of `monitors` now; sends them on when they differ from the last.
    pub fn note(&mut self, monitors: &[MonitorInstance]) {
        let now: Vec<KeptState> = monitors
            .iter()
            .map(|m| KeptState {
                plugin: m.plugin().name().to_owned(),
                state: m.saved_state().to_vec(),
            })
            .collect();
        if now == self.last {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&now) {
            self.tx.send_replace(bytes);
        }
        self.last = now;
    }

    /// Gives each of `monitors` the state kept for it in `bytes` (what [`Self::note`] sent):
    /// the state of the same plugin at the same place; others start afresh.
    pub fn restore(bytes: &[u8], monitors: &mut [MonitorInstance]) -> serde_json::Result<()> {
        let kept: Vec<KeptState> = serde_json::from_slice(bytes)?;
        for (m, k) in monitors.iter_mut().zip(&kept) {
            if m.plugin().name() == k.plugin {
                m.adopt_state(&k.state);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_state_reads_back_as_written() {
        let k = vec![KeptState {
            plugin: "ups-alert".into(),
            state: b"{\"below\":2}".to_vec(),
        }];
        let text = serde_json::to_string(&k).unwrap();
        assert!(text.contains("\"plugin\":\"ups-alert\""), "{text}");
        assert!(
            text.contains("\"state\":\"7b2262656c6f77223a327d\""),
            "{text}"
        );
        let back: Vec<KeptState> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, k);
    }
}
