//! Test fixture: a parser built against the frozen `factorio-isr:plugin@0.1.0`, straight
//! from its WIT (no SDK), as a plugin compiled before 0.2.0 existed would be. Every line
//! becomes a `legacy` event; it logs through the 0.1.0 `host.log`.

wit_bindgen::generate!({
    world: "parser",
    path: "../../../wit/since_v0.1.0",
});

use factorio_isr::plugin::host::log;
use factorio_isr::plugin::types::Severity;

struct Legacy;

impl Guest for Legacy {
    fn init(_server: String, _config: String) -> Result<(), String> {
        log(Severity::Info, "a 0.1.0 plugin starts");
        Ok(())
    }

    fn parse(lines: Vec<String>) -> Vec<(u32, Event)> {
        lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let event = Event {
                    kind: "legacy".into(),
                    player: None,
                    message: Some(line),
                    fields: vec![("built-against".into(), "0.1.0".into())],
                    severity: Severity::Info,
                    emoji: None,
                    text: None,
                    channel: None,
                };
                (i as u32, event)
            })
            .collect()
    }
}

export!(Legacy);
