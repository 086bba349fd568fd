//! The one Lua round trip that reads everything the readings engine needs, and the parsers of
//! its answer and of `/evolution`'s.

use crate::rcon::SafeCommand;
use crate::rcon::command::host_lua;

/// Marks the stats program, so the fake server can recognise it.
pub const MARKER: &str = "--[[factorio-isr stats]]";

/// Tick, ticks played, connected players and enemy evolution per surface in one command.
/// Evolution uses the 2.0 API (`get_evolution_factor(surface)`, space platforms skipped)
/// and falls back to 1.1's force-wide `evolution_factor`, reported for the first surface.
pub fn stats_command() -> SafeCommand {
    host_lua(&format!(
        "{MARKER} local o = {{}} \
         o[#o+1] = 'tick=' .. game.tick \
         o[#o+1] = 'played=' .. game.ticks_played \
         for _, p in pairs(game.connected_players) do o[#o+1] = 'player=' .. p.name end \
         local e = game.forces['enemy'] \
         if e then \
           if pcall(function() return e.get_evolution_factor end) then \
             for _, s in pairs(game.surfaces) do \
               local ok, platform = pcall(function() return s.platform end) \
               if not (ok and platform) then \
                 o[#o+1] = 'evolution=' .. s.name .. '=' .. string.format('%.6f', e.get_evolution_factor(s)) \
               end \
             end \
           else \
             o[#o+1] = 'evolution=' .. game.surfaces[1].name .. '=' .. string.format('%.6f', e.evolution_factor) \
           end \
         end \
         rcon.print(table.concat(o, '\\n'))"
    ))
}

/// What the stats program printed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsAnswer {
    pub tick: u64,
    pub ticks_played: Option<u64>,
    pub players: Vec<String>,
    pub evolution: Vec<(String, f64)>,
}

/// Why the stats program's answer could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// No `tick=` line: not the program's answer (its first 120 characters).
    #[error("the stats query gave no tick: {0:?}")]
    NoTick(String),
}

