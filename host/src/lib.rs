//! factorio-isr: watches Factorio servers and reports to Discord.
//!
//! # Layout
//!
//! A log line's way, in order; each module uses only those before it (and the leaves
//! below), which `tests/layout.rs` checks:
//!
//! - [`tail`]: follows a server's log files through rotation ([`tail::lines`] cuts bytes
//!   into bounded lines, [`tail::checkpoint`] remembers how far delivery got).
//! - [`plugin`]: the WebAssembly sandbox that runs parser and monitor plugins.
//! - [`swap`]: what hot swap keeps beside them: the owner of a slot (swap, rollback, pins),
//!   slot versions and rollback rules, versions kept across restarts, compare-mode reports.
//! - [`monitor`]: the monitor thread (events and samples in, alerts out), the host's own
//!   RCON and stats checks.
//! - [`pipeline`]: one server's tailer → parser thread → sinks, feeding its monitors.
//! - [`alert`]: the alert book (what is open) and the mention groups.
//! - [`sink`]: where events go (console, JSON lines); Discord's sinks are in [`discord`].
//!
//! Around them:
//!
//! - [`rcon`] and [`stats`]: the RCON link to each game and the metrics engine over it.
//! - [`servers`]: a server's face (its parser and monitor threads, its RCON, its run state).
//! - [`reload`]: rebuilds a server's plugins from servers.yml and swaps them in.
//! - [`discord`]: the bot (commands, chat bridge) and the Discord sinks; [`http`]: health,
//!   readiness, metrics and the admin API.
//! - [`cluster`]: cluster mode's etcd side (the lease, elections, fenced writes, rendezvous
//!   ranking), which checkpoints and the pipeline use to write only while they own a server.
//! - [`app`]: the composition root ([`app::Host`]) that starts and stops all of it, and the
//!   supervisor of each server that restarts its parts after a panic.
//! - [`cli`]: the command line (`run`, `demo`, `check`, `plugin`, …); [`sim`]: the fake
//!   Factorio server.
//! - Leaves any module may use: [`config`], [`event`], [`observe`] (health, metrics,
//!   logging), [`store`] (what is kept across restarts: the state folder or etcd), [`slot`], [`files`] (bounded reads), [`markdown`],
//!   [`backoff`] (the one way every part waits before trying again).

pub mod alert;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod discord;
pub mod event;
pub mod files;
pub mod http;
pub mod markdown;
pub mod monitor;
pub mod observe;
pub mod pipeline;
pub mod plugin;
pub mod rcon;
pub mod reload;
pub mod servers;
pub mod sim;
pub mod sink;
pub mod slot;
pub mod stats;
pub mod store;
pub mod swap;
pub mod tail;
