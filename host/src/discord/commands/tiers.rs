//! Who may run which command: three tiers, roles configured per tier (deny by default), and
//! a cooldown per user and tier.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
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

/// Why a command was refused before it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The member has none of the roles that allow the tier (listed; empty when none are
    /// configured or none was found), and the configured roles that allow nothing because
    /// the guild has no such role.
    NotAllowed {
        tier: Tier,
        roles: Vec<u64>,
        missing: Vec<RoleRef>,
    },
    /// The member ran a command of this tier too recently.
    Cooldown(Duration),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let missing = |missing: &[RoleRef]| -> String {
            let named: Vec<String> = missing.iter().map(|r| r.to_string()).collect();
            format!(
                "{} not a role of this Discord server",
                match named.as_slice() {
                    [one] => format!("{one} is"),
                    _ => format!("{} are", named.join(", ")),
                }
            )
        };
        match self {
            Self::NotAllowed {
                tier,
                roles,
                missing: gone,
            } if roles.is_empty() && gone.is_empty() => write!(
                f,
                "⛔ Nobody may use `{}` commands: no role is configured for them \
                 (`discord.{}_roles` in servers.yml).",
                tier.name(),
                tier.name()
            ),
            Self::NotAllowed {
                tier,
                roles,
                missing: gone,
            } if roles.is_empty() => write!(
                f,
                "⛔ Nobody may use `{}` commands: {} (`discord.{}_roles` in servers.yml).",
                tier.name(),
                missing(gone),
                tier.name()
            ),
            Self::NotAllowed {
                tier,
                roles,
                missing: gone,
            } => {
                let roles: Vec<String> = roles.iter().map(|r| format!("<@&{r}>")).collect();
                write!(
                    f,
                    "⛔ `{}` commands need one of these roles: {}.",
                    tier.name(),
                    roles.join(", ")
                )?;
                if !gone.is_empty() {
                    write!(f, " ({}.)", missing(gone))?;
                }
                Ok(())
            }
            Self::Cooldown(d) => write!(
                f,
                "⏳ Not so fast: try again in {:.0} s.",
                d.as_secs_f64().ceil()
            ),
        }
    }
}

/// What became of a configured role when the guild's roles were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The name is this role's.
    Role { name: String, id: u64 },
    /// No role of the guild has that name.
    Missing(String),
    /// No role of the guild has that id.
    MissingId(u64),
    /// Several roles have it: none is trusted.
    Ambiguous(String),
}

/// The role ids that allow each tier, and the configured roles that allow nothing (not
/// found in the guild, or not looked up yet).
#[derive(Debug, Default, Clone)]
struct Allowed {
    admin: Vec<u64>,
    danger: Vec<u64>,
    admin_missing: Vec<RoleRef>,
    danger_missing: Vec<RoleRef>,
}

/// The permission and cooldown checks, shared by every command. Roles are matched by id
/// only: a role configured by name counts once [`Gate::resolve`] has found its id in the
/// configured guild.
pub struct Gate {
    settings: RwLock<DiscordSettings>,
    allowed: RwLock<Allowed>,
    last: Mutex<HashMap<(u64, Tier), Instant>>,
}

impl Gate {
    /// A gate for these settings (roles given by id count at once).
    pub fn new(settings: DiscordSettings) -> Self {
        let allowed = Self::unresolved(&settings);
        Self {
            settings: RwLock::new(settings),
            allowed: RwLock::new(allowed),
            last: Mutex::default(),
        }
    }

    /// Takes up new roles and cooldowns (servers.yml changed): roles given by id count at
    /// once, names once [`Gate::resolve`] has found them again.
    pub fn reconfigure(&self, settings: DiscordSettings) {
        let allowed = Self::unresolved(&settings);
        *self.settings.write() = settings;
        *self.allowed.write() = allowed;
    }

    /// What `settings` allow before the guild's roles are read: the ids; the names are
    /// missing until found.
    fn unresolved(settings: &DiscordSettings) -> Allowed {
        let ids = |refs: &[RoleRef]| -> Vec<u64> {
            refs.iter()
                .filter_map(|r| match r {
                    RoleRef::Id(id) => Some(*id),
                    RoleRef::Name(_) => None,
                })
                .collect()
        };
        let names = |refs: &[RoleRef]| -> Vec<RoleRef> {
            refs.iter()
                .filter(|r| matches!(r, RoleRef::Name(_)))
                .cloned()
                .collect()
        };
        Allowed {
            admin: ids(&settings.admin_roles),
            danger: ids(&settings.danger_roles),
            admin_missing: names(&settings.admin_roles),
            danger_missing: names(&settings.danger_roles),
        }
    }

