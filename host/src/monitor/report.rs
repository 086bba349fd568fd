//! The periodic stats report of a server (every `stats_interval` seconds).

use crate::alert::duration_text;
use crate::event::Event;
use crate::readings::Reading;
use factorio_isr_text::escape;

/// What a report shows (the Python bot's `enable_ups_stat`, `enable_evolution_stat`).
#[derive(Debug, Clone, Copy)]
pub struct ReportParts {
    pub ups: bool,
    pub evolution: bool,
}

/// The report for `reading` of the server shown as `name`; none when there is no reading
/// (RCON down: the RCON alert says so already).
pub fn stats_report(name: &str, reading: &Reading, parts: ReportParts) -> Option<Event> {
    if !reading.rcon_up || reading.error.is_some() {
        return None;
    }
    let mut text = format!("**{name}**");
    let mut fields = Vec::new();
    if parts.ups {
        if reading.ups_unavailable.is_some() {
            text.push_str(" · UPS unavailable (achievement-safe)");
            fields.push(("ups".into(), "unavailable".into()));
        } else if reading.paused {
            text.push_str(" · ⏸ paused");
            fields.push(("paused".to_owned(), "true".to_owned()));
        } else if let Some(ups) = reading.ups {
            text.push_str(&format!(" · UPS {ups:.1}"));
            fields.push(("ups".into(), format!("{ups:.1}")));
            let mut avg = Vec::new();
            if let Some(v) = reading.ups_sma {
                avg.push(format!("SMA {v:.1}"));
                fields.push(("ups_sma".into(), format!("{v:.1}")));
            }
            if let Some(v) = reading.ups_ema {
                avg.push(format!("EMA {v:.1}"));
                fields.push(("ups_ema".into(), format!("{v:.1}")));
            }
            if !avg.is_empty() {
                text.push_str(&format!(" ({})", avg.join(" · ")));
            }
        } else {
            text.push_str(" · UPS measuring");
        }
    }
    let n = reading.players.len();
    match n {
        0 => text.push_str(" · no players online"),
        _ => text.push_str(&format!(
            " · {n} player{} online: {}",
            if n == 1 { "" } else { "s" },
            reading
                .players
                .iter()
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    fields.push(("players_online".into(), n.to_string()));
    fields.push(("players".into(), reading.players.join(", ")));
    if let Some(secs) = reading.game_time_seconds {
        text.push_str(&format!(" · game time {}", duration_text(secs)));
        fields.push(("game_time_secs".into(), secs.to_string()));
    }
    if parts.evolution && !reading.evolution.is_empty() {
        let shown: Vec<String> = reading
            .evolution
            .iter()
            .map(|s| format!("{} {:.1} %", escape(&s.surface), s.factor * 100.0))
            .collect();
        text.push_str(&format!(" · evolution {}", shown.join(", ")));
        for s in &reading.evolution {
            fields.push((
                format!("evolution_{}", s.surface),
                format!("{:.4}", s.factor),
            ));
        }
    }
    let mut e = Event::new("stats");
    e.emoji = Some("📊".into());
    e.text = Some(text);
    e.fields = fields;
    e.channel = Some("stats".into());
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::Surface;

    fn reading() -> Reading {
        Reading {
            at_ms: 0,
            rcon_up: true,
            error: None,
            paused: false,
            tick: Some(1000),
            ups: Some(59.94),
            ups_sma: Some(59.8),
            ups_ema: Some(59.71),
            game_time_seconds: Some(43_380),
            ups_unavailable: None,
            players: vec!["Alice".into(), "bob_the_builder".into()],
            evolution: vec![Surface {
                surface: "nauvis".into(),
                factor: 0.4213,
            }],
        }
    }

    const ALL: ReportParts = ReportParts {
        ups: true,
        evolution: true,
    };

    #[test]
    fn names_in_a_report_can_neither_format_nor_ping() {
        let mut r = reading();
        r.evolution[0].surface = "@everyone [x](y)".into();
        let e = stats_report("Prod", &r, ALL).unwrap();
        let text = e.text.unwrap();
        assert!(
            text.ends_with("evolution @\u{200b}everyone \\[x\\](y) 42.1 %"),
            "{text}"
        );
    }

    #[test]
    fn a_report_shows_ups_players_time_and_evolution() {
        let e = stats_report("Prod", &reading(), ALL).unwrap();
        assert_eq!(
            e.text.as_deref(),
            Some(
                r"**Prod** · UPS 59.9 (SMA 59.8 · EMA 59.7) · 2 players online: Alice, bob\_the\_builder · game time 12 h 3 min · evolution nauvis 42.1 %"
            )
        );
        assert_eq!(e.field("players_online"), Some("2"));
        assert_eq!(e.field("evolution_nauvis"), Some("0.4213"));
    }

    #[test]
    fn parts_can_be_left_out_and_a_pause_or_a_down_link_shows() {
        let parts = ReportParts {
            ups: false,
            evolution: false,
        };
        let text = stats_report("Prod", &reading(), parts)
            .unwrap()
            .text
            .unwrap();
        assert!(
            !text.contains("UPS") && !text.contains("evolution"),
            "{text}"
        );
        let mut r = reading();
        r.paused = true;
        r.players.clear();
        let text = stats_report("Prod", &r, ALL).unwrap().text.unwrap();
        assert!(text.contains("⏸ paused · no players online"), "{text}");
        r.rcon_up = false;
        assert!(stats_report("Prod", &r, ALL).is_none());
    }
}
