//! Secrets that are not in servers.yml: Docker secrets (files in `/run/secrets/`), then the
//! environment, as the Python bot looked them up.

use std::path::{Path, PathBuf};

use super::Secret;

/// Where secrets are looked up.
#[derive(Debug, Clone)]
pub struct SecretSource {
    /// The Docker secrets folder (`/run/secrets`; `FACTORIO_ISR_SECRETS_DIR` overrides).
    pub dir: PathBuf,
}

impl Default for SecretSource {
    fn default() -> Self {
        Self {
            dir: std::env::var_os("FACTORIO_ISR_SECRETS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/secrets")),
        }
    }
}

impl SecretSource {
    /// The first of `names` found as a secret file (trimmed), else as an environment variable.
    pub fn lookup(&self, names: &[String]) -> Option<Secret> {
        names
            .iter()
            .find_map(|n| read_secret(&self.dir.join(n)))
            .or_else(|| {
                names
                    .iter()
                    .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
            })
            .map(Secret::new)
    }

    /// A server's RCON password: `RCON_PASSWORD_<TAG>` (the tag in capitals, `-` as `_`,
    /// then as the Python bot named it, `-` kept), then `RCON_PASSWORD`.
    pub fn rcon_password(&self, tag: &str) -> Option<Secret> {
        let upper = tag.to_uppercase();
        let mut names = vec![format!("RCON_PASSWORD_{}", upper.replace('-', "_"))];
        if upper.contains('-') {
            names.push(format!("RCON_PASSWORD_{upper}"));
        }
        names.push("RCON_PASSWORD".to_owned());
        self.lookup(&names)
    }

    /// The Discord bot token: `DISCORD_BOT_TOKEN`.
    pub fn discord_token(&self) -> Option<Secret> {
        self.lookup(&["DISCORD_BOT_TOKEN".to_owned()])
    }
}

fn read_secret(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_first_then_the_per_server_name_then_the_shared_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = SecretSource {
            dir: dir.path().to_owned(),
        };
        assert_eq!(s.rcon_password("no-such-server-xyz"), None);
        std::fs::write(dir.path().join("RCON_PASSWORD"), "shared\n").unwrap();
        assert_eq!(s.rcon_password("prod").unwrap().expose(), "shared");
        std::fs::write(dir.path().join("RCON_PASSWORD_EU_1"), "for-eu-1\n").unwrap();
        assert_eq!(s.rcon_password("eu-1").unwrap().expose(), "for-eu-1");
        assert_eq!(s.rcon_password("prod").unwrap().expose(), "shared");
        // The Python bot's name for a tag with `-`, and a tag with `_`.
        std::fs::write(dir.path().join("RCON_PASSWORD_PVP-ARENA"), "pvp\n").unwrap();
        assert_eq!(s.rcon_password("pvp-arena").unwrap().expose(), "pvp");
        std::fs::write(dir.path().join("RCON_PASSWORD_SPACE_AGE"), "sa\n").unwrap();
        assert_eq!(s.rcon_password("space_age").unwrap().expose(), "sa");
    }
}
