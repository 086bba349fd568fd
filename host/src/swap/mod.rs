//! What hot swap keeps beside the stages that run plugins: each slot's versions, its
//! probation and rollback rules ([`slot`]), the versions chosen at run time and kept across
//! restarts ([`pins`]), compare mode's reports ([`compare`]), and the owner of a slot that
//! swaps, rolls back and pins for the thread that holds it ([`owner`]). The stages
//! (`pipeline::parse`, `monitor::stage`) and the reloader (`reload`) use them.

pub mod candidate;
pub mod compare;
pub mod inbox;
pub mod owner;
pub mod pins;
pub mod slot;

pub use crate::slot::Slot;
