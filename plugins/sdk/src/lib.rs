//! Write [factorio-isr](https://github.com/) plugins in Rust.
//!
//! A **parser** turns console-log lines into events; a **monitor** turns events and metric
//! samples into alerts. Implement [`Parser`] or [`Monitor`] and export it with
//! [`export_parser!`] or [`export_monitor!`] (a parser made of fixed rules can implement
//! the faster [`RuleParser`] and use [`export_rule_parser!`]); build with
//! `cargo build --release --target wasm32-wasip2` and the `.wasm` file is the plugin.
//!
//! ```ignore
//! use factorio_isr_sdk::{export_parser, Event, Parser};
//!
//! struct Rockets;
//!
//! impl Parser for Rockets {
//!     fn new(_server: &str, _config: &str) -> Result<Self, String> {
//!         Ok(Rockets)
//!     }
//!     fn parse_line(&mut self, line: &str) -> Option<Event> {
//!         line.contains("rocket launched").then(|| Event::new("rocket-launched").text("🚀 A rocket was launched"))
//!     }
//! }
//!
//! export_parser!(Rockets);
//! ```
//!
//! Plugins run in a sandbox: no files, no network, no environment variables, a memory cap
//! and a time limit per call. Anything printed to stdout or stderr ends up in the host's
//! log; [`log`] does the same with a level.

// The export macros expand in plugin crates, which name this crate but not `wit-bindgen`.
extern crate self as factorio_isr_sdk;

/// Bindings generated from the WIT package; plugins use the re-exports at the crate root.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    /// The `parser` world.
    pub mod parser {
        wit_bindgen::generate!({
            world: "parser",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_parser_world",
            runtime_path: "::factorio_isr_sdk::__private::wit_bindgen::rt",
            additional_derives: [PartialEq],
        });
    }

    /// The `monitor` world; it shares the `types` and `host` bindings of the parser world.
    pub mod monitor {
        wit_bindgen::generate!({
            world: "monitor",
            path: "wit",
            pub_export_macro: true,
            export_macro_name: "__export_monitor_world",
            runtime_path: "::factorio_isr_sdk::__private::wit_bindgen::rt",
            with: {
                "factorio-isr:plugin/types@0.4.0": crate::bindings::parser::factorio_isr::plugin::types,
                "factorio-isr:plugin/host@0.4.0": crate::bindings::parser::factorio_isr::plugin::host,
            },
        });
    }
}

/// What the export macros need; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

pub use bindings::parser::factorio_isr::plugin::types::{
    Alert, AlertState, Event, Rule, RuleMatch, Sample, Severity, Span,
};

/// The WIT package version this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.4.0";

/// A parser plugin: one value per server, fed batches of log lines.
pub trait Parser: Sized + 'static {
    /// Creates the parser for `server` (its tag) from `config`, the JSON of the plugin's
    /// `config` in servers.yml (`null` when there is none). An error rejects the plugin.
    fn new(server: &str, config: &str) -> Result<Self, String>;

    /// Parses one line (without its line terminator).
    fn parse_line(&mut self, line: &str) -> Option<Event>;

    /// Parses a batch of lines, oldest first, into (line index, event) pairs in line order.
    /// The default calls [`Parser::parse_line`] for each line; override it to give several
    /// events for one line or to look across lines.
    fn parse_batch(&mut self, lines: &[&str]) -> Vec<(u32, Event)> {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| {
                let index = u32::try_from(i).ok()?;
                self.parse_line(line).map(|e| (index, e))
            })
            .collect()
    }
}

/// A parser whose events all come from a fixed list of rules, declared once when it starts:
/// a match names its rule and gives its values as [`Span`]s of the line, so neither side
/// copies what the other already has. The stock `patterns` parser is one. Export it with
/// [`export_rule_parser!`]; for anything else, [`Parser`] is simpler.
pub trait RuleParser: Sized + 'static {
    /// Creates the parser (see [`Parser::new`]) with its rules; [`RuleMatch::rule`] is an
    /// index into them.
    fn new(server: &str, config: &str) -> Result<(Self, Vec<Rule>), String>;

    /// Parses one line (without its line terminator).
    fn parse_line(&mut self, line: &str) -> Option<RuleMatch>;
}

