//! Test fixture: a parser built against the frozen `factorio-isr:plugin@0.3.0`, straight
//! from its WIT (no SDK), as a plugin compiled before 0.4.0 existed would be. Every line
//! becomes a `v03` event written out in full; it logs and reads the clock through the
//! 0.3.0 `host`, which has no `log-source`.

wit_bindgen::generate!({
    world: "parser",
    path: "../../../wit/since_v0.3.0",
});

use factorio_isr::plugin::host::{log, now_ms};
use factorio_isr::plugin::types::Severity;

struct V03;

impl Guest for V03 {
    fn init(_server: String, _config: String) -> Result<Vec<Rule>, String> {
        log(Severity::Info, "a 0.3.0 plugin starts");
        Ok(Vec::new())
    }

    fn parse(lines: String) -> Parsed {
        let now = now_ms();
        let events = lines
            .split_terminator('\n')
            .enumerate()
            .map(|(i, line)| {
                let event = Event {
                    kind: "v03".into(),
                    player: None,
                    message: Some(line.to_owned()),
                    fields: vec![("clock".into(), (now > 0).to_string())],
                    severity: Severity::Info,
                    emoji: None,
                    text: None,
                    channel: None,
                };
                (i as u32, event)
            })
            .collect();
        Parsed {
            matches: Vec::new(),
            events,
        }
    }
}

export!(V03);
