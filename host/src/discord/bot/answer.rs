//! Running a validated `/factorio` request against a server and wording the answer.

use crate::alert::duration_text;
use crate::discord::bot::Bot;
use crate::discord::commands::definitions;
use crate::discord::commands::parse::{Action, Request};
use crate::discord::escape;
use crate::rcon::{LinkState, Verdict};
use crate::servers::Server;

/// How a command ended, for the user.
pub enum Outcome {
    /// Shown in the channel.
    Shown(String),
    /// Shown to the user only (refusals and errors).
    Private(String),
}

/// Runs `request` on `server` (when it needs one).
pub async fn answer(
    request: &Request,
    server: Option<&Server>,
    servers: &[Server],
    bot: &Bot,
) -> Outcome {
    let Some(server) = server else {
        return match request {
            Request::Servers => Outcome::Shown(list(servers)),
            Request::Health => Outcome::Shown(health(bot)),
            _ => Outcome::Shown(definitions::help()),
        };
    };
    let title = match &server.name {
        Some(n) => format!("**{}** (`{}`)", escape(n), server.tag),
        None => format!("`{}`", server.tag),
    };
    match request {
        Request::Connect => Outcome::Private(format!("✅ Your commands now go to {title}.")),
        Request::Reload => reload(&title, server, bot).await,
        Request::Plugins => Outcome::Shown(plugins(&title, server)),
        _ => {
            let Some(stats) = &server.stats else {
                return Outcome::Private(format!(
                    "❌ {title} has no RCON password configured, so the bot cannot ask it anything."
                ));
            };
            match request {
                Request::Status => Outcome::Shown(status(&title, server).await),
                Request::Players => {
                    let r = stats.reading().await;
                    if !r.rcon_up {
                        return down(&title);
                    }
                    let names: Vec<String> = r.players.iter().map(|p| escape(p)).collect();
                    Outcome::Shown(match names.len() {
                        0 => format!("{title}: nobody is online."),
                        n => format!("{title}: {n} online: {}", names.join(", ")),
                    })
                }
                Request::Console(what, command) => {
                    match stats.rcon().exec(command.as_str()).await {
                        Ok(text) if *what == "evolution" => {
                            Outcome::Shown(evolution(&title, &text))
                        }
                        Ok(text) => Outcome::Shown(format!("{title}\n{}", block(text.trim()))),
                        Err(e) => {
                            tracing::warn!(server = %server.tag, "a Discord command failed over RCON: {e}");
                            down(&title)
                        }
                    }
                }
                Request::Action(action) => match stats.rcon().exec(action.command.as_str()).await {
                    Ok(text) => acted(&title, action, &text),
                    Err(e) => {
                        tracing::warn!(server = %server.tag, verb = action.verb, "a Discord command failed over RCON: {e}");
                        Outcome::Private(format!(
                            "⚠️ Not done: {title} did not answer ({}), so `{}` may not have happened. Try again later.",
                            escape(&e.to_string()),
                            action.verb
                        ))
                    }
                },
                _ => Outcome::Private("❌ Not a command for a server.".into()),
            }
        }
    }
}

/// A reload of the server's plugins from servers.yml, asked for in Discord.
async fn reload(title: &str, server: &Server, bot: &Bot) -> Outcome {
    let Some(reloader) = bot.reloader.get() else {
        return Outcome::Private("⏳ The bot is still starting; try again in a moment.".into());
    };
    let done = reloader.reload(server).await;
    let lines: Vec<String> = done.describe().iter().map(|l| escape(l)).collect();
    match done.error() {
        None => Outcome::Shown(format!("🔁 {title} {}.", lines.join("; "))),
        Some(e) => {
            tracing::warn!(server = %server.tag, "a reload from Discord failed: {e}");
            Outcome::Private(format!("❌ {title} {}", lines.join("; ")))
        }
    }
}