/// Reads the stats program's answer; lines it does not know are skipped.
pub fn parse_stats(answer: &str) -> Result<StatsAnswer, StatsError> {
    let mut out = StatsAnswer::default();
    let mut tick = None;
    for line in answer.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("tick=") {
            tick = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("played=") {
            out.ticks_played = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("player=") {
            if !v.is_empty() {
                out.players.push(v.to_owned());
            }
        } else if let Some(v) = line.strip_prefix("evolution=")
            && let Some((surface, factor)) = v.rsplit_once('=')
            && let Ok(f) = factor.parse::<f64>()
            && f.is_finite()
        {
            out.evolution.push((surface.to_owned(), f.clamp(0.0, 1.0)));
        }
    }
    let Some(tick) = tick else {
        return Err(StatsError::NoTick(answer.chars().take(120).collect()));
    };
    out.tick = tick;
    Ok(out)
}

/// Reads `/players online`'s answer (`Online players (2):` then one indented name a line);
/// `None` when it is not that answer.
pub fn parse_players_online(answer: &str) -> Option<Vec<String>> {
    let mut lines = answer.lines();
    let header = lines.next()?.trim();
    if !(header.starts_with("Online players (") && header.ends_with("):")) {
        return None;
    }
    Some(
        lines
            .map(|l| l.trim().trim_end_matches(" (online)").to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// Reads `/time`'s answer (`1 day, 11 hours, 1 minute and 26 seconds`) as seconds;
/// `None` when it names no unit.
pub fn parse_game_time(answer: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut any = false;
    let words: Vec<&str> = answer
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let Ok(n) = pair[0].parse::<u64>() else {
            continue;
        };
        let unit = match pair[1].trim_end_matches('.').trim_end_matches('s') {
            "day" => 86_400,
            "hour" => 3_600,
            "minute" => 60,
            "second" => 1,
            _ => continue,
        };
        total = total.saturating_add(n.saturating_mul(unit));
        any = true;
    }
    any.then_some(total)
}

/// Reads `/evolution`'s answer: 1.1 prints one line, `Evolution factor: 0.4213. (Time 12%)
/// ...`; 2.0 prints one per planet, the surface before the same words. A line without a
/// surface is reported as `nauvis`.
pub fn parse_evolution_command(answer: &str) -> Vec<(String, f64)> {
    const WORDS: &str = "evolution factor:";
    let mut out = Vec::new();
    for line in answer.lines() {
        let lower = line.to_ascii_lowercase();
        let Some(at) = lower.find(WORDS) else {
            continue;
        };
        let surface = line[..at]
            .trim()
            .trim_end_matches([':', '-', ' '])
            .trim()
            .to_ascii_lowercase();
        let rest = line[at + WORDS.len()..].trim_start();
        let number: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        // A factor outside 0..=1 is not an evolution factor, whatever the line says.
        let Some(f) = number
            .trim_end_matches('.')
            .parse::<f64>()
            .ok()
            .filter(|f| (0.0..=1.0).contains(f))
        else {
            continue;
        };
        let surface = if surface.is_empty() {
            "nauvis".to_owned()
        } else {
            surface
        };
        out.push((surface, f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_program_is_one_lua_command_under_the_size_limit() {
        let c = stats_command();
        assert!(c.as_str().starts_with("/sc --[[factorio-isr stats]] "));
        assert!(!c.as_str().contains('\n'), "one line");
        assert!(c.as_str().len() < 1500);
    }

    #[test]
    fn a_2_0_answer_gives_every_planet_and_the_players() {
        let a = parse_stats(
            "tick=123456\nplayed=120000\nplayer=Alice\nplayer=bob.x\n\
             evolution=nauvis=0.421300\nevolution=gleba=0.050000\nevolution=my=odd=name=0.1\n",
        )
        .unwrap();
        assert_eq!(a.tick, 123_456);
        assert_eq!(a.ticks_played, Some(120_000));
        assert_eq!(a.players, ["Alice", "bob.x"]);
        assert_eq!(
            a.evolution,
            [
                ("nauvis".to_owned(), 0.4213),
                ("gleba".to_owned(), 0.05),
                ("my=odd=name".to_owned(), 0.1)
            ]
        );
    }

    #[test]
    fn a_1_1_answer_has_one_surface_and_nonsense_is_an_error() {
        let a = parse_stats("tick=5\nplayed=5\nevolution=nauvis=0.000100").unwrap();
        assert!(a.players.is_empty());
        assert_eq!(a.evolution, [("nauvis".to_owned(), 0.0001)]);
        let e = parse_stats("Unknown command \"sc\".").unwrap_err();
        assert_eq!(e, StatsError::NoTick("Unknown command \"sc\".".into()));
        let a = parse_stats("tick=1\nevolution=nauvis=NaN\nevolution=x=7").unwrap();
        assert_eq!(a.evolution, [("x".to_owned(), 1.0)], "clamped, NaN dropped");
    }

    #[test]
    fn the_evolution_command_of_1_1_and_2_0() {
        assert_eq!(
            parse_evolution_command(
                "Evolution factor: 0.4213. (Time 12%) (Pollution 80%) (Spawner kills 8%)"
            ),
            [("nauvis".to_owned(), 0.4213)]
        );
        assert_eq!(
            parse_evolution_command(
                "Nauvis - Evolution factor: 0.5100. (Time 10%) (Pollution 85%) (Spawner kills 5%)\n\
                 Gleba - Evolution factor: 0.0200. (Time 100%) (Pollution 0%) (Spawner kills 0%)"
            ),
            [("nauvis".to_owned(), 0.51), ("gleba".to_owned(), 0.02)]
        );
        assert!(parse_evolution_command("Unknown command").is_empty());
    }

    #[test]
    fn the_lua_free_answers_give_players_and_game_time() {
        assert_eq!(
            parse_players_online("Online players (2):\n  Alice\n  bob.x\n"),
            Some(vec!["Alice".to_owned(), "bob.x".to_owned()])
        );
        assert_eq!(parse_players_online("Online players (0):"), Some(vec![]));
        assert_eq!(parse_players_online("Unknown command \"players\"."), None);
        assert_eq!(
            parse_game_time("1 day, 11 hours, 1 minute and 26 seconds"),
            Some(86_400 + 11 * 3_600 + 60 + 26)
        );
        assert_eq!(
            parse_game_time("0 hours, 5 minutes and 0 seconds"),
            Some(300)
        );
        assert_eq!(parse_game_time("Unknown command"), None);
    }

    #[test]
    fn a_factor_outside_0_to_1_is_not_an_evolution_factor() {
        // Found by the property test: "evolution Factor: 2" gave 2.
        assert_eq!(parse_evolution_command("evolution Factor: 2"), vec![]);
        assert_eq!(
            parse_evolution_command("Evolution factor: 1.0000."),
            vec![("nauvis".to_owned(), 1.0)]
        );
    }
}
