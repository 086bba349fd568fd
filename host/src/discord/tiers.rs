//! Who may run which command: three tiers, roles configured per tier (deny by default), and
//! a cooldown per user and tier.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{DiscordSettings, RoleRef};

/// How much a command can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Reads: anyone may.
    Query,
    /// Moderation (kick, ban, promote, save, broadcast, ...): the admin or danger roles.
    Admin,
    /// Changes the game or runs any command (rcon, speed, research, clock): the danger roles.
    Danger,
}

impl Tier {
    /// The tier's name as people read it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Admin => "admin",
            Self::Danger => "danger",
        }
    }
}

/// A role a member has: its id and, when known, its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRole {
    pub id: u64,
    pub name: Option<String>,
}

/// Why a command was refused before it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The member has none of the tier's roles (or none are configured).
    NotAllowed(Tier),
    /// The member ran a command of this tier too recently.
    Cooldown(Duration),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed(t) => write!(
                f,
                "⛔ `{}` commands need a role that the bot's configuration allows for them.",
                t.name()
            ),
            Self::Cooldown(d) => write!(
                f,
                "⏳ Not so fast: try again in {:.0} s.",
                d.as_secs_f64().ceil()
            ),
        }
    }
}

/// The permission and cooldown checks, shared by every command.
pub struct Gate {
    settings: DiscordSettings,
    last: Mutex<HashMap<(u64, Tier), Instant>>,
}

impl Gate {
    /// A gate for these settings.
    pub fn new(settings: DiscordSettings) -> Self {
        Self {
            settings,
            last: Mutex::default(),
        }
    }

    /// Whether a member with `roles` may run a command of `tier` (outside a guild, only
    /// queries).
    pub fn allowed(&self, tier: Tier, roles: Option<&[MemberRole]>) -> bool {
        let matches = |wanted: &[RoleRef]| {
            roles.is_some_and(|roles| {
                roles.iter().any(|r| {
                    wanted.iter().any(|w| match w {
                        RoleRef::Id(id) => *id == r.id,
                        RoleRef::Name(n) => r
                            .name
                            .as_deref()
                            .is_some_and(|rn| rn.eq_ignore_ascii_case(n)),
                    })
                })
            })
        };
        match tier {
            Tier::Query => true,
            Tier::Admin => {
                matches(&self.settings.admin_roles) || matches(&self.settings.danger_roles)
            }
            Tier::Danger => matches(&self.settings.danger_roles),
        }
    }

    /// Checks `user`'s permission and cooldown for a command of `tier`, and starts the
    /// cooldown when it passes.
    pub fn check(
        &self,
        user: u64,
        tier: Tier,
        roles: Option<&[MemberRole]>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.allowed(tier, roles) {
            return Err(Refusal::NotAllowed(tier));
        }
        let seconds = match tier {
            Tier::Query => self.settings.cooldowns.query,
            Tier::Admin => self.settings.cooldowns.admin,
            Tier::Danger => self.settings.cooldowns.danger,
        };
        // Negative, NaN or absurd values from the configuration: none, or at most a day.
        let cooldown =
            Duration::try_from_secs_f64(seconds.clamp(0.0, 86_400.0)).unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = last.get(&(user, tier)) {
            let since = now.saturating_duration_since(*t);
            if since < cooldown {
                return Err(Refusal::Cooldown(cooldown - since));
            }
        }
        if last.len() > 10_000 {
            last.retain(|_, t| now.saturating_duration_since(*t) < Duration::from_secs(3600));
        }
        last.insert((user, tier), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(admin: Vec<RoleRef>, danger: Vec<RoleRef>) -> Gate {
        Gate::new(DiscordSettings {
            admin_roles: admin,
            danger_roles: danger,
            ..DiscordSettings::default()
        })
    }

    fn role(id: u64, name: &str) -> MemberRole {
        MemberRole {
            id,
            name: Some(name.into()),
        }
    }

    #[test]
    fn deny_by_default_and_roles_by_id_or_name() {
        let none = gate(vec![], vec![]);
        let everyone = [role(1, "Player")];
        assert!(none.allowed(Tier::Query, Some(&everyone)));
        assert!(!none.allowed(Tier::Admin, Some(&everyone)));
        assert!(!none.allowed(Tier::Danger, Some(&everyone)));

        let g = gate(
            vec![RoleRef::Name("server admin".into())],
            vec![RoleRef::Id(99)],
        );
        assert!(g.allowed(Tier::Admin, Some(&[role(5, "Server Admin")])));
        assert!(!g.allowed(Tier::Danger, Some(&[role(5, "Server Admin")])));
        assert!(
            g.allowed(Tier::Admin, Some(&[role(99, "Owner")])),
            "danger includes admin"
        );
        assert!(g.allowed(Tier::Danger, Some(&[role(99, "Owner")])));
        assert!(
            !g.allowed(Tier::Admin, None),
            "not in a guild: queries only"
        );
    }

    #[test]
    fn absurd_cooldowns_from_the_configuration_do_not_panic() {
        for q in [f64::NAN, -5.0, 1e300, f64::INFINITY] {
            let g = Gate::new(DiscordSettings {
                cooldowns: crate::config::Cooldowns {
                    query: q,
                    admin: 0.0,
                    danger: 0.0,
                },
                ..DiscordSettings::default()
            });
            let t0 = Instant::now();
            assert_eq!(g.check(1, Tier::Query, None, t0), Ok(()), "{q}");
            let again = g.check(1, Tier::Query, None, t0 + Duration::from_secs(1));
            assert_eq!(again.is_err(), q > 1.0, "{q}");
        }
    }

    #[test]
    fn cooldowns_are_per_user_and_tier() {
        let g = gate(vec![RoleRef::Id(1)], vec![]);
        let r = [role(1, "a")];
        let t0 = Instant::now();
        assert_eq!(g.check(7, Tier::Query, Some(&r), t0), Ok(()));
        assert!(matches!(
            g.check(7, Tier::Query, Some(&r), t0 + Duration::from_secs(1)),
            Err(Refusal::Cooldown(_))
        ));
        assert_eq!(
            g.check(8, Tier::Query, Some(&r), t0 + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            g.check(7, Tier::Admin, Some(&r), t0 + Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            g.check(7, Tier::Query, Some(&r), t0 + Duration::from_secs(2)),
            Ok(())
        );
        assert_eq!(
            g.check(7, Tier::Danger, Some(&r), t0),
            Err(Refusal::NotAllowed(Tier::Danger))
        );
    }
}
