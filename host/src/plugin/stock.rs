//! The plugins and pattern files built into the binary, and how a plugin is named in
//! configuration and on the command line: a stock name or a path to a `.wasm`.

use std::path::{Path, PathBuf};

use factorio_isr_patterns_engine::PatternFile;

/// The stock `patterns` parser, built for wasm32-wasip2 by the build script.
pub const PATTERNS_WASM: &[u8] = include_bytes!(env!("FACTORIO_ISR_WASM_FACTORIO_ISR_PATTERNS"));

/// The repository's `patterns/*.yml`, used when no patterns folder is given or found.
pub const STOCK_PATTERN_FILES: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/stock_patterns.rs"));

/// The optional pattern packs, `patterns/packs/*.yml` (enabled by name with `packs:`).
pub const STOCK_PACKS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/stock_packs.rs"));

/// The stock `ups-alert` monitor.
pub const UPS_ALERT_WASM: &[u8] = include_bytes!(env!("FACTORIO_ISR_WASM_FACTORIO_ISR_UPS_ALERT"));

/// The stock `chat-guard` monitor.
pub const CHAT_GUARD_WASM: &[u8] =
    include_bytes!(env!("FACTORIO_ISR_WASM_FACTORIO_ISR_CHAT_GUARD"));

/// The names of the stock plugins.
pub const STOCK_PLUGINS: &[&str] = &["patterns", "ups-alert", "chat-guard"];

/// Where a plugin's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A plugin built into the binary, by name.
    Stock(&'static str),
    /// A `.wasm` file on disk.
    File(PathBuf),
}

impl PluginSource {
    /// A stock name (`patterns`) or else a path.
    pub fn parse(spec: &str) -> Self {
        match STOCK_PLUGINS.iter().find(|s| **s == spec) {
            Some(name) => Self::Stock(name),
            None => Self::File(PathBuf::from(spec)),
        }
    }

    /// A name for log lines and messages.
    pub fn name(&self) -> String {
        match self {
            Self::Stock(n) => (*n).to_owned(),
            Self::File(p) => p.display().to_string(),
        }
    }

    /// The component's bytes; a file only if it is a regular file of at most `max` bytes.
    pub fn bytes(&self, max: u64) -> std::io::Result<std::borrow::Cow<'static, [u8]>> {
        match self {
            Self::Stock("patterns") => Ok(PATTERNS_WASM.into()),
            Self::Stock("ups-alert") => Ok(UPS_ALERT_WASM.into()),
            Self::Stock("chat-guard") => Ok(CHAT_GUARD_WASM.into()),
            Self::Stock(other) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no stock plugin named {other}"),
            )),
            Self::File(p) => crate::files::read_regular(p, max).map(Into::into),
        }
    }
}

/// The stock pattern files, as the engine takes them.
pub fn stock_pattern_files() -> Vec<PatternFile> {
    STOCK_PATTERN_FILES
        .iter()
        .map(|(name, text)| PatternFile::new(*name, *text))
        .collect()
}

/// The largest pattern file read.
const PATTERN_FILE_BYTES: u64 = 16 << 20;

/// One pattern file's text (a regular file of at most 16 MiB, in UTF-8).
fn read_pattern_file(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let bytes = crate::files::read_regular(path, PATTERN_FILE_BYTES)
        .with_context(|| format!("cannot read pattern file {}", path.display()))?;
    String::from_utf8(bytes)
        .with_context(|| format!("pattern file {} is not UTF-8", path.display()))
}

/// The most text a set of pattern files may hold together: it is handed to the parser's
/// `init` whole, inside the plugin's memory cap.
const PATTERN_SET_BYTES: usize = 32 << 20;

/// Stops reading a folder as soon as what was read passes [`PATTERN_SET_BYTES`].
fn within_set_cap(dir: &Path, files: &[PatternFile]) -> anyhow::Result<()> {
    let total: usize = files.iter().map(|f| f.text.len()).sum();
    if total > PATTERN_SET_BYTES {
        anyhow::bail!(
            "the pattern files of {} hold over {} MiB together; no more is read (they are handed to the parser's `init` whole)",
            dir.display(),
            PATTERN_SET_BYTES >> 20
        );
    }
    Ok(())
}