    fn settings(&self) -> DiscordSettings {
        self.settings.read().clone()
    }

    /// Whether some role is configured by name (and so needs the guild's roles).
    pub fn has_names(&self) -> bool {
        let s = self.settings();
        s.admin_roles
            .iter()
            .chain(&s.danger_roles)
            .any(|r| matches!(r, RoleRef::Name(_)))
    }

    /// Whether some role is configured at all (and so is checked against the guild's).
    pub fn has_roles(&self) -> bool {
        let s = self.settings();
        !s.admin_roles.is_empty() || !s.danger_roles.is_empty()
    }

    /// Checks the configured roles against the guild's roles `(id, name)`: an id counts if
    /// the guild has it; a name is the role of exactly that name, else the one role whose
    /// name matches without regard to case. Says what became of each.
    pub fn resolve(&self, guild_roles: &[(u64, String)]) -> Vec<Resolved> {
        let mut report = Vec::new();
        let mut find = |refs: &[RoleRef]| -> (Vec<u64>, Vec<RoleRef>) {
            let mut ids = Vec::new();
            let mut missing = Vec::new();
            for r in refs {
                match r {
                    RoleRef::Id(id) if guild_roles.iter().any(|(g, _)| g == id) => ids.push(*id),
                    RoleRef::Id(id) => {
                        missing.push(r.clone());
                        report.push(Resolved::MissingId(*id));
                    }
                    RoleRef::Name(name) => {
                        let exact: Vec<u64> = guild_roles
                            .iter()
                            .filter(|(_, n)| n == name)
                            .map(|(i, _)| *i)
                            .collect();
                        let found = if exact.is_empty() {
                            guild_roles
                                .iter()
                                .filter(|(_, n)| n.eq_ignore_ascii_case(name))
                                .map(|(i, _)| *i)
                                .collect()
                        } else {
                            exact
                        };
                        match found.as_slice() {
                            [] => {
                                missing.push(r.clone());
                                report.push(Resolved::Missing(name.clone()));
                            }
                            [id] => {
                                ids.push(*id);
                                report.push(Resolved::Role {
                                    name: name.clone(),
                                    id: *id,
                                });
                            }
                            _ => report.push(Resolved::Ambiguous(name.clone())),
                        }
                    }
                }
            }
            (ids, missing)
        };
        let settings = self.settings();
        let (admin, admin_missing) = find(&settings.admin_roles);
        let (danger, danger_missing) = find(&settings.danger_roles);
        let allowed = Allowed {
            admin,
            danger,
            admin_missing,
            danger_missing,
        };
        *self.allowed.write() = allowed;
        report.dedup();
        report
    }

    /// The role ids that allow `tier` (danger roles allow admin commands too).
    pub fn roles_for(&self, tier: Tier) -> Vec<u64> {
        let a = self.allowed.read();
        let mut ids = match tier {
            Tier::Query => Vec::new(),
            Tier::Admin => a.admin.iter().chain(&a.danger).copied().collect(),
            Tier::Danger => a.danger.clone(),
        };
        ids.dedup();
        ids
    }

    /// The configured roles that would allow `tier` but match no role of the guild.
    fn missing_for(&self, tier: Tier) -> Vec<RoleRef> {
        let a = self.allowed.read();
        match tier {
            Tier::Query => Vec::new(),
            Tier::Admin => a
                .admin_missing
                .iter()
                .chain(&a.danger_missing)
                .cloned()
                .collect(),
            Tier::Danger => a.danger_missing.clone(),
        }
    }

    /// Whether a member with the role ids `roles` may run a command of `tier` (without a
    /// member, outside a guild, only queries).
    pub fn allowed(&self, tier: Tier, roles: Option<&[u64]>) -> bool {
        match tier {
            Tier::Query => true,
            _ => roles.is_some_and(|roles| self.roles_for(tier).iter().any(|r| roles.contains(r))),
        }
    }