/// The part of `line` that `part` is, as a [`Span`]; `None` if `part` is not a slice of it.
pub fn span_of(line: &str, part: &str) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= line.len()).then_some(Span {
        start: u32::try_from(start).ok()?,
        end: u32::try_from(end).ok()?,
    })
}

/// The lines of a batch as the host hands them over: each ended by a `\n`.
#[doc(hidden)]
pub fn __batch_lines(batch: &str) -> impl Iterator<Item = &str> {
    batch.split_terminator('\n')
}

/// A monitor plugin: one value per server, fed its events and its metric samples.
///
/// The host de-duplicates alerts by key: returning the same open alert on every call is
/// fine and posts it once. To keep counters and cooldowns across a restart of the instance
/// (after a trap, or a swap to a new version), implement [`Monitor::save_state`] and
/// [`Monitor::load_state`].
pub trait Monitor: Sized + 'static {
    /// Creates the monitor; see [`Parser::new`].
    fn new(server: &str, config: &str) -> Result<Self, String>;

    /// Looks at a batch of the server's events, read at `at_ms` (milliseconds since the
    /// Unix epoch); returns alerts to raise, update or resolve.
    fn on_events(&mut self, at_ms: u64, events: Vec<Event>) -> Vec<Alert> {
        let _ = (at_ms, events);
        Vec::new()
    }

    /// Looks at one reading of the server's metrics; returns alerts to raise, update or resolve.
    fn on_sample(&mut self, sample: Sample) -> Vec<Alert> {
        let _ = sample;
        Vec::new()
    }

    /// The state to hand to the next instance; the host asks after every call that
    /// returned. The default keeps nothing.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes up what [`Monitor::save_state`] returned in an earlier instance (called right
    /// after [`Monitor::new`], never with an empty state). An error is logged by the host
    /// and the monitor starts afresh.
    fn load_state(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch by the host's clock (WIT 0.2.0 and later).
pub fn now_ms() -> u64 {
    bindings::parser::factorio_isr::plugin::host::now_ms()
}

/// Writes a line to the host's log at `level`, tagged with this plugin and its server.
pub fn log(level: Severity, message: &str) {
    bindings::parser::factorio_isr::plugin::host::log(level, message);
}

/// `text` (a player name, a chat message: anything from the game) made safe to show in
/// Discord's Markdown: it cannot bold, strike, link or quote, and `@everyone` pings nobody.
/// Use it for every value you put into an event's or alert's text:
/// `format!("**{}** joined", escape(player))`.
pub use factorio_isr_text::escape;

/// The plugin's `config` from servers.yml (the JSON the host hands to `new`) as your own
/// type; `null` (no config) reads as `T::default()`. The error says what is wrong, and
/// rejects the plugin when returned from `new`:
///
/// ```ignore
/// #[derive(serde::Deserialize, Default)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings { threshold: f64 }
///
/// fn new(_server: &str, config: &str) -> Result<Self, String> {
///     let settings: Settings = factorio_isr_sdk::config(config)?;
///     ...
/// }
/// ```
pub fn config<T: serde::de::DeserializeOwned + Default>(config: &str) -> Result<T, String> {
    match serde_json::from_str::<serde_json::Value>(config) {
        Ok(serde_json::Value::Null) => Ok(T::default()),
        Ok(value) => serde_json::from_value(value).map_err(|e| format!("config: {e}")),
        Err(e) => Err(format!("config: not JSON: {e}")),
    }
}

/// Which of its server's logs the lines being parsed were read from: the log's `id` in
/// servers.yml (`console`, `factorio-current`, ...); empty outside a parse call.
pub fn log_source() -> String {
    bindings::parser::factorio_isr::plugin::host::log_source()
}

impl Event {
    /// An event of `kind` (kebab-case, e.g. `rocket-launched`) with severity `info` and
    /// nothing else set.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            player: None,
            message: None,
            fields: Vec::new(),
            severity: Severity::Info,
            emoji: None,
            text: None,
            channel: None,
        }
    }

    /// Sets the player the event is about.
    pub fn player(mut self, player: impl Into<String>) -> Self {
        self.player = Some(player.into());
        self
    }

    /// Sets the event's free text.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds a named value.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the emoji shown in front of the text.
    pub fn emoji(mut self, emoji: impl Into<String>) -> Self {
        self.emoji = Some(emoji.into());
        self
    }

    /// Sets the text shown to people (Markdown).
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Routes the event to a named channel of the host's configuration.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }
}