/// Reads every `*.yml` / `*.yaml` in `dir` (or only `only`, when given), in name order.
pub fn read_pattern_dir(dir: &Path, only: Option<&[String]>) -> anyhow::Result<Vec<PatternFile>> {
    use anyhow::Context;
    let mut files = Vec::new();
    match only {
        Some(names) => {
            for name in names {
                let path = dir.join(name);
                let text = read_pattern_file(&path)?;
                files.push(PatternFile::new(name.clone(), text));
                within_set_cap(dir, &files)?;
            }
        }
        None => {
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read the patterns folder {}", dir.display()))?;
            for entry in entries {
                let path = entry
                    .with_context(|| format!("cannot list the patterns folder {}", dir.display()))?
                    .path();
                if !path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    continue;
                }
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = read_pattern_file(&path)?;
                files.push(PatternFile::new(name, text));
                within_set_cap(dir, &files)?;
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// How the stock `patterns` plugin is configured in servers.yml (`config:` of its entry).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternsSettings {
    /// The folder of pattern files (default: ./patterns if it exists, else the built-in files).
    dir: Option<PathBuf>,
    /// Only these files of the folder (default: every `*.yml` / `*.yaml`).
    files: Option<Vec<String>>,
    /// Built-in packs to add, by name (`factocord`, `server-protocol`): the lines companion
    /// mods and scenarios print.
    #[serde(default)]
    packs: Vec<String>,
}

/// The built-in pack `name` as a pattern file (`packs/name.yml`).
fn pack(name: &str) -> anyhow::Result<PatternFile> {
    let file = format!("{name}.yml");
    STOCK_PACKS
        .iter()
        .find(|(n, _)| *n == file)
        .map(|(n, text)| PatternFile::new(format!("packs/{n}"), *text))
        .ok_or_else(|| {
            let known: Vec<&str> = STOCK_PACKS
                .iter()
                .map(|(n, _)| n.trim_end_matches(".yml"))
                .collect();
            anyhow::anyhow!(
                "config of the patterns plugin: there is no pack `{name}` (the packs are {})",
                known.join(", ")
            )
        })
}

/// The `init` string for a plugin whose configuration is `config`. Plugins have no
/// filesystem, so for the stock `patterns` plugin the host reads the pattern files named by
/// `{dir, files}` and hands over their text; any other plugin gets `config` as JSON.
pub fn init_config(source: &PluginSource, config: &serde_json::Value) -> anyhow::Result<String> {
    match source {
        PluginSource::Stock("patterns") => {
            let settings: PatternsSettings = if config.is_null() {
                PatternsSettings::default()
            } else {
                serde_json::from_value(config.clone())
                    .map_err(|e| anyhow::anyhow!("config of the patterns plugin: {e}"))?
            };
            let mut files = match (settings.dir, settings.files) {
                (Some(dir), files) => read_pattern_dir(&dir, files.as_deref())?,
                (None, Some(files)) => read_pattern_dir(Path::new("patterns"), Some(&files))?,
                (None, None) => default_pattern_files()?,
            };
            for name in &settings.packs {
                files.push(pack(name)?);
            }
            Ok(patterns_config(&files))
        }
        _ => Ok(config.to_string()),
    }
}

/// The pattern files of ./patterns when that folder exists, else the built-in ones.
pub fn default_pattern_files() -> anyhow::Result<Vec<PatternFile>> {
    let dir = Path::new("patterns");
    if dir.is_dir() {
        read_pattern_dir(dir, None)
    } else {
        Ok(stock_pattern_files())
    }
}

/// The `init` configuration of the stock `patterns` plugin for these files.
pub fn patterns_config(files: &[PatternFile]) -> String {
    serde_json::json!({ "files": files }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_are_added_by_name_and_an_unknown_one_names_those_there_are() {
        let source = PluginSource::Stock("patterns");
        let config = serde_json::json!({"packs": ["factocord", "server-protocol"]});
        let init = init_config(&source, &config).unwrap();
        assert!(init.contains("packs/factocord.yml") && init.contains("packs/server-protocol.yml"));
        let err = init_config(&source, &serde_json::json!({"packs": ["nope"]}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no pack `nope` (the packs are factocord, server-protocol)"),
            "{err}"
        );
    }

    #[test]
    fn a_pattern_folder_is_read_up_to_a_total_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("# {}\nevents: {{}}\n", "x".repeat(12 << 20));
        for name in ["a.yml", "b.yml"] {
            std::fs::write(dir.path().join(name), &file).unwrap();
        }
        assert_eq!(read_pattern_dir(dir.path(), None).unwrap().len(), 2);
        std::fs::write(dir.path().join("c.yml"), &file).unwrap();
        let err = read_pattern_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("hold over 32 MiB together"), "{err}");
    }
}
