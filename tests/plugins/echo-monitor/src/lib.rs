//! A monitor that raises an alert keyed by each event's kind, and one when UPS is below 30.

use factorio_isr_sdk::{Alert, Event, Monitor, Sample, export_monitor};

struct Echo;

impl Monitor for Echo {
    fn new(_server: &str, _config: &str) -> Result<Self, String> {
        Ok(Echo)
    }

    fn on_events(&mut self, events: Vec<Event>) -> Vec<Alert> {
        events
            .into_iter()
            .map(|e| Alert::new(format!("kind:{}", e.kind), "event seen", e.kind))
            .collect()
    }

    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        match sample.ups {
            Some(ups) if ups < 30.0 => vec![Alert::new("ups", "UPS low", format!("{ups:.1}"))],
            _ => Vec::new(),
        }
    }
}

export_monitor!(Echo);