/// The answer to an action the game was sent: done (✅, to the channel), refused by the
/// game (❌ with its reason, to the user only), or an answer that says neither (⚠️, shown
/// as it is; for an action whose answer is its result, that is done).
fn acted(title: &str, action: &Action, answer: &str) -> Outcome {
    let verdict = match crate::rcon::verdict(answer) {
        Verdict::Unclear(_) if action.shows_answer => Verdict::Done,
        v => v,
    };
    match verdict {
        Verdict::Done => {
            let answer = answer.trim();
            let said = if answer.is_empty() {
                String::new()
            } else {
                format!("\nThe game said:\n{}", block(answer))
            };
            Outcome::Shown(format!("✅ On {title}: {}.{said}", action.done))
        }
        Verdict::Refused(why) => Outcome::Private(format!(
            "❌ Not done on {title}: the game refused `{}`:\n{}",
            action.verb,
            block(why)
        )),
        Verdict::Unclear(said) => Outcome::Shown(format!(
            "⚠️ On {title}: `{}` was sent; the game's answer says neither that it was done nor \
             that it was refused:\n{}",
            action.verb,
            block(said)
        )),
    }
}

/// `/evolution`'s answer as `status` words it: each surface's factor in per cent, with
/// what the game says drove it. An answer that cannot be read is shown as it is.
fn evolution(title: &str, answer: &str) -> String {
    let mut out = format!("{title} evolution\n");
    let mut any = false;
    for line in answer.lines() {
        let Some((surface, factor)) = crate::readings::query::parse_evolution_command(line).pop()
        else {
            continue;
        };
        any = true;
        // "(Time 12%) (Pollution 80%) (Spawner kills 8%)" → "time 12 %, pollution 80 %, …"
        let drivers: Vec<String> = line
            .split('(')
            .skip(1)
            .filter_map(|part| part.split_once(')').map(|(inside, _)| inside.trim()))
            .filter_map(|inside| {
                let (what, pct) = inside.rsplit_once(' ')?;
                let pct = pct.strip_suffix('%')?.parse::<f64>().ok()?;
                Some(format!("{} {pct} %", what.to_lowercase()))
            })
            .collect();
        let mut surface_name = surface.clone();
        if let Some(first) = surface_name.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        out.push_str(&format!(
            "{}: **{:.1} %**",
            escape(&surface_name),
            factor * 100.0
        ));
        if !drivers.is_empty() {
            out.push_str(&format!(" ({})", escape(&drivers.join(", "))));
        }
        out.push('\n');
    }
    if any {
        out
    } else {
        format!("{title}\n{}", block(answer.trim()))
    }
}

fn down(title: &str) -> Outcome {
    Outcome::Private(format!(
        "⚠️ {title} did not answer: its RCON connection is down. Try again later."
    ))
}

/// Text in a code block, with anything that would close the block defused.
fn block(text: &str) -> String {
    format!("```\n{}\n```", text.replace("```", "`\u{200b}``"))
}

fn list(servers: &[Server]) -> String {
    let mut out = String::from("**Servers**\n");
    for s in servers {
        let state = match s.stats.as_ref().map(|st| st.rcon().state()) {
            None => "⚪ no RCON",
            Some(LinkState::Up { .. }) => "🟢 up",
            Some(LinkState::Down { .. }) => "🔴 down",
            Some(LinkState::Connecting) => "⏳ connecting",
            Some(LinkState::Standby) => "💤 held by another instance",
        };
        let name = s
            .name
            .as_deref()
            .map(|n| format!(" {}", escape(n)))
            .unwrap_or_default();
        out.push_str(&format!("`{}`{name}: {state}\n", s.tag));
    }
    out
}

fn health(bot: &Bot) -> String {
    let parts = bot.health.snapshot();
    let bad: Vec<String> = parts
        .iter()
        .filter(|c| !matches!(c.state, crate::observe::health::State::Ready))
        .map(|c| format!("`{}`: {:?}", c.name, c.state).to_lowercase())
        .collect();
    if bad.is_empty() {
        format!("💚 All {} components are working.", parts.len())
    } else {
        format!(
            "🩹 {} of {} components need attention:\n{}",
            bad.len(),
            parts.len(),
            bad.join("\n")
        )
    }
}

fn plugins(title: &str, server: &Server) -> String {
    let mut out = format!("{title} plugins\n");
    for p in server.plugins.list() {
        out.push_str(&format!(
            "{} `{}` {} ({}): {} calls, {} faults{}\n",
            p.role,
            escape(&p.plugin),
            p.version,
            p.world,
            p.calls,
            p.faults,
            p.last_fault
                .as_deref()
                .map(|f| format!(", last: {}", escape(f)))
                .unwrap_or_default()
        ));
    }
    out
}

