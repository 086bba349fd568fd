//! Building a server's parts from its configuration.

use anyhow::Context;

use crate::config::PluginEntry;
use crate::plugin::stock::{self, PluginSource};
use crate::plugin::{ParserChain, Runtime};

/// The parser chain of `entries` for server `tag` (the stock `patterns` parser when empty).
pub fn parser_chain(
    runtime: &Runtime,
    tag: &str,
    entries: &[PluginEntry],
) -> anyhow::Result<ParserChain> {
    let default = [PluginEntry {
        plugin: "patterns".into(),
        config: serde_json::Value::Null,
    }];
    let entries = if entries.is_empty() {
        &default[..]
    } else {
        entries
    };
    let mut parsers = Vec::new();
    for entry in entries {
        let source = PluginSource::parse(&entry.plugin);
        let name = source.name();
        let bytes = source
            .bytes(runtime.limits().file_bytes)
            .with_context(|| format!("cannot read plugin {name}"))?;
        // The stock plugins keep no state between calls: their servers share instances.
        let plugin = match source {
            PluginSource::Stock(_) => runtime.load_stateless(&name, &bytes),
            PluginSource::File(_) => runtime.load(&name, &bytes),
        }
        .with_context(|| format!("plugin {name}"))?;
        let init =
            stock::init_config(&source, &entry.config).with_context(|| format!("plugin {name}"))?;
        parsers.push(
            plugin
                .parser(tag, &init)
                .with_context(|| format!("plugin {name}"))?,
        );
    }
    Ok(ParserChain::new(parsers))
}