impl Alert {
    /// A firing alert with a stable `key` (the same key updates or resolves it), a title
    /// and a text, at severity `warning`.
    pub fn new(key: impl Into<String>, title: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            title: title.into(),
            text: text.into(),
            severity: Severity::Warning,
            fields: Vec::new(),
            state: AlertState::Firing,
            mention: None,
        }
    }

    /// Marks the alert as resolved: people are told it is over.
    pub fn resolved(mut self) -> Self {
        self.state = AlertState::Resolved;
        self
    }

    /// Marks the alert as withdrawn: it is closed without a message.
    pub fn withdrawn(mut self) -> Self {
        self.state = AlertState::Withdrawn;
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Adds a named value.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Mentions a group defined in the host's mentions.yml (`admins`, say). The host never
    /// pings `everyone` or `here`, whatever the group is called.
    pub fn mention(mut self, group: impl Into<String>) -> Self {
        self.mention = Some(group.into());
        self
    }
}

/// Exports a [`Parser`] implementation as the plugin's `parser` world.
#[macro_export]
macro_rules! export_parser {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __FactorioIsrParser;

        ::std::thread_local! {
            static __FACTORIO_ISR_PARSER: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        impl $crate::bindings::parser::Guest for __FactorioIsrParser {
            fn init(
                server: ::std::string::String,
                config: ::std::string::String,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Rule>, ::std::string::String> {
                let plugin = <$plugin as $crate::Parser>::new(&server, &config)?;
                __FACTORIO_ISR_PARSER.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(plugin));
                ::core::result::Result::Ok(::std::vec::Vec::new())
            }

            fn parse(lines: ::std::string::String) -> $crate::bindings::parser::Parsed {
                let lines: ::std::vec::Vec<&str> = $crate::__batch_lines(&lines).collect();
                __FACTORIO_ISR_PARSER.with(|slot| match slot.borrow_mut().as_mut() {
                    ::core::option::Option::Some(plugin) => $crate::bindings::parser::Parsed {
                        matches: ::std::vec::Vec::new(),
                        events: $crate::Parser::parse_batch(plugin, &lines),
                    },
                    ::core::option::Option::None => ::core::panic!("parse was called before init"),
                })
            }
        }

        $crate::bindings::parser::__export_parser_world!(__FactorioIsrParser with_types_in $crate::bindings::parser);
    };
}

/// Exports a [`RuleParser`] implementation as the plugin's `parser` world.
#[macro_export]
macro_rules! export_rule_parser {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __FactorioIsrRuleParser;

        ::std::thread_local! {
            static __FACTORIO_ISR_PARSER: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        impl $crate::bindings::parser::Guest for __FactorioIsrRuleParser {
            fn init(
                server: ::std::string::String,
                config: ::std::string::String,
            ) -> ::core::result::Result<::std::vec::Vec<$crate::Rule>, ::std::string::String> {
                let (plugin, rules) = <$plugin as $crate::RuleParser>::new(&server, &config)?;
                __FACTORIO_ISR_PARSER.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(plugin));
                ::core::result::Result::Ok(rules)
            }

            fn parse(lines: ::std::string::String) -> $crate::bindings::parser::Parsed {
                __FACTORIO_ISR_PARSER.with(|slot| match slot.borrow_mut().as_mut() {
                    ::core::option::Option::Some(plugin) => {
                        let mut matches = ::std::vec::Vec::new();
                        for (i, line) in $crate::__batch_lines(&lines).enumerate() {
                            if let ::core::option::Option::Some(m) = $crate::RuleParser::parse_line(plugin, line) {
                                matches.push((i as u32, m));
                            }
                        }
                        $crate::bindings::parser::Parsed { matches, events: ::std::vec::Vec::new() }
                    }
                    ::core::option::Option::None => ::core::panic!("parse was called before init"),
                })
            }
        }

        $crate::bindings::parser::__export_parser_world!(__FactorioIsrRuleParser with_types_in $crate::bindings::parser);
    };
}

