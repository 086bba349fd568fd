//! The game's console: the commands Factorio answers over RCON (and `/sim` for the
//! simulation's own controls).

use std::collections::{BTreeSet, VecDeque};

use super::{ACHIEVEMENTS_WARNING, Api, Game};
use crate::readings::query::MARKER;

/// A command's arguments after its word.
struct Args<'a>(&'a str);

impl Args<'_> {
    /// The `i`-th word, or empty.
    fn word(&self, i: usize) -> String {
        self.0
            .split_whitespace()
            .nth(i)
            .unwrap_or_default()
            .to_owned()
    }

    /// Everything from the `i`-th word on, or empty.
    fn tail(&self, i: usize) -> String {
        self.0
            .splitn(i + 1, ' ')
            .nth(i)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// Appends `item`, dropping the oldest beyond `max`.
fn keep_last<T>(queue: &mut VecDeque<T>, max: usize, item: T) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Game {
    /// Answers a console command as Factorio would.
    pub fn execute(&self, command: &str) -> String {
        let command = command.trim();
        if !command.starts_with("/sim") {
            self.with(|w| keep_last(&mut w.received, 10_000, command.to_owned()));
        }
        // Text that is not a command is the server's chat, as in the server console.
        if !command.starts_with('/') {
            if !command.is_empty() {
                self.log_line(&format!("[CHAT] <server>: {command}"));
                self.with(|w| keep_last(&mut w.printed, 1000, command.to_owned()));
            }
            return String::new();
        }
        let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
        let args = Args(rest.trim());
        match word {
            "/c" | "/command" => {
                self.log_line(&format!("[COMMAND] <server> (command): {}", args.0));
                self.lua(args.0)
            }
            "/sc" | "/silent-command" => self.lua(args.0),
            "/players" | "/p" => self.players(matches!(args.0, "online" | "o")),
            "/time" => self.time(),
            "/version" => self.version.clone(),
            "/seed" => self.seed.to_string(),
            "/admins" => self.with(|w| list("Admins", &w.admins, Some(&w.online))),
            "/evolution" => self.evolution_command(),
            "/server-save" => "Saving map...".into(),
            "/kick" | "/ban" => self.kick_or_ban(word, &args.word(0), args.tail(1)),
            "/unban" => self.unban(&args.word(0)),
            "/mute" | "/unmute" => self.mute(&args.word(0), word == "/mute"),
            "/promote" | "/demote" => self.promote(&args.word(0), word == "/promote"),
            "/whisper" | "/w" => {
                let name = args.word(0);
                if self.with(|w| w.online.contains(&name)) {
                    String::new()
                } else {
                    format!("Player {name} is not online.")
                }
            }
            "/whitelist" => self.whitelist(&args.word(0), &args.word(1)),
            "/sim" => self.control(&args.word(0), &args.word(1), &args.tail(2)),
            _ => format!("Unknown command \"{}\".", word.trim_start_matches('/')),
        }
    }

    fn time(&self) -> String {
        let secs = self.tick() / 60;
        format!(
            "{} hours, {} minutes and {} seconds",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    /// `/kick` or `/ban` (`word`) of `name`: a ban needs no player seen before.
    fn kick_or_ban(&self, word: &str, name: &str, reason: String) -> String {
        if name.is_empty() {
            return format!("Usage: {word} <player> <reason>");
        }
        let ban = word == "/ban";
        let known = self.with(|w| {
            let known = w.ever_joined.contains(name) || ban;
            if known {
                w.online.remove(name);
                if ban {
                    w.banned.insert(name.to_owned());
                }
            }
            known
        });
        if !known {
            return format!("Player \"{name}\" doesn't exist.");
        }
        let reason = if reason.is_empty() {
            "unspecified".to_owned()
        } else {
            reason
        };
        self.log_line(&if ban {
            format!("[BAN] {name} was banned by <server>. Reason: {reason}.")
        } else {
            format!("[KICK] {name} was kicked by <server>. Reason: {reason}.")
        });
        String::new()
    }

    fn unban(&self, name: &str) -> String {
        if self.with(|w| w.banned.remove(name)) {
            self.log_line(&format!("[UNBANNED] {name} was unbanned by <server>."));
            String::new()
        } else {
            format!("Player {name} is not banned.")
        }
    }

    fn mute(&self, name: &str, mute: bool) -> String {
        let known = self.with(|w| {
            let known = w.ever_joined.contains(name);
            if known && mute {
                w.muted.insert(name.to_owned());
            } else if known {
                w.muted.remove(name);
            }
            known
        });
        if !known {
            return format!("Player \"{name}\" doesn't exist.");
        }
        format!(
            "Player {name} was {}.",
            if mute { "muted" } else { "unmuted" }
        )
    }

    fn promote(&self, name: &str, promote: bool) -> String {
        let changed = self.with(|w| {
            if promote {
                w.admins.insert(name.to_owned())
            } else {
                w.admins.remove(name)
            }
        });
        if !changed {
            return format!(
                "Player {name} is {}an admin.",
                if promote { "already " } else { "not " }
            );
        }
        self.log_line(&if promote {
            format!("[PROMOTE] {name} was promoted to admin by <server>.")
        } else {
            format!("[DEMOTE] {name} was demoted from admin by <server>.")
        });
        String::new()
    }

    fn lua(&self, code: &str) -> String {
        if !self.with(|w| std::mem::replace(&mut w.lua_used, true)) {
            return ACHIEVEMENTS_WARNING.into();
        }
        if code.contains(MARKER) {
            return self.stats_answer();
        }
        if code.contains("rcon.print(game.tick)") {
            return self.tick().to_string();
        }
        if let Some((text, _)) = code
            .strip_prefix("game.print(")
            .and_then(crate::rcon::command::parse_lua_string)
        {
            self.with(|w| keep_last(&mut w.printed, 1000, text));
            return String::new();
        }
        if let Some(speed) = code.strip_prefix("game.speed = ") {
            if let Ok(s) = speed.trim().parse::<f64>() {
                self.set_ups(60.0 * s);
            }
            return String::new();
        }
        String::new()
    }

    fn stats_answer(&self) -> String {
        let tick = self.tick();
        let mut out = vec![format!("tick={tick}"), format!("played={tick}")];
        out.extend(self.online().into_iter().map(|p| format!("player={p}")));
        let surfaces = self.surfaces(tick);
        match self.api {
            Api::V2_0 => out.extend(
                surfaces
                    .iter()
                    .map(|(s, f)| format!("evolution={s}={f:.6}")),
            ),
            Api::V1_1 => out.push(format!("evolution=nauvis={:.6}", surfaces[0].1)),
        }
        out.join("\n")
    }

    /// Enemy evolution per planet (space platforms have none), rising slowly with time.
    fn surfaces(&self, tick: u64) -> Vec<(&'static str, f64)> {
        let growth = 1.0 - (-(tick as f64) / 50_000_000.0).exp();
        let planets: &[(&str, f64)] = match self.api {
            Api::V1_1 => &[("nauvis", 0.30)],
            Api::V2_0 => &[("nauvis", 0.30), ("vulcanus", 0.10), ("gleba", 0.05)],
        };
        planets
            .iter()
            .map(|(n, base)| (*n, base + (1.0 - base) * growth))
            .collect()
    }

    fn evolution_command(&self) -> String {
        let surfaces = self.surfaces(self.tick());
        let line = |f: f64| {
            format!("Evolution factor: {f:.4}. (Time 12%) (Pollution 80%) (Spawner kills 8%)")
        };
        match self.api {
            Api::V1_1 => line(surfaces[0].1),
            Api::V2_0 => surfaces
                .iter()
                .map(|(s, f)| {
                    let mut name = s.to_string();
                    name[..1].make_ascii_uppercase();
                    format!("{name} - {}", line(*f))
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    fn players(&self, online_only: bool) -> String {
        self.with(|w| {
            if online_only {
                list("Online players", &w.online, None)
            } else {
                list("Players", &w.ever_joined, Some(&w.online))
            }
        })
    }

    fn whitelist(&self, action: &str, name: &str) -> String {
        self.with(|w| match action {
            "add" if !name.is_empty() => {
                w.whitelist.insert(name.to_owned());
                format!("Player {name} added to the whitelist.")
            }
            "remove" if !name.is_empty() => {
                w.whitelist.remove(name);
                format!("Player {name} removed from the whitelist.")
            }
            "get" => list("Whitelisted players", &w.whitelist, None),
            "clear" => {
                w.whitelist.clear();
                "Whitelist cleared.".into()
            }
            "enable" | "disable" => {
                w.whitelist_on = action == "enable";
                format!("Whitelist {action}d.")
            }
            _ => {
                "Usage: /whitelist add|remove <player>, /whitelist get|clear|enable|disable".into()
            }
        })
    }

    /// `/sim ...`: controls of the simulation itself, for scripts and process-level tests.
    fn control(&self, what: &str, arg: &str, tail: &str) -> String {
        match what {
            "ups" => match arg.parse::<f64>() {
                Ok(u) if u >= 0.0 => {
                    self.set_ups(u);
                    format!("ups {u}")
                }
                _ => "usage: /sim ups N".into(),
            },
            "pause" => {
                self.set_paused(true);
                "paused".into()
            }
            "resume" => {
                self.set_paused(false);
                "resumed".into()
            }
            "join" => {
                self.join(arg);
                String::new()
            }
            "leave" => {
                self.leave(arg);
                String::new()
            }
            "chat" => {
                self.chat(arg, tail);
                String::new()
            }
            "big" => "x".repeat(arg.parse::<usize>().unwrap_or(0).min(16 << 20)),
            "printed" => self.with(|w| w.printed.iter().cloned().collect::<Vec<_>>().join("\n")),
            "received" => self.received().join("\n"),
            "autosave" => {
                self.autosave();
                String::new()
            }
            "desync" => {
                self.desync(arg.parse().unwrap_or(1));
                String::new()
            }
            "forget" => {
                // `arg` leaves without a [LEAVE] line, as when Factorio does not write one.
                self.with(|w| w.online.remove(arg));
                String::new()
            }
            "lag" => match arg.parse::<u64>() {
                Ok(ms) => {
                    self.with(|w| w.lag = std::time::Duration::from_millis(ms.min(60_000)));
                    format!("lag {ms} ms")
                }
                Err(_) => "usage: /sim lag MS".into(),
            },
            _ => "usage: /sim ups N | pause | resume | join P | leave P | forget P | chat P TEXT | autosave | desync PEER | big BYTES | printed | received | lag MS"
                .into(),
        }
    }
}

fn list(title: &str, names: &BTreeSet<String>, online: Option<&BTreeSet<String>>) -> String {
    let mut out = format!("{title} ({}):", names.len());
    for n in names {
        out.push_str("\n  ");
        out.push_str(n);
        if online.is_some_and(|o| o.contains(n)) {
            out.push_str(" (online)");
        }
    }
    out
}