async fn status(title: &str, server: &Server) -> String {
    let Some(stats) = &server.stats else {
        return format!("{title}: no RCON.");
    };
    let r = stats.reading().await;
    let mut out = format!("{title}\n");
    let link = match stats.rcon().state() {
        LinkState::Up { .. } => "🟢 connected".to_owned(),
        LinkState::Down { error, .. } => format!("🔴 down ({})", escape(&error)),
        LinkState::Connecting => "⏳ connecting".to_owned(),
        LinkState::Standby => "💤 held by another instance".to_owned(),
    };
    out.push_str(&format!("RCON: {link}\n"));
    if r.rcon_up {
        let ups = if r.ups_unavailable.is_some() {
            "unavailable in achievement-safe mode (reading the tick needs Lua)".to_owned()
        } else if r.paused {
            "⏸ paused".to_owned()
        } else {
            match (r.ups, r.ups_sma, r.ups_ema) {
                (Some(u), Some(s), Some(e)) => format!("{u:.1} (SMA {s:.1} · EMA {e:.1})"),
                (Some(u), _, _) => format!("{u:.1}"),
                _ => "measuring".into(),
            }
        };
        out.push_str(&format!("UPS: {ups}\n"));
        if let Some(t) = r.game_time_seconds {
            out.push_str(&format!("Game time: {}\n", duration_text(t)));
        }
        if !r.evolution.is_empty() {
            let evo: Vec<String> = r
                .evolution
                .iter()
                .map(|s| format!("{} {:.1} %", escape(&s.surface), s.factor * 100.0))
                .collect();
            out.push_str(&format!("Evolution: {}\n", evo.join(", ")));
        }
        let names: Vec<String> = r.players.iter().map(|p| escape(p)).collect();
        out.push_str(&format!(
            "Players ({}): {}\n",
            names.len(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
    }
    let alerts = server.alerts.active();
    if !alerts.is_empty() {
        let shown: Vec<String> = alerts
            .iter()
            .map(|a| format!("⚠️ {}", escape(&a.title)))
            .collect();
        out.push_str(&format!("Alerts: {}\n", shown.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(verb: &'static str, shows_answer: bool) -> Action {
        Action {
            verb,
            command: crate::rcon::command::raw("/players").unwrap(),
            done: "did it".into(),
            shows_answer,
        }
    }

    fn text(o: Outcome) -> (String, bool) {
        match o {
            Outcome::Shown(t) => (t, false),
            Outcome::Private(t) => (t, true),
        }
    }

    #[test]
    fn an_action_is_done_refused_or_unclear_as_the_game_answers() {
        let (t, private) = text(acted("`p`", &action("kick", false), ""));
        assert_eq!((t.as_str(), private), ("✅ On `p`: did it.", false));
        let (t, private) = text(acted(
            "`p`",
            &action("kick", false),
            "Player \"X\" doesn't exist.",
        ));
        assert!(
            private && t.starts_with("❌ Not done on `p`: the game refused `kick`"),
            "{t}"
        );
        let (t, private) = text(acted("`p`", &action("kick", false), "42"));
        assert!(
            !private && t.starts_with("⚠️ On `p`: `kick` was sent"),
            "{t}"
        );
        // A raw command's answer is its result; its refusal is still one.
        let (t, _) = text(acted(
            "`p`",
            &action("rcon", true),
            "Online players (1): Alice",
        ));
        assert!(t.starts_with("✅ On `p`: did it.\nThe game said:"), "{t}");
        let (t, private) = text(acted(
            "`p`",
            &action("rcon", true),
            "Unknown command \"x\".",
        ));
        assert!(private && t.starts_with("❌"), "{t}");
    }

    #[test]
    fn evolution_reads_like_status() {
        let one = evolution(
            "`prod`",
            "Evolution factor: 0.4213. (Time 12%) (Pollution 80%) (Spawner kills 8%)",
        );
        assert_eq!(
            one,
            "`prod` evolution\nNauvis: **42.1 %** (time 12 %, pollution 80 %, spawner kills 8 %)\n"
        );
        let two = evolution(
            "`sa`",
            "Nauvis - Evolution factor: 0.5100. (Time 10%)\nGleba - Evolution factor: 0.0200.",
        );
        assert!(
            two.contains("Nauvis: **51.0 %** (time 10 %)\nGleba: **2.0 %**\n"),
            "{two}"
        );
        let odd = evolution("`x`", "Unknown command \"evolution\".");
        assert!(odd.contains("```\nUnknown command"), "{odd}");
    }
}
