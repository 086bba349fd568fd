//! Which file a configured log is: the file its path resolves to (links followed), by device
//! and inode, so the same file reached by two paths (`./sub/../console.log`, a link) is
//! known to be one. A server that follows one file twice would post each line twice: that
//! is a configuration error. Two servers that follow one file post each line once per
//! server: that may be deliberate (one log, two Discord servers), so it is a warning.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ServerConfig};

/// What a configured log is, as far as can be told now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    /// The file it resolves to.
    Inode { dev: u64, ino: u64 },
    /// Not there yet: the canonical folder and the name.
    Path(PathBuf),
}

/// One log of one server, named as servers.yml names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub tag: String,
    /// Its place in the server's `logs` (0 for `log_path`).
    pub index: usize,
    pub id: String,
    pub path: PathBuf,
}

/// Two entries that are one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameFile {
    pub first: LogEntry,
    pub second: LogEntry,
    /// The file both lead to (as the second path resolves).
    pub file: PathBuf,
}

/// Logs followed more than once: within one server (errors) and across servers (warnings).
#[derive(Debug, Default)]
pub struct SharedLogs {
    pub within: Vec<SameFile>,
    pub across: Vec<SameFile>,
}

impl SameFile {
    /// The problem in words, each entry with its path in servers.yml.
    pub fn describe(&self, config: &Config) -> String {
        let name = |e: &LogEntry| {
            format!(
                "{} (`{}`, line {})",
                config.log_field(&e.tag, e.index),
                e.path.display(),
                config.log_line(&e.tag, e.index)
            )
        };
        format!(
            "{} and {} are the same file, {}",
            name(&self.second),
            name(&self.first),
            self.file.display()
        )
    }
}

/// Finds the logs of `config` that are the same file.
pub fn shared_logs(config: &Config) -> SharedLogs {
    let mut seen: Vec<(FileKey, LogEntry)> = Vec::new();
    let mut out = SharedLogs::default();
    for server in &config.servers {
        for (index, log) in server.logs.iter().enumerate() {
            let (key, file) = key_of(server, &log.path);
            let entry = LogEntry {
                tag: server.tag.clone(),
                index,
                id: log.id.clone(),
                path: log.path.clone(),
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                let same = SameFile {
                    first: first.clone(),
                    second: entry.clone(),
                    file,
                };
                if first.tag == entry.tag {
                    out.within.push(same);
                } else {
                    out.across.push(same);
                }
                continue;
            }
            seen.push((key, entry));
        }
    }
    out
}

/// The identity of the log at `path` of `server`, and the file it resolves to.
fn key_of(server: &ServerConfig, path: &Path) -> (FileKey, PathBuf) {
    let file = super::resolve(path, &server.log_links_within)
        .or_else(|_| std::fs::canonicalize(path))
        .unwrap_or_else(|_| path.to_owned());
    match std::fs::metadata(&file) {
        Ok(m) => (
            FileKey::Inode {
                dev: m.dev(),
                ino: m.ino(),
            },
            std::fs::canonicalize(&file).unwrap_or(file),
        ),
        Err(_) => {
            // Not there yet: the folder as it resolves, and the name.
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
            let named = file.file_name().map_or(dir.clone(), |n| dir.join(n));
            (FileKey::Path(named.clone()), named)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_text(Path::new("servers.yml"), text, &|_| None).unwrap()
    }

    #[test]
    fn one_file_by_three_paths_is_found_and_so_is_one_not_there_yet() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("console.log"), "").unwrap();
        std::os::unix::fs::symlink(d.join("console.log"), d.join("link.log")).unwrap();
        let c = config(&format!(
            "servers:\n  prod:\n    logs:\n      - path: {d}/console.log\n      - path: {d}/sub/../console.log\n        id: again\n      \
             - path: {d}/link.log\n        id: linked\n  other:\n    log_path: {d}/console.log\n  \
             later:\n    logs:\n      - path: {d}/new.log\n      - path: {d}/sub/../new.log\n        id: twice\n",
            d = d.display()
        ));
        let shared = shared_logs(&c);
        let within: Vec<(&str, usize, usize)> = shared
            .within
            .iter()
            .map(|s| (s.first.tag.as_str(), s.first.index, s.second.index))
            .collect();
        assert_eq!(within, [("prod", 0, 1), ("prod", 0, 2), ("later", 0, 1)]);
        assert_eq!(shared.across.len(), 1);
        assert_eq!(
            (
                shared.across[0].first.tag.as_str(),
                shared.across[0].second.tag.as_str()
            ),
            ("prod", "other")
        );
        let said = shared.within[0].describe(&c);
        assert!(
            said.starts_with("servers.prod.logs[1] (`")
                && said.contains("servers.prod.logs[0] (`")
                && said.contains("line 5"),
            "{said}"
        );
    }
}
