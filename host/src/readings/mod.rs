//! The readings engine: one per server, shared by every consumer (the `/metrics` gauges, the
//! HTTP API, the status command, monitors). It reads the game over RCON with one Lua round
//! trip, follows UPS and pause, and answers any number of callers from one cached reading
//! per period.

mod engine;
pub mod query;
pub mod ups;

pub use engine::{Reading, ReadingGauges, Readings, Surface};
pub use ups::{UpsReading, UpsTracker};