/// Exports a [`Monitor`] implementation as the plugin's `monitor` world.
#[macro_export]
macro_rules! export_monitor {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __FactorioIsrMonitor;

        ::std::thread_local! {
            static __FACTORIO_ISR_MONITOR: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        impl __FactorioIsrMonitor {
            fn with<R>(f: impl FnOnce(&mut $plugin) -> R) -> R {
                __FACTORIO_ISR_MONITOR.with(|slot| match slot.borrow_mut().as_mut() {
                    ::core::option::Option::Some(plugin) => f(plugin),
                    ::core::option::Option::None => ::core::panic!("called before init"),
                })
            }
        }

        impl $crate::bindings::monitor::Guest for __FactorioIsrMonitor {
            fn init(
                server: ::std::string::String,
                config: ::std::string::String,
            ) -> ::core::result::Result<(), ::std::string::String> {
                let plugin = <$plugin as $crate::Monitor>::new(&server, &config)?;
                __FACTORIO_ISR_MONITOR.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(plugin));
                ::core::result::Result::Ok(())
            }

            fn on_events(at_ms: u64, events: ::std::vec::Vec<$crate::Event>) -> ::std::vec::Vec<$crate::Alert> {
                Self::with(|plugin| $crate::Monitor::on_events(plugin, at_ms, events))
            }

            fn on_sample(sample: $crate::Sample) -> ::std::vec::Vec<$crate::Alert> {
                Self::with(|plugin| $crate::Monitor::on_sample(plugin, sample))
            }

            fn save_state() -> ::std::vec::Vec<u8> {
                Self::with(|plugin| $crate::Monitor::save_state(plugin))
            }

            fn load_state(state: ::std::vec::Vec<u8>) -> ::core::result::Result<(), ::std::string::String> {
                Self::with(|plugin| $crate::Monitor::load_state(plugin, &state))
            }
        }

        $crate::bindings::monitor::__export_monitor_world!(__FactorioIsrMonitor with_types_in $crate::bindings::monitor);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_of_gives_where_a_slice_is_in_its_line() {
        let line = "[JOIN] Zoë joined the game";
        let (_, rest) = line.split_once("] ").unwrap();
        let name = &rest[..4];
        assert_eq!(name, "Zoë");
        assert_eq!(span_of(line, name), Some(Span { start: 7, end: 11 }));
        assert_eq!(span_of(line, &line[..0]), Some(Span { start: 0, end: 0 }));
        assert_eq!(span_of(line, line), Some(Span { start: 0, end: 27 }));
    }

    #[test]
    fn span_of_refuses_what_is_not_part_of_the_line() {
        let line = "[JOIN] Alice joined the game";
        let other = String::from("Alice");
        assert_eq!(span_of(line, &other), None);
        assert_eq!(span_of(&line[7..12], line), None);
    }

    #[test]
    fn a_batch_is_split_into_its_lines() {
        assert_eq!(
            __batch_lines("a\n\nb\n").collect::<Vec<_>>(),
            ["a", "", "b"]
        );
        assert_eq!(__batch_lines("").count(), 0);
    }

    #[test]
    fn escape_defuses_markdown_and_mentions() {
        assert_eq!(escape("a_b *c* [x](y)"), "a\\_b \\*c\\* \\[x\\](y)");
        assert_eq!(escape("@everyone"), "@\u{200b}everyone");
    }

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        threshold: f64,
        names: Vec<String>,
    }

    #[test]
    fn config_reads_the_json_into_a_type_and_says_what_is_wrong() {
        let s: Settings = config(r#"{"threshold": 2.5}"#).unwrap();
        assert_eq!(s.threshold, 2.5);
        assert_eq!(config::<Settings>("null").unwrap(), Settings::default());
        let e = config::<Settings>(r#"{"threshhold": 1}"#).unwrap_err();
        assert!(e.starts_with("config: unknown field `threshhold`"), "{e}");
        assert!(
            config::<Settings>("{")
                .unwrap_err()
                .starts_with("config: not JSON")
        );
    }
}
