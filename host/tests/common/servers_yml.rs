//! servers.yml for a test, built instead of written out: the shapes most tests need (a log,
//! a JSON-lines sink, parsers and monitors), and any other key as a line. Tests of the
//! file format itself (wrong keys, line numbers) keep their text inline.

use std::fmt::Write as _;
use std::path::Path;

/// One server's entry.
#[derive(Debug, Clone)]
pub struct Server {
    tag: String,
    keys: Vec<String>,
    parsers: Vec<String>,
    monitors: Vec<String>,
    sinks: Vec<String>,
}

/// The server `tag`, with nothing set yet.
pub fn server(tag: &str) -> Server {
    Server {
        tag: tag.to_owned(),
        keys: Vec::new(),
        parsers: Vec::new(),
        monitors: Vec::new(),
        sinks: Vec::new(),
    }
}

/// A plugin entry: `plugin: …` and, if given, `config: …` (YAML flow text).
fn plugin(name: &str, config: Option<&str>) -> String {
    match config {
        Some(c) => format!("- plugin: {name}\n  config: {c}"),
        None => format!("- plugin: {name}"),
    }
}

impl Server {
    /// `log_path: PATH`.
    pub fn log(self, path: &Path) -> Self {
        self.key(&format!("log_path: {}", path.display()))
    }

    /// Any other key, as one YAML line of the entry (`auto_rollback_faults: 2`).
    pub fn key(mut self, line: &str) -> Self {
        self.keys.push(line.to_owned());
        self
    }

    /// A JSON-lines sink writing to `path`.
    pub fn jsonl(mut self, path: &Path) -> Self {
        self.sinks.push(format!("- jsonl: {}", path.display()));
        self
    }

    /// A webhook sink posting to `url`.
    pub fn webhook(mut self, url: &str) -> Self {
        self.sinks.push(format!("- webhook: {url}"));
        self
    }

    /// The stock patterns parser reading the pattern files of `dir`.
    pub fn patterns(self, dir: &Path) -> Self {
        self.parser("patterns", Some(&format!("{{dir: {}}}", dir.display())))
    }

    /// A parser plugin (a stock name or a `.wasm` path), with its config.
    pub fn parser(mut self, name: &str, config: Option<&str>) -> Self {
        self.parsers.push(plugin(name, config));
        self
    }

    /// A monitor plugin (a stock name or a `.wasm` path), with its config.
    pub fn monitor(mut self, name: &str, config: Option<&str>) -> Self {
        self.monitors.push(plugin(name, config));
        self
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "  {}:", self.tag);
        for k in &self.keys {
            let _ = writeln!(out, "    {k}");
        }
        for (name, list) in [
            ("parsers", &self.parsers),
            ("monitors", &self.monitors),
            ("sinks", &self.sinks),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "    {name}:");
            for item in list {
                for line in item.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
}

/// servers.yml with `servers`, in order.
pub fn servers_yml(servers: &[Server]) -> String {
    let mut out = String::from("servers:\n");
    for s in servers {
        s.write(&mut out);
    }
    out
}