    /// Checks `user`'s permission and cooldown for a command of `tier`, and starts the
    /// cooldown when it passes.
    pub fn check(
        &self,
        user: u64,
        tier: Tier,
        roles: Option<&[u64]>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.allowed(tier, roles) {
            return Err(Refusal::NotAllowed {
                tier,
                roles: self.roles_for(tier),
                missing: self.missing_for(tier),
            });
        }
        let cooldowns = self.settings().cooldowns;
        let seconds = match tier {
            Tier::Query => cooldowns.query,
            Tier::Admin => cooldowns.admin,
            Tier::Danger => cooldowns.danger,
        };
        // Negative, NaN or absurd values from the configuration: none, or at most a day.
        let cooldown =
            Duration::try_from_secs_f64(seconds.clamp(0.0, 86_400.0)).unwrap_or_default();
        let mut last = self.last.lock();
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
            guild_id: Some(1),
            admin_roles: admin,
            danger_roles: danger,
            ..DiscordSettings::default()
        })
    }

    #[test]
    fn deny_by_default_and_roles_by_id() {
        let none = gate(vec![], vec![]);
        assert!(none.allowed(Tier::Query, Some(&[1])));
        assert!(!none.allowed(Tier::Admin, Some(&[1])));
        assert!(!none.allowed(Tier::Danger, Some(&[1])));
        assert!(
            none.check(1, Tier::Admin, Some(&[1]), Instant::now())
                .unwrap_err()
                .to_string()
                .contains("no role is configured")
        );

        let g = gate(vec![RoleRef::Id(5)], vec![RoleRef::Id(99)]);
        assert!(g.allowed(Tier::Admin, Some(&[5])));
        assert!(!g.allowed(Tier::Danger, Some(&[5])));
        assert!(g.allowed(Tier::Admin, Some(&[99])), "danger includes admin");
        assert!(g.allowed(Tier::Danger, Some(&[99])));
        assert!(
            !g.allowed(Tier::Admin, None),
            "not in a guild: queries only"
        );
        let refusal = g
            .check(7, Tier::Admin, Some(&[3]), Instant::now())
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "⛔ `admin` commands need one of these roles: <@&5>, <@&99>."
        );
    }

    #[test]
    fn a_name_counts_only_once_resolved_to_one_role() {
        let g = gate(
            vec![
                RoleRef::Name("Server Admin".into()),
                RoleRef::Name("Mods".into()),
            ],
            vec![RoleRef::Name("Owner".into())],
        );
        assert!(g.has_names());
        assert!(!g.allowed(Tier::Admin, Some(&[5])), "not resolved yet");
        assert!(
            g.check(1, Tier::Admin, Some(&[5]), Instant::now())
                .unwrap_err()
                .to_string()
                .contains("role \"Server Admin\", role \"Mods\", role \"Owner\" are not a role"),
            "a name not looked up yet is named"
        );
        let report = g.resolve(&[
            (5, "server admin".into()),
            (6, "Owner".into()),
            (7, "Owner".into()),
        ]);
        assert_eq!(
            report,
            [
                Resolved::Role {
                    name: "Server Admin".into(),
                    id: 5
                },
                Resolved::Missing("Mods".into()),
                Resolved::Ambiguous("Owner".into()),
            ]
        );
        assert!(g.allowed(Tier::Admin, Some(&[5])));
        // A role created later under the same name gains nothing: ids were fixed at start.
        assert!(!g.allowed(Tier::Admin, Some(&[8])));
        assert!(
            !g.allowed(Tier::Danger, Some(&[6])),
            "an ambiguous name grants nothing"
        );
        let exact = gate(vec![RoleRef::Name("Admin".into())], vec![]);
        exact.resolve(&[(1, "admin".into()), (2, "Admin".into())]);
        assert_eq!(exact.roles_for(Tier::Admin), [2], "an exact match wins");
    }

    #[test]
    fn a_role_the_guild_does_not_have_is_named_in_the_refusal() {
        let g = gate(vec![RoleRef::from_text("600000000000000001")], vec![]);
        assert!(
            g.allowed(Tier::Admin, Some(&[600000000000000001])),
            "before the guild is read"
        );
        let report = g.resolve(&[(5, "Server Admin".into())]);
        assert_eq!(report, [Resolved::MissingId(600000000000000001)]);
        let text = g
            .check(1, Tier::Admin, Some(&[5]), Instant::now())
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "⛔ Nobody may use `admin` commands: role id 600000000000000001 is not a role of \
             this Discord server (`discord.admin_roles` in servers.yml)."
        );
        assert!(!text.contains("no role is configured"));
        let two = gate(vec![RoleRef::Id(5), RoleRef::Id(9)], vec![]);
        two.resolve(&[(5, "Server Admin".into())]);
        let text = two
            .check(1, Tier::Admin, Some(&[3]), Instant::now())
            .unwrap_err()
            .to_string();
        assert!(
            text.ends_with(
                "need one of these roles: <@&5>. (role id 9 is not a role of this Discord server.)"
            ),
            "{text}"
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
        let r = [1];
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
            Err(Refusal::NotAllowed {
                tier: Tier::Danger,
                roles: vec![],
                missing: vec![]
            })
        );
    }
}
