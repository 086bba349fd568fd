//! factorio-isr: watches Factorio servers and reports to Discord.
//!
//! Data flows one way: log `lines` → parser plugins (`plugin`) → `event`s → monitors →
//! alerts → sinks. The modules are named for those steps.

pub mod alert;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod config;
pub mod discord;
pub mod event;
pub mod files;
pub mod health;
pub mod http;
pub mod lines;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod pins;
pub mod pipeline;
pub mod plugin;
pub mod rcon;
pub mod reload;
pub mod servers;
pub mod sim;
pub mod sink;
pub mod slot;
pub mod state;
pub mod stats;
pub mod tail;
