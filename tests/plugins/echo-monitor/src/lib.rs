//! Test fixture: a monitor that raises an alert keyed by each event's kind, one when UPS is
//! below 30, and counts the samples it has seen in its saved state.
//!
//! Configuration: `"trap"` makes every call trap; otherwise a sample with tick 666 traps.
//! Each sample gives a `samples` alert whose text is the count so far, so a test can see
//! that the count carried over a trap.

use factorio_isr_sdk::{Alert, Event, Monitor, Sample, export_monitor};

struct Echo {
    trap_always: bool,
    samples: u64,
}

impl Monitor for Echo {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        Ok(Echo {
            trap_always: config.contains("trap"),
            samples: 0,
        })
    }

    fn on_events(&mut self, _at_ms: u64, events: Vec<Event>) -> Vec<Alert> {
        assert!(!self.trap_always, "told to trap");
        events
            .into_iter()
            .map(|e| Alert::new(format!("kind:{}", e.kind), "event seen", e.kind))
            .collect()
    }

    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        assert!(!self.trap_always, "told to trap");
        assert!(sample.tick != Some(666), "tick 666");
        self.samples += 1;
        let mut out = vec![Alert::new(
            "samples",
            "samples seen",
            self.samples.to_string(),
        )];
        if let Some(ups) = sample.ups
            && ups < 30.0
        {
            out.push(Alert::new("ups", "UPS low", format!("{ups:.1}")));
        }
        out
    }

    fn save_state(&self) -> Vec<u8> {
        self.samples.to_le_bytes().to_vec()
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = state.try_into().map_err(|_| "bad state".to_string())?;
        self.samples = u64::from_le_bytes(bytes);
        Ok(())
    }
}

export_monitor!(Echo);
